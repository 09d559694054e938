"""``python -m internvl_tools.mcp MODEL [options]``: the MCP server (see :mod:`internvl_tools.mcp.cli`)."""

import sys

from internvl_tools.mcp.cli import main

sys.exit(main())
