"""How each language-model family of an original-format InternVL checkpoint maps onto transformers' native classes:
one table (:data:`LANGUAGE_MODELS`), read by :mod:`internvl_tools.checkpoints.weights` for the weight names, the
fused layouts, the text config and the tied head. Pure data plus the Qwen3-MoE expert stacking; no file I/O.

The facts behind each row are in docs/internvl_reference.md §8 (Qwen2, Llama, InternLM2, Phi-3: the ``internvl_chat``
code) and §9 (Qwen3, Qwen3-MoE, GPT-OSS: the InternVL3.5 ``internvl_chat_gpt_oss`` code).

>>> LANGUAGE_MODELS["qwen3"].native_type, LANGUAGE_MODELS["qwen3"].head
('qwen3', 'llm')
>>> LANGUAGE_MODELS["internlm2"].native_type, LANGUAGE_MODELS["internlm2"].fused
('llama', 'internlm2_wqkv')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from internvl_tools.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["LANGUAGE_MODELS", "LanguageModelMapping", "stack_moe_experts", "unstack_moe_experts"]


@dataclass(frozen=True)
class LanguageModelMapping:
    """One language-model family of original-format checkpoints and the native model it loads as.

    - ``native_type``: the native text config's ``model_type`` (InternLM2 loads as ``llama``).
    - ``rules``: ``(original name, native name)`` templates; ``{i}`` a layer, ``{p}`` weight/bias, ``{rest}`` anything.
    - ``fused``: the one layout that is not a rename: ``internlm2_wqkv`` (grouped q/k/v, §8) or ``moe_experts``
      (Qwen3-MoE's per-expert linears stacked into transformers 5's 3-D expert tensors, §9).
    - ``config_keys``: ``llm_config`` keys carried as they are onto the native text config, besides the common ones.
    - ``keep_head_dim``: pass ``head_dim`` on (Qwen3's is not hidden ÷ heads, §9); Qwen2 and Phi-3 derive it.
    - ``head``: ``"untied"`` (the ``internvl_chat`` config forces untied embeddings, §8) or ``"llm"`` (the InternVL3.5
      config follows ``llm_config.tie_word_embeddings``, §9).
    - ``fixed``: native config values the official code hard-codes whatever the config says (GPT-OSS's SwiGLU clamp).
    """

    native_type: str
    rules: tuple[tuple[str, str], ...]
    fused: Literal["none", "internlm2_wqkv", "moe_experts"] = "none"
    config_keys: tuple[str, ...] = ()
    keep_head_dim: bool = True
    head: Literal["untied", "llm"] = "untied"
    fixed: tuple[tuple[str, Any], ...] = ()


#: Plain Hugging Face names under ``language_model.`` (Qwen2, Llama, Phi-3, Qwen3, Qwen3-MoE, GPT-OSS).
HF_LM_RULES = (
    ("language_model.model.{rest}", "model.language_model.{rest}"),
    ("language_model.lm_head.weight", "lm_head.weight"),
)
INTERNLM2_RULES = (
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
#: InternLM2's fused grouped projection and the native q/k/v it splits into (``{w}`` is q, k or v).
INTERNLM2_WQKV = (
    "language_model.model.layers.{i}.attention.wqkv.{p}",
    "model.language_model.layers.{i}.self_attn.{w}_proj.{p}",
)
#: One Qwen3-MoE expert's linear (``{e}`` the expert, ``{w}`` gate/up/down) and the native stacked tensors.
MOE_EXPERT = "language_model.model.layers.{i}.mlp.experts.{e}.{w}_proj.weight"
MOE_STACKED = "model.language_model.layers.{i}.mlp.experts.{w}"

_QWEN3_KEYS = ("attention_bias", "attention_dropout", "use_sliding_window", "sliding_window", "max_window_layers")
_MOE_KEYS = (
    "num_experts",
    "num_experts_per_tok",
    "moe_intermediate_size",
    "norm_topk_prob",
    "decoder_sparse_step",
    "mlp_only_layers",
    "router_aux_loss_coef",
)

LANGUAGE_MODELS: Mapping[str, LanguageModelMapping] = {
    "qwen2": LanguageModelMapping(
        "qwen2",
        HF_LM_RULES,
        config_keys=("use_sliding_window", "sliding_window", "max_window_layers", "attention_dropout"),
        keep_head_dim=False,
    ),
    "llama": LanguageModelMapping(
        "llama", HF_LM_RULES, config_keys=("attention_bias", "mlp_bias", "attention_dropout")
    ),
    "internlm2": LanguageModelMapping("llama", INTERNLM2_RULES, fused="internlm2_wqkv"),
    "phi3": LanguageModelMapping(
        "phi3",
        HF_LM_RULES,
        config_keys=("sliding_window", "attention_dropout", "resid_pdrop", "embd_pdrop"),
        keep_head_dim=False,
    ),
    "qwen3": LanguageModelMapping("qwen3", HF_LM_RULES, config_keys=(*_QWEN3_KEYS, "layer_types"), head="llm"),
    "qwen3_moe": LanguageModelMapping(
        "qwen3_moe", HF_LM_RULES, fused="moe_experts", config_keys=(*_QWEN3_KEYS, *_MOE_KEYS), head="llm"
    ),
    "gpt_oss": LanguageModelMapping(
        "gpt_oss",
        HF_LM_RULES,
        config_keys=(
            "attention_bias",
            "attention_dropout",
            "sliding_window",
            "layer_types",
            "num_local_experts",
            "num_experts_per_tok",
            "router_aux_loss_coef",
        ),
        head="llm",
        # transformers 4.55's GptOssExperts hard-codes alpha 1.702 and limit 7.0 (§9).
        fixed=(("swiglu_alpha", 1.702), ("swiglu_limit", 7.0)),
    ),
}


def stack_moe_experts(
    experts: Mapping[int, Mapping[str, torch.Tensor]], num_experts: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-expert ``{e: {"gate": W, "up": W, "down": W}}`` → transformers 5's ``(gate_up_proj, down_proj)``.

    ``gate_up_proj[e]`` is gate's rows then up's (halves, not interleaved: Qwen3-MoE chunks it in two), shape
    ``(E, 2·I, H)``; ``down_proj`` is ``(E, H, I)``.

    >>> import torch
    >>> gate_up, down = stack_moe_experts({0: {"gate": torch.zeros(1, 2), "up": torch.ones(1, 2),
    ...                                        "down": torch.ones(2, 1)}}, 1)
    >>> gate_up.tolist(), tuple(down.shape)
    ([[[0.0, 0.0], [1.0, 1.0]]], (1, 2, 1))
    """
    import torch

    missing = [e for e in range(num_experts) if set(experts.get(e, {})) != {"gate", "up", "down"}]
    if missing or len(experts) != num_experts:
        raise ConfigError(
            f"the checkpoint has gate/up/down weights for experts {sorted(experts)}, the config says {num_experts} "
            f"experts (incomplete: {missing[:5]})"
        )
    gate_up = torch.stack([torch.cat([experts[e]["gate"], experts[e]["up"]], dim=0) for e in range(num_experts)])
    down = torch.stack([experts[e]["down"] for e in range(num_experts)])
    return gate_up.contiguous(), down.contiguous()


def unstack_moe_experts(gate_up: torch.Tensor, down: torch.Tensor) -> dict[int, dict[str, torch.Tensor]]:
    """Inverse of :func:`stack_moe_experts`.

    >>> import torch
    >>> parts = unstack_moe_experts(torch.arange(8.0).reshape(1, 4, 2), torch.zeros(1, 2, 2))
    >>> parts[0]["gate"].tolist(), parts[0]["up"].tolist()
    ([[0.0, 1.0], [2.0, 3.0]], [[4.0, 5.0], [6.0, 7.0]])
    """
    out: dict[int, dict[str, torch.Tensor]] = {}
    for e in range(gate_up.shape[0]):
        gate, up = gate_up[e].chunk(2, dim=0)
        out[e] = {"gate": gate.contiguous(), "up": up.contiguous(), "down": down[e].contiguous()}
    return out
