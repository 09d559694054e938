"""langchain-tests' ToolsIntegrationTests for each tool, on a tiny random InternVL and generated media."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from langchain_tests.integration_tests import ToolsIntegrationTests

from langchain_internvl import InternVLGroundingTool, InternVLOCRTool, InternVLVisionTool
from tests.conftest import make_png, make_scanned_pdf
from tests.integration_tests.conftest import tiny_path

# Properties cannot take fixtures: one allowed folder for the module, made at import.
_DIR = Path(tempfile.mkdtemp(prefix="lc-internvl-tools-"))
(_DIR / "street.png").write_bytes(make_png((96, 64)))
(_DIR / "scan.pdf").write_bytes(make_scanned_pdf(2))


def _params() -> dict[str, Any]:
    return {"model": tiny_path(), "device": "cpu", "allowed_dirs": [str(_DIR)], "max_tokens": 12}


class TestVisionToolIntegration(ToolsIntegrationTests):
    @property
    def tool_constructor(self) -> type[InternVLVisionTool]:
        return InternVLVisionTool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return _params()

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"image": "street.png", "question": "What colour is the rectangle?"}


class TestGroundingToolIntegration(ToolsIntegrationTests):
    @property
    def tool_constructor(self) -> type[InternVLGroundingTool]:
        return InternVLGroundingTool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return _params()

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"image": "scan.pdf", "phrase": "the total", "page": 2}


class TestOCRToolIntegration(ToolsIntegrationTests):
    @property
    def tool_constructor(self) -> type[InternVLOCRTool]:
        return InternVLOCRTool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return _params()

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"image": "scan.pdf", "page": 1}
