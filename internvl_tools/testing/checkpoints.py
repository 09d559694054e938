"""Tiny random InternVL checkpoints, built offline in about a second, for tests, CI, notebooks and users.

A tiny checkpoint is a real checkpoint directory (config, tokenizer, weights) that the real loading code reads: the
native transformers layout (``InternVLForConditionalGeneration``, like ``OpenGVLab/InternVL3-1B-hf``) or the
original InternVL layout (``InternVLChatModel`` with ``llm_config``, weights under the original names, like
``OpenGVLab/InternVL2-1B``) for each language-model family: ``qwen2``, ``llama``, ``internlm2`` (fused grouped
``wqkv``, sentencepiece tokenizer) and ``phi3`` (fused ``qkv_proj``, longrope scaling). The weights are random, so
the model's answers are gibberish, but every code path (tiling, prompts, image-token expansion, generation, weight
mapping) runs for real.

>>> from internvl_tools.testing import make_tiny_checkpoint
>>> import tempfile
>>> path = make_tiny_checkpoint(tempfile.mkdtemp(), family="qwen2", format="native", seed=0)
>>> (path / "config.json").is_file()
True
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from internvl_tools.checkpoints.weights import to_original_state_dict
from internvl_tools.constants import DEFAULT_MAX_TILES, IMAGENET_MEAN, IMAGENET_STD
from internvl_tools.errors import ConfigError
from internvl_tools.testing.tokenizers import (
    HF_CHAT_TEMPLATE,
    TINY_VOCAB_SIZE,
    build_bpe_tokenizer,
    write_internlm2_tokenizer,
    write_json,
)

if TYPE_CHECKING:  # pragma: no cover
    from transformers import InternVLConfig, InternVLForConditionalGeneration

__all__ = [
    "FAMILIES",
    "FORMATS",
    "make_tiny_checkpoint",
    "random_tiny_model",
    "tiny_checkpoint",
    "tiny_internvl_config",
]

FAMILIES: tuple[str, ...] = ("qwen2", "llama", "internlm2", "phi3")
FORMATS: tuple[str, ...] = ("native", "original")

_TEMPLATES = {"qwen2": "internvl2_5", "llama": "Hermes-2", "internlm2": "internlm2-chat", "phi3": "phi3-chat"}
_LLM_ARCHS = {
    "qwen2": "Qwen2ForCausalLM",
    "llama": "LlamaForCausalLM",
    "internlm2": "InternLM2ForCausalLM",
    "phi3": "Phi3ForCausalLM",
}
_AUTO_MAP = {
    "AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
    "AutoModel": "modeling_internvl_chat.InternVLChatModel",
    "AutoModelForCausalLM": "modeling_internvl_chat.InternVLChatModel",
}


def _check_args(family: str, format: str) -> None:
    if family not in FAMILIES:
        raise ConfigError(f"unknown tiny-checkpoint family {family!r}; choose one of {', '.join(FAMILIES)}")
    if format not in FORMATS:
        raise ConfigError(f"unknown tiny-checkpoint format {format!r}; choose 'native' or 'original'")


# --- configs and weights -----------------------------------------------------------------------------------------


def _vision_style(family: str) -> str:
    # InternLM2-backed models (V1-5, InternVL2-26B, ...) use the 6B-style encoder; the others the 300M style.
    return "6b" if family == "internlm2" else "300m"


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
) -> InternVLConfig:
    """The native config of a tiny model of ``family`` (what the original-format checkpoint maps onto).

    >>> cfg = tiny_internvl_config("phi3", image_token_id=5)
    >>> cfg.text_config.model_type, cfg.image_seq_length
    ('phi3', 4)
    """
    from transformers import InternVLConfig, InternVLVisionConfig, LlamaConfig, Phi3Config, Qwen2Config

    _check_args(family, "native")
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
        "tie_word_embeddings": False,
    }
    if family == "qwen2":
        text = Qwen2Config(
            **common, max_position_embeddings=2048, rope_parameters={"rope_type": "default", "rope_theta": 1e6}
        )
    elif family == "llama":
        text = LlamaConfig(
            **common,
            max_position_embeddings=2048,
            rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "default", "rope_theta": 5e6},
        )
    elif family == "internlm2":
        # InternLM2 checkpoints carry dynamic NTK scaling (factor 2.0); a short context makes it reachable.
        text = LlamaConfig(
            **common,
            max_position_embeddings=256,
            rms_norm_eps=1e-5,
            rope_parameters={"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1e6},
        )
    else:
        short, long = _phi3_factors()
        text = Phi3Config(
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
    tokens = int((image_size // patch_size) ** 2 * 0.5**2)
    return InternVLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=image_token_id,
        image_seq_length=tokens,
        downsample_ratio=0.5,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )


def _phi3_factors() -> tuple[list[float], list[float]]:
    head_dim = 64 // 4
    short = [1.0 + 0.05 * i for i in range(head_dim // 2)]
    long = [1.5 + 0.5 * i for i in range(head_dim // 2)]
    return short, long


def random_tiny_model(config: InternVLConfig, seed: int = 0) -> InternVLForConditionalGeneration:
    """Instantiate ``config`` with every parameter drawn from a seeded generator (norms, layer scales and biases too).

    Unlike the library's init (ones, zeros, constant layer scales), every tensor is random, so a mapping that swaps
    two same-shaped tensors changes the output. Scales keep activations of order one.

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
            else:
                fan_in = param[0].numel()
                value = noise / fan_in**0.5
            param.copy_(value.to(param.dtype))
    return model.eval()


