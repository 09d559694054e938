"""langchain-tests' ChatModelIntegrationTests against a tiny random InternVL (answers are random text)."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_tests.integration_tests import ChatModelIntegrationTests

from langchain_internvl import ChatInternVL
from tests.integration_tests.conftest import tiny_path


class TestChatInternVLIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatInternVL]:
        return ChatInternVL

    @property
    def chat_model_params(self) -> dict[str, Any]:
        # Small generations keep the suite fast; 48 tokens leave room for the Joke JSON under the grammar.
        return {"model": tiny_path(), "device": "cpu", "max_tokens": 48, "temperature": 0}

    @property
    def supports_image_inputs(self) -> bool:
        return True

    @property
    def supports_image_urls(self) -> bool:
        # The standard test fetches a fixed GitHub URL; URL images are tested against a local server instead
        # (test_chat_behaviour.py::test_image_urls_from_an_allowed_private_host).
        return False

    @property
    def supports_pdf_inputs(self) -> bool:
        return True

    @property
    def supports_image_tool_message(self) -> bool:
        # The standard test calls bind_tools, which ChatInternVL does not implement (no native tool calling);
        # images in ToolMessages are tested in test_chat_behaviour.py.
        return False

    @property
    def model_override_value(self) -> str:
        # Another name for the same tiny checkpoint: the per-call engine shares the already loaded weights.
        return "tiny"

    @property
    def supports_json_mode(self) -> bool:
        return True

    @pytest.mark.xfail(
        reason="Needs a model's intelligence: json_mode guarantees *a* JSON object; a random tiny model does not "
        "choose the keys 'setup' and 'punchline'."
    )
    def test_json_mode(self, model: BaseChatModel) -> None:
        super().test_json_mode(model)
