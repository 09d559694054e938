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
    "to_original_state_dict",
]

#: Language models whose original weights we can map onto a native class.
_MAPPABLE = ("qwen2", "llama", "internlm2", "phi3")


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

_GROUP_PATTERNS = {"i": r"\d+", "p": r"weight|bias", "rest": r".+", "w": r"[a-z_]+"}

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
_HF_LM_RULES = (
    ("language_model.model.{rest}", "model.language_model.{rest}"),
    ("language_model.lm_head.weight", "lm_head.weight"),
)
_INTERNLM2_RULES = (
    ("language_model.model.tok_embeddings.weight", "model.language_model.embed_tokens.weight"),
    ("language_model.model.norm.weight", "model.language_model.norm.weight"),
    ("language_model.model.layers.{i}.attention.wo.{p}", "model.language_model.layers.{i}.self_attn.o_proj.{p}"),
    ("language_model.model.layers.{i}.feed_forward.w1.{p}", "model.language_model.layers.{i}.mlp.gate_proj.{p}"),
    ("language_model.model.layers.{i}.feed_forward.w3.{p}", "model.language_model.layers.{i}.mlp.up_proj.{p}"),
    ("language_model.model.layers.{i}.feed_forward.w2.{p}", "model.language_model.layers.{i}.mlp.down_proj.{p}"),
    ("language_model.model.layers.{i}.attention_norm.weight", "model.language_model.layers.{i}.input_layernorm.weight"),
    (
        "language_model.model.layers.{i}.ffn_norm.weight",
        "model.language_model.layers.{i}.post_attention_layernorm.weight",
    ),
    ("language_model.output.weight", "lm_head.weight"),
)
_VIT_QKV = (
    "vision_model.encoder.layers.{i}.attn.qkv.{p}",
    "model.vision_tower.encoder.layer.{i}.attention.{w}_proj.{p}",
)
_WQKV = ("language_model.model.layers.{i}.attention.wqkv.{p}", "model.language_model.layers.{i}.self_attn.{w}_proj.{p}")
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


def _rules_for(llm_type: str) -> _Rules:
    return _Rules(_VISION_RULES + (_INTERNLM2_RULES if llm_type == "internlm2" else _HF_LM_RULES))