def _original_config(family: str, native: InternVLConfig, *, ps_version: str) -> dict[str, Any]:
    """The ``InternVLChatModel`` config.json describing ``native`` (the layout the released checkpoints use)."""
    vision = native.vision_config
    text = native.text_config
    six_b = vision.norm_type == "rms_norm"
    image_size = int(vision.image_size[0])
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
        "tie_word_embeddings": False,
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
    else:
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
    return {
        "architectures": ["InternVLChatModel"],
        "auto_map": dict(_AUTO_MAP),
        "model_type": "internvl_chat",
        "template": _TEMPLATES[family],
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
        "llm_config": llm,
    }


def _write_preprocessor(directory: Path, image_size: int, *, native: bool) -> None:
    config: dict[str, Any] = {
        "image_processor_type": "GotOcr2ImageProcessor" if native else "CLIPImageProcessor",
        "crop_to_patches": True,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": list(IMAGENET_MEAN),
        "image_std": list(IMAGENET_STD),
        "max_patches": DEFAULT_MAX_TILES,
        "min_patches": 1,
        "resample": 3,
        "rescale_factor": 1 / 255,
        "size": {"height": image_size, "width": image_size},
    }
    if native:
        config["processor_class"] = "InternVLProcessor"
    write_json(directory / "preprocessor_config.json", config)


