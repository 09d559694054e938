"""The decoding settings of one call, checked once for every backend (``max_tokens`` is an alias, ``stop`` may be
one string).

>>> GenerationOptions.from_kwargs({"max_tokens": 8, "stop": "END"}).stop
('END',)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from internvl_tools.errors import ConfigError

__all__ = ["DEFAULT_MAX_NEW_TOKENS", "GenerationOptions"]

DEFAULT_MAX_NEW_TOKENS = 512


@dataclass(frozen=True)
class GenerationOptions:
    """Decoding settings of one call. ``temperature > 0`` without ``do_sample`` turns sampling on."""

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    do_sample: bool | None = None
    num_beams: int = 1
    repetition_penalty: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    #: Stop a row that falls into a degenerate loop (local engines; see ``generation.stopping.RepetitionGuard``).
    #: Remote servers have no such criterion and ignore it.
    stop_repetition: bool = False

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> GenerationOptions:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(kwargs) - known - {"max_tokens"})
        if unknown:
            raise ConfigError(
                f"Unknown generation option(s) {unknown}; known: {sorted(known)} (max_tokens is an alias of "
                "max_new_tokens)."
            )
        values = {k: v for k, v in kwargs.items() if v is not None and k != "max_tokens"}
        if kwargs.get("max_tokens") is not None and "max_new_tokens" not in values:
            values["max_new_tokens"] = kwargs["max_tokens"]
        stop = values.get("stop", ())
        if isinstance(stop, str):
            stop = (stop,)
        values["stop"] = tuple(s for s in stop if s)
        options = cls(**values)
        if options.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {options.max_new_tokens}.")
        if options.temperature is not None and options.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {options.temperature}.")
        if options.num_beams < 1:
            raise ConfigError(f"num_beams must be >= 1, got {options.num_beams}.")
        return options

    @property
    def sampling(self) -> bool:
        if self.do_sample is not None:
            return self.do_sample
        return bool(self.temperature and self.temperature > 0)
