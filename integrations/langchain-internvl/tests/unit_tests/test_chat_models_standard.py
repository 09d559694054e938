"""langchain-tests' ChatModelUnitTests (no weights are loaded: construction is lazy)."""

from __future__ import annotations

from typing import Any

from langchain_tests.unit_tests import ChatModelUnitTests

from langchain_internvl import ChatInternVL


class TestChatInternVLUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatInternVL]:
        return ChatInternVL

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "tiny", "device": "cpu"}

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def supports_pdf_inputs(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def init_from_env_params(self) -> tuple[dict, dict, dict]:
        return {}, {}, {}
