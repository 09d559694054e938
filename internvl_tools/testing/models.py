"""The tiny models behind the tiny checkpoints: each family's native config, seeded random weights, and the original
``InternVLChatModel`` config.json describing the same model (the layout the released checkpoints use).

Families: ``qwen2``, ``llama``, ``internlm2`` and ``phi3`` (the ``internvl_chat`` code: InternVL 1.x-3), and
InternVL3.5's ``qwen3``, ``qwen3_moe`` and ``gpt_oss`` (the ``internvl_chat_gpt_oss`` code), each with the config
traps of docs/internvl_reference.md §9 set so that missing one changes the logits: Qwen3's ``head_dim`` is not
hidden ÷ heads, GPT-OSS has yarn rope with ``truncate: false``, a sliding window shorter than the test prompts,
attention sinks and top-k routed experts.

>>> tiny_internvl_config("qwen3", image_token_id=5).text_config.head_dim
32
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from internvl_tools.constants import DEFAULT_MAX_TILES
from internvl_tools.errors import ConfigError
from internvl_tools.testing.tokenizers import TINY_VOCAB_SIZE

if TYPE_CHECKING:  # pragma: no cover
    from transformers import InternVLConfig, InternVLForConditionalGeneration

__all__ = ["FAMILIES", "random_tiny_model", "tiny_internvl_config"]

FAMILIES: tuple[str, ...] = ("qwen2", "llama", "internlm2", "phi3", "qwen3", "qwen3_moe", "gpt_oss")

#: Families whose head follows ``llm_config.tie_word_embeddings`` (InternVL3.5); the others are always untied.
TIEABLE: tuple[str, ...] = ("qwen3", "qwen3_moe", "gpt_oss")

TEMPLATES = {
    "qwen2": "internvl2_5",
    "llama": "Hermes-2",
    "internlm2": "internlm2-chat",
    "phi3": "phi3-chat",
    "qwen3": "internvl2_5",
    "qwen3_moe": "internvl2_5",
    "gpt_oss": "internvl3_5_gpt_oss",
}
_LLM_ARCHS = {
    "qwen2": "Qwen2ForCausalLM",
    "llama": "LlamaForCausalLM",
    "internlm2": "InternLM2ForCausalLM",
    "phi3": "Phi3ForCausalLM",
    "qwen3": "Qwen3ForCausalLM",
    "qwen3_moe": "Qwen3MoeForCausalLM",
    "gpt_oss": "GptOssForCausalLM",
}
_AUTO_MAP = {
    "AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
    "AutoModel": "modeling_internvl_chat.InternVLChatModel",
    "AutoModelForCausalLM": "modeling_internvl_chat.InternVLChatModel",
}
# GPT-OSS: a window shorter than the test prompts (so it matters) and yarn with a consistent factor (2048 / 64).
_GPT_OSS_WINDOW = 8
_GPT_OSS_YARN = {
    "rope_type": "yarn",
    "factor": 32.0,
    "beta_fast": 32.0,
    "beta_slow": 1.0,
    "truncate": False,
    "original_max_position_embeddings": 64,
}


def check_family(family: str) -> None:
    """:class:`ConfigError` unless ``family`` is one of :data:`FAMILIES`."""
    if family not in FAMILIES:
        raise ConfigError(f"unknown tiny-checkpoint family {family!r}; choose one of {', '.join(FAMILIES)}")


def _vision_style(family: str) -> str:
    # InternLM2-backed models (V1-5, InternVL2-26B, ...) use the 6B-style encoder; the others the 300M style.
    return "6b" if family == "internlm2" else "300m"


def _text_config(family: str, common: dict[str, Any]) -> Any:
    from transformers import GptOssConfig, LlamaConfig, Phi3Config, Qwen2Config, Qwen3Config, Qwen3MoeConfig

    if family == "qwen2":
        return Qwen2Config(
            **common, max_position_embeddings=2048, rope_parameters={"rope_type": "default", "rope_theta": 1e6}
        )
    if family == "llama":
        return LlamaConfig(
            **common,
            max_position_embeddings=2048,
            rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 5e6},
        )
    if family == "internlm2":
        # InternLM2 checkpoints carry dynamic NTK scaling (factor 2.0); a short context makes it reachable.
        return LlamaConfig(
            **common,
            max_position_embeddings=256,
            rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e6},
        )
    if family == "phi3":
        short, long = _phi3_factors()
        return Phi3Config(
            **common,
            max_position_embeddings=4096,
            original_max_position_embeddings=512,
            rms_norm_eps=1e-5,
            rope_parameters={
                "rope_type": "longrope",
                "short_factor": short,
                "long_factor": long,
                "original_max_position_embeddings": 512,
                "rope_theta": 10000.0,
            },
        )
    # InternVL3.5: head_dim 32 is not hidden 64 / 4 heads (the Qwen3 and GPT-OSS trap).
    qwen3 = {**common, "head_dim": 32, "max_position_embeddings": 2048, "rms_norm_eps": 1e-6}
    rope = {"rope_type": "default", "rope_theta": 1e6}
    if family == "qwen3":
        return Qwen3Config(**qwen3, rope_parameters=rope, use_sliding_window=False, max_window_layers=2)
    if family == "qwen3_moe":
        return Qwen3MoeConfig(
            **qwen3,
            rope_parameters=rope,
            num_experts=4,
            num_experts_per_tok=2,
            moe_intermediate_size=32,
            norm_topk_prob=True,
            decoder_sparse_step=1,
            mlp_only_layers=[],
        )
    return GptOssConfig(
        **{**qwen3, "intermediate_size": 32, "rms_norm_eps": 1e-5},
        rope_parameters={**_GPT_OSS_YARN, "rope_theta": 150000.0},
        num_local_experts=4,
        num_experts_per_tok=2,
        sliding_window=_GPT_OSS_WINDOW,
        layer_types=["sliding_attention", "full_attention"],
        attention_bias=True,
    )


def tiny_internvl_config(
    family: str = "qwen2",
    *,
    image_token_id: int,
    vocab_size: int = TINY_VOCAB_SIZE,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
    bos_token_id: int | None = None,
    image_size: int = 56,
    patch_size: int = 14,
    tie_word_embeddings: bool = False,
) -> InternVLConfig:
    """The native config of a tiny model of ``family`` (what the original-format checkpoint maps onto).

    ``tie_word_embeddings`` (InternVL3.5 families only) ties the head to the embedding, at the top level, where
    transformers 5 reads it, and in the text config.

    >>> cfg = tiny_internvl_config("phi3", image_token_id=5)
    >>> cfg.text_config.model_type, cfg.image_seq_length
    ('phi3', 4)
    """
    from transformers import InternVLConfig, InternVLVisionConfig

    check_family(family)
    if tie_word_embeddings and family not in TIEABLE:
        raise ConfigError(
            f"the official code forces untied embeddings for {family!r}; tied heads exist for {', '.join(TIEABLE)}"
        )
    six_b = _vision_style(family) == "6b"
    vision = InternVLVisionConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=image_size,
        patch_size=patch_size,
        norm_type="rms_norm" if six_b else "layer_norm",
        use_qk_norm=six_b,
        attention_bias=not six_b,
        layer_norm_eps=1e-6,
        use_mean_pooling=True,
    )
    common: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "eos_token_id": eos_token_id,
        "pad_token_id": pad_token_id,
        "bos_token_id": bos_token_id,
        "tie_word_embeddings": tie_word_embeddings,
    }
    text = _text_config(family, common)
    tokens = int((image_size // patch_size) ** 2 * 0.5**2)
    return InternVLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=image_token_id,
        image_seq_length=tokens,
        downsample_ratio=0.5,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=tie_word_embeddings,
    )


def _phi3_factors() -> tuple[list[float], list[float]]:
    head_dim = 64 // 4
    short = [1.0 + 0.05 * i for i in range(head_dim // 2)]
    long = [1.5 + 0.5 * i for i in range(head_dim // 2)]
    return short, long


def random_tiny_model(config: InternVLConfig, seed: int = 0) -> InternVLForConditionalGeneration:
    """Instantiate ``config`` with every parameter drawn from a seeded generator (norms, layer scales and biases too).

    Unlike the library's init (ones, zeros, constant layer scales), every tensor is random, so a mapping that swaps
    two same-shaped tensors changes the output. Scales keep activations of order one. A tied head is drawn once.

    >>> model = random_tiny_model(tiny_internvl_config("qwen2", image_token_id=5), seed=0)
    >>> model.training
    False
    """
    import torch
    from transformers import InternVLForConditionalGeneration

    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            noise = torch.randn(param.shape, generator=generator, dtype=torch.float32)
            leaf = name.rsplit(".", 2)
            if name.endswith("bias"):
                value = 0.1 * noise
            elif "norm" in name:
                value = 1.0 + 0.2 * noise
            elif "lambda_" in leaf[-1]:
                value = 0.5 + 0.2 * noise
            elif param.ndim <= 1 or name.endswith(("embed_tokens.weight", "cls_token", "position_embeddings")):
                value = 0.5 * noise
            elif ".experts." in name and param.ndim == 3:
                # Stacked experts: Qwen3-MoE stores (E, out, in), GPT-OSS (E, in, out).
                fan_in = param.shape[1] if "gpt_oss" in config.text_config.model_type else param.shape[2]
                value = noise / fan_in**0.5
            else:
                fan_in = param[0].numel()
                value = noise / fan_in**0.5
            param.copy_(value.to(param.dtype))
    return model.eval()


def _llm_config(family: str, text: Any) -> dict[str, Any]:
    llm: dict[str, Any] = {
        "architectures": [_LLM_ARCHS[family]],
        "vocab_size": text.vocab_size,
        "hidden_size": text.hidden_size,
        "intermediate_size": text.intermediate_size,
        "num_hidden_layers": text.num_hidden_layers,
        "num_attention_heads": text.num_attention_heads,
        "num_key_value_heads": text.num_key_value_heads,
        "hidden_act": "silu",
        "max_position_embeddings": text.max_position_embeddings,
        "rms_norm_eps": text.rms_norm_eps,
        "rope_theta": text.rope_parameters["rope_theta"],
        "bos_token_id": text.bos_token_id,
        "eos_token_id": text.eos_token_id,
        "pad_token_id": text.pad_token_id,
        "tie_word_embeddings": bool(text.tie_word_embeddings) if family in TIEABLE else False,
        "torch_dtype": "float32",
        "use_cache": True,
        "attn_implementation": "eager",
    }
    if family == "qwen2":
        llm.update(
            model_type="qwen2",
            rope_scaling=None,
            use_sliding_window=False,
            sliding_window=2048,
            max_window_layers=text.num_hidden_layers,
            attention_dropout=0.0,
        )
    elif family == "llama":
        llm.update(model_type="llama", rope_scaling=None, attention_bias=False, mlp_bias=False, pretraining_tp=1)
    elif family == "internlm2":
        llm.update(
            model_type="internlm2",
            bias=False,
            rope_scaling={"type": "dynamic", "factor": 2.0},
            auto_map={
                "AutoConfig": "configuration_internlm2.InternLM2Config",
                "AutoModel": "modeling_internlm2.InternLM2ForCausalLM",
                "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM",
            },
        )
    elif family == "phi3":
        short, long = _phi3_factors()
        llm.update(
            model_type="phi3",
            original_max_position_embeddings=text.original_max_position_embeddings,
            rope_scaling={"type": "su", "short_factor": short, "long_factor": long},
            sliding_window=text.max_position_embeddings,
            embd_pdrop=0.0,
            resid_pdrop=0.0,
            attention_dropout=0.0,
        )
    else:
        # InternVL3.5: the llm_config the 4.55 config classes write (Qwen3-*B / gpt-oss-20b shape).
        llm.pop("attn_implementation")
        llm.update(model_type=family, head_dim=text.head_dim, attention_bias=bool(text.attention_bias))
        llm["attention_dropout"] = 0.0
        if family == "gpt_oss":
            llm.update(
                rope_scaling=dict(_GPT_OSS_YARN),
                sliding_window=text.sliding_window,
                layer_types=list(text.layer_types),
                num_local_experts=text.num_local_experts,
                num_experts_per_tok=text.num_experts_per_tok,
                router_aux_loss_coef=0.9,
                output_router_logits=False,
                initializer_range=0.02,
            )
        else:
            llm.update(
                rope_scaling=None,
                use_sliding_window=False,
                sliding_window=None,
                max_window_layers=text.num_hidden_layers,
            )
            if family == "qwen3":
                llm["layer_types"] = ["full_attention"] * text.num_hidden_layers
            else:
                llm.update(
                    num_experts=text.num_experts,
                    num_experts_per_tok=text.num_experts_per_tok,
                    moe_intermediate_size=text.moe_intermediate_size,
                    norm_topk_prob=text.norm_topk_prob,
                    decoder_sparse_step=text.decoder_sparse_step,
                    mlp_only_layers=list(text.mlp_only_layers),
                    router_aux_loss_coef=0.001,
                    output_router_logits=False,
                )
    return llm


def original_config(family: str, native: InternVLConfig, *, ps_version: str) -> dict[str, Any]:
    """The ``InternVLChatModel`` config.json describing ``native`` (the layout the released checkpoints use)."""
    vision = native.vision_config
    six_b = vision.norm_type == "rms_norm"
    image_size = int(vision.image_size[0])
    raw = {
        "architectures": ["InternVLChatModel"],
        "auto_map": dict(_AUTO_MAP),
        "model_type": "internvl_chat",
        "template": TEMPLATES[family],
        "downsample_ratio": native.downsample_ratio,
        "dynamic_image_size": True,
        "force_image_size": image_size,
        "max_dynamic_patch": DEFAULT_MAX_TILES,
        "min_dynamic_patch": 1,
        "ps_version": ps_version,
        "select_layer": native.vision_feature_layer,
        "use_thumbnail": True,
        "use_backbone_lora": 0,
        "use_llm_lora": 0,
        "pad2square": False,
        "torch_dtype": "float32",
        "vision_config": {
            "architectures": ["InternVisionModel"],
            "model_type": "intern_vit_6b",
            "hidden_size": vision.hidden_size,
            "num_hidden_layers": vision.num_hidden_layers,
            "num_attention_heads": vision.num_attention_heads,
            "intermediate_size": vision.intermediate_size,
            "hidden_act": "gelu",
            "image_size": image_size,
            "patch_size": int(vision.patch_size[0]),
            "num_channels": 3,
            "norm_type": "rms_norm" if six_b else "layer_norm",
            "qk_normalization": six_b,
            "qkv_bias": not six_b,
            "layer_norm_eps": vision.layer_norm_eps,
            "initializer_factor": 0.1,
            "initializer_range": 0.02,
            "drop_path_rate": 0.0,
            "dropout": 0.0,
            "attention_dropout": 0.0,
            "use_flash_attn": False,
        },
        "llm_config": _llm_config(family, native.text_config),
    }
    if family in TIEABLE:
        # The InternVL3.5 config copies the language model's flag to the top level.
        raw["tie_word_embeddings"] = raw["llm_config"]["tie_word_embeddings"]
    return raw
