"""What a checkpoint is and how it would run here, read from its config files alone (no weights load).

For a hub id only the JSON configs are fetched (or read from the Hugging Face cache); ``demo`` and ``tiny`` resolve
to the package's own checkpoints.

>>> summary = describe_checkpoint("tiny", device="cpu")
>>> summary["format"], summary["weights_loaded"]
('native', False)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from internvl_tools.checkpoints.config import detect_family, read_checkpoint_info
from internvl_tools.checkpoints.device import (
    attn_for_language_model,
    resolve_attn_implementation,
    resolve_device,
    resolve_dtype,
)
from internvl_tools.constants import DEFAULT_MODEL, MAX_TILES_LIMIT
from internvl_tools.engines.registry import resolve_model_source
from internvl_tools.errors import ConfigError, DependencyMissingError, ModelLoadError

__all__ = ["config_directory", "describe_checkpoint"]


def config_directory(name: str) -> Path:
    """A local directory holding the checkpoint's config files; for a hub id only the JSON configs are fetched."""
    local = Path(resolve_model_source(name)).expanduser()
    if local.is_dir():
        return local
    if local.exists() or name.startswith((".", "/", "~")) or name.count("/") != 1:
        raise ModelLoadError(f"{name!r} is neither a checkpoint directory nor a hub id like '{DEFAULT_MODEL}'.")
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as exc:  # pragma: no cover - ships with transformers
        raise DependencyMissingError(
            "huggingface_hub is needed to read hub checkpoints: pip install huggingface_hub"
        ) from exc
    try:
        config = Path(hf_hub_download(name, "config.json"))
    except Exception as exc:
        raise ModelLoadError(
            f"could not get config.json of {name!r} from the Hugging Face hub or its cache ({type(exc).__name__}). "
            "Check the name, or pass a local checkpoint directory, or 'tiny' for the offline test model."
        ) from exc
    for extra in ("preprocessor_config.json", "processor_config.json"):
        try:
            hf_hub_download(name, extra)
        except Exception:  # optional files; the defaults apply without them
            continue
    return config.parent


def describe_checkpoint(
    name: str, *, device: str = "auto", dtype: str = "auto", max_tiles: int | None = None
) -> dict[str, Any]:
    """Format, family, template, tiling and context of ``name``, and the device/dtype/attention it would get here."""
    if max_tiles is not None and not 1 <= max_tiles <= MAX_TILES_LIMIT:
        raise ConfigError(f"max_tiles must be between 1 and {MAX_TILES_LIMIT}, got {max_tiles}.")
    resolved_device = resolve_device(device)
    resolved_dtype = resolve_dtype(dtype, resolved_device)
    directory = config_directory(name)
    info = read_checkpoint_info(directory)
    family = detect_family(info.raw_config, model_id=name)
    tiles = (max_tiles or info.max_dynamic_patch) if info.dynamic_image_size else 1
    thumbnail = info.use_thumbnail and tiles > 1
    return {
        "model": name,
        "path": str(directory),
        "format": info.format,
        "family": family.generation,
        "llm_type": info.llm_type,
        "template": info.template,
        "system_message": info.system_message,
        "image_size": info.image_size,
        "tokens_per_tile": info.tokens_per_tile,
        "dynamic_tiling": info.dynamic_image_size,
        "min_tiles": info.min_dynamic_patch,
        "max_tiles": tiles,
        "thumbnail": info.use_thumbnail,
        "max_image_tokens": info.tokens_per_tile * (tiles + (1 if thumbnail else 0)),
        "context_length": info.context_length,
        "device": resolved_device,
        "dtype": str(resolved_dtype).removeprefix("torch."),
        "attn_implementation": attn_for_language_model(
            resolve_attn_implementation("auto", resolved_device, resolved_dtype), info.llm_type
        ),
        "weights_loaded": False,
    }
