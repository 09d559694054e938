"""Grounding: typed boxes, the prompts that ask for them, the tolerant parser of answers, fine-tuning records, drawing.

Modules, bottom up (each imports only those before it): ``types`` (boxes, objects, warnings), ``prompts``,
``records`` and ``drawing`` (which read a result's attributes), ``result`` (:class:`GroundingResult`, whose methods
call records and drawing) and ``parser`` (:func:`parse_grounding`, which builds results).
"""

from typing import TYPE_CHECKING

from internvl_tools.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    (
        "types",
        "prompts",
        "records",
        "drawing",
        "result",
        "parser",
    ),
)

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from internvl_tools.grounding.drawing import *  # noqa: F403
    from internvl_tools.grounding.parser import *  # noqa: F403
    from internvl_tools.grounding.prompts import *  # noqa: F403
    from internvl_tools.grounding.records import *  # noqa: F403
    from internvl_tools.grounding.result import *  # noqa: F403
    from internvl_tools.grounding.types import *  # noqa: F403
