"""Settings shared by the chat model and the tools: which engine to use and what media it may read.

Construction stays cheap: an engine is created on first use, and :class:`internvl_tools.InternVL` engines on the
same checkpoint and settings share one copy of the weights process-wide, so a chat model and three tools on one
checkpoint load it once.

>>> cfg = InternVLSettings(model="tiny", allowed_dirs=["/tmp"])
>>> cfg.build_media_policy().allow_remote
False
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr

__all__ = ["DEFAULT_MODEL", "InternVLSettings"]

DEFAULT_MODEL = "OpenGVLab/InternVL3-1B-hf"


class InternVLSettings(BaseModel):
    """Engine and media-policy fields (a mixin for ``ChatInternVL`` and the tools).

    Either ``model`` (a hub id, a local checkpoint directory or ``"tiny"``), an existing ``engine`` (any
    ``internvl_tools.VisionLanguageModel``), or ``base_url`` of an OpenAI-compatible server.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True, protected_namespaces=())

    model: str = Field(default=DEFAULT_MODEL, alias="model_name")
    """Checkpoint: hub id, local directory, or ``"tiny"`` (a tiny random checkpoint for tests)."""
    device: str = "auto"
    dtype: str = "auto"
    max_tiles: int | None = Field(default=None, ge=1, le=40)
    """Tile budget per request (split across the images of a request)."""
    trust_remote_code: bool = False
    """Run the checkpoint's own modeling code instead of the native mapping (explicit opt-in only)."""
    engine_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Other ``InternVL.from_pretrained`` options (``attn_implementation``, ``quantization``, ``template``, ...)."""
    engine: Any = Field(default=None, exclude=True)
    """An existing ``internvl_tools`` engine (``InternVL`` or ``RemoteInternVL``); shared, never copied."""
    base_url: str | None = None
    """URL of an OpenAI-compatible server (``internvl-tools serve``, vLLM, LMDeploy) instead of local weights."""
    api_key: SecretStr | None = None
    """Key for ``base_url``."""

    allowed_dirs: list[str] | None = None
    """Directories local images and PDFs may be read from. ``None``: no local files at all."""
    allow_remote_urls: bool = False
    """Fetch http(s) image URLs (public hosts only; private and loopback addresses are refused)."""
    allow_private_hosts: list[str] = Field(default_factory=list)
    """Hosts or networks exempt from the private-address refusal (tests against a local server, intranets)."""
    media_policy: Any = Field(default=None, exclude=True)
    """A full ``internvl_tools.MediaPolicy``; overrides the three fields above."""

    _engines: dict[str, Any] = PrivateAttr(default_factory=dict)

    def build_media_policy(self) -> Any:
        """The ``MediaPolicy`` that every image or PDF reference from a message or tool argument goes through."""
        if self.media_policy is not None:
            return self.media_policy
        from internvl_tools import MediaPolicy

        return MediaPolicy(
            allow_remote=self.allow_remote_urls,
            allowed_dirs=tuple(self.allowed_dirs) if self.allowed_dirs else None,
            allow_local_files=bool(self.allowed_dirs),
            allow_private_hosts=frozenset(self.allow_private_hosts),
        )

    def get_engine(self, model: str | None = None) -> Any:
        """The engine for ``model`` (default: the configured one), created on first use and cached here."""
        name = model or self.model
        if self.engine is not None and name == self.model:
            return self.engine
        cached = self._engines.get(name)
        if cached is not None:
            return cached
        from internvl_tools import InternVL

        if self.base_url:
            key = self.api_key.get_secret_value() if self.api_key is not None else None
            # With no model named, ask the server which one it serves (GET /v1/models) instead of sending the
            # local default's name.
            served = name if (model or "model" in self.model_fields_set) else None
            engine = InternVL.from_server(self.base_url, model=served, api_key=key)
        elif self.engine is not None:
            # A per-call model override next to a user-supplied engine: reuse that engine's policy.
            engine = InternVL.from_pretrained(name, media_policy=getattr(self.engine, "media_policy", None))
        else:
            engine = InternVL.from_pretrained(
                name,
                device=self.device,
                dtype=self.dtype,
                max_tiles=self.max_tiles,
                trust_remote_code=self.trust_remote_code,
                media_policy=self.build_media_policy(),
                **self.engine_kwargs,
            )
        self._engines[name] = engine
        return engine

    def __getstate__(self) -> dict[Any, Any]:
        # Loaded engines hold weights and locks: never pickle them; the copy re-creates (and re-shares) lazily.
        state = super().__getstate__()
        private = dict(state.get("__pydantic_private__") or {})
        private["_engines"] = {}
        state["__pydantic_private__"] = private
        return state
