"""Grounding: typed boxes, the prompts that ask for them, the tolerant parser of answers, fine-tuning records, drawing.

Modules, bottom up (each imports only those before it): ``types`` (boxes, objects, warnings), ``prompts``,
``records`` and ``drawing`` (which read a result's attributes), ``result`` (:class:`GroundingResult`, whose methods
call records and drawing) and ``parser`` (:func:`parse_grounding`, which builds results).
"""

from internvl_tools.grounding import drawing, parser, prompts, records, result, types
from internvl_tools.grounding.drawing import *  # noqa: F403
from internvl_tools.grounding.parser import *  # noqa: F403
from internvl_tools.grounding.prompts import *  # noqa: F403
from internvl_tools.grounding.records import *  # noqa: F403
from internvl_tools.grounding.result import *  # noqa: F403
from internvl_tools.grounding.types import *  # noqa: F403

__all__ = [*types.__all__, *prompts.__all__, *records.__all__, *drawing.__all__, *result.__all__, *parser.__all__]
