"""The MCP server: InternVL's vision and document tools for any Model Context Protocol client.

``internvl-tools mcp MODEL`` (or ``python -m internvl_tools.mcp``). :mod:`.tools` holds the tools as plain functions
over an engine and a :class:`ToolPolicy`; :mod:`.app` wires them into the official ``mcp`` SDK (imported only there,
needs ``internvl-tools[mcp]``); :mod:`.cli` is the command line.
"""

from internvl_tools.mcp import app, cli, tools
from internvl_tools.mcp.app import *  # noqa: F403
from internvl_tools.mcp.cli import *  # noqa: F403
from internvl_tools.mcp.tools import *  # noqa: F403

__all__ = [*tools.__all__, *app.__all__, *cli.__all__]