def make_tiny_checkpoint(
    directory: str | os.PathLike[str],
    family: str = "qwen2",
    format: str = "native",
    seed: int = 0,
    *,
    image_size: int = 56,
    ps_version: str = "v2",
) -> Path:
    """Build a tiny random InternVL checkpoint in ``directory`` (created if needed) and return its path.

    ``format="native"`` writes the transformers layout (config, ``model.safetensors``, tokenizer with the
    InternVL special tokens and the ``-hf`` chat template, GotOcr2 preprocessor config, generation config).
    ``format="original"`` writes the ``InternVLChatModel`` layout with weights under the original names
    (``vision_model.*``, ``mlp1.*``, ``language_model.*``; InternLM2's grouped ``wqkv``); ``ps_version`` "v1"
    gives the transposed pixel shuffle of the oldest checkpoints. Same arguments give byte-identical files.
    With the default 56-pixel tiles and patch 14 each tile becomes 4 image tokens.

    >>> import tempfile
    >>> p = make_tiny_checkpoint(tempfile.mkdtemp(), family="internlm2", format="original")
    >>> sorted(f.name for f in p.glob("*.model"))
    ['tokenizer.model']
    """
    import torch
    from safetensors.torch import save_file

    _check_args(family, format)
    if ps_version not in ("v1", "v2"):
        raise ConfigError(f"ps_version must be 'v1' or 'v2', got {ps_version!r}")
    if format == "native" and ps_version != "v2":
        raise ConfigError("native checkpoints always use ps_version 'v2'; use format='original' for 'v1'")
    if image_size % 28:
        raise ConfigError(f"image_size must be a multiple of 28 (patch 14, pixel shuffle 0.5), got {image_size}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    if family == "internlm2" and format == "original":
        ids = write_internlm2_tokenizer(directory)
        image_token_id, eos_id, pad_id, bos_id = ids["<IMG_CONTEXT>"], ids["<|im_end|>"], ids["</s>"], ids["<s>"]
        tokenizer = None
    else:
        tokenizer = build_bpe_tokenizer(family)
        image_token_id = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
        eos_id = tokenizer.eos_token_id
        pad_id = tokenizer.pad_token_id
        bos_id = None
    config = tiny_internvl_config(
        family,
        image_token_id=image_token_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        bos_token_id=bos_id,
        image_size=image_size,
    )
    model = random_tiny_model(config, seed)
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = pad_id
    if bos_id is not None:
        model.generation_config.bos_token_id = bos_id

    if format == "native":
        model.save_pretrained(directory)
        _save_processor(directory, tokenizer, image_size, config.image_seq_length)
        return directory

    raw = _original_config(family, config, ps_version=ps_version)
    state = to_original_state_dict(model.state_dict(), raw)
    state = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in sorted(state.items())}
    save_file(state, str(directory / "model.safetensors"), metadata={"format": "pt"})
    write_json(directory / "config.json", raw)
    generation = {"eos_token_id": eos_id, "pad_token_id": pad_id}
    if bos_id is not None:
        generation["bos_token_id"] = bos_id
    write_json(directory / "generation_config.json", generation)
    _write_preprocessor(directory, image_size, native=False)
    if tokenizer is not None:
        tokenizer.save_pretrained(directory)
    return directory


def _save_processor(directory: Path, tokenizer: Any, image_size: int, image_seq_length: int) -> None:
    from transformers import GotOcr2ImageProcessorPil, InternVLProcessor, InternVLVideoProcessor

    size = {"height": image_size, "width": image_size}
    image_processor = GotOcr2ImageProcessorPil(
        size=size,
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
        crop_to_patches=True,
        max_patches=DEFAULT_MAX_TILES,
        min_patches=1,
    )
    video_processor = InternVLVideoProcessor(size=size, image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD))
    processor = InternVLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        image_seq_length=image_seq_length,
        chat_template=HF_CHAT_TEMPLATE,
    )
    processor.save_pretrained(directory)


def _cache_root() -> Path:
    env = os.environ.get("INTERNVL_TOOLS_CACHE")
    if env:
        return Path(env).expanduser() / "tiny"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "internvl-tools" / "tiny"


def tiny_checkpoint(family: str = "qwen2", format: str = "native", seed: int = 0, **kwargs: Any) -> Path:
    """Like :func:`make_tiny_checkpoint`, but built once into a per-user cache and reused.

    The cache lives under ``$INTERNVL_TOOLS_CACHE/tiny`` (default ``~/.cache/internvl-tools/tiny``) and is keyed by
    every argument plus the package, torch and transformers versions.

    >>> path = tiny_checkpoint("qwen2", "native")   # doctest: +SKIP
    """
    import tempfile

    import torch
    import transformers

    from internvl_tools import __version__

    _check_args(family, format)
    key_source = json.dumps(
        {
            "family": family,
            "format": format,
            "seed": seed,
            **kwargs,
            "v": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "layout": 1,
        },
        sort_keys=True,
    )
    key = hashlib.sha256(key_source.encode()).hexdigest()[:16]
    target = _cache_root() / f"{family}-{format}-{seed}-{key}"
    if (target / ".complete").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build in a sibling temp dir and rename, so concurrent test workers never see a half-written checkpoint.
    staging = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    make_tiny_checkpoint(staging, family=family, format=format, seed=seed, **kwargs)
    (staging / ".complete").write_text("ok\n")
    try:
        staging.rename(target)
    except OSError:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        if not (target / ".complete").is_file():
            raise
    return target
