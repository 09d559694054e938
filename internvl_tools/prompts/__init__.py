"""Prompts: the InternVL conversation templates (:mod:`.templates`) and the builders that turn a conversation
into the exact prompt string, image tokens included (:mod:`.builder`). Nothing here reads checkpoints."""

from typing import TYPE_CHECKING

from internvl_tools.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    (
        "templates",
        "builder",
    ),
)

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from internvl_tools.prompts.builder import *  # noqa: F403
    from internvl_tools.prompts.templates import *  # noqa: F403
