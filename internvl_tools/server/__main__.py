"""``python -m internvl_tools.server MODEL ...``: the same as ``internvl-tools serve MODEL ...``."""

import sys

from internvl_tools.server.cli import main

if __name__ == "__main__":
    sys.exit(main())
