"""Checkpoint reading, original -> native weight mapping, tokenizers and tiny checkpoints.

The references here are written from the original InternVL code's semantics (InternViT naive attention, InternLM2's
``rearrange(qkv, 'b q (h gs d) -> b q h gs d')``, the v1/v2 pixel shuffle), not from our mapping.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from internvl_tools.checkpoints import (
    checkpoint_format,
    convert_original_state_dict,
    detect_family,
    llm_type_of,
    load_model,
    load_tokenizer,
    merge_internlm2_wqkv,
    merge_vit_qkv,
    native_config_from_original,
    read_checkpoint_info,
    split_internlm2_wqkv,
    split_vit_qkv,
    to_original_state_dict,
)
from internvl_tools.constants import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD
from internvl_tools.errors import ConfigError, ModelLoadError
from internvl_tools.testing import (
    FAMILIES,
    TINY_VOCAB_SIZE,
    make_tiny_checkpoint,
    random_tiny_model,
    tiny_checkpoint,
    tiny_internvl_config,
)

TOKENS_PER_TILE = 4  # 56 px tiles, patch 14, pixel shuffle 0.5


@pytest.fixture(scope="module")
def original_ckpts() -> dict[str, Path]:
    return {family: tiny_checkpoint(family, "original") for family in FAMILIES}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- fused layouts ----------------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    kv=st.integers(1, 4),
    groups=st.integers(1, 4),
    head_dim=st.integers(1, 8),
    cols=st.integers(0, 5),
    seed=st.integers(0, 2**16),
)
def test_internlm2_wqkv_split_merge_round_trip(kv: int, groups: int, head_dim: int, cols: int, seed: int) -> None:
    heads = kv * groups
    rows = (heads + 2 * kv) * head_dim
    shape = (rows, cols) if cols else (rows,)  # weights and biases
    w = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    q, k, v = split_internlm2_wqkv(w, heads, kv, head_dim)
    assert q.shape[0] == heads * head_dim and k.shape[0] == v.shape[0] == kv * head_dim
    assert torch.equal(merge_internlm2_wqkv(q, k, v, heads, kv, head_dim), w)


@settings(max_examples=40, deadline=None)
@given(dim=st.integers(1, 16), cols=st.integers(0, 6), seed=st.integers(0, 2**16))
def test_vit_qkv_split_merge_round_trip(dim: int, cols: int, seed: int) -> None:
    shape = (3 * dim, cols) if cols else (3 * dim,)
    w = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    q, k, v = split_vit_qkv(w)
    assert torch.equal(q, w[:dim]) and torch.equal(k, w[dim : 2 * dim]) and torch.equal(v, w[2 * dim :])
    assert torch.equal(merge_vit_qkv(q, k, v), w)


@pytest.mark.parametrize(("heads", "kv", "head_dim"), [(4, 2, 3), (8, 8, 2), (6, 1, 4), (16, 8, 8)])
def test_internlm2_split_matches_original_attention_layout(heads: int, kv: int, head_dim: int) -> None:
    # Written from InternLM2Attention.forward: qkv = wqkv(x); rearrange to (b, q, kv_heads, 2 + groups, head_dim);
    # query = [..., :groups, :], key = [..., -2, :], value = [..., -1, :].
    groups = heads // kv
    hidden = 10
    gen = torch.Generator().manual_seed(heads * 100 + kv)
    wqkv = torch.randn((heads + 2 * kv) * head_dim, hidden, generator=gen)
    x = torch.randn(2, 5, hidden, generator=gen)
    qkv_states = (x @ wqkv.T).reshape(2, 5, kv, 2 + groups, head_dim)
    ref_q = qkv_states[..., :groups, :].reshape(2, 5, heads, head_dim)
    ref_k = qkv_states[..., -2, :]
    ref_v = qkv_states[..., -1, :]

    q, k, v = split_internlm2_wqkv(wqkv, heads, kv, head_dim)
    torch.testing.assert_close((x @ q.T).reshape(2, 5, heads, head_dim), ref_q, rtol=0, atol=1e-5)
    torch.testing.assert_close((x @ k.T).reshape(2, 5, kv, head_dim), ref_k, rtol=0, atol=1e-5)
    torch.testing.assert_close((x @ v.T).reshape(2, 5, kv, head_dim), ref_v, rtol=0, atol=1e-5)
    if groups > 1 and kv > 1:  # then a naive split by sizes would not give this layout
        naive_q = wqkv[: heads * head_dim]
        assert not torch.allclose(naive_q, q)


@pytest.mark.parametrize("family", FAMILIES)
def test_full_state_dict_round_trip_is_exact(family: str, original_ckpts: dict[str, Path]) -> None:
    raw = json.loads((original_ckpts[family] / "config.json").read_text())
    model = random_tiny_model(tiny_internvl_config(family, image_token_id=5), seed=3)
    native = model.state_dict()
    original = to_original_state_dict(native, raw)

    assert "vision_model.encoder.layers.0.attn.qkv.weight" in original
    assert "mlp1.3.weight" in original and "mlp1.0.bias" in original
    assert not any(".q_proj." in k and k.startswith("vision_model") for k in original)
    if family == "internlm2":
        assert "language_model.model.layers.1.attention.wqkv.weight" in original
        assert "language_model.output.weight" in original
        assert "language_model.model.layers.0.feed_forward.w2.weight" in original
    else:
        assert "language_model.lm_head.weight" in original
    back = convert_original_state_dict(original, raw)
    assert set(back) == set(native)
    for key, tensor in native.items():
        assert torch.equal(back[key], tensor), key


def test_unknown_original_weights_are_reported(original_ckpts: dict[str, Path]) -> None:
    raw = json.loads((original_ckpts["qwen2"] / "config.json").read_text())
    with pytest.raises(ModelLoadError, match=r"vision_model\.extra_thing"):
        convert_original_state_dict({"vision_model.extra_thing": torch.zeros(1)}, raw)


# --- logits equality: original-format checkpoint through load_model vs the native model -------------------------------


def _inputs(tokenizer, tiles: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    image = "<img>" + "<IMG_CONTEXT>" * (TOKENS_PER_TILE * tiles) + "</img>"
    prompt = f"<|im_start|>user\n{image}\nDescribe the 图片 😀 please.<|im_end|>\n<|im_start|>assistant\n"
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    pixels = torch.randn(tiles, 3, 56, 56, generator=torch.Generator().manual_seed(seed))
    return ids, pixels


@pytest.mark.parametrize("family", FAMILIES)
def test_original_checkpoint_logits_equal_native_model(family: str, original_ckpts: dict[str, Path]) -> None:
    model, tokenizer, info = load_model(original_ckpts[family])
    assert type(model).__name__ == "InternVLForConditionalGeneration"
    assert info.format == "original"
    image_id = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    assert model.config.image_token_id == image_id
    reference = random_tiny_model(
        tiny_internvl_config(family, image_token_id=image_id, vocab_size=TINY_VOCAB_SIZE), seed=0
    )
    ids, pixels = _inputs(tokenizer, tiles=3)
    assert int((ids == image_id).sum()) == 3 * TOKENS_PER_TILE
    with torch.no_grad():
        got = model(input_ids=ids, pixel_values=pixels).logits
        want = reference(input_ids=ids, pixel_values=pixels).logits
    assert got.dtype == torch.float32
    assert want.std() > 0.1  # not a degenerate all-zero comparison
    assert (got - want).abs().max().item() <= 1e-5


def test_phi3_longrope_is_carried(original_ckpts: dict[str, Path]) -> None:
    raw = json.loads((original_ckpts["phi3"] / "config.json").read_text())
    text = native_config_from_original(raw, image_token_id=5).text_config
    assert text.rope_parameters["rope_type"] == "longrope"
    assert text.rope_parameters["original_max_position_embeddings"] == 512
    assert text.rope_parameters["short_factor"] == raw["llm_config"]["rope_scaling"]["short_factor"]


def test_internlm2_dynamic_rope_and_untied_head(original_ckpts: dict[str, Path]) -> None:
    raw = json.loads((original_ckpts["internlm2"] / "config.json").read_text())
    cfg = native_config_from_original(raw, image_token_id=5)
    assert cfg.text_config.model_type == "llama"
    assert cfg.text_config.rope_parameters["rope_type"] == "dynamic"
    assert cfg.text_config.rope_parameters["factor"] == 2.0
    assert cfg.tie_word_embeddings is False and cfg.text_config.tie_word_embeddings is False
    assert cfg.vision_config.norm_type == "rms_norm" and cfg.vision_config.use_qk_norm
    assert cfg.vision_config.attention_bias is False


# --- independent InternViT + pixel shuffle + mlp1 reference, from the original weights ------------------------------


def _reference_image_features(sd: dict, raw: dict, pixels: torch.Tensor, ps_version: str, select_layer: int):
    """The original extract_feature(), written from InternVisionModel / InternVLChatModel semantics."""
    vc = raw["vision_config"]
    dim, heads, eps = vc["hidden_size"], vc["num_attention_heads"], vc["layer_norm_eps"]
    rms = vc["norm_type"] == "rms_norm"

    def norm(x, prefix):
        if rms:
            return sd[prefix + ".weight"] * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))
        return torch.nn.functional.layer_norm(x, (dim,), sd[prefix + ".weight"], sd[prefix + ".bias"], eps)

    def rms_norm(x, weight):
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    p = "vision_model."
    x = torch.nn.functional.conv2d(
        pixels,
        sd[p + "embeddings.patch_embedding.weight"],
        sd[p + "embeddings.patch_embedding.bias"],
        stride=vc["patch_size"],
    )
    b = x.shape[0]
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([sd[p + "embeddings.class_embedding"].expand(b, 1, -1), x], dim=1)
    x = x + sd[p + "embeddings.position_embedding"]
    states = [x]
    for i in range(vc["num_hidden_layers"]):
        lp = f"{p}encoder.layers.{i}."
        h = norm(x, lp + "norm1")
        qkv = h @ sd[lp + "attn.qkv.weight"].T
        if lp + "attn.qkv.bias" in sd:
            qkv = qkv + sd[lp + "attn.qkv.bias"]
        n = qkv.shape[1]
        qkv = qkv.reshape(b, n, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if vc["qk_normalization"]:
            q = rms_norm(q.transpose(1, 2).flatten(-2), sd[lp + "attn.q_norm.weight"]).view(b, n, heads, -1)
            k = rms_norm(k.transpose(1, 2).flatten(-2), sd[lp + "attn.k_norm.weight"]).view(b, n, heads, -1)
            q, k = q.transpose(1, 2), k.transpose(1, 2)
        attn = ((q * (dim // heads) ** -0.5) @ k.transpose(-2, -1)).softmax(-1)
        a = (attn @ v).transpose(1, 2).reshape(b, n, dim) @ sd[lp + "attn.proj.weight"].T + sd[lp + "attn.proj.bias"]
        x = x + a * sd[lp + "ls1"]
        h = norm(x, lp + "norm2")
        h = torch.nn.functional.gelu(h @ sd[lp + "mlp.fc1.weight"].T + sd[lp + "mlp.fc1.bias"])
        x = x + (h @ sd[lp + "mlp.fc2.weight"].T + sd[lp + "mlp.fc2.bias"]) * sd[lp + "ls2"]
        states.append(x)
    feats = (x if select_layer == -1 else states[select_layer])[:, 1:, :]
    side = int(feats.shape[1] ** 0.5)
    feats = feats.reshape(b, side, side, -1)
    # pixel_shuffle(scale 0.5) as in InternVLChatModel
    n_, w_, h_, c_ = feats.shape
    feats = feats.reshape(n_, w_, h_ // 2, c_ * 2).permute(0, 2, 1, 3).reshape(n_, h_ // 2, w_ // 2, c_ * 4)
    if ps_version != "v1":
        feats = feats.permute(0, 2, 1, 3)
    feats = feats.reshape(b, -1, feats.shape[-1])
    c4 = feats.shape[-1]
    feats = torch.nn.functional.layer_norm(feats, (c4,), sd["mlp1.0.weight"], sd["mlp1.0.bias"], 1e-5)
    feats = torch.nn.functional.gelu(feats @ sd["mlp1.1.weight"].T + sd["mlp1.1.bias"])
    return feats @ sd["mlp1.3.weight"].T + sd["mlp1.3.bias"]


def _variant(src: Path, dst: Path, **overrides) -> Path:
    shutil.copytree(src, dst)
    raw = json.loads((dst / "config.json").read_text())
    raw.update(overrides)
    (dst / "config.json").write_text(json.dumps(raw))
    return dst


@pytest.mark.parametrize(
    ("family", "ps_version", "select_layer"),
    [("qwen2", "v2", -1), ("internlm2", "v2", -1), ("qwen2", "v1", -1), ("internlm2", "v1", -1), ("llama", "v2", -2)],
)
def test_image_features_match_independent_original_reference(
    family: str, ps_version: str, select_layer: int, original_ckpts: dict[str, Path], tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    ckpt = _variant(original_ckpts[family], tmp_path / "ckpt", ps_version=ps_version, select_layer=select_layer)
    model, _, info = load_model(ckpt)
    assert info.ps_version == ps_version
    raw = json.loads((ckpt / "config.json").read_text())
    sd = load_file(str(ckpt / "model.safetensors"))
    pixels = torch.randn(2, 3, 56, 56, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        want = _reference_image_features(sd, raw, pixels, ps_version, select_layer)
        got = model.model.get_image_features(pixel_values=pixels).pooler_output
    assert got.shape == want.shape == (2, TOKENS_PER_TILE, 64)
    assert (got - want).abs().max().item() <= 1e-5
    # v1 and v2 genuinely differ (the grid is transposed), so the test can tell them apart
    other = _reference_image_features(sd, raw, pixels, "v2" if ps_version == "v1" else "v1", select_layer)
    assert (got - other).abs().max().item() > 1e-3


# --- tokenizers -------------------------------------------------------------------------------------------------------


def test_internlm2_tokenizer_ids(original_ckpts: dict[str, Path]) -> None:
    ckpt = original_ckpts["internlm2"]
    config = json.loads((ckpt / "tokenizer_config.json").read_text())
    configured = {v["content"]: int(k) for k, v in config["added_tokens_decoder"].items()}
    tok = load_tokenizer(ckpt, read_checkpoint_info(ckpt))
    assert type(tok).__name__ == "InternLM2Tokenizer"

    text = "<|im_start|>user\n<img><IMG_CONTEXT><IMG_CONTEXT></img>\nWhere is <ref>the red car</ref>?<|im_end|>"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id == 1
    assert ids[1] == configured["<|im_start|>"]
    assert ids[-1] == configured["<|im_end|>"]
    assert ids.count(configured["<IMG_CONTEXT>"]) == 2
    assert tok.convert_tokens_to_ids("<|im_end|>") == configured["<|im_end|>"]
    assert tok.convert_tokens_to_ids("<IMG_CONTEXT>") == configured["<IMG_CONTEXT>"]
    # the chat markers are renamed sentencepiece pieces, the InternVL tokens follow the sentencepiece vocabulary
    assert configured["<|im_end|>"] < tok.vocab_size <= configured["<img>"]

    assert tok.decode(ids[1:]) == text
    assert tok.decode(ids, skip_special_tokens=False).startswith("<s><|im_start|>user\n")
    kept = tok.decode(tok("<ref>cat</ref><box>[[1, 2, 3, 4]]</box>", add_special_tokens=False)["input_ids"])
    assert kept == "<ref>cat</ref><box>[[1, 2, 3, 4]]</box>"


def test_internlm2_tokenizer_round_trips_and_pads_left(original_ckpts: dict[str, Path]) -> None:
    tok = load_tokenizer(original_ckpts["internlm2"])
    for text in ["Hello world", "  two  spaces\n\ttab", "书生·万象 😀 🚗 café", "数字 12345 [[0, 0, 1000, 1000]]"]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
    tok.padding_side = "left"
    batch = tok(["hi", "a much longer sentence here"], return_tensors="pt", padding=True)
    assert batch["input_ids"].shape[0] == 2
    assert batch["attention_mask"][0, 0] == 0 and batch["input_ids"][0, 0] == tok.pad_token_id
    assert batch["input_ids"][1, 0] == tok.bos_token_id


@pytest.mark.parametrize("text", ["你好，世界！图片里有什么？", "emoji 😀🐱📄 ✅", "mixed 日本語 한국어 ß ø ünï 🎉 42"])
def test_bpe_tokenizer_round_trips_cjk_and_emoji(text: str, original_ckpts: dict[str, Path]) -> None:
    tok = load_tokenizer(original_ckpts["qwen2"])
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    with_tokens = f"<ref>{text}</ref><box>[[1, 2, 3, 4]]</box><|im_end|>"
    assert tok.decode(tok(with_tokens)["input_ids"], skip_special_tokens=False) == with_tokens


@pytest.mark.parametrize("family", FAMILIES)
def test_image_token_id_comes_from_the_tokenizer(family: str, original_ckpts: dict[str, Path]) -> None:
    ckpt = original_ckpts[family]
    tok = load_tokenizer(ckpt, read_checkpoint_info(ckpt))
    raw = json.loads((ckpt / "config.json").read_text())
    cfg = native_config_from_original(raw, image_token_id=tok.convert_tokens_to_ids("<IMG_CONTEXT>"))
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<IMG_CONTEXT>")
    with pytest.raises(ConfigError, match="image_token_id"):
        native_config_from_original(raw)


def test_native_checkpoint_loads_through_auto_classes() -> None:
    from transformers import AutoProcessor

    ckpt = tiny_checkpoint("qwen2", "native")
    model, tok, info = load_model(ckpt)
    assert info.format == "native" and info.tokens_per_tile == TOKENS_PER_TILE
    assert model.config.image_token_id == tok.convert_tokens_to_ids("<IMG_CONTEXT>")
    processor = AutoProcessor.from_pretrained(str(ckpt))
    assert processor.tokenizer.context_image_token == "<IMG_CONTEXT>"
    assert model.generation_config.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")


# --- make_tiny_checkpoint -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("family", "fmt"), [("qwen2", "native"), ("internlm2", "original"), ("phi3", "original")])
def test_make_tiny_checkpoint_is_deterministic(family: str, fmt: str, tmp_path: Path) -> None:
    start = time.perf_counter()
    a = make_tiny_checkpoint(tmp_path / "a", family=family, format=fmt, seed=1)
    elapsed = time.perf_counter() - start
    b = make_tiny_checkpoint(tmp_path / "b", family=family, format=fmt, seed=1)
    c = make_tiny_checkpoint(tmp_path / "c", family=family, format=fmt, seed=2)
    files = sorted(p.name for p in a.iterdir())
    assert files == sorted(p.name for p in b.iterdir())
    for name in files:
        assert _sha(a / name) == _sha(b / name), name
    assert _sha(a / "model.safetensors") != _sha(c / "model.safetensors")
    print(f"make_tiny_checkpoint({family}, {fmt}): {elapsed:.2f} s")
    assert elapsed < 30


def test_make_tiny_checkpoint_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="family"):
        make_tiny_checkpoint(tmp_path, family="gpt2")
    with pytest.raises(ConfigError, match="format"):
        make_tiny_checkpoint(tmp_path, format="gguf")
    with pytest.raises(ConfigError, match="v1"):
        make_tiny_checkpoint(tmp_path, format="native", ps_version="v1")


# --- read_checkpoint_info -------------------------------------------------------------------------------------------

_QWEN2_05B = {
    "architectures": ["Qwen2ForCausalLM"],
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_attention_heads": 14,
    "num_hidden_layers": 24,
    "num_key_value_heads": 2,
    "max_position_embeddings": 32768,
    "vocab_size": 151655,
    "rope_theta": 1000000.0,
    "model_type": "qwen2",
    "eos_token_id": 151645,
    "bos_token_id": 151643,
}
_VIT_300M = {
    "architectures": ["InternVisionModel"],
    "hidden_size": 1024,
    "image_size": 448,
    "patch_size": 14,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "intermediate_size": 4096,
    "norm_type": "layer_norm",
    "qk_normalization": False,
    "qkv_bias": True,
    "model_type": "intern_vit_6b",
    "layer_norm_eps": 1e-6,
}
_VIT_6B = {
    "architectures": ["InternVisionModel"],
    "hidden_size": 3200,
    "image_size": 448,
    "patch_size": 14,
    "num_hidden_layers": 45,
    "num_attention_heads": 25,
    "intermediate_size": 12800,
    "norm_type": "rms_norm",
    "qk_normalization": True,
    "qkv_bias": False,
    "model_type": "intern_vit_6b",
}
_INTERNVL2_1B = {
    "architectures": ["InternVLChatModel"],
    "model_type": "internvl_chat",
    "template": "Hermes-2",
    "downsample_ratio": 0.5,
    "dynamic_image_size": True,
    "force_image_size": 448,
    "max_dynamic_patch": 12,
    "min_dynamic_patch": 1,
    "ps_version": "v2",
    "select_layer": -1,
    "use_thumbnail": True,
    "vision_config": _VIT_300M,
    "llm_config": _QWEN2_05B,
}
_INTERNVL2_2B = {
    **_INTERNVL2_1B,
    "template": "internlm2-chat",
    "vision_config": _VIT_300M,
    "llm_config": {
        "architectures": ["InternLM2ForCausalLM"],
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_attention_heads": 16,
        "num_hidden_layers": 24,
        "num_key_value_heads": 8,
        "vocab_size": 92553,
        "max_position_embeddings": 32768,
        "rope_scaling": {"type": "dynamic", "factor": 2.0},
        "rope_theta": 1000000,
        "model_type": "internlm2",
        "bias": False,
        "pad_token_id": 2,
        "eos_token_id": 2,
        "bos_token_id": 1,
    },
}
_V1_2 = {
    "architectures": ["InternVLChatModel"],
    "model_type": "internvl_chat",
    "template": "Hermes-2",
    "downsample_ratio": 0.5,
    "force_image_size": 448,
    "select_layer": -1,
    "vision_config": _VIT_6B,
    "llm_config": {
        "architectures": ["LlamaForCausalLM"],
        "hidden_size": 7168,
        "intermediate_size": 20480,
        "num_attention_heads": 56,
        "num_hidden_layers": 60,
        "num_key_value_heads": 8,
        "vocab_size": 64000,
        "max_position_embeddings": 4096,
        "rope_theta": 5000000.0,
        "model_type": "llama",
    },
}
_MINI_4B = {
    **_INTERNVL2_1B,
    "template": "phi3-chat",
    "max_dynamic_patch": 6,
    "llm_config": {
        "architectures": ["Phi3ForCausalLM"],
        "hidden_size": 3072,
        "intermediate_size": 8192,
        "num_attention_heads": 32,
        "num_hidden_layers": 32,
        "num_key_value_heads": 32,
        "vocab_size": 32020,
        "max_position_embeddings": 131072,
        "original_max_position_embeddings": 4096,
        "rope_theta": 10000.0,
        "rope_scaling": {"type": "su", "short_factor": [1.0] * 48, "long_factor": [2.0] * 48},
        "model_type": "phi3",
        "eos_token_id": 32000,
        "pad_token_id": 32000,
        "bos_token_id": 1,
    },
}
_CLIP_PRE = {"image_mean": list(CLIP_MEAN), "image_std": list(CLIP_STD), "crop_size": 448, "size": 448}


@pytest.mark.parametrize(
    ("config", "pre", "expected"),
    [
        (
            _INTERNVL2_1B,
            None,
            dict(
                llm_type="qwen2",
                template="Hermes-2",
                tokens_per_tile=256,
                max_dynamic_patch=12,
                use_thumbnail=True,
                dynamic_image_size=True,
                ps_version="v2",
                context_length=32768,
                image_mean=IMAGENET_MEAN,
            ),
        ),
        (
            _INTERNVL2_2B,
            None,
            dict(llm_type="internlm2", template="internlm2-chat", tokens_per_tile=256, context_length=32768),
        ),
        # V1-2: one 448 tile, no dynamic tiling, CLIP statistics from its preprocessor config, class defaults
        (
            _V1_2,
            _CLIP_PRE,
            dict(
                llm_type="llama",
                template="Hermes-2",
                tokens_per_tile=256,
                dynamic_image_size=False,
                use_thumbnail=False,
                ps_version="v1",
                max_dynamic_patch=6,
                image_mean=CLIP_MEAN,
                image_std=CLIP_STD,
                context_length=4096,
            ),
        ),
        (
            _MINI_4B,
            None,
            dict(
                llm_type="phi3",
                template="phi3-chat",
                max_dynamic_patch=6,
                context_length=131072,
                image_std=IMAGENET_STD,
            ),
        ),
        (
            {**_INTERNVL2_1B, "force_image_size": 224, "system_message": "Be brief."},
            None,
            dict(image_size=224, tokens_per_tile=64, system_message="Be brief."),
        ),
    ],
    ids=["InternVL2-1B", "InternVL2-2B", "V1-2", "Mini-4B", "224-override"],
)
def test_read_checkpoint_info_realistic_configs(config: dict, pre: dict | None, expected: dict, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(config))
    if pre is not None:
        (tmp_path / "preprocessor_config.json").write_text(json.dumps(pre))
    info = read_checkpoint_info(tmp_path)
    assert info.format == "original" and info.path == tmp_path
    for key, value in expected.items():
        got = getattr(info, key)
        assert (tuple(got) if isinstance(value, tuple) else got) == value, key


@pytest.mark.parametrize("config", [_INTERNVL2_1B, _INTERNVL2_2B, _V1_2, _MINI_4B], ids=["1B", "2B", "V1-2", "4B"])
def test_native_config_from_realistic_original_configs(config: dict) -> None:
    cfg = native_config_from_original(config, image_token_id=7)
    vision = config["vision_config"]
    assert cfg.vision_config.norm_type == vision["norm_type"]
    assert cfg.vision_config.use_qk_norm == vision["qk_normalization"]
    assert cfg.vision_config.attention_bias == vision["qkv_bias"]
    assert cfg.vision_config.use_mean_pooling is True
    assert cfg.image_seq_length == 256 and cfg.downsample_ratio == 0.5
    assert cfg.text_config.hidden_size == config["llm_config"]["hidden_size"]
    assert cfg.text_config.max_position_embeddings == config["llm_config"]["max_position_embeddings"]


def test_read_checkpoint_info_on_tiny_checkpoints(original_ckpts: dict[str, Path]) -> None:
    native = read_checkpoint_info(tiny_checkpoint("qwen2", "native"))
    assert (native.format, native.llm_type, native.tokens_per_tile, native.ps_version) == ("native", "qwen2", 4, "v2")
    assert native.image_mean == IMAGENET_MEAN and native.max_dynamic_patch == 12
    expected = {
        "qwen2": ("internvl2_5", "InternVL2.5 or InternVL3"),
        "llama": ("Hermes-2", "InternVL2"),
        "internlm2": ("internlm2-chat", "InternVL-Chat-V1-5 or InternVL2"),
        "phi3": ("phi3-chat", "InternVL-Chat-V1-5 or InternVL2"),
        "qwen3": ("internvl2_5", "InternVL3.5"),
        "qwen3_moe": ("internvl2_5", "InternVL3.5"),
        "gpt_oss": ("internvl3_5_gpt_oss", "InternVL3.5"),
    }
    assert set(expected) == set(FAMILIES)
    for family, path in original_ckpts.items():
        info = read_checkpoint_info(path)
        assert (info.format, info.llm_type, info.template) == ("original", family, expected[family][0])
        assert detect_family(info.raw_config).generation == expected[family][1]
        assert info.image_size == 56 and info.tokens_per_tile == 4 and info.use_thumbnail


def test_read_checkpoint_info_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config\.json"):
        read_checkpoint_info(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    with pytest.raises(ConfigError, match="not an InternVL"):
        read_checkpoint_info(tmp_path)


def test_one_config_reader_for_format_and_language_model(tmp_path: Path) -> None:
    # llm_config.architectures names the class upstream builds; a stale model_type beside it does not win, and
    # reading the info, detecting the family and mapping the weights all see the same language model.
    config = {**_INTERNVL2_2B, "llm_config": {**_INTERNVL2_2B["llm_config"], "model_type": "llama"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    info = read_checkpoint_info(tmp_path)
    assert info.llm_type == llm_type_of(config) == detect_family(config).llm_type == "internlm2"
    assert native_config_from_original(config, image_token_id=7).text_config.model_type == "llama"  # InternLM2 → Llama
    assert checkpoint_format(config) == "original"
    assert checkpoint_format({"model_type": "internvl", "architectures": ["InternVLChatModel"]}) == "native"
    with pytest.raises(ConfigError, match="not an InternVL"):
        checkpoint_format({"model_type": "qwen2_vl"})


def test_unreachable_hub_id_gives_model_load_error() -> None:
    with pytest.raises(ModelLoadError, match="local checkpoint directory"):
        load_model("OpenGVLab/Definitely-Not-Cached-Model", local_files_only=True)


def test_unsupported_original_language_model_is_a_config_error(tmp_path: Path) -> None:
    config = {**_INTERNVL2_1B, "llm_config": {**_QWEN2_05B, "architectures": ["Gemma2ForCausalLM"]}}
    with pytest.raises(ConfigError, match="gemma2"):
        native_config_from_original(config, image_token_id=1)


@pytest.mark.parametrize("family", ["qwen2", "qwen3_moe", "gpt_oss"])
def test_device_maps_apply_to_mapped_original_checkpoints(family: str, original_ckpts: dict[str, Path]) -> None:
    """A native-named device map (the balanced recipe) places an original-format checkpoint's modules, MoE layers
    (router and stacked experts) included; on CPU every 'GPU' is the CPU, so the dispatch path runs here and the
    logits do not change."""
    import torch

    from internvl_tools.checkpoints import load_model, read_checkpoint_info
    from internvl_tools.checkpoints.device import balanced_device_map

    path = original_ckpts[family]
    info = read_checkpoint_info(path)
    assert info.num_hidden_layers == 2
    device_map = {name: "cpu" for name in balanced_device_map(info.num_hidden_layers, 2)}
    plain, tokenizer, _ = load_model(path)
    mapped, _, _ = load_model(path, device_map=device_map)
    placed = balanced_device_map(info.num_hidden_layers, 2)
    for name, _ in plain.named_parameters():  # every weight, experts and routers included, has a device
        assert any(name == m or name.startswith(m + ".") for m in placed), name
    ids = torch.tensor([tokenizer("Hello there", add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        assert torch.equal(plain(input_ids=ids).logits, mapped(input_ids=ids).logits)


def test_balanced_device_map_needs_cuda(tmp_path) -> None:
    import pytest as _pytest

    from internvl_tools.checkpoints import load_model
    from internvl_tools.errors import ConfigError
    from internvl_tools.testing import make_tiny_checkpoint

    path = make_tiny_checkpoint(tmp_path / "ckpt", "qwen2", "native")
    with _pytest.raises(ConfigError, match="CUDA"):
        load_model(path, device_map="balanced")


# --- InternVL3.5: Qwen3, Qwen3-MoE, GPT-OSS (docs/internvl_reference.md §9) -------------------------------------------

INTERNVL35 = ("qwen3", "qwen3_moe", "gpt_oss")


@pytest.fixture(scope="module")
def tied_ckpts() -> dict[str, Path]:
    return {family: tiny_checkpoint(family, "original", tie_word_embeddings=True) for family in INTERNVL35}


def _family_inputs(tokenizer, template: str, tiles: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    from internvl_tools.prompts import build_prompt

    prompt = build_prompt(template, "Describe the 图片 😀 in 12345 words.", num_patches_list=[tiles], tokens_per_tile=4)
    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    pixels = torch.randn(tiles, 3, 56, 56, generator=torch.Generator().manual_seed(7))
    return ids, pixels


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("family", INTERNVL35)
def test_internvl35_original_logits_equal_native_model(
    family: str, tied: bool, original_ckpts: dict[str, Path], tied_ckpts: dict[str, Path]
) -> None:
    from safetensors import safe_open

    ckpt = (tied_ckpts if tied else original_ckpts)[family]
    with safe_open(str(ckpt / "model.safetensors"), "pt") as f:
        names = set(f.keys())
    # the official save_pretrained leaves a tied head out of the file
    assert ("language_model.lm_head.weight" in names) is not tied
    model, tokenizer, info = load_model(ckpt)
    assert model.config.tie_word_embeddings is tied  # transformers 5 reads only the top-level flag
    head, embed = model.lm_head.weight, model.model.language_model.embed_tokens.weight
    assert (head.data_ptr() == embed.data_ptr()) is tied
    image_id = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    native_cfg = tiny_internvl_config(family, image_token_id=image_id, tie_word_embeddings=tied)
    reference = random_tiny_model(native_cfg, seed=0)
    ids, pixels = _family_inputs(tokenizer, info.template)
    if family == "gpt_oss":
        assert ids.shape[1] > 2 * native_cfg.text_config.sliding_window  # the window matters
    with torch.no_grad():
        got = model(input_ids=ids, pixel_values=pixels).logits
        want = reference(input_ids=ids, pixel_values=pixels).logits
        native = load_model(tiny_checkpoint(family, "native", tie_word_embeddings=tied))[0]
        from_native = native(input_ids=ids, pixel_values=pixels).logits
    assert want.std() > 0.5
    assert (got - want).abs().max().item() <= 1e-5
    assert (from_native - want).abs().max().item() <= 1e-5


@pytest.mark.parametrize("family", INTERNVL35)
def test_internvl35_config_traps_are_carried(family: str, original_ckpts: dict[str, Path]) -> None:
    raw = json.loads((original_ckpts[family] / "config.json").read_text())
    llm = raw["llm_config"]
    text = native_config_from_original(raw, image_token_id=5).text_config
    assert text.model_type == family
    assert text.head_dim == llm["head_dim"] == 32 != text.hidden_size // text.num_attention_heads
    if family == "gpt_oss":
        rope = text.rope_parameters
        assert rope["rope_type"] == "yarn" and rope["truncate"] is False
        assert rope["factor"] == text.max_position_embeddings / rope["original_max_position_embeddings"]
        assert text.layer_types == llm["layer_types"] == ["sliding_attention", "full_attention"]
        assert text.sliding_window == 8 and text.num_local_experts == 4 and text.num_experts_per_tok == 2
        assert (text.swiglu_alpha, text.swiglu_limit) == (1.702, 7.0)
    if family == "qwen3_moe":
        assert (text.num_experts, text.num_experts_per_tok, text.moe_intermediate_size) == (4, 2, 32)
        assert text.norm_topk_prob is True


@pytest.mark.parametrize(
    ("scaling", "max_positions", "factor", "original"),
    [
        # transformers 4.55: an original length makes the factor max / original, whatever 'factor' says
        ({"rope_type": "yarn", "factor": 8.0, "original_max_position_embeddings": 4096}, 131072, 32.0, 4096),
        # without one, the original length is max_position_embeddings and 'factor' stands
        ({"rope_type": "yarn", "factor": 8.0, "beta_fast": 32.0, "beta_slow": 1.0}, 2048, 8.0, 2048),
    ],
)
def test_gpt_oss_yarn_follows_transformers_455(scaling: dict, max_positions: int, factor: float, original: int) -> None:
    llm = {
        "architectures": ["GptOssForCausalLM"],
        "vocab_size": 64,
        "hidden_size": 64,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 32,
        "max_position_embeddings": max_positions,
        "rope_theta": 150000.0,
        "rope_scaling": {**scaling, "truncate": False},
        "num_local_experts": 4,
        "num_experts_per_tok": 2,
    }
    rope = native_config_from_original({**_INTERNVL2_1B, "llm_config": llm}, image_token_id=1).text_config
    assert rope.rope_parameters["factor"] == factor
    assert rope.rope_parameters["original_max_position_embeddings"] == original
    assert rope.rope_parameters["truncate"] is False


def test_tie_follows_the_language_model_only_for_internvl35() -> None:
    from internvl_tools.checkpoints import tied_head

    qwen3 = {**_INTERNVL2_1B, "llm_config": {**_QWEN2_05B, "architectures": ["Qwen3ForCausalLM"]}}
    qwen2 = {**_INTERNVL2_1B, "llm_config": {**_QWEN2_05B, "tie_word_embeddings": True}}
    assert tied_head({**qwen3, "llm_config": {**qwen3["llm_config"], "tie_word_embeddings": True}}) is True
    assert tied_head(qwen3) is False  # the 4.55 Qwen3Config default
    assert tied_head(qwen2) is False  # the internvl_chat config forces untied
    assert native_config_from_original(qwen2, image_token_id=1).tie_word_embeddings is False


def test_moe_experts_stack_as_the_original_per_expert_mlp() -> None:
    # Written from Qwen3MoeSparseMoeBlock in transformers 4.55: expert e computes down(silu(gate(x)) * up(x)).
    from internvl_tools.checkpoints import stack_moe_experts, unstack_moe_experts

    gen = torch.Generator().manual_seed(0)
    experts = {e: {w: torch.randn(6, 4, generator=gen) for w in ("gate", "up")} for e in range(3)}
    for e in experts:
        experts[e]["down"] = torch.randn(4, 6, generator=gen)
    gate_up, down = stack_moe_experts(experts, 3)
    x = torch.randn(5, 4, generator=gen)
    for e, w in experts.items():
        want = torch.nn.functional.silu(x @ w["gate"].T) * (x @ w["up"].T) @ w["down"].T
        g, u = torch.nn.functional.linear(x, gate_up[e]).chunk(2, dim=-1)  # transformers 5's Qwen3MoeExperts
        torch.testing.assert_close(torch.nn.functional.linear(torch.nn.functional.silu(g) * u, down[e]), want)
    back = unstack_moe_experts(gate_up, down)
    assert all(torch.equal(back[e][w], experts[e][w]) for e in experts for w in ("gate", "up", "down"))
    with pytest.raises(ConfigError, match="experts"):
        stack_moe_experts({0: experts[0]}, 3)


def test_internvl35_tokenizers_load_without_remote_code(original_ckpts: dict[str, Path]) -> None:
    qwen3 = original_ckpts["qwen3"]
    config = json.loads((qwen3 / "tokenizer_config.json").read_text())
    configured = {v["content"]: int(k) for k, v in config["added_tokens_decoder"].items()}
    assert config["tokenizer_class"] == "Qwen2Tokenizer" and "auto_map" not in config
    # Qwen3's <think>/</think> come right before InternVL's nine tokens
    assert configured["</think>"] == configured["<think>"] + 1 == configured["<img>"] - 1
    tok = load_tokenizer(qwen3)
    for token, token_id in configured.items():
        assert tok.convert_tokens_to_ids(token) == token_id
    text = "<|im_start|>user\n<img><IMG_CONTEXT></img>\n<think>图片</think><|im_end|>\n"
    ids = tok(text)["input_ids"]
    assert ids[0] == configured["<|im_start|>"] and ids.count(configured["<IMG_CONTEXT>"]) == 1
    assert tok.decode(ids) == text

    oss = load_tokenizer(original_ckpts["gpt_oss"])
    assert oss.eos_token == "<|return|>"
    ids = oss("<|start|>user<|message|>hi<|end|><|start|>assistant")["input_ids"]
    assert ids[0] == oss.convert_tokens_to_ids("<|start|>")  # no BOS
    assert oss.convert_tokens_to_ids("<IMG_CONTEXT>") == oss.convert_tokens_to_ids("<|call|>") + 3


# An independent restatement of the official forward (InternVLChatModel.forward with a transformers 4.55 Qwen3), from
# the original weights: InternViT + pixel shuffle + mlp1 (above), image embeddings in place of <IMG_CONTEXT>, then the
# Qwen3 decoder: RMSNorm, per-head q_norm/k_norm before rotary, grouped-query causal attention, SwiGLU MLP.
def _reference_qwen3_logits(sd: dict, raw: dict, ids: torch.Tensor, pixels: torch.Tensor, image_id: int, qk_norm=True):
    llm = raw["llm_config"]
    eps, heads, kv, hd = llm["rms_norm_eps"], llm["num_attention_heads"], llm["num_key_value_heads"], llm["head_dim"]
    p = "language_model.model."

    def rms(x, weight):
        return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))

    x = sd[p + "embed_tokens.weight"][ids[0]].clone()
    feats = _reference_image_features(sd, raw, pixels, raw["ps_version"], raw["select_layer"])
    x[ids[0] == image_id] = feats.reshape(-1, x.shape[-1])
    n = x.shape[0]
    inv = 1.0 / llm["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd)
    angles = torch.arange(n, dtype=torch.float32)[:, None] * inv[None, :]
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()

    def rotate(t):  # (heads, n, hd)
        half = torch.cat([-t[..., hd // 2 :], t[..., : hd // 2]], -1)
        return t * cos + half * sin

    causal = torch.full((n, n), float("-inf")).triu(1)
    for i in range(llm["num_hidden_layers"]):
        lp = f"{p}layers.{i}."
        h = rms(x, sd[lp + "input_layernorm.weight"])
        q = (h @ sd[lp + "self_attn.q_proj.weight"].T).view(n, heads, hd)
        k = (h @ sd[lp + "self_attn.k_proj.weight"].T).view(n, kv, hd)
        v = (h @ sd[lp + "self_attn.v_proj.weight"].T).view(n, kv, hd)
        if qk_norm:
            q, k = rms(q, sd[lp + "self_attn.q_norm.weight"]), rms(k, sd[lp + "self_attn.k_norm.weight"])
        q = rotate(q.transpose(0, 1))
        k = rotate(k.transpose(0, 1)).repeat_interleave(heads // kv, 0)
        v = v.transpose(0, 1).repeat_interleave(heads // kv, 0)
        attn = ((q @ k.transpose(-1, -2)) * hd**-0.5 + causal).softmax(-1)
        x = x + (attn @ v).transpose(0, 1).reshape(n, heads * hd) @ sd[lp + "self_attn.o_proj.weight"].T
        h = rms(x, sd[lp + "post_attention_layernorm.weight"])
        gate = torch.nn.functional.silu(h @ sd[lp + "mlp.gate_proj.weight"].T)
        x = x + (gate * (h @ sd[lp + "mlp.up_proj.weight"].T)) @ sd[lp + "mlp.down_proj.weight"].T
    head = sd.get("language_model.lm_head.weight", sd[p + "embed_tokens.weight"])  # tied: the embedding
    return rms(x, sd[p + "norm.weight"]) @ head.T


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_qwen3_logits_match_independent_official_reference(
    tied: bool, original_ckpts: dict[str, Path], tied_ckpts: dict[str, Path]
) -> None:
    from safetensors.torch import load_file

    ckpt = (tied_ckpts if tied else original_ckpts)["qwen3"]
    model, tokenizer, info = load_model(ckpt)
    raw = info.raw_config
    sd = load_file(str(ckpt / "model.safetensors"))
    ids, pixels = _family_inputs(tokenizer, info.template, tiles=2)
    image_id = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    with torch.no_grad():
        got = model(input_ids=ids, pixel_values=pixels).logits[0]
        want = _reference_qwen3_logits(sd, raw, ids, pixels, image_id)
    assert want.std() > 0.5
    assert (got - want).abs().max().item() <= 1e-4
    # the reference can tell: leaving out q_norm/k_norm (a trap of §9) moves the logits far beyond the tolerance
    without = _reference_qwen3_logits(sd, raw, ids, pixels, image_id, qk_norm=False)
    assert (got - without).abs().max().item() > 1e-2
