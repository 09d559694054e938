"""Where and how the model runs: device, dtype, attention kernel and multi-GPU layer placement.

These are pure decisions (no weights touched), so they are unit-tested on machines without GPUs.

>>> balanced_device_map(num_layers=4, num_gpus=2)["model.language_model.layers.0"]
0
"""

from __future__ import annotations

import importlib.util
import math
from typing import Any

from internvl_tools.errors import ConfigError, DependencyMissingError

__all__ = [
    "balanced_device_map",
    "quantization_config",
    "resolve_attn_implementation",
    "resolve_device",
    "resolve_dtype",
]

_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}


def resolve_device(device: str | Any = "auto") -> str:
    """Turn ``"auto"`` into the best available device: CUDA, then Apple MPS, then CPU.

    >>> resolve_device("cpu")
    'cpu'
    """
    import torch

    if device is None or device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    text = str(device)
    kind = text.split(":", 1)[0]
    if kind not in {"cpu", "cuda", "mps", "xpu", "meta"}:
        raise ConfigError(f"Unknown device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'.")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device={device!r} was asked for but CUDA is not available here; use device='auto' or 'cpu'."
        )
    return text


def resolve_dtype(dtype: str | Any = "auto", device: str = "cpu") -> Any:
    """Turn ``"auto"`` into bf16 on CUDA with bf16 support, fp16 on MPS (or older CUDA), fp32 on CPU.

    >>> str(resolve_dtype("auto", "cpu"))
    'torch.float32'
    """
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        kind = device.split(":", 1)[0]
        if kind == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if kind == "mps":
            return torch.float16
        return torch.float32
    name = _DTYPES.get(str(dtype).lower().removeprefix("torch."))
    if name is None:
        raise ConfigError(f"Unknown dtype {dtype!r}; use 'auto', 'float32', 'bfloat16' or 'float16'.")
    return getattr(torch, name)


def resolve_attn_implementation(requested: str | None = "auto", device: str = "cpu", dtype: Any = None) -> str:
    """Pick the attention kernel: flash-attention 2 when installed and usable (CUDA, half precision), else SDPA.

    An explicit request is honoured, except ``flash_attention_2`` where it cannot run, which is refused with the
    reason.

    >>> resolve_attn_implementation("auto", "cpu")
    'sdpa'
    """
    import torch

    flash_ok = (
        device.startswith("cuda")
        and importlib.util.find_spec("flash_attn") is not None
        and dtype in (torch.float16, torch.bfloat16)
    )
    if requested in (None, "auto"):
        return "flash_attention_2" if flash_ok else "sdpa"
    if requested == "flash_attention_2" and not flash_ok:
        raise ConfigError(
            "attn_implementation='flash_attention_2' needs a CUDA device, fp16/bf16 and the flash-attn package; "
            "use attn_implementation='auto' (SDPA here) or install flash-attn on a GPU machine."
        )
    if requested not in {"sdpa", "eager", "flash_attention_2", "flex_attention"}:
        raise ConfigError(
            f"Unknown attn_implementation {requested!r}; use 'auto', 'sdpa', 'eager' or 'flash_attention_2'."
        )
    return requested


def attn_for_language_model(attn_implementation: str | None, llm_type: str) -> str | None:
    """The attention kernel a language model can run: GPT-OSS's attention sinks have no SDPA or flash-attention-2
    path in transformers 5.x, so those become ``"eager"`` (exact; docs/internvl_reference.md §9).

    >>> attn_for_language_model("sdpa", "gpt_oss"), attn_for_language_model("sdpa", "qwen3")
    ('eager', 'sdpa')
    """
    if llm_type == "gpt_oss" and attn_implementation in ("sdpa", "flash_attention_2"):
        return "eager"
    return attn_implementation


def quantization_config(quantization: str | None, compute_dtype: Any = None) -> Any:
    """A transformers ``BitsAndBytesConfig`` for ``"8bit"`` / ``"4bit"``, or None.

    The vision tower and projector stay unquantized (they are small and sensitive to rounding).
    """
    if quantization is None:
        return None
    if quantization not in {"8bit", "4bit"}:
        raise ConfigError(f"Unknown quantization {quantization!r}; use None, '8bit' or '4bit'.")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise DependencyMissingError(
            f"quantization={quantization!r} needs bitsandbytes; install it with `pip install 'internvl-tools[quant]'`."
        )
    import torch
    from transformers import BitsAndBytesConfig

    if not torch.cuda.is_available():
        raise ConfigError(
            f"quantization={quantization!r} runs through bitsandbytes on CUDA GPUs; none is available here. "
            "Load without quantization on CPU, or serve a quantized model (e.g. AWQ on LMDeploy) and use from_server."
        )
    skip = ["model.vision_tower", "model.multi_modal_projector", "lm_head"]
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_compute_dtype=compute_dtype or torch.bfloat16,
        bnb_4bit_quant_type="nf4",
        llm_int8_skip_modules=skip,
    )


def balanced_device_map(
    num_layers: int, num_gpus: int, *, prefix: str = "model.language_model", vision_prefix: str = "model"
) -> dict[str, int]:
    """Spread the language model's decoder layers over ``num_gpus`` GPUs, counting GPU 0 as half a GPU.

    GPU 0 also holds the vision tower, the projector, the embeddings, the final norm, the LM head and the last
    decoder layer (the official ``split_model`` recipe from the InternVL model cards, computed from the layer
    count instead of a table, and never naming a layer that does not exist).

    >>> m = balanced_device_map(num_layers=32, num_gpus=4)
    >>> sorted({m[f"model.language_model.layers.{i}"] for i in range(32)})
    [0, 1, 2, 3]
    """
    if num_layers < 1:
        raise ConfigError(f"num_layers must be >= 1, got {num_layers}.")
    if num_gpus < 1:
        raise ConfigError(f"balanced device map needs at least one GPU, got num_gpus={num_gpus}.")
    per_gpu = math.ceil(num_layers / (num_gpus - 0.5))
    counts = [per_gpu] * num_gpus
    counts[0] = math.ceil(per_gpu * 0.5)
    device_map: dict[str, int] = {}
    layer = 0
    for gpu, count in enumerate(counts):
        for _ in range(count):
            if layer >= num_layers:
                break
            device_map[f"{prefix}.layers.{layer}"] = gpu
            layer += 1
    # ceil() can leave layers unassigned when num_gpus is large relative to num_layers: give them to the last GPU.
    while layer < num_layers:
        device_map[f"{prefix}.layers.{layer}"] = num_gpus - 1
        layer += 1
    device_map[f"{vision_prefix}.vision_tower"] = 0
    device_map[f"{vision_prefix}.multi_modal_projector"] = 0
    device_map[f"{prefix}.embed_tokens"] = 0
    device_map[f"{prefix}.norm"] = 0
    device_map[f"{prefix}.rotary_emb"] = 0
    device_map["lm_head"] = 0
    device_map[f"{prefix}.layers.{num_layers - 1}"] = 0
    return device_map
