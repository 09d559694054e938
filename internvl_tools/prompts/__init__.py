"""Prompts: the InternVL conversation templates and the builder that expands image placeholders into tokens."""

from internvl_tools.prompts import builder
from internvl_tools.prompts.builder import *  # noqa: F403

__all__ = [*builder.__all__]
