"""Fixtures: internvl-tools' pytest plugin (tiny and demo engines, generated documents)."""

from __future__ import annotations

import os
from pathlib import Path

# Share the core's cache of tiny checkpoints (built once per machine).
os.environ.setdefault("INTERNVL_TOOLS_CACHE", str(Path(__file__).resolve().parents[3] / ".cache"))

pytest_plugins = ["internvl_tools.pytest_plugin"]
