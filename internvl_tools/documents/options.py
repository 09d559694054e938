"""The options of one :func:`~internvl_tools.documents.read_pdf` run, typed and checked in one place.

>>> options = ReadOptions(question="What is the total?", batch_size=2)
>>> options.task, options.task_name, options.render_prefetch, options.generation_kwargs()["max_new_tokens"]
('qa', 'qa', 2, 256)
>>> ReadOptions(batch_size=0)
Traceback (most recent call last):
internvl_tools.errors.ConfigError: batch_size must be an int >= 1 (pages per batched generate), got 0.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from internvl_tools.documents.sizing import (
    DEFAULT_PAGE_MEMORY_MB,
    DEFAULT_PAGE_TIMEOUT_S,
    Backend,
    check_render_options,
)
from internvl_tools.documents.sources import PageSpec
from internvl_tools.documents.tasks import DEFAULT_MAX_NEW_TOKENS, TEXT_TASKS
from internvl_tools.errors import ConfigError
from internvl_tools.media.policy import MediaPolicy

__all__ = ["ReadOptions"]


def _interactive() -> bool:
    """Progress bars default on in terminals and Jupyter kernels, off in pipes, logs and CI."""
    if os.environ.get("INTERNVL_TOOLS_PROGRESS", "").lower() in {"0", "false", "off", "no"}:
        return False
    if "ipykernel" in sys.modules:
        return True
    stream = sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, kw_only=True)
class ReadOptions:
    """Everything :func:`~internvl_tools.documents.read_pdf` does with a document besides the engine and source.

    ``read_pdf`` builds one from its keyword arguments (or takes ``options=``); every option is checked when the
    object is made, so a bad one raises :class:`~internvl_tools.errors.ConfigError` naming it before any page is
    processed. Giving ``question`` makes the task ``"qa"``.

    Attributes:
        task: ``"ocr"``, ``"chart"``, ``"grounded_ocr"``, ``"layout"``, ``"qa"``, or a pydantic model /
            JSON-schema dict.
        question: the question of the ``"qa"`` task.
        pages: 1-based selection such as ``"1-3,7"``.
        dpi / longest_side: render resolution; both ``None``: fill the engine's tile grid per page.
        password: for encrypted PDFs.
        batch_size: pages per batched generate.
        prefetch: rendered pages queued ahead of generation; ``None``: ``max(2, batch_size)``.
        progress: a tqdm bar; ``None``: on in terminals and notebooks.
        resume_from: a JSONL file of an earlier run whose successful pages are skipped.
        max_new_tokens: ``None``: the task's default (:data:`~.tasks.DEFAULT_MAX_NEW_TOKENS`).
        top_pages: answer ``question`` only on the ``k`` most relevant pages.
        backend: ``"auto"``, ``"process"`` or ``"thread"`` (see :func:`~.render.render_pages`).
        policy: the :class:`~internvl_tools.media.MediaPolicy` for image inputs and the pixel cap; ``None``: the
            engine's ``media_policy`` (or the default policy).
        page_timeout / page_memory_mb: per-page CPU seconds and MiB in the render worker (``None``: no limit).
        generation: further generation options for the engine (greedy decoding unless sampling is asked for).
    """

    task: Any = "ocr"
    question: str | None = None
    pages: PageSpec = None
    dpi: float | None = None
    longest_side: int | None = None
    password: str | None = None
    batch_size: int = 4
    prefetch: int | None = None
    progress: bool | None = None
    resume_from: str | os.PathLike | None = None
    max_new_tokens: int | None = None
    top_pages: int | None = None
    backend: Backend = "auto"
    policy: MediaPolicy | None = None
    page_timeout: float | None = DEFAULT_PAGE_TIMEOUT_S
    page_memory_mb: int | None = DEFAULT_PAGE_MEMORY_MB
    generation: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        task, question = self.task, self.question
        if question is not None:
            if not isinstance(question, str) or not question.strip():
                raise ConfigError("question must be a non-empty string.")
            if task not in ("ocr", "qa"):
                raise ConfigError(f"Pass either question=... or task={task!r}, not both.")
            object.__setattr__(self, "task", "qa")
            task = "qa"
        if self.top_pages is not None and (question is None or not _is_int(self.top_pages) or self.top_pages < 1):
            raise ConfigError("top_pages needs a question and must be an int >= 1.")
        if isinstance(task, str) and task not in TEXT_TASKS:
            raise ConfigError(
                f"Unknown task {task!r}; use one of {tuple(t for t in TEXT_TASKS if t != 'qa')}, question=..., "
                "or a pydantic schema."
            )
        if task == "qa" and question is None:
            raise ConfigError("task='qa' needs question='...'.")
        if task is None or isinstance(task, (bool, int, float)):
            raise ConfigError(f"task must be a task name or a pydantic model / JSON-schema dict, got {task!r}.")
        if not _is_int(self.batch_size) or self.batch_size < 1:
            raise ConfigError(f"batch_size must be an int >= 1 (pages per batched generate), got {self.batch_size!r}.")
        if self.max_new_tokens is not None and (not _is_int(self.max_new_tokens) or self.max_new_tokens < 1):
            raise ConfigError(
                f"max_new_tokens must be an int >= 1, got {self.max_new_tokens!r}; None uses the task's default."
            )
        if self.policy is not None and not isinstance(self.policy, MediaPolicy):
            raise ConfigError(f"policy must be a MediaPolicy or None, got {type(self.policy).__name__}.")
        if not isinstance(self.generation, Mapping):
            raise ConfigError(f"generation must be a mapping of generation options, got {self.generation!r}.")
        check_render_options(
            dpi=self.dpi,
            longest_side=self.longest_side,
            backend=self.backend,
            prefetch=self.render_prefetch,
            page_timeout=self.page_timeout,
            page_memory_mb=self.page_memory_mb,
        )

    @classmethod
    def merge(cls, options: ReadOptions | None, generation: Mapping[str, Any], **keywords: Any) -> ReadOptions:
        """``options`` as given, or built from ``read_pdf``'s keywords; refuses a mix of both (ambiguous)."""
        if options is None:
            return cls(**keywords, generation=dict(generation))
        if not isinstance(options, cls):
            raise ConfigError(f"options must be a ReadOptions, got {type(options).__name__}.")
        defaults = {f.name: f.default for f in fields(cls) if f.name != "generation"}
        mixed = sorted(
            name for name, value in keywords.items() if not (value is defaults[name] or value == defaults[name])
        )
        mixed += sorted(generation)
        if mixed:
            raise ConfigError(
                f"Pass read options either as options=ReadOptions(...) or as keywords, not both (also got "
                f"{', '.join(mixed)}); put them into the ReadOptions."
            )
        return options

    @property
    def task_name(self) -> str:
        """The task as records name it: the task string, a schema's ``title`` or class name, or ``"schema"``."""
        if isinstance(self.task, str):
            return self.task
        if isinstance(self.task, dict):
            return str(self.task.get("title") or "schema")
        return getattr(self.task, "__name__", "schema")

    @property
    def render_prefetch(self) -> int:
        """Rendered pages queued ahead: ``prefetch``, or enough to fill the next batch (at least 2)."""
        return max(2, self.batch_size) if self.prefetch is None else self.prefetch

    @property
    def show_progress(self) -> bool:
        return _interactive() if self.progress is None else bool(self.progress)

    def generation_kwargs(self) -> dict[str, Any]:
        """What each page's generate call gets: greedy unless asked otherwise, and the task's token budget."""
        kwargs = dict(self.generation)
        kwargs.setdefault("do_sample", False)
        key = self.task if isinstance(self.task, str) else "schema"
        kwargs["max_new_tokens"] = self.max_new_tokens or DEFAULT_MAX_NEW_TOKENS[key]
        if isinstance(self.task, str):
            kwargs.setdefault("stop_repetition", True)  # stop a degenerate loop early (see generation.stopping)
        return kwargs
