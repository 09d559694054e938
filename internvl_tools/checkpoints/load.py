"""Load InternVL checkpoints of every generation on transformers' native InternVL architecture, without remote code.

Native checkpoints (``InternVLForConditionalGeneration``: InternVL3 ``-hf``, InternVL3.5 ``-HF``) load as they are.
Original-format checkpoints (``architectures: ["InternVLChatModel"]``: InternVL-Chat-V1-2 .. InternVL3.5) are mapped
at load time, without remote code, onto the native classes:

* vision encoder: fused ``attn.qkv`` split into thirds, ``ls1/ls2`` -> ``lambda_1/2``, ``norm1/2`` ->
  ``layernorm_before/after`` (LayerNorm for the 300M encoder, RMSNorm + qk-norm for the 6B one);
* projector: ``mlp1.0/1/3`` -> ``layer_norm`` / ``linear_1`` / ``linear_2``;
* language model: Qwen2, Llama and Phi-3 (fused ``qkv_proj``/``gate_up_proj``, longrope) one to one; InternLM2's
  grouped ``wqkv`` split per key-value head onto a Llama model; InternVL3.5's Qwen3 and GPT-OSS one to one, and
  Qwen3-MoE with its per-expert linears stacked (:mod:`internvl_tools.checkpoints.families`);
* ``ps_version "v1"`` (transposed pixel shuffle): the loaded model instance gets a pixel shuffle that transposes the
  token grid back (:func:`apply_pixel_shuffle_v1`).

The image-context token id is read from the checkpoint's tokenizer. The mappings themselves are in
:mod:`internvl_tools.checkpoints.weights`; what the checkpoint is (:class:`CheckpointInfo`) is read by
:mod:`internvl_tools.checkpoints.config`. This module owns finding, reading and assembling the files.

>>> import tempfile
>>> from internvl_tools.testing import make_tiny_checkpoint
>>> type(load_tokenizer(make_tiny_checkpoint(tempfile.mkdtemp(), "internlm2", "original"))).__name__
'InternLM2Tokenizer'
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from internvl_tools.checkpoints.config import CheckpointInfo, read_checkpoint_info
from internvl_tools.checkpoints.device import attn_for_language_model, balanced_device_map
from internvl_tools.checkpoints.weights import (
    apply_pixel_shuffle_v1,
    convert_original_state_dict,
    native_config_from_original,
)
from internvl_tools.constants import DEFAULT_MODEL, IMG_CONTEXT_TOKEN
from internvl_tools.errors import ConfigError, ModelLoadError

__all__ = ["load_model", "load_tokenizer"]

# Remote-code problems on transformers 5.x (see docs/internvl_reference.md §5).
_REMOTE_CODE_NOTES = (
    "Known problems with the checkpoints' own code on transformers 5.x: InternLM2/Phi-3-backed models fail at "
    "construction with KeyError: 'type' (their _init_rope reads rope_scaling['type']) and lack GenerationMixin "
    "('no attribute generate'); Qwen2/Llama-backed ones need a modeling file whose __init__ ends with "
    "self.post_init() (else AttributeError 'all_tied_weights_keys'); timm and einops must be installed. Loading "
    "without trust_remote_code maps the weights onto transformers' native InternVL classes instead."
)


# --- loading ----------------------------------------------------------------------------------------------------------


def _is_internlm2_tokenizer(directory: Path, info: CheckpointInfo | None) -> bool:
    config_file = directory / "tokenizer_config.json"
    if config_file.is_file():
        try:
            tok_cfg = json.loads(config_file.read_text(encoding="utf-8"))
        except ValueError:
            tok_cfg = {}
        if tok_cfg.get("tokenizer_class") == "InternLM2Tokenizer":
            return True
        if (directory / "tokenizer.json").is_file():
            return False
    return (directory / "tokenizer.model").is_file() and info is not None and info.llm_type == "internlm2"


def load_tokenizer(path: str | Path, info: CheckpointInfo | None = None) -> Any:
    """Load a checkpoint's tokenizer without remote code.

    InternLM2 sentencepiece tokenizers become :class:`~internvl_tools.checkpoints.tokenizers.InternLM2Tokenizer`
    (exact ids); everything else goes through ``AutoTokenizer`` with ``trust_remote_code=False``. Grounding tokens
    are special tokens: decode with ``skip_special_tokens=False`` to keep ``<ref>``/``<box>``.

    >>> tok = load_tokenizer("/models/InternVL2-2B")   # doctest: +SKIP
    """
    directory = Path(path)
    if _is_internlm2_tokenizer(directory, info):
        from internvl_tools.checkpoints.tokenizers import InternLM2Tokenizer

        return InternLM2Tokenizer.from_directory(directory)
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(directory), trust_remote_code=False)
    except Exception as exc:  # transformers raises many types here; keep the cause attached
        raise ModelLoadError(f"could not load the tokenizer of {directory}: {exc}") from exc


def _image_token_id(tokenizer: Any) -> int:
    token_id = tokenizer.convert_tokens_to_ids(IMG_CONTEXT_TOKEN)
    unk = getattr(tokenizer, "unk_token_id", None)
    if token_id is None or (unk is not None and token_id == unk):
        raise ModelLoadError(
            f"the checkpoint's tokenizer has no {IMG_CONTEXT_TOKEN} token; InternVL checkpoints add it with the "
            "other eight InternVL tokens. Is this a language-model-only tokenizer?"
        )
    return int(token_id)


def _resolve(path: str | Path, *, revision: str | None, local_files_only: bool, trust_remote_code: bool) -> Path:
    local = Path(path).expanduser()
    if local.is_dir():
        return local
    name = str(path)
    if local.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise ModelLoadError(f"{name!r} is neither a checkpoint directory nor a hub id like '{DEFAULT_MODEL}'.")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - huggingface_hub ships with transformers
        raise ModelLoadError("huggingface_hub is needed to download checkpoints") from exc
    patterns = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]
    if trust_remote_code:
        patterns.append("*.py")
    try:
        return Path(
            snapshot_download(name, revision=revision, local_files_only=local_files_only, allow_patterns=patterns)
        )
    except Exception as exc:
        raise ModelLoadError(
            f"could not fetch {name!r} from the Hugging Face hub ({type(exc).__name__}: {exc}). The hub may be "
            "unreachable or the files not cached: pass a local checkpoint directory, or use MODEL=tiny for a tiny "
            "random model built offline."
        ) from exc


def _read_weights(directory: Path) -> dict[str, Any]:
    import torch

    files = sorted(directory.glob("*.safetensors"))
    state: dict[str, Any] = {}
    if files:
        from safetensors.torch import load_file

        for file in files:
            state.update(load_file(str(file)))
        return state
    bins = sorted(directory.glob("pytorch_model*.bin"))
    if not bins:
        raise ModelLoadError(f"{directory} has no *.safetensors or pytorch_model*.bin weight files")
    for file in bins:
        try:
            # weights_only=True: never unpickle arbitrary objects from a downloaded file.
            state.update(torch.load(str(file), map_location="cpu", weights_only=True))
        except Exception as exc:
            raise ModelLoadError(f"could not read {file} safely (weights_only=True): {exc}") from exc
    return state


def _rebuild_meta_buffers(model: Any) -> None:
    """Recreate modules whose non-persistent buffers (rotary inv_freq) stayed on the meta device."""
    for name, module in list(model.named_modules()):
        if not any(b.is_meta for b in module.buffers(recurse=False)):
            continue
        config = getattr(module, "config", None)
        try:
            fresh = type(module)(config=config) if config is not None else type(module)()
        except Exception as exc:
            raise ModelLoadError(f"could not rebuild buffers of {name} ({type(module).__name__}): {exc}") from exc
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, fresh)


def _load_original(directory: Path, info: CheckpointInfo, tokenizer: Any, dtype: Any) -> Any:
    import torch
    from transformers import InternVLForConditionalGeneration

    config = native_config_from_original(info.raw_config, image_token_id=_image_token_id(tokenizer))
    state = convert_original_state_dict(_read_weights(directory), info.raw_config)
    with torch.device("meta"):
        model = InternVLForConditionalGeneration(config)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ModelLoadError(
            f"the mapped weights of {directory} do not fit the native model: missing {missing[:5]}"
            f"{' ...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}"
        )
    reference = model.state_dict()
    for key, tensor in state.items():
        if tuple(tensor.shape) != tuple(reference[key].shape):
            raise ModelLoadError(
                f"weight {key} of {directory} has shape {tuple(tensor.shape)}, the config implies "
                f"{tuple(reference[key].shape)}"
            )
        if tensor.is_floating_point():
            state[key] = tensor.to(dtype)
    model.load_state_dict(state, strict=True, assign=True)
    if config.tie_word_embeddings:
        # assign=True gave the head its own tensor (equal to the embedding); share it again.
        model.tie_weights()
    # Rotary inv_freq buffers are rebuilt in float32 and left there, as from_pretrained does for native models.
    _rebuild_meta_buffers(model)
    if info.ps_version == "v1":
        apply_pixel_shuffle_v1(model)
    generation_file = directory / "generation_config.json"
    if generation_file.is_file():
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig.from_pretrained(str(directory))
    return model


def load_model(
    path: str | Path,
    *,
    dtype: Any = None,
    device_map: Any = None,
    attn_implementation: str | None = None,
    quantization_config: Any = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
    local_files_only: bool = False,
) -> tuple[Any, Any, CheckpointInfo]:
    """Load any InternVL checkpoint on transformers' native architecture; return ``(model, tokenizer, info)``.

    ``path`` is a local directory or a hub id. Native checkpoints use ``from_pretrained``; original-format ones are
    built on the meta device, their weights (``*.safetensors``, or ``pytorch_model*.bin`` read with
    ``weights_only=True``) mapped and loaded strictly. ``trust_remote_code=True`` runs the checkpoint's own code.
    ``dtype`` defaults to float32.

    >>> import tempfile
    >>> from internvl_tools.testing import make_tiny_checkpoint
    >>> model, tokenizer, info = load_model(make_tiny_checkpoint(tempfile.mkdtemp(), "internlm2", "original"))
    >>> type(model).__name__
    'InternVLForConditionalGeneration'
    """
    import torch

    dtype = torch.float32 if dtype is None else dtype
    directory = _resolve(
        path, revision=revision, local_files_only=local_files_only, trust_remote_code=trust_remote_code
    )
    info = read_checkpoint_info(directory)
    attn_implementation = attn_for_language_model(attn_implementation, info.llm_type)
    if device_map == "balanced":
        if not torch.cuda.is_available():
            raise ConfigError("device_map='balanced' spreads layers over CUDA GPUs; none is available here.")
        device_map = balanced_device_map(info.num_hidden_layers, torch.cuda.device_count())
    if trust_remote_code:
        return _load_remote(directory, info, dtype=dtype, device_map=device_map)
    tokenizer = load_tokenizer(directory, info)
    if info.format == "native":
        from transformers import InternVLForConditionalGeneration

        kwargs: dict[str, Any] = {"dtype": dtype}
        if device_map is not None:
            kwargs["device_map"] = device_map
        if attn_implementation is not None:
            kwargs["attn_implementation"] = attn_implementation
        if quantization_config is not None:
            kwargs["quantization_config"] = quantization_config
        try:
            model = InternVLForConditionalGeneration.from_pretrained(str(directory), **kwargs)
        except Exception as exc:
            raise ModelLoadError(f"could not load the native InternVL checkpoint {directory}: {exc}") from exc
        return model.eval(), tokenizer, info

    if quantization_config is not None:
        raise ConfigError(
            "quantization_config is not supported for original-format InternVL checkpoints yet; use the "
            "checkpoint's native '-hf' release, or load in bfloat16/float16."
        )
    model = _load_original(directory, info, tokenizer, dtype)
    if attn_implementation is not None:
        model.set_attn_implementation(attn_implementation)
    if device_map is not None:
        if isinstance(device_map, dict):
            # Module names are the native ones (the weights were mapped), so native device maps apply as they are.
            from accelerate import dispatch_model

            try:
                return dispatch_model(model, device_map=device_map).eval(), tokenizer, info
            except (ValueError, KeyError) as exc:
                raise ConfigError(f"device_map does not fit the model's modules: {exc}") from exc
        device = device_map
        if device_map == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        model.to(device)
    return model.eval(), tokenizer, info


def _load_remote(directory: Path, info: CheckpointInfo, *, dtype: Any, device_map: Any) -> tuple[Any, Any, Any]:
    from transformers import AutoModel, AutoTokenizer

    try:
        kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": True}
        if device_map is not None:
            kwargs["device_map"] = device_map
        model = AutoModel.from_pretrained(str(directory), **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(str(directory), trust_remote_code=True, use_fast=False)
    except Exception as exc:
        raise ModelLoadError(
            f"loading {directory} with its own remote code failed ({type(exc).__name__}: {exc}). {_REMOTE_CODE_NOTES}"
        ) from exc
    return model.eval(), tokenizer, info
