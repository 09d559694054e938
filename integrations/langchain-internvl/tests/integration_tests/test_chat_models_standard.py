"""langchain-tests' ChatModelIntegrationTests against a tiny random InternVL (answers are random text)."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_tests.integration_tests import ChatModelIntegrationTests

from tests.integration_tests.conftest import tiny_path
from tests.standard_capabilities import InternVLCapabilities


class TestChatInternVLIntegration(InternVLCapabilities, ChatModelIntegrationTests):
    @property
    def chat_model_params(self) -> dict[str, Any]:
        # Small generations keep the suite fast; 48 tokens leave room for the Joke JSON under the grammar.
        return {"model": tiny_path(), "device": "cpu", "max_tokens": 48, "temperature": 0}

    @property
    def model_override_value(self) -> str:
        # Another name for the same tiny checkpoint: the per-call engine shares the already loaded weights.
        return "tiny"

    @pytest.mark.xfail(
        reason="Needs a model's intelligence: json_mode guarantees *a* JSON object; a random tiny model does not "
        "choose the keys 'setup' and 'punchline'."
    )
    def test_json_mode(self, model: BaseChatModel) -> None:
        super().test_json_mode(model)

    # Tool calls from the random tiny model are structurally valid (name, id, type, args that validate against the
    # tool's schema: see test_tool_calling.py); these standard tests also check the argument *values*.
    @pytest.mark.xfail(
        reason="Needs a model's intelligence: asserts args == {'input': 3} for 'magic_function(3)'; the random "
        "tiny model writes a valid but arbitrary integer."
    )
    @pytest.mark.parametrize("model", [{}, {"output_version": "v1"}], indirect=True)
    def test_tool_calling(self, model: BaseChatModel) -> None:
        super().test_tool_calling(model)

    @pytest.mark.xfail(
        reason="Needs a model's intelligence: asserts args == {'input': 3} for 'magic_function(3)'; the random "
        "tiny model writes a valid but arbitrary integer."
    )
    async def test_tool_calling_async(self, model: BaseChatModel) -> None:
        await super().test_tool_calling_async(model)

    @pytest.mark.xfail(
        reason="Needs a model's intelligence: asserts a non-empty 'answer_style' for 'generate a Pirate greeting'; "
        "the random tiny model writes a valid but arbitrary (here empty) string."
    )
    def test_bind_runnables_as_tools(self, model: BaseChatModel) -> None:
        super().test_bind_runnables_as_tools(model)

    @pytest.mark.xfail(
        reason="Needs a model's intelligence: asserts the customer_name argument copies '你好' from the prompt; the "
        "random tiny model writes a valid but arbitrary string (unicode round-trips: test_tool_calling.py)."
    )
    def test_unicode_tool_call_integration(
        self, model: BaseChatModel, *, tool_choice: str | None = None, force_tool_call: bool = True
    ) -> None:
        super().test_unicode_tool_call_integration(model, tool_choice=tool_choice, force_tool_call=force_tool_call)
