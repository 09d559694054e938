"""Grounding: typed boxes, the prompts that ask for them, the tolerant parser of model answers, fine-tuning records and drawing."""

from internvl_tools.grounding import types, parser, records, drawing
from internvl_tools.grounding.types import *  # noqa: F403
from internvl_tools.grounding.parser import *  # noqa: F403
from internvl_tools.grounding.records import *  # noqa: F403
from internvl_tools.grounding.drawing import *  # noqa: F403

__all__ = [*types.__all__, *parser.__all__, *records.__all__, *drawing.__all__]
