"""The one reader of InternVL checkpoint configs: format, language model, template, family, and the facts the
engine needs (:class:`CheckpointInfo`, from ``config.json`` and the preprocessor config; no torch).

Everything that asks "what is this checkpoint?" asks here: weight mapping (:mod:`internvl_tools.checkpoints.weights`)
for the language-model type, loading (:mod:`internvl_tools.checkpoints.load`) for the info, the engine and CLI for
the template and family.

>>> detect_family({"architectures": ["InternVLChatModel"], "template": "internvl2_5",
...                "llm_config": {"model_type": "qwen2"}}).template
'internvl2_5'
>>> import tempfile
>>> from internvl_tools.testing import make_tiny_checkpoint
>>> info = read_checkpoint_info(make_tiny_checkpoint(tempfile.mkdtemp(), "internlm2", "original"))
>>> info.format, info.llm_type, info.template, info.tokens_per_tile
('original', 'internlm2', 'internlm2-chat', 4)
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from internvl_tools.constants import (
    DEFAULT_IMAGE_SIZE,
    DEFAULT_MAX_TILES,
    DEFAULT_MODEL,
    IMAGENET_MEAN,
    IMAGENET_STD,
)
from internvl_tools.errors import ConfigError, TemplateError
from internvl_tools.prompts.templates import TEMPLATES

__all__ = [
    "CheckpointInfo",
    "FamilyInfo",
    "checkpoint_format",
    "detect_family",
    "detect_template",
    "llm_type_of",
    "read_checkpoint_info",
]

CheckpointFormat = Literal["native", "original"]


@dataclass(frozen=True)
class FamilyInfo:
    """What a checkpoint's config says about its family.

    ``format`` is ``"original"`` (remote-code ``InternVLChatModel``) or ``"native"`` (transformers ``internvl``);
    ``llm_type`` the language model's type (qwen2, qwen3, qwen3_moe, llama, internlm2, internlm3, phi3, gpt_oss, …;
    see :func:`llm_type_of`); ``generation`` a best-effort label ("InternVL3", "InternVL2.5 or InternVL3" when the
    config cannot tell and no name hint decides); ``system_message`` the config's override, if any.
    """

    format: CheckpointFormat
    template: str
    llm_type: str
    generation: str
    system_message: str | None = None


# --- format and language model ----------------------------------------------------------------------------------------

#: Language-model classes named in ``llm_config.architectures`` / ``text_config.architectures``, and their type.
_ARCH_TO_LLM = {
    "Qwen2ForCausalLM": "qwen2",
    "Qwen3ForCausalLM": "qwen3",
    "Qwen3MoeForCausalLM": "qwen3_moe",
    "LlamaForCausalLM": "llama",
    "InternLM2ForCausalLM": "internlm2",
    "InternLM3ForCausalLM": "internlm3",
    "Phi3ForCausalLM": "phi3",
    "GptOssForCausalLM": "gpt_oss",
    "Gemma2ForCausalLM": "gemma2",
}


def _config_dict(config: Any) -> Mapping[str, Any]:
    if isinstance(config, Mapping):
        return config
    to_dict = getattr(config, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    raise ConfigError(f"config must be a parsed config.json mapping, got {type(config).__name__}")


def _sniff_format(cfg: Mapping[str, Any]) -> CheckpointFormat | None:
    # model_type first: it is what AutoConfig dispatches on; architectures only when it is absent or foreign.
    model_type = cfg.get("model_type")
    if model_type == "internvl":
        return "native"
    if model_type == "internvl_chat":
        return "original"
    architectures = [a for a in (cfg.get("architectures") or ()) if isinstance(a, str)]
    if "InternVLChatModel" in architectures:
        return "original"
    if any(a.startswith("InternVL") for a in architectures):
        return "native"
    return None


def checkpoint_format(config: Mapping[str, Any], where: str | Path = "config") -> CheckpointFormat:
    """``"native"`` (transformers ``internvl``) or ``"original"`` (``InternVLChatModel``); :class:`ConfigError` else.

    ``model_type`` decides (``internvl`` / ``internvl_chat``); without it, ``architectures`` (``InternVLChatModel``,
    or another ``InternVL*`` class). ``where`` names the config in the error.

    >>> checkpoint_format({"model_type": "internvl"}), checkpoint_format({"architectures": ["InternVLChatModel"]})
    ('native', 'original')
    """
    cfg = _config_dict(config)
    fmt = _sniff_format(cfg)
    if fmt is None:
        raise ConfigError(
            f"{where} is not an InternVL checkpoint config (model_type={cfg.get('model_type')!r}, "
            f"architectures={cfg.get('architectures')!r}); expected model_type 'internvl' (transformers-native, "
            f"e.g. {DEFAULT_MODEL}) or 'internvl_chat' (original InternVLChatModel, e.g. OpenGVLab/InternVL2-1B)."
        )
    return fmt


def _arch_type(sub: Mapping[str, Any]) -> str | None:
    for arch in sub.get("architectures") or ():
        if arch in _ARCH_TO_LLM:
            return _ARCH_TO_LLM[arch]
    return None


def _model_type(sub: Mapping[str, Any]) -> str | None:
    model_type = sub.get("model_type")
    return model_type.lower() if isinstance(model_type, str) and model_type else None


def llm_type_of(config: Mapping[str, Any]) -> str:
    """The language-model type of an InternVL config ("qwen2", "internlm2", "phi3", ...).

    Original configs (``llm_config``): the class in ``llm_config.architectures`` first, as upstream's
    ``InternVLChatConfig`` and ``InternVLChatModel`` pick the language model by it; then ``llm_config.model_type``;
    else ``"unknown"``. Native configs (``text_config``): ``text_config.model_type`` first, as transformers'
    ``AutoConfig`` does; then the architecture; else ``"qwen2"`` (``InternVLConfig``'s default text model).

    >>> llm_type_of({"llm_config": {"architectures": ["InternLM2ForCausalLM"]}})
    'internlm2'
    >>> llm_type_of({"model_type": "internvl", "text_config": {"model_type": "qwen3"}})
    'qwen3'
    """
    cfg = _config_dict(config)
    fmt = _sniff_format(cfg)
    if fmt == "original" or (fmt is None and "llm_config" in cfg):
        llm = cfg.get("llm_config")
        llm = llm if isinstance(llm, Mapping) else {}
        return _arch_type(llm) or _model_type(llm) or "unknown"
    text = cfg.get("text_config")
    text = text if isinstance(text, Mapping) else {}
    return _model_type(text) or _arch_type(text) or "qwen2"


def first_int(value: Any) -> int:
    """An int from a config value that may be a pair (``[448, 448]`` → 448), as native configs write sizes.

    >>> first_int([14, 14]), first_int(448)
    (14, 448)
    """
    if isinstance(value, (list, tuple)):
        return int(value[0])
    return int(value)


# --- template and family ----------------------------------------------------------------------------------------------

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

    - Format and language model: :func:`checkpoint_format` and :func:`llm_type_of`.
    - Original checkpoints: the ``template`` field, validated. Without one, the template follows the language
      model: InternLM2 → internlm2-chat, Phi-3 → phi3-chat, Qwen2/Llama → Hermes-2 (v1/v2 era),
      Qwen3/InternLM3 → internvl2_5, gpt-oss → internvl3_5_gpt_oss.
    - Native checkpoints: ``internvl3_5_gpt_oss`` when the text model is gpt-oss, else ``internvl2_5`` (InternVL3
      -hf and InternVL3.5 -HF were trained with it; the shipped chat template differs only by having no system
      block).
    - ``generation`` is best effort: the config narrows it, ``model_id`` (e.g. ``"OpenGVLab/InternVL3-1B"``) or
      the config's ``_name_or_path`` decide between what remains.

    >>> detect_family({"model_type": "internvl", "text_config": {"model_type": "qwen3"}}).generation
    'InternVL3.5'
    """
    cfg = _config_dict(config)
    fmt = _sniff_format(cfg)
    hints = [h for h in (model_id, cfg.get("_name_or_path")) if isinstance(h, str) and h]
    if fmt is None:
        raise ConfigError(
            f"not an InternVL config (model_type={cfg.get('model_type')!r}, architectures="
            f"{cfg.get('architectures')!r}); expected 'internvl_chat'/InternVLChatModel (original) or 'internvl' "
            f"(transformers-native). If it is an InternVL fine-tune, pass template=... explicitly (one of "
            f"{', '.join(TEMPLATES)})"
        )
    llm = llm_type_of(cfg)
    if fmt == "native":
        name = "internvl3_5_gpt_oss" if llm == "gpt_oss" else "internvl2_5"
        candidates, default = _candidates("native", name, llm, cfg)
        return FamilyInfo("native", name, llm, _generation(candidates, default, hints), None)

    override = cfg.get("system_message")
    override = override if isinstance(override, str) else None
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


def detect_template(config: Mapping[str, Any]) -> str:
    """The template name a checkpoint's ``config.json`` calls for (see :func:`detect_family`).

    >>> detect_template({"architectures": ["InternVLChatModel"], "template": "Hermes-2",
    ...                  "llm_config": {"architectures": ["Qwen2ForCausalLM"]}})
    'Hermes-2'
    """
    return detect_family(config).template


# --- checkpoint facts -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckpointInfo:
    """What the engine needs to know about a checkpoint, read from its JSON files alone."""

    path: Path
    format: CheckpointFormat
    llm_type: str
    template: str
    image_size: int
    patch_size: int
    downsample_ratio: float
    tokens_per_tile: int
    max_dynamic_patch: int
    min_dynamic_patch: int
    use_thumbnail: bool
    dynamic_image_size: bool
    ps_version: str
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    context_length: int | None
    system_message: str | None
    raw_config: dict[str, Any] = field(repr=False, compare=False)

    @property
    def num_hidden_layers(self) -> int:
        """Decoder layers of the language model (what ``device_map="balanced"`` spreads over GPUs)."""
        text = self.raw_config.get("llm_config") or self.raw_config.get("text_config") or {}
        layers = text.get("num_hidden_layers")
        if not layers:
            raise ConfigError(f"{self.path}: the config does not say how many decoder layers the model has.")
        return int(layers)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not readable JSON: {exc}") from exc


def read_checkpoint_info(path: str | Path) -> CheckpointInfo:
    """Read ``config.json`` (and ``preprocessor_config.json``) of a local checkpoint directory. No torch.

    >>> import tempfile
    >>> from internvl_tools.testing import make_tiny_checkpoint
    >>> info = read_checkpoint_info(make_tiny_checkpoint(tempfile.mkdtemp(), "qwen2", "native"))
    >>> info.format, info.tokens_per_tile, info.ps_version
    ('native', 4, 'v2')
    """
    directory = Path(path)
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise ConfigError(
            f"{directory} has no config.json; pass an InternVL checkpoint directory (or a hub id to load_model)."
        )
    raw = _read_json(config_file)
    if not isinstance(raw, dict):
        raise ConfigError(f"{config_file} must hold a JSON object")
    fmt = checkpoint_format(raw, directory)
    pre: dict[str, Any] = {}
    pre_file = directory / "preprocessor_config.json"
    if pre_file.is_file():
        pre = _read_json(pre_file)
    elif (directory / "processor_config.json").is_file():
        # transformers 5 saves the image processor nested inside processor_config.json.
        pre = _read_json(directory / "processor_config.json").get("image_processor") or {}
    mean = tuple(float(x) for x in pre.get("image_mean", IMAGENET_MEAN))
    std = tuple(float(x) for x in pre.get("image_std", IMAGENET_STD))
    vision = raw.get("vision_config") or {}
    patch_size = first_int(vision.get("patch_size", 14))
    downsample = float(raw.get("downsample_ratio", 0.5))

    if fmt == "native":
        text = raw.get("text_config") or {}
        image_size = first_int(vision.get("image_size", DEFAULT_IMAGE_SIZE))
        context = text.get("max_position_embeddings")
        max_patch = int(pre.get("max_patches", DEFAULT_MAX_TILES))
        min_patch = int(pre.get("min_patches", 1))
        # GotOcr2 always appends a thumbnail when it tiles; crop_to_patches is the dynamic tiling switch.
        use_thumbnail = True
        dynamic = bool(pre.get("crop_to_patches", True))
        ps_version = "v2"
    else:
        llm = raw.get("llm_config") or {}
        image_size = int(raw.get("force_image_size") or first_int(vision.get("image_size", DEFAULT_IMAGE_SIZE)))
        context = llm.get("max_position_embeddings")
        # Absent keys take the InternVLChatConfig class defaults (max_dynamic_patch 6, ps_version v1, no
        # thumbnail, no dynamic tiling), not the released checkpoints' values (docs/internvl_reference.md §2).
        max_patch = int(raw.get("max_dynamic_patch", 6))
        min_patch = int(raw.get("min_dynamic_patch", 1))
        use_thumbnail = bool(raw.get("use_thumbnail", False))
        dynamic = bool(raw.get("dynamic_image_size", False))
        ps_version = str(raw.get("ps_version") or "v1")
    tokens = int((image_size // patch_size) ** 2 * downsample**2)
    system = raw.get("system_message")
    return CheckpointInfo(
        path=directory,
        format=fmt,
        llm_type=llm_type_of(raw),
        template=detect_template(raw),
        image_size=image_size,
        patch_size=patch_size,
        downsample_ratio=downsample,
        tokens_per_tile=tokens,
        max_dynamic_patch=max_patch,
        min_dynamic_patch=min_patch,
        use_thumbnail=use_thumbnail,
        dynamic_image_size=dynamic,
        ps_version=ps_version,
        image_mean=(mean[0], mean[1], mean[2]),
        image_std=(std[0], std[1], std[2]),
        context_length=int(context) if context is not None else None,
        system_message=str(system) if system is not None else None,
        raw_config=raw,
    )
