"""Settings shared by the chat model and the tools: which engine to use and what media it may read.

The fields, their meaning and the engine they build are the core's :class:`internvl_tools.EngineSettings` (the same
names in the CLI, LangChain and LlamaIndex); LangChain adds an existing ``engine`` and a per-model engine cache, and
reads no local file unless ``allowed_dirs`` (or ``allow_local_files=True``) says so.

Construction stays cheap: an engine is created on first use, and :class:`internvl_tools.InternVL` engines on the
same checkpoint and settings share one copy of the weights process-wide, so a chat model and three tools on one
checkpoint load it once.

>>> cfg = InternVLSettings(model="tiny", allowed_dirs=["/tmp"])
>>> cfg.build_media_policy().allow_remote
False
>>> InternVLSettings(model="tiny").build_media_policy().allow_local_files
False
"""

from __future__ import annotations

from typing import Any

from internvl_tools import EngineSettings, InternVL
from internvl_tools.constants import DEFAULT_MODEL
from pydantic import Field, PrivateAttr

__all__ = ["DEFAULT_MODEL", "InternVLSettings"]


class InternVLSettings(EngineSettings):
    """Engine and media-policy fields (a mixin for ``ChatInternVL`` and the tools).

    Either ``model`` (a hub id, a local checkpoint directory or ``"tiny"``), an existing ``engine`` (any
    ``internvl_tools.VisionLanguageModel``), or ``base_url`` of an OpenAI-compatible server. The other fields are
    :class:`internvl_tools.EngineSettings`': ``device``, ``dtype``, ``max_tiles``, ``trust_remote_code``,
    ``engine_kwargs``, ``api_key`` (default: ``$INTERNVL_TOOLS_API_KEY``), ``allowed_dirs``, ``allow_remote_urls``,
    ``allow_private_hosts`` and ``media_policy``.
    """

    model: str = Field(
        default=DEFAULT_MODEL, alias="model_name", description="Hub id, local checkpoint directory, 'demo' or 'tiny'."
    )
    """Checkpoint: hub id, local directory, or ``"tiny"`` (a tiny random checkpoint for tests)."""
    engine: Any = Field(default=None, exclude=True)
    """An existing ``internvl_tools`` engine (``InternVL`` or ``RemoteInternVL``); shared, never copied."""
    allow_local_files: bool = False
    """Read local paths outside ``allowed_dirs`` too. Off: local images and PDFs are read only inside
    ``allowed_dirs`` (and not at all without it)."""

    _engines: dict[str, Any] = PrivateAttr(default_factory=dict)

    def get_engine(self, model: str | None = None) -> Any:
        """The engine for ``model`` (default: the configured one), created on first use and cached here."""
        name = model or self.model
        if self.engine is not None and name == self.model:
            return self.engine
        cached = self._engines.get(name)
        if cached is not None:
            return cached
        if self.engine is not None and not self.base_url:
            # A per-call model override next to a user-supplied engine: reuse that engine's policy.
            engine = InternVL.from_pretrained(name, media_policy=getattr(self.engine, "media_policy", None))
        else:
            # With a server and no model named, ask it which one it serves (GET /v1/models) instead of sending the
            # local default's name.
            served = name if (model or "model" in self.model_fields_set) else None
            engine = self.build_engine(name, server_model=served)
        self._engines[name] = engine
        return engine

    def __getstate__(self) -> dict[Any, Any]:
        # Loaded engines hold weights and locks: never pickle them; the copy re-creates (and re-shares) lazily.
        state = super().__getstate__()
        private = dict(state.get("__pydantic_private__") or {})
        private["_engines"] = {}
        state["__pydantic_private__"] = private
        return state
