"""Which InternVL family a checkpoint belongs to, read from its ``config.json``: format, template, language model.

>>> detect_family({"architectures": ["InternVLChatModel"], "template": "internvl2_5",
...                "llm_config": {"model_type": "qwen2"}}).template
'internvl2_5'
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from internvl_tools.errors import ConfigError, TemplateError

__all__ = ["FamilyInfo", "detect_family", "detect_template"]


@dataclass(frozen=True)
class FamilyInfo:
    """What a checkpoint's config says about its family.

    ``format`` is ``"original"`` (remote-code ``InternVLChatModel``) or ``"native"`` (transformers ``internvl``);
    ``llm_type`` the language model's ``model_type`` (qwen2, qwen3, qwen3_moe, llama, internlm2, internlm3, phi3,
    gpt_oss, …); ``generation`` a best-effort label ("InternVL3", "InternVL2.5 or InternVL3" when the config
    cannot tell and no name hint decides); ``system_message`` the config's override, if any.
    """

    format: Literal["native", "original"]
    template: str
    llm_type: str
    generation: str
    system_message: str | None = None


_ARCH_TO_LLM = {
    "InternLM2ForCausalLM": "internlm2",
    "InternLM3ForCausalLM": "internlm3",
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "Qwen3MoeForCausalLM": "qwen3_moe",
    "Phi3ForCausalLM": "phi3",
    "LlamaForCausalLM": "llama",
    "GptOssForCausalLM": "gpt_oss",
}

# Template inferred for original configs without a ``template`` field (released checkpoints all carry one).
# Qwen2 / Llama without a field point to the v1/v2 era (InternVL2-1B, V1-2), whose template is Hermes-2.
_LLM_TO_TEMPLATE = {
    "internlm2": "internlm2-chat",
    "phi3": "phi3-chat",
    "qwen2": "Hermes-2",
    "llama": "Hermes-2",
    "qwen3": "internvl2_5",
    "qwen3_moe": "internvl2_5",
    "internlm3": "internvl2_5",
    "gpt_oss": "internvl3_5_gpt_oss",
}

_V11, _V12, _V15 = "InternVL-Chat-V1-1", "InternVL-Chat-V1-2", "InternVL-Chat-V1-5"
_G2, _G25, _G3, _G35 = "InternVL2", "InternVL2.5", "InternVL3", "InternVL3.5"

# Name hints, tried in order on the model id and the config's ``_name_or_path``.
_NAME_HINTS = (
    (re.compile(r"internvl3[._]5"), _G35),
    (re.compile(r"internvl3"), _G3),
    (re.compile(r"internvl2[._]5"), _G25),
    (re.compile(r"v1[-_.]5"), _V15),
    (re.compile(r"v1[-_.]2"), _V12),
    (re.compile(r"v1[-_.]1"), _V11),
    (re.compile(r"internvl2"), _G2),
)


def _config_dict(config: Any) -> Mapping[str, Any]:
    if isinstance(config, Mapping):
        return config
    to_dict = getattr(config, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    raise ConfigError(f"config must be a parsed config.json mapping, got {type(config).__name__}")


def _llm_type(sub: Any) -> str | None:
    if not isinstance(sub, Mapping):
        return None
    model_type = sub.get("model_type")
    if isinstance(model_type, str) and model_type:
        return model_type.lower()
    for arch in sub.get("architectures") or ():
        if arch in _ARCH_TO_LLM:
            return _ARCH_TO_LLM[arch]
    return None


def _candidates(fmt: str, template: str, llm: str, cfg: Mapping[str, Any]) -> tuple[tuple[str, ...], str | None]:
    """Generations compatible with the config, and the default when no name hint decides (None: say both)."""
    if fmt == "native":
        if llm in ("qwen3", "qwen3_moe", "gpt_oss"):
            return (_G35,), None
        # Official -hf checkpoints: InternVL3 only; the converter also takes InternVL2.5-MPO.
        return (_G3, _G25), _G3
    if template == "internvl_zh":
        return (_V11,), None
    if template == "internvl3_5_gpt_oss" or (template == "internvl2_5" and llm in ("qwen3", "qwen3_moe")):
        return (_G35,), None
    if template == "internvl2_5":
        if llm == "internlm3":
            return (_G3,), None
        if llm == "internlm2":
            return (_G25,), None
        return (_G25, _G3), None
    if template == "Hermes-2" and llm == "llama":
        # V1-2 has no dynamic tiling; InternVL2-40B (Hermes-2-Yi) has.
        return (_V12, _G2), (_G2 if cfg.get("dynamic_image_size") else _V12)
    if template in ("internlm2-chat", "phi3-chat") and llm in ("internlm2", "phi3"):
        return (_V15, _G2), None
    if template in ("Hermes-2", "internlm2-chat"):
        return (_G2,), None
    return (), None


def _generation(candidates: tuple[str, ...], default: str | None, hints: Sequence[str]) -> str:
    for hint in hints:
        low = hint.lower()
        for pattern, generation in _NAME_HINTS:
            if pattern.search(low):
                if generation in candidates:
                    return generation
                break  # the name disagrees with the config; trust the config
    if len(candidates) == 1:
        return candidates[0]
    if default is not None:
        return default
    return " or ".join(candidates) if candidates else "unknown"


def detect_family(config: Mapping[str, Any], *, model_id: str | None = None) -> FamilyInfo:
    """Tell a checkpoint's format, template, language model and generation from its ``config.json``.

    - Original checkpoints (``architectures`` holds ``InternVLChatModel`` or ``model_type`` is
      ``internvl_chat``): the ``template`` field, validated. Without one, the template follows the language
      model: InternLM2 → internlm2-chat, Phi-3 → phi3-chat, Qwen2/Llama → Hermes-2 (v1/v2 era),
      Qwen3/InternLM3 → internvl2_5, gpt-oss → internvl3_5_gpt_oss.
    - Native checkpoints (``model_type`` ``internvl``): ``internvl3_5_gpt_oss`` when the text model is gpt-oss,
      else ``internvl2_5`` (InternVL3 -hf and InternVL3.5 -HF were trained with it; the shipped chat template
      differs only by having no system block).
    - ``generation`` is best effort: the config narrows it, ``model_id`` (e.g. ``"OpenGVLab/InternVL3-1B"``) or
      the config's ``_name_or_path`` decide between what remains.

    >>> detect_family({"model_type": "internvl", "text_config": {"model_type": "qwen3"}}).generation
    'InternVL3.5'
    """
    from internvl_tools.prompts.builder import TEMPLATES  # prompts re-exports this module: import at call time

    cfg = _config_dict(config)
    model_type = cfg.get("model_type")
    architectures = [a for a in (cfg.get("architectures") or ()) if isinstance(a, str)]
    hints = [h for h in (model_id, cfg.get("_name_or_path")) if isinstance(h, str) and h]
    override = cfg.get("system_message")
    override = override if isinstance(override, str) else None

    if model_type == "internvl_chat" or "InternVLChatModel" in architectures:
        llm = _llm_type(cfg.get("llm_config")) or "unknown"
        name = cfg.get("template")
        if name is None:
            if llm not in _LLM_TO_TEMPLATE:
                raise ConfigError(
                    f"config has no 'template' and its language model ({llm!r}) does not tell the template; "
                    f"pass template=... (one of {', '.join(TEMPLATES)})"
                )
            name = _LLM_TO_TEMPLATE[llm]
        elif not isinstance(name, str) or name not in TEMPLATES:
            raise TemplateError(
                f"config template {name!r} is not a known InternVL template ({', '.join(TEMPLATES)}); "
                "pass template=... with the one this checkpoint was trained with"
            )
        candidates, default = _candidates("original", name, llm, cfg)
        return FamilyInfo("original", name, llm, _generation(candidates, default, hints), override)

    if model_type == "internvl" or any(a.startswith("InternVL") for a in architectures):
        text_config = cfg.get("text_config")
        # transformers' InternVLConfig defaults its text model to Qwen2.
        llm = _llm_type(text_config) or "qwen2"
        name = "internvl3_5_gpt_oss" if llm == "gpt_oss" else "internvl2_5"
        candidates, default = _candidates("native", name, llm, cfg)
        return FamilyInfo("native", name, llm, _generation(candidates, default, hints), None)

    raise ConfigError(
        f"not an InternVL config (model_type={model_type!r}, architectures={architectures}); expected "
        "'internvl_chat'/InternVLChatModel (original) or 'internvl' (transformers-native). If it is an InternVL "
        f"fine-tune, pass template=... explicitly (one of {', '.join(TEMPLATES)})"
    )


def detect_template(config: Mapping[str, Any]) -> str:
    """The template name a checkpoint's ``config.json`` calls for (see :func:`detect_family`).

    >>> detect_template({"architectures": ["InternVLChatModel"], "template": "Hermes-2",
    ...                  "llm_config": {"architectures": ["Qwen2ForCausalLM"]}})
    'Hermes-2'
    """
    return detect_family(config).template
