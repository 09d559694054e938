"""Device, dtype, attention and multi-GPU placement decisions (pure; no GPU needed)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from internvl_tools.checkpoints.device import (
    balanced_device_map,
    quantization_config,
    resolve_attn_implementation,
    resolve_device,
    resolve_dtype,
)
from internvl_tools.errors import ConfigError, InternVLError


def test_auto_on_cpu() -> None:
    assert resolve_device("auto") == "cpu"
    assert resolve_dtype("auto", "cpu") is torch.float32
    assert resolve_attn_implementation("auto", "cpu", torch.float32) == "sdpa"


@pytest.mark.parametrize(
    ("text", "dtype"),
    [
        ("bf16", torch.bfloat16),
        ("bfloat16", torch.bfloat16),
        ("fp16", torch.float16),
        ("float32", torch.float32),
        ("torch.float16", torch.float16),
    ],
)
def test_dtype_names(text: str, dtype: torch.dtype) -> None:
    assert resolve_dtype(text, "cpu") is dtype


@pytest.mark.parametrize("bad", ["cuda", "cuda:1", "tpu"])
def test_unavailable_or_unknown_device_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError):
        resolve_device(bad)


def test_flash_attention_refused_on_cpu_with_reason() -> None:
    with pytest.raises(ConfigError, match="flash-attn"):
        resolve_attn_implementation("flash_attention_2", "cpu", torch.float32)


def test_quantization_without_gpu_is_a_clear_error() -> None:
    assert quantization_config(None) is None
    with pytest.raises(InternVLError, match=r"(bitsandbytes|CUDA)"):
        quantization_config("4bit")
    with pytest.raises(ConfigError):
        quantization_config("3bit")


def _reference_split(num_layers: int, world_size: int) -> dict[str, int]:
    """The model cards' split_model, restated (layers beyond num_layers dropped)."""
    per = math.ceil(num_layers / (world_size - 0.5))
    counts = [per] * world_size
    counts[0] = math.ceil(per * 0.5)
    out, cnt = {}, 0
    for gpu, n in enumerate(counts):
        for _ in range(n):
            if cnt < num_layers:
                out[cnt] = gpu
            cnt += 1
    out[num_layers - 1] = 0
    return out


@pytest.mark.parametrize("gpus", range(1, 9))
@pytest.mark.parametrize("layers", [24, 28, 32, 36, 48, 60, 64, 80, 94])
def test_balanced_map_matches_the_model_card_recipe(gpus: int, layers: int) -> None:
    m = balanced_device_map(layers, gpus)
    ref = _reference_split(layers, gpus)
    for i in range(layers):
        key = f"model.language_model.layers.{i}"
        assert m[key] == ref.get(i, gpus - 1)
    for module in (
        "model.vision_tower",
        "model.multi_modal_projector",
        "model.language_model.embed_tokens",
        "model.language_model.norm",
        "lm_head",
    ):
        assert m[module] == 0
    assert not any(k.endswith(f"layers.{layers}") for k in m)


@given(layers=st.integers(1, 200), gpus=st.integers(1, 16))
def test_balanced_map_places_every_layer_on_a_real_gpu(layers: int, gpus: int) -> None:
    m = balanced_device_map(layers, gpus)
    placed = [m[f"model.language_model.layers.{i}"] for i in range(layers)]
    assert all(0 <= g < gpus for g in placed)
    assert placed[-1] == 0
    # GPU 0 carries the vision tower, so it never holds more decoder layers than any other GPU (+1 for the last).
    if gpus > 1 and layers >= 2 * gpus:
        assert placed.count(0) <= max(placed.count(g) for g in range(1, gpus)) + 1


def test_balanced_map_rejects_nonsense() -> None:
    with pytest.raises(ConfigError):
        balanced_device_map(0, 2)
    with pytest.raises(ConfigError):
        balanced_device_map(10, 0)
