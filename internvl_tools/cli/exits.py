"""Exit codes of ``internvl-tools`` and the rule that maps an exception (and the step it surfaced in) to one.

>>> exit_code_for(FileNotFoundError("x"), stage="input")
2
"""

from __future__ import annotations

from internvl_tools.errors import (
    ConfigError,
    ContextLengthError,
    DependencyMissingError,
    GenerationError,
    InternVLError,
    MediaError,
    ModelLoadError,
    StructuredOutputError,
    TemplateError,
)

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_CODES",
    "EXIT_DEPENDENCY",
    "EXIT_GENERATION",
    "EXIT_INTERRUPTED",
    "EXIT_LOAD",
    "EXIT_OK",
    "EXIT_PAGES_FAILED",
    "exit_code_for",
]

EXIT_OK = 0
EXIT_PAGES_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_LOAD = 3
EXIT_GENERATION = 4
EXIT_DEPENDENCY = 5
EXIT_INTERRUPTED = 130

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "ok",
    EXIT_PAGES_FAILED: "ocr: some pages failed (the others are written; rerun with --resume to retry them)",
    EXIT_BAD_INPUT: "usage error or bad input: missing/unreadable file, encrypted PDF without --password, bad "
    "--pages, unknown option value, prompt too long for the context window",
    EXIT_LOAD: "the model could not be loaded: unknown name, not an InternVL checkpoint, hub unreachable, "
    "broken weights",
    EXIT_GENERATION: "generation failed inside the model",
    EXIT_DEPENDENCY: "an optional dependency is missing (the message names the pip extra)",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}

# Errors that mean "fix what you typed", whatever stage they surface in. ContextLengthError belongs here: the
# prompt is refused before generation, and the fix is a smaller --max-tiles / --max-new-tokens, not a retry.
BAD_INPUT_ERRORS: tuple[type[BaseException], ...] = (MediaError, ConfigError, TemplateError, ContextLengthError)


class Stage:
    """Which step a command is in; an unexpected exception is blamed on it (``input``, ``load``, ``generate``)."""

    def __init__(self) -> None:
        self.name = "input"


def exit_code_for(exc: BaseException, stage: str = "generate") -> int:
    """The exit code for ``exc`` raised while a command was in ``stage`` (``input``, ``load`` or ``generate``).

    Typed errors decide by type; anything else raised while loading is a load failure, while reading inputs bad
    input, and while generating a generation failure.

    >>> from internvl_tools.errors import PasswordError, ModelLoadError
    >>> exit_code_for(PasswordError("encrypted")), exit_code_for(ModelLoadError("x")), exit_code_for(RuntimeError())
    (2, 3, 4)
    """
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    if isinstance(exc, DependencyMissingError):
        return EXIT_DEPENDENCY
    if isinstance(exc, ModelLoadError) or stage == "load":
        return EXIT_LOAD
    if isinstance(exc, (GenerationError, StructuredOutputError)):
        return EXIT_GENERATION
    if isinstance(exc, BAD_INPUT_ERRORS):
        return EXIT_BAD_INPUT
    if stage == "input" and isinstance(exc, (OSError, ValueError, TypeError)):
        return EXIT_BAD_INPUT
    return EXIT_BAD_INPUT if stage == "input" and isinstance(exc, InternVLError) else EXIT_GENERATION
