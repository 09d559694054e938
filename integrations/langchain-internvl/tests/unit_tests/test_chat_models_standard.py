"""langchain-tests' ChatModelUnitTests (no weights are loaded: construction is lazy)."""

from __future__ import annotations

from typing import Any

from langchain_tests.unit_tests import ChatModelUnitTests

from tests.standard_capabilities import InternVLCapabilities


class TestChatInternVLUnit(InternVLCapabilities, ChatModelUnitTests):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {"model": "tiny", "device": "cpu"}

    @property
    def init_from_env_params(self) -> tuple[dict, dict, dict]:
        return {}, {}, {}
