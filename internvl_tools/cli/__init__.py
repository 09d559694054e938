"""The ``internvl-tools`` command line: :mod:`.commands` (``ask``, ``ground``, ``ocr``, ``info``, ``serve``),
:mod:`.parser` (options and help), :mod:`.exits` (exit codes and the exception -> code rule).

>>> from internvl_tools.cli import EXIT_BAD_INPUT, exit_code_for
>>> exit_code_for(FileNotFoundError("x"), stage="input") == EXIT_BAD_INPUT
True
"""

from internvl_tools.cli import commands, exits, parser
from internvl_tools.cli.commands import *  # noqa: F403
from internvl_tools.cli.exits import *  # noqa: F403
from internvl_tools.cli.parser import *  # noqa: F403

__all__ = [*exits.__all__, *parser.__all__, *commands.__all__]
