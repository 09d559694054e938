"""One way to build an engine and its media policy from settings: the CLI, LangChain and LlamaIndex all use it, so
the same field means the same thing everywhere.

Construction is cheap: :meth:`EngineSettings.build_engine` creates an engine object, and weights load on first use
(shared process-wide by every engine on the same checkpoint and settings).

>>> settings = EngineSettings(model="tiny", allowed_dirs=["/tmp"])
>>> policy = settings.build_media_policy()
>>> policy.allow_remote, [str(d) for d in policy.allowed_dirs]
(False, ['/tmp'])
>>> EngineSettings(model="tiny", allow_local_files=False).build_media_policy().allow_local_files
False
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from internvl_tools.constants import API_KEY_ENV, DEFAULT_MODEL, MAX_TILES_LIMIT
from internvl_tools.engines.local import InternVL
from internvl_tools.engines.remote import RemoteInternVL, api_key_from_env
from internvl_tools.media.policy import MediaPolicy

if TYPE_CHECKING:
    from internvl_tools.engines.base import VisionLanguageModel

__all__ = ["EngineSettings"]


class EngineSettings(BaseModel):
    """Which engine to use (local weights or an OpenAI-compatible server) and what media it may read.

    Either ``model`` (a hub id, a local checkpoint directory, ``"demo"`` or ``"tiny"``) with the local options, or
    ``base_url`` of a server (``internvl-tools serve``, vLLM, LMDeploy). Media: local files are read only inside
    ``allowed_dirs`` when that is set (anywhere when it is not, unless ``allow_local_files=False``); http(s) URLs
    only with ``allow_remote_urls=True`` and then never from private, loopback or link-local addresses other than
    ``allow_private_hosts``. ``media_policy`` passes a complete :class:`~internvl_tools.MediaPolicy` instead.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True, protected_namespaces=())

    model: str = Field(default=DEFAULT_MODEL, description="Hub id, local checkpoint directory, 'demo' or 'tiny'.")
    base_url: str | None = Field(default=None, description="OpenAI-compatible server URL instead of local weights.")
    api_key: SecretStr | None = Field(
        default=None, description=f"Key for base_url (default: ${API_KEY_ENV}).", repr=False
    )
    device: str = Field(default="auto", description="'auto', 'cpu', 'cuda:0', ...")
    dtype: str = Field(default="auto", description="'auto', 'bfloat16', 'float16', 'float32'.")
    max_tiles: int | None = Field(default=None, ge=1, le=MAX_TILES_LIMIT, description="Tile budget per request.")
    trust_remote_code: bool = Field(default=False, description="Run the checkpoint's own code (explicit opt-in).")
    engine_kwargs: dict[str, Any] = Field(
        default_factory=dict, description="Other InternVL.from_pretrained / from_server options."
    )

    allowed_dirs: list[str] | None = Field(default=None, description="Confine local paths to these directories.")
    allow_local_files: bool = Field(default=True, description="Read local paths at all.")
    allow_remote_urls: bool = Field(default=False, description="Fetch http(s) URLs (public addresses only).")
    allow_private_hosts: list[str] = Field(
        default_factory=list, description="Hosts or networks exempt from the private-address refusal."
    )
    media_policy: Any = Field(default=None, exclude=True, description="A complete MediaPolicy (overrides the above).")

    def build_media_policy(self) -> MediaPolicy:
        """The :class:`~internvl_tools.MediaPolicy` every image, PDF or video reference goes through."""
        if self.media_policy is not None:
            return self.media_policy
        return MediaPolicy(
            allow_remote=self.allow_remote_urls,
            allowed_dirs=tuple(self.allowed_dirs) if self.allowed_dirs else None,
            allow_local_files=self.allow_local_files or bool(self.allowed_dirs),
            allow_private_hosts=frozenset(self.allow_private_hosts),
        )

    def resolved_api_key(self) -> str | None:
        """``api_key`` if set, else the environment's (see :func:`api_key_from_env`)."""
        return self.api_key.get_secret_value() if self.api_key is not None else api_key_from_env()

    def build_engine(self, model: str | None = None, *, server_model: str | None = None) -> VisionLanguageModel:
        """A new engine for ``model`` (default: ``self.model``); nothing loads until first use.

        With ``base_url`` set, ``server_model`` names the served model (``None``: ask the server's ``/v1/models``).
        """
        if self.base_url:
            return RemoteInternVL(
                self.base_url,
                model=server_model,
                api_key=self.resolved_api_key(),
                media_policy=self.build_media_policy(),
                **self.engine_kwargs,
            )
        options: dict[str, Any] = {
            "device": self.device,
            "dtype": self.dtype,
            "max_tiles": self.max_tiles,
            "trust_remote_code": self.trust_remote_code,
            "media_policy": self.build_media_policy(),
            **self.engine_kwargs,
        }
        return InternVL.from_pretrained(model or self.model, **options)
