"""Prompts: the InternVL conversation templates (:mod:`.templates`) and the builders that turn a conversation
into the exact prompt string, image tokens included (:mod:`.builder`). Nothing here reads checkpoints."""

from internvl_tools.prompts import builder, templates
from internvl_tools.prompts.builder import *  # noqa: F403
from internvl_tools.prompts.templates import *  # noqa: F403

__all__ = [*templates.__all__, *builder.__all__]
