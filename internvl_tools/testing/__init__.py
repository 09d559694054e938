"""Testing helpers: tiny random InternVL checkpoints built offline, byte-identical per seed, cached on disk
(:mod:`.checkpoints`), their models (:mod:`.models`) and tokenizers (:mod:`.tokenizers`)."""

from typing import TYPE_CHECKING

from internvl_tools.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    (
        "checkpoints",
        "models",
        "tokenizers",
    ),
)

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from internvl_tools.testing.checkpoints import *  # noqa: F403
    from internvl_tools.testing.models import *  # noqa: F403
    from internvl_tools.testing.tokenizers import *  # noqa: F403
