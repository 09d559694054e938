"""Original InternVL checkpoints mapped onto transformers' native InternVL classes: pure functions, no file I/O.

Vision encoder (fused ``qkv`` split, layer scales renamed, 300M and 6B styles), the ``mlp1`` projector, the
pixel-shuffle version, and the language model (Qwen2 and Llama as they are; InternLM2's grouped ``wqkv`` split into
q/k/v of a Llama model; Phi-3 onto transformers' Phi3 with its longrope scaling). Every mapping has its exact
inverse, used to write original-format test checkpoints (:mod:`internvl_tools.testing`). What a config *is*
(format, language model) is read by :mod:`internvl_tools.checkpoints.config`; loading lives in
:mod:`internvl_tools.checkpoints.load`.

>>> import torch
>>> [t.tolist() for t in split_vit_qkv(torch.arange(3.0))]
[[0.0], [1.0], [2.0]]
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from internvl_tools.checkpoints.config import checkpoint_format, first_int, llm_type_of
from internvl_tools.checkpoints.families import (
    INTERNLM2_WQKV,
    LANGUAGE_MODELS,
    MOE_EXPERT,
    MOE_STACKED,
    LanguageModelMapping,
    stack_moe_experts,
    unstack_moe_experts,
)
from internvl_tools.errors import ConfigError, ModelLoadError

if TYPE_CHECKING:
    import torch
    from transformers import InternVLConfig

__all__ = [
    "apply_pixel_shuffle_v1",
    "convert_original_state_dict",
    "merge_internlm2_wqkv",
    "merge_vit_qkv",
    "native_config_from_original",
    "split_internlm2_wqkv",
    "split_vit_qkv",
    "tied_head",
    "to_original_state_dict",
]

# --- fused-layout helpers ---------------------------------------------------------------------------------------------


def split_internlm2_wqkv(
    wqkv: torch.Tensor, num_heads: int, num_kv_heads: int, head_dim: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split InternLM2's grouped ``wqkv`` (weight or bias) into q, k, v projections.

    Rows are grouped per key-value head: its ``num_heads // num_kv_heads`` query heads, then its key head, then its
    value head, each ``head_dim`` rows.

    >>> import torch
    >>> q, k, v = split_internlm2_wqkv(torch.arange(6.0), num_heads=2, num_kv_heads=2, head_dim=1)
    >>> q.tolist(), k.tolist(), v.tolist()
    ([0.0, 3.0], [1.0, 4.0], [2.0, 5.0])
    """
    if num_heads % num_kv_heads:
        raise ConfigError(f"num_heads ({num_heads}) must be a multiple of num_kv_heads ({num_kv_heads})")
    groups = num_heads // num_kv_heads
    expected = (num_heads + 2 * num_kv_heads) * head_dim
    if wqkv.shape[0] != expected:
        raise ConfigError(
            f"wqkv has {wqkv.shape[0]} rows, expected (num_heads + 2*num_kv_heads) * head_dim = {expected}"
        )
    rest = tuple(wqkv.shape[1:])
    grouped = wqkv.reshape(num_kv_heads, groups + 2, head_dim, *rest)
    q = grouped[:, :groups].reshape(num_heads * head_dim, *rest)
    k = grouped[:, groups].reshape(num_kv_heads * head_dim, *rest)
    v = grouped[:, groups + 1].reshape(num_kv_heads * head_dim, *rest)
    return q.contiguous(), k.contiguous(), v.contiguous()


def merge_internlm2_wqkv(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int, num_kv_heads: int, head_dim: int
) -> torch.Tensor:
    """Inverse of :func:`split_internlm2_wqkv`.

    >>> import torch
    >>> w = torch.randn(4 * 3, 5)
    >>> torch.equal(merge_internlm2_wqkv(*split_internlm2_wqkv(w, 2, 1, 3), 2, 1, 3), w)
    True
    """
    import torch

    if num_heads % num_kv_heads:
        raise ConfigError(f"num_heads ({num_heads}) must be a multiple of num_kv_heads ({num_kv_heads})")
    groups = num_heads // num_kv_heads
    rest = tuple(q.shape[1:])
    qg = q.reshape(num_kv_heads, groups, head_dim, *rest)
    kg = k.reshape(num_kv_heads, 1, head_dim, *rest)
    vg = v.reshape(num_kv_heads, 1, head_dim, *rest)
    merged = torch.cat([qg, kg, vg], dim=1)
    return merged.reshape((num_heads + 2 * num_kv_heads) * head_dim, *rest).contiguous()


