"""langchain-tests' ToolsUnitTests for each tool."""

from __future__ import annotations

from typing import Any

from langchain_tests.unit_tests import ToolsUnitTests

from langchain_internvl import InternVLGroundingTool, InternVLOCRTool, InternVLVisionTool

PARAMS = {"model": "tiny", "device": "cpu", "allowed_dirs": ["/tmp"], "max_tokens": 8}


class TestVisionToolUnit(ToolsUnitTests):
    @property
    def tool_constructor(self) -> type[InternVLVisionTool]:
        return InternVLVisionTool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return PARAMS

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"image": "street.png", "question": "What colour is the car?"}


class TestGroundingToolUnit(ToolsUnitTests):
    @property
    def tool_constructor(self) -> type[InternVLGroundingTool]:
        return InternVLGroundingTool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return PARAMS

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"image": "street.png", "phrase": "the red car"}


class TestOCRToolUnit(ToolsUnitTests):
    @property
    def tool_constructor(self) -> type[InternVLOCRTool]:
        return InternVLOCRTool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return PARAMS

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"image": "scan.pdf", "page": 2}
