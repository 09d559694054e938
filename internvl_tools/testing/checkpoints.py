"""Tiny random InternVL checkpoints, built offline in about a second, for tests, CI, notebooks and users.

A tiny checkpoint is a real checkpoint directory (config, tokenizer, weights) that the real loading code reads: the
native transformers layout (``InternVLForConditionalGeneration``, like ``OpenGVLab/InternVL3-1B-hf``) or the
original InternVL layout (``InternVLChatModel`` with ``llm_config``, weights under the original names, like
``OpenGVLab/InternVL2-1B``) for each language-model family: ``qwen2``, ``llama``, ``internlm2`` (fused grouped
``wqkv``, sentencepiece tokenizer), ``phi3`` (fused ``qkv_proj``, longrope scaling), and InternVL3.5's ``qwen3``,
``qwen3_moe`` (per-expert linears) and ``gpt_oss`` (sinks, sliding window, yarn, experts), like
``OpenGVLab/InternVL3_5-1B``, tied or untied. The models themselves are in :mod:`.models`. The weights are random, so
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
from typing import Any

from internvl_tools.checkpoints.weights import to_original_state_dict
from internvl_tools.constants import DEFAULT_MAX_TILES, IMAGENET_MEAN, IMAGENET_STD, PROCESSOR_SPECIAL_TOKENS
from internvl_tools.errors import ConfigError
from internvl_tools.testing.models import (
    TIEABLE,
    check_family,
    original_config,
    random_tiny_model,
    tiny_internvl_config,
)
from internvl_tools.testing.tokenizers import (
    HF_CHAT_TEMPLATE,
    build_bpe_tokenizer,
    build_hub_tokenizer,
    write_hub_tokenizer,
    write_internlm2_tokenizer,
    write_json,
)

__all__ = ["FORMATS", "make_tiny_checkpoint", "tiny_checkpoint"]

FORMATS: tuple[str, ...] = ("native", "original")


def _check_args(family: str, format: str) -> None:
    check_family(family)
    if format not in FORMATS:
        raise ConfigError(f"unknown tiny-checkpoint format {format!r}; choose 'native' or 'original'")


def _native_tokenizer(family: str) -> Any:
    """A tokenizer object for the native layout (the processor saves it with the InternVL token names)."""
    if family not in TIEABLE:
        return build_bpe_tokenizer(family)
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=build_hub_tokenizer(family),
        eos_token="<|return|>" if family == "gpt_oss" else "<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=dict(PROCESSOR_SPECIAL_TOKENS),
        chat_template=HF_CHAT_TEMPLATE,
    )


# --- writing ---------------------------------------------------------------------------------------------------------


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
    tie_word_embeddings: bool = False,
) -> Path:
    """Build a tiny random InternVL checkpoint in ``directory`` (created if needed) and return its path.

    ``format="native"`` writes the transformers layout (config, ``model.safetensors``, tokenizer with the
    InternVL special tokens and the ``-hf`` chat template, GotOcr2 preprocessor config, generation config).
    ``format="original"`` writes the ``InternVLChatModel`` layout with weights under the original names
    (``vision_model.*``, ``mlp1.*``, ``language_model.*``; InternLM2's grouped ``wqkv``, Qwen3-MoE's per-expert
    linears) and the base's own tokenizer files; ``ps_version`` "v1" gives the transposed pixel shuffle of the oldest
    checkpoints. ``tie_word_embeddings`` (``qwen3``, ``qwen3_moe``, ``gpt_oss``) ties the head to the embedding; the
    original layout then leaves ``language_model.lm_head.weight`` out, as the official ``save_pretrained`` does.
    Same arguments give byte-identical files.
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
    elif family in TIEABLE and format == "original":
        ids = write_hub_tokenizer(directory, family)
        image_token_id, pad_id, bos_id = ids["<IMG_CONTEXT>"], ids["<|endoftext|>"], None
        eos_id = ids["<|return|>" if family == "gpt_oss" else "<|im_end|>"]
        tokenizer = None
    else:
        tokenizer = _native_tokenizer(family) if format == "native" else build_bpe_tokenizer(family)
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
        tie_word_embeddings=tie_word_embeddings,
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

    raw = original_config(family, config, ps_version=ps_version)
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