def split_vit_qkv(qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split InternViT's fused ``attn.qkv`` (weight or bias) into q, k, v: thirds by rows.

    >>> import torch
    >>> [t.tolist() for t in split_vit_qkv(torch.arange(3.0))]
    [[0.0], [1.0], [2.0]]
    """
    if qkv.shape[0] % 3:
        raise ConfigError(f"fused qkv has {qkv.shape[0]} rows, not a multiple of 3")
    q, k, v = qkv.chunk(3, dim=0)
    return q.contiguous(), k.contiguous(), v.contiguous()


def merge_vit_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`split_vit_qkv`.

    >>> import torch
    >>> merge_vit_qkv(torch.zeros(1), torch.ones(1), torch.full((1,), 2.0)).tolist()
    [0.0, 1.0, 2.0]
    """
    import torch

    return torch.cat([q, k, v], dim=0).contiguous()


# --- state-dict mapping -----------------------------------------------------------------------------------------------

_GROUP_PATTERNS = {"i": r"\d+", "e": r"\d+", "p": r"weight|bias", "rest": r".+", "w": r"[a-z_]+"}

# (original name, native name); {i} layer index, {p} weight/bias, {rest} anything.
_VISION_RULES = (
    ("vision_model.embeddings.class_embedding", "model.vision_tower.embeddings.cls_token"),
    ("vision_model.embeddings.position_embedding", "model.vision_tower.embeddings.position_embeddings"),
    ("vision_model.embeddings.patch_embedding.{p}", "model.vision_tower.embeddings.patch_embeddings.projection.{p}"),
    (
        "vision_model.encoder.layers.{i}.attn.proj.{p}",
        "model.vision_tower.encoder.layer.{i}.attention.projection_layer.{p}",
    ),
    ("vision_model.encoder.layers.{i}.attn.q_norm.{p}", "model.vision_tower.encoder.layer.{i}.attention.q_norm.{p}"),
    ("vision_model.encoder.layers.{i}.attn.k_norm.{p}", "model.vision_tower.encoder.layer.{i}.attention.k_norm.{p}"),
    ("vision_model.encoder.layers.{i}.mlp.fc1.{p}", "model.vision_tower.encoder.layer.{i}.mlp.fc1.{p}"),
    ("vision_model.encoder.layers.{i}.mlp.fc2.{p}", "model.vision_tower.encoder.layer.{i}.mlp.fc2.{p}"),
    ("vision_model.encoder.layers.{i}.norm1.{p}", "model.vision_tower.encoder.layer.{i}.layernorm_before.{p}"),
    ("vision_model.encoder.layers.{i}.norm2.{p}", "model.vision_tower.encoder.layer.{i}.layernorm_after.{p}"),
    ("vision_model.encoder.layers.{i}.ls1", "model.vision_tower.encoder.layer.{i}.lambda_1"),
    ("vision_model.encoder.layers.{i}.ls2", "model.vision_tower.encoder.layer.{i}.lambda_2"),
    ("mlp1.0.{p}", "model.multi_modal_projector.layer_norm.{p}"),
    ("mlp1.1.{p}", "model.multi_modal_projector.linear_1.{p}"),
    ("mlp1.3.{p}", "model.multi_modal_projector.linear_2.{p}"),
)
_VIT_QKV = (
    "vision_model.encoder.layers.{i}.attn.qkv.{p}",
    "model.vision_tower.encoder.layer.{i}.attention.{w}_proj.{p}",
)
# Buffers some old checkpoints saved; they are recomputed by the native model.
_IGNORED = re.compile(r".*(rotary_emb\.inv_freq|\.masked_bias|attn\.bias)$")


def _compile(template: str) -> re.Pattern[str]:
    pattern = re.escape(template)
    for name, group in _GROUP_PATTERNS.items():
        pattern = pattern.replace(re.escape("{" + name + "}"), f"(?P<{name}>{group})")
    return re.compile(pattern + "$")


class _Rules:
    def __init__(self, pairs: tuple[tuple[str, str], ...]) -> None:
        self.forward = [(_compile(src), dst) for src, dst in pairs]
        self.backward = [(_compile(dst), src) for src, dst in pairs]

    @staticmethod
    def _apply(rules: list[tuple[re.Pattern[str], str]], key: str) -> str | None:
        for pattern, target in rules:
            match = pattern.match(key)
            if match:
                return target.format(**match.groupdict())
        return None


def _rules_for(family: LanguageModelMapping) -> _Rules:
    return _Rules(_VISION_RULES + family.rules)


def _llm_dims(cfg: Mapping[str, Any]) -> tuple[int, int, int]:
    llm = cfg.get("llm_config") or {}
    heads = int(llm["num_attention_heads"])
    kv = int(llm.get("num_key_value_heads") or heads)
    head_dim = int(llm.get("head_dim") or int(llm["hidden_size"]) // heads)
    return heads, kv, head_dim


def _mappable_llm(cfg: Mapping[str, Any]) -> tuple[str, LanguageModelMapping]:
    llm_type = llm_type_of(cfg)
    if llm_type not in LANGUAGE_MODELS:
        raise ConfigError(
            f"original-format InternVL checkpoints with a {llm_type!r} language model cannot be mapped onto the "
            f"native architecture (supported: {', '.join(LANGUAGE_MODELS)}); use its transformers-native '-hf' "
            "release or pass trust_remote_code=True."
        )
    return llm_type, LANGUAGE_MODELS[llm_type]


def tied_head(cfg: Mapping[str, Any]) -> bool:
    """Whether the original checkpoint's LM head is its token embedding (docs/internvl_reference.md §8, §9).

    The ``internvl_chat`` config (Qwen2, Llama, InternLM2, Phi-3) forces untied embeddings; the InternVL3.5 config
    (Qwen3, Qwen3-MoE, GPT-OSS) follows ``llm_config.tie_word_embeddings`` (the 4.55 classes default to False).

    >>> tied_head({"architectures": ["InternVLChatModel"], "llm_config": {"architectures": ["Qwen3ForCausalLM"],
    ...            "tie_word_embeddings": True}})
    True
    """
    _, family = _mappable_llm(cfg)
    return family.head == "llm" and bool((cfg.get("llm_config") or {}).get("tie_word_embeddings", False))


def _num_experts(cfg: Mapping[str, Any]) -> int:
    llm = cfg.get("llm_config") or {}
    return int(llm.get("num_experts") or llm.get("num_local_experts") or 0)


def convert_original_state_dict(sd: Mapping[str, Any], cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Map original ``InternVLChatModel`` weight names and fused layouts onto ``InternVLForConditionalGeneration``.

    ``cfg`` is the original ``config.json`` dict. Unknown keys raise :class:`ModelLoadError` naming them. A tied
    head (:func:`tied_head`) is the embedding, whether or not the file also stores ``language_model.lm_head``.

    >>> import json, tempfile
    >>> from safetensors.torch import load_file
    >>> from internvl_tools.testing import make_tiny_checkpoint
    >>> path = make_tiny_checkpoint(tempfile.mkdtemp(), "internlm2", "original")
    >>> cfg = json.loads((path / "config.json").read_text())
    >>> native = convert_original_state_dict(load_file(str(path / "model.safetensors")), cfg)
    >>> "model.language_model.layers.0.self_attn.k_proj.weight" in native
    True
    """
    _, family = _mappable_llm(cfg)
    rules = _rules_for(family)
    vit_qkv, wqkv, expert = _compile(_VIT_QKV[0]), _compile(INTERNLM2_WQKV[0]), _compile(MOE_EXPERT)
    experts: dict[str, dict[int, dict[str, Any]]] = {}
    out: dict[str, Any] = {}
    unknown: list[str] = []
    for key, tensor in sd.items():
        if _IGNORED.match(key):
            continue
        match = vit_qkv.match(key)
        if match:
            for part, value in zip("qkv", split_vit_qkv(tensor), strict=True):
                out[_VIT_QKV[1].format(w=part, **match.groupdict())] = value
            continue
        match = wqkv.match(key) if family.fused == "internlm2_wqkv" else None
        if match:
            heads, kv, head_dim = _llm_dims(cfg)
            for part, value in zip("qkv", split_internlm2_wqkv(tensor, heads, kv, head_dim), strict=True):
                out[INTERNLM2_WQKV[1].format(w=part, **match.groupdict())] = value
            continue
        match = expert.match(key) if family.fused == "moe_experts" else None
        if match and match["w"] in ("gate", "up", "down"):
            experts.setdefault(match["i"], {}).setdefault(int(match["e"]), {})[match["w"]] = tensor
            continue
        target = rules._apply(rules.forward, key)
        if target is None:
            unknown.append(key)
        else:
            out[target] = tensor
    if unknown:
        raise ModelLoadError(
            f"{len(unknown)} weight(s) of the original checkpoint have no native counterpart, e.g. "
            f"{sorted(unknown)[:5]}; this checkpoint layout is not supported (try trust_remote_code=True)."
        )
    for layer, parts in experts.items():
        try:
            gate_up, down = stack_moe_experts(parts, _num_experts(cfg))
        except ConfigError as exc:
            raise ModelLoadError(f"layer {layer}: {exc}") from exc
        out[MOE_STACKED.format(i=layer, w="gate_up_proj")] = gate_up
        out[MOE_STACKED.format(i=layer, w="down_proj")] = down
    embed = out.get("model.language_model.embed_tokens.weight")
    if embed is not None and ("lm_head.weight" not in out or tied_head(cfg)):
        # A tied head is the embedding (the official tie_weights() runs after loading, so the embedding wins), and a
        # checkpoint saved with tied embeddings stores the matrix once.
        out["lm_head.weight"] = embed
    return out


def to_original_state_dict(sd: Mapping[str, Any], cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`convert_original_state_dict`: native weights under the original names and fused layouts.

    A tied head is left out, as the official ``save_pretrained`` leaves out ``language_model.lm_head.weight``.

    >>> import json, tempfile
    >>> from internvl_tools.testing import make_tiny_checkpoint, random_tiny_model, tiny_internvl_config
    >>> path = make_tiny_checkpoint(tempfile.mkdtemp(), "internlm2", "original")
    >>> cfg = json.loads((path / "config.json").read_text())
    >>> model = random_tiny_model(tiny_internvl_config("internlm2", image_token_id=5))
    >>> original = to_original_state_dict(model.state_dict(), cfg)
    >>> "language_model.model.layers.0.attention.wqkv.weight" in original
    True
    """
    _, family = _mappable_llm(cfg)
    rules = _rules_for(family)
    vit_parts, lm_parts, stacked = _compile(_VIT_QKV[1]), _compile(INTERNLM2_WQKV[1]), _compile(MOE_STACKED)
    pending: dict[tuple[str, str, str], dict[str, Any]] = {}
    out: dict[str, Any] = {}
    unknown: list[str] = []
    tied = tied_head(cfg)
    for key, tensor in sd.items():
        if key == "lm_head.weight" and tied:
            continue
        match = vit_parts.match(key)
        if match and match["w"] in "qkv" and len(match["w"]) == 1:
            pending.setdefault(("vit", match["i"], match["p"]), {})[match["w"]] = tensor
            continue
        match = lm_parts.match(key) if family.fused == "internlm2_wqkv" else None
        if match and match["w"] in ("q", "k", "v"):
            pending.setdefault(("lm", match["i"], match["p"]), {})[match["w"]] = tensor
            continue
        match = stacked.match(key) if family.fused == "moe_experts" else None
        if match and match["w"] in ("gate_up_proj", "down_proj"):
            pending.setdefault(("moe", match["i"], ""), {})[match["w"]] = tensor
            continue
        target = rules._apply(rules.backward, key)
        if target is None:
            unknown.append(key)
        else:
            out[target] = tensor
    for (kind, layer, param), parts in pending.items():
        if kind == "moe":
            if set(parts) != {"gate_up_proj", "down_proj"}:
                unknown.extend(f"moe.{layer}.{name}" for name in parts)
                continue
            for e, linears in unstack_moe_experts(parts["gate_up_proj"], parts["down_proj"]).items():
                for name, value in linears.items():
                    out[MOE_EXPERT.format(i=layer, e=e, w=name)] = value
            continue
        if set(parts) != {"q", "k", "v"}:
            unknown.extend(f"{kind}.{layer}.{name}_proj.{param}" for name in parts)
            continue
        if kind == "vit":
            out[_VIT_QKV[0].format(i=layer, p=param)] = merge_vit_qkv(parts["q"], parts["k"], parts["v"])
        else:
            heads, kv, head_dim = _llm_dims(cfg)
            merged = merge_internlm2_wqkv(parts["q"], parts["k"], parts["v"], heads, kv, head_dim)
            out[INTERNLM2_WQKV[0].format(i=layer, p=param)] = merged
    if unknown:
        raise ModelLoadError(f"native weights without an original-format name: {sorted(unknown)[:5]}")
    return out


# --- configs ----------------------------------------------------------------------------------------------------------


def _token_id(value: Any, vocab: int) -> int | None:
    # Out-of-vocabulary ids (Phi-3's pad 32000 in a padded 32020 vocab is fine; tiny configs may not be) would make
    # the embedding's padding_idx invalid; the id only matters for generation defaults.
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, int) and 0 <= value < vocab:
        return value
    return None


def _rope_parameters(llm: Mapping[str, Any], llm_type: str) -> dict[str, Any]:
    theta = float(llm.get("rope_theta", 10000.0))
    scaling = llm.get("rope_scaling") or llm.get("rope_parameters")
    if not scaling:
        return {"rope_type": "default", "rope_theta": theta}
    kind = str(scaling.get("rope_type") or scaling.get("type") or "default")
    params: dict[str, Any] = {k: v for k, v in scaling.items() if k not in ("type", "rope_type")}
    params["rope_theta"] = float(params.get("rope_theta", theta))
    if kind in ("su", "longrope", "yarn") and llm_type == "phi3":
        kind = "longrope" if kind in ("su", "longrope") else kind
        original = llm.get("original_max_position_embeddings") or params.get("original_max_position_embeddings")
        if original is None:
            raise ConfigError(
                "Phi-3 llm_config with longrope ('su') scaling needs original_max_position_embeddings; the "
                "checkpoint config lacks it."
            )
        params["original_max_position_embeddings"] = int(original)
    elif kind == "yarn":
        # transformers 4.55 (the InternVL3.5 code): with original_max_position_embeddings the factor is
        # max_position_embeddings / original, whatever 'factor' says; without it the original length is
        # max_position_embeddings. 5.x takes 'factor' as given, so both are spelled out (docs/internvl_reference.md §9).
        longest = int(llm.get("max_position_embeddings", 4096))
        if params.get("original_max_position_embeddings"):
            params["factor"] = longest / int(params["original_max_position_embeddings"])
        else:
            params["original_max_position_embeddings"] = longest
        params.setdefault("truncate", True)
    params["rope_type"] = kind
    return params


def _text_config(cfg: Mapping[str, Any]) -> Any:
    from transformers import AutoConfig

    llm_type, family = _mappable_llm(cfg)
    llm = dict(cfg.get("llm_config") or {})
    vocab = int(llm["vocab_size"])
    tied = tied_head(cfg)
    common: dict[str, Any] = {
        "vocab_size": vocab,
        "hidden_size": int(llm["hidden_size"]),
        "intermediate_size": int(llm["intermediate_size"]),
        "num_hidden_layers": int(llm["num_hidden_layers"]),
        "num_attention_heads": int(llm["num_attention_heads"]),
        "num_key_value_heads": int(llm.get("num_key_value_heads") or llm["num_attention_heads"]),
        "hidden_act": llm.get("hidden_act", "silu"),
        "max_position_embeddings": int(llm.get("max_position_embeddings", 4096)),
        "rms_norm_eps": float(llm.get("rms_norm_eps", 1e-6)),
        "bos_token_id": _token_id(llm.get("bos_token_id"), vocab),
        "eos_token_id": _token_id(llm.get("eos_token_id"), vocab),
        "pad_token_id": _token_id(llm.get("pad_token_id"), vocab),
        "rope_parameters": _rope_parameters(llm, llm_type),
        "tie_word_embeddings": tied,
    }
    if llm.get("head_dim") and family.keep_head_dim:
        common["head_dim"] = int(llm["head_dim"])
    common.update({k: llm[k] for k in family.config_keys if llm.get(k) is not None})
    common.update(family.fixed)
    if llm_type == "internlm2":
        common.update(attention_bias=bool(llm.get("bias", False)), mlp_bias=False)
    if llm_type == "phi3" and llm.get("original_max_position_embeddings") is not None:
        common["original_max_position_embeddings"] = int(llm["original_max_position_embeddings"])
    return AutoConfig.for_model(family.native_type, **common)


def native_config_from_original(cfg: Mapping[str, Any], *, image_token_id: int | None = None) -> InternVLConfig:
    """Build the native ``InternVLConfig`` equivalent to an original ``InternVLChatModel`` config dict.

    ``image_token_id`` must be the checkpoint tokenizer's ``<IMG_CONTEXT>`` id (it differs per language model);
    :func:`load_model` passes it.

    >>> import json, tempfile
    >>> from internvl_tools.testing import make_tiny_checkpoint
    >>> path = make_tiny_checkpoint(tempfile.mkdtemp(), "phi3", "original")
    >>> native = native_config_from_original(json.loads((path / "config.json").read_text()), image_token_id=5)
    >>> native.vision_config.norm_type, native.text_config.rope_parameters["rope_type"]
    ('layer_norm', 'longrope')
    """
    from transformers import InternVLConfig, InternVLVisionConfig

    if checkpoint_format(cfg) != "original":
        raise ConfigError("native_config_from_original expects an original InternVLChatModel config dict")
    if image_token_id is None:
        image_token_id = cfg.get("image_token_id") or cfg.get("img_context_token_id")
    if image_token_id is None:
        raise ConfigError(
            "image_token_id is required: pass tokenizer.convert_tokens_to_ids('<IMG_CONTEXT>') from the "
            "checkpoint's own tokenizer (it is 151667 on Qwen2.5 bases but 92546 on InternLM2)."
        )
    vision = dict(cfg.get("vision_config") or {})
    # Missing keys take the InternVisionConfig class defaults (the 6B style).
    norm_type = str(vision.get("norm_type", "rms_norm"))
    patch = first_int(vision.get("patch_size", 14))
    vit_image = first_int(vision.get("image_size", 224))
    image_size = int(cfg.get("force_image_size") or vit_image)
    downsample = float(cfg.get("downsample_ratio", 0.5))
    vision_config = InternVLVisionConfig(
        hidden_size=int(vision.get("hidden_size", 3200)),
        num_hidden_layers=int(vision.get("num_hidden_layers", 48)),
        num_attention_heads=int(vision.get("num_attention_heads", 25)),
        intermediate_size=int(vision.get("intermediate_size", 12800)),
        hidden_act=str(vision.get("hidden_act", "gelu")),
        layer_norm_eps=float(vision.get("layer_norm_eps", 1e-6)),
        # The position table is sized by the encoder's own image_size; other tile sizes are interpolated, as in
        # the original InternVisionEmbeddings.
        image_size=vit_image,
        patch_size=patch,
        num_channels=int(vision.get("num_channels", 3)),
        norm_type=norm_type,
        use_qk_norm=bool(vision.get("qk_normalization", True)),
        attention_bias=bool(vision.get("qkv_bias", False)),
        layer_scale_init_value=float(vision.get("initializer_factor", 0.1)),
        # use_mean_pooling=True makes the final norm an Identity: the original encoder has no final norm.
        use_mean_pooling=True,
        use_absolute_position_embeddings=True,
        use_mask_token=False,
    )
    select_layer = int(cfg.get("select_layer", -1))
    return InternVLConfig(
        vision_config=vision_config,
        text_config=_text_config(cfg),
        image_token_id=int(image_token_id),
        image_seq_length=int((image_size // patch) ** 2 * downsample**2),
        downsample_ratio=downsample,
        projector_hidden_act="gelu",
        vision_feature_layer=select_layer,
        vision_feature_select_strategy="default",
        # transformers 5.x ties the head by this top-level flag only (docs/internvl_reference.md §9).
        tie_word_embeddings=tied_head(cfg),
    )


def apply_pixel_shuffle_v1(model: Any) -> Any:
    """Make a native InternVL model instance use the original ``ps_version="v1"`` pixel shuffle.

    v1 skips the final height/width swap, so its token grid is the transpose of v2's; the projector works per
    token, so v1 features are v2 features with the square grid transposed. This patches only this instance
    (``model.model.pixel_shuffle``); saving it with ``save_pretrained`` would not record the change.

    >>> model = apply_pixel_shuffle_v1(model)   # doctest: +SKIP
    """
    inner = getattr(model, "model", model)
    original: Callable[..., Any] = type(inner).pixel_shuffle

    def pixel_shuffle_v1(self: Any, vision_features: Any, scale_factor: float = 0.5) -> Any:
        return original(self, vision_features, scale_factor=scale_factor).transpose(1, 2).contiguous()

    inner.pixel_shuffle = types.MethodType(pixel_shuffle_v1, inner)
    model.internvl_tools_ps_version = "v1"
    return model
