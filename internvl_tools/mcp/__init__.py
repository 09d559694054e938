"""The MCP server: InternVL's vision and document tools for any Model Context Protocol client.

``internvl-tools mcp MODEL`` (or ``python -m internvl_tools.mcp``). :mod:`.tools` holds the tools as plain functions
over an engine and a :class:`ToolPolicy`; :mod:`.app` wires them into the official ``mcp`` SDK (imported only there,
needs ``internvl-tools[mcp]``); :mod:`.cli` is the command line.
"""

from typing import TYPE_CHECKING

from internvl_tools.lazy import lazy_exports

__all__, __getattr__, __dir__ = lazy_exports(
    __name__,
    (
        "tools",
        "app",
        "cli",
    ),
)

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from internvl_tools.mcp.app import *  # noqa: F403
    from internvl_tools.mcp.cli import *  # noqa: F403
    from internvl_tools.mcp.tools import *  # noqa: F403