def _llm_dims(cfg: Mapping[str, Any]) -> tuple[int, int, int]:
    llm = cfg.get("llm_config") or {}
    heads = int(llm["num_attention_heads"])
    kv = int(llm.get("num_key_value_heads") or heads)
    head_dim = int(llm.get("head_dim") or int(llm["hidden_size"]) // heads)
    return heads, kv, head_dim


def _mappable_llm(cfg: Mapping[str, Any]) -> str:
    llm_type = llm_type_of(cfg)
    if llm_type not in _MAPPABLE:
        raise ConfigError(
            f"original-format InternVL checkpoints with a {llm_type!r} language model cannot be mapped onto the "
            f"native architecture (supported: {', '.join(_MAPPABLE)}); use its transformers-native '-hf' release "
            "or pass trust_remote_code=True."
        )
    return llm_type


def convert_original_state_dict(sd: Mapping[str, Any], cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Map original ``InternVLChatModel`` weight names and fused layouts onto ``InternVLForConditionalGeneration``.

    ``cfg`` is the original ``config.json`` dict. Unknown keys raise :class:`ModelLoadError` naming them.

    >>> import json, tempfile
    >>> from safetensors.torch import load_file
    >>> from internvl_tools.testing import make_tiny_checkpoint
    >>> path = make_tiny_checkpoint(tempfile.mkdtemp(), "internlm2", "original")
    >>> cfg = json.loads((path / "config.json").read_text())
    >>> native = convert_original_state_dict(load_file(str(path / "model.safetensors")), cfg)
    >>> "model.language_model.layers.0.self_attn.k_proj.weight" in native
    True
    """
    llm_type = _mappable_llm(cfg)
    rules = _rules_for(llm_type)
    vit_qkv, wqkv = _compile(_VIT_QKV[0]), _compile(_WQKV[0])
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
        match = wqkv.match(key) if llm_type == "internlm2" else None
        if match:
            heads, kv, head_dim = _llm_dims(cfg)
            for part, value in zip("qkv", split_internlm2_wqkv(tensor, heads, kv, head_dim), strict=True):
                out[_WQKV[1].format(w=part, **match.groupdict())] = value
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
    if "lm_head.weight" not in out and "model.language_model.embed_tokens.weight" in out:
        # A checkpoint saved with tied embeddings stores the matrix once.
        out["lm_head.weight"] = out["model.language_model.embed_tokens.weight"]
    return out


def to_original_state_dict(sd: Mapping[str, Any], cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`convert_original_state_dict`: native weights under the original names and fused layouts.

    >>> import json, tempfile
    >>> from internvl_tools.testing import make_tiny_checkpoint, random_tiny_model, tiny_internvl_config
    >>> path = make_tiny_checkpoint(tempfile.mkdtemp(), "internlm2", "original")
    >>> cfg = json.loads((path / "config.json").read_text())
    >>> model = random_tiny_model(tiny_internvl_config("internlm2", image_token_id=5))
    >>> original = to_original_state_dict(model.state_dict(), cfg)
    >>> "language_model.model.layers.0.attention.wqkv.weight" in original
    True
    """
    llm_type = _mappable_llm(cfg)
    rules = _rules_for(llm_type)
    vit_parts, lm_parts = _compile(_VIT_QKV[1]), _compile(_WQKV[1])
    pending: dict[tuple[str, str, str], dict[str, Any]] = {}
    out: dict[str, Any] = {}
    unknown: list[str] = []
    for key, tensor in sd.items():
        match = vit_parts.match(key)
        if match and match["w"] in "qkv" and len(match["w"]) == 1:
            pending.setdefault(("vit", match["i"], match["p"]), {})[match["w"]] = tensor
            continue
        match = lm_parts.match(key) if llm_type == "internlm2" else None
        if match and match["w"] in ("q", "k", "v"):
            pending.setdefault(("lm", match["i"], match["p"]), {})[match["w"]] = tensor
            continue
        target = rules._apply(rules.backward, key)
        if target is None:
            unknown.append(key)
        else:
            out[target] = tensor
    for (kind, layer, param), parts in pending.items():
        if set(parts) != {"q", "k", "v"}:
            unknown.extend(f"{kind}.{layer}.{name}_proj.{param}" for name in parts)
            continue
        if kind == "vit":
            out[_VIT_QKV[0].format(i=layer, p=param)] = merge_vit_qkv(parts["q"], parts["k"], parts["v"])
        else:
            heads, kv, head_dim = _llm_dims(cfg)
            merged = merge_internlm2_wqkv(parts["q"], parts["k"], parts["v"], heads, kv, head_dim)
            out[_WQKV[0].format(i=layer, p=param)] = merged
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
    params["rope_type"] = kind
    return params


def _text_config(cfg: Mapping[str, Any]) -> Any:
    from transformers import LlamaConfig, Phi3Config, Qwen2Config

    llm_type = _mappable_llm(cfg)
    llm = dict(cfg.get("llm_config") or {})
    vocab = int(llm["vocab_size"])
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
        # The official InternVLChatConfig forces untied embeddings.
        "tie_word_embeddings": False,
    }
    if llm.get("head_dim"):
        common["head_dim"] = int(llm["head_dim"])
    if llm_type == "qwen2":
        extra = {
            k: llm[k]
            for k in ("use_sliding_window", "sliding_window", "max_window_layers", "attention_dropout")
            if k in llm and llm[k] is not None
        }
        common.pop("head_dim", None)
        return Qwen2Config(**common, **extra)
    if llm_type == "llama":
        extra = {k: llm[k] for k in ("attention_bias", "mlp_bias", "attention_dropout") if k in llm}
        return LlamaConfig(**common, **extra)
    if llm_type == "internlm2":
        return LlamaConfig(**common, attention_bias=bool(llm.get("bias", False)), mlp_bias=False)
    original = llm.get("original_max_position_embeddings")
    extra = {k: llm[k] for k in ("sliding_window", "attention_dropout", "resid_pdrop", "embd_pdrop") if k in llm}
    if original is not None:
        extra["original_max_position_embeddings"] = int(original)
    common.pop("head_dim", None)
    return Phi3Config(**common, **extra)


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
        tie_word_embeddings=False,
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
