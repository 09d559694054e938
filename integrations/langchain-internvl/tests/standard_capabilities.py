"""What ChatInternVL declares to langchain-tests, stated once for the unit and the integration suites."""

from __future__ import annotations

from langchain_internvl import ChatInternVL


class InternVLCapabilities:
    """Mixed in before langchain-tests' base classes so both suites test the same declared capabilities."""

    @property
    def chat_model_class(self) -> type[ChatInternVL]:
        return ChatInternVL

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
    def supports_image_urls(self) -> bool:
        # The standard test fetches a fixed GitHub URL; URL images are tested against a local server instead
        # (test_chat_behaviour.py::test_image_urls_refused_by_default_and_served_from_an_allowed_private_host).
        return False

    @property
    def supports_pdf_inputs(self) -> bool:
        return True

    @property
    def supports_image_tool_message(self) -> bool:
        return True

    @property
    def supports_pdf_tool_message(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True
