"""Whole corpora: many documents, many workers, nothing lost. Documents → pages (rendered in Ray tasks) → batched
inference in an actor pool (one engine per actor) → page records, as a ``ray.data.Dataset`` (:func:`read_corpus`)
or written per document with resume (:func:`ingest`).

Modules: :mod:`.inputs` (paths, directories, globs; document ids), :mod:`.records` (the record schema),
:mod:`.store` (the output folder), :mod:`.stages` (the Ray Data stages), :mod:`.run`. Ray is imported only when
a corpus is read (``pip install 'internvl-tools[ray]'``).

>>> from internvl_tools.corpus import expand_inputs, document_id
>>> len(document_id(b"%PDF-"))
32
"""

from typing import TYPE_CHECKING

from internvl_tools.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    (
        "inputs",
        "records",
        "store",
        "stages",
        "run",
    ),
)

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from internvl_tools.corpus.inputs import *  # noqa: F403
    from internvl_tools.corpus.records import *  # noqa: F403
    from internvl_tools.corpus.run import *  # noqa: F403
    from internvl_tools.corpus.stages import *  # noqa: F403
    from internvl_tools.corpus.store import *  # noqa: F403
