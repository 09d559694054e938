"""The ``internvl-tools`` command line: :mod:`.commands` (``ask``, ``ground``, ``ocr``, ``info``, ``serve``),
:mod:`.parser` (options and help), :mod:`.exits` (exit codes and the exception -> code rule).

>>> from internvl_tools.cli import EXIT_BAD_INPUT, exit_code_for
>>> exit_code_for(FileNotFoundError("x"), stage="input") == EXIT_BAD_INPUT
True
"""

from typing import TYPE_CHECKING

from internvl_tools.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    (
        "exits",
        "parser",
        "commands",
    ),
)

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from internvl_tools.cli.commands import *  # noqa: F403
    from internvl_tools.cli.exits import *  # noqa: F403
    from internvl_tools.cli.parser import *  # noqa: F403
