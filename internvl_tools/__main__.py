"""``python -m internvl_tools``: the same as the ``internvl-tools`` command."""

from __future__ import annotations

import sys

from internvl_tools.cli import main

if __name__ == "__main__":
    sys.exit(main())
