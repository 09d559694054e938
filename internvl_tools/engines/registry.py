"""Loading checkpoints for the engine: model names the package resolves itself, and the process-wide registry
that lets every engine (and every LangChain / LlamaIndex wrapper) with the same settings share one copy of the weights.

It builds on :mod:`internvl_tools.checkpoints` (loading), :mod:`internvl_tools.generation` (the chat's special
tokens) and :mod:`internvl_tools.testing` (the ``tiny`` names).

>>> resolve_model_source("OpenGVLab/InternVL3-1B-hf")
'OpenGVLab/InternVL3-1B-hf'
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from internvl_tools.checkpoints.device import (
    quantization_config,
    resolve_attn_implementation,
    resolve_device,
    resolve_dtype,
)
from internvl_tools.checkpoints.load import load_model
from internvl_tools.errors import ModelLoadError
from internvl_tools.generation.text import chat_special_ids
from internvl_tools.prompts.templates import get_template
from internvl_tools.testing.checkpoints import tiny_checkpoint

__all__ = ["DEMO_MODEL_NAMES", "LoadedModel", "load_shared", "resolve_model_source"]


@dataclass
class LoadedModel:
    """Weights, tokenizer and facts of one loaded checkpoint, shared by every engine that asks for it."""

    model: Any
    tokenizer: Any
    info: Any
    template: Any
    device: Any
    dtype: Any
    eos_token_id: int
    pad_token_id: int
    drop_ids: frozenset[int]
    lock: threading.Lock = field(default_factory=threading.Lock)


#: Loaded checkpoints by engine settings; engines share an entry under :data:`REGISTRY_LOCK`.
REGISTRY: dict[tuple, LoadedModel] = {}
REGISTRY_LOCK = threading.Lock()


#: Names that load the demonstration model shipped inside the package (see ``internvl_tools/demo/model``).
DEMO_MODEL_NAMES = ("demo", "internvl-tools/demo")


def resolve_model_source(model: str | Path) -> str:
    """Map the package's own names to local directories; anything else is returned as given.

    ``"tiny"`` (and ``"tiny-<family>[-original]"``) → a tiny random checkpoint built offline (meaningless answers);
    ``"demo"`` / ``"internvl-tools/demo"`` → the small demonstration model trained by us on synthetic documents.
    """
    name = str(model)
    if name == "tiny" or name.startswith("tiny-"):
        family = name.split("-", 1)[1] if "-" in name else "qwen2"
        fmt = "native"
        if family.endswith("-original"):
            family, fmt = family.removesuffix("-original"), "original"
        return str(tiny_checkpoint(family=family, format=fmt))
    if name in DEMO_MODEL_NAMES:
        directory = Path(__file__).resolve().parents[1] / "demo" / "model"
        if not (directory / "config.json").is_file():
            raise ModelLoadError(
                f"The demo model is not in this installation ({directory} has no config.json); reinstall "
                "internvl-tools, or use MODEL=tiny."
            )
        return str(directory)
    return name


def load_shared(source: str, settings: Any) -> LoadedModel:
    """Load weights and tokenizer for ``source`` with the engine ``settings`` (device, dtype, ...)."""
    device = resolve_device(settings.device)
    dtype = resolve_dtype(settings.dtype, device)
    attn = resolve_attn_implementation(settings.attn_implementation, device, dtype)
    quant = quantization_config(settings.quantization, dtype)
    device_map: Any = settings.device_map  # "balanced" is computed by load_model from the resolved config
    model, tokenizer, info = load_model(
        source,
        dtype=dtype,
        device_map=device_map,
        attn_implementation=attn,
        quantization_config=quant,
        trust_remote_code=settings.trust_remote_code,
        revision=settings.revision,
        local_files_only=settings.local_files_only,
    )
    if device_map is None and quant is None:
        model.to(device)
    model.eval()
    template = get_template(settings.template_name or info.template)
    eos = tokenizer.convert_tokens_to_ids(template.stop_token)
    if eos is None or (isinstance(eos, int) and eos < 0) or eos == getattr(tokenizer, "unk_token_id", object()):
        raise ModelLoadError(
            f"The tokenizer of {settings.model_name!r} has no {template.stop_token!r} token, which template "
            f"{template.name!r} ends turns with; pass template=... matching the checkpoint."
        )
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = eos
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        info=info,
        template=template,
        device=next(model.parameters()).device,
        dtype=dtype,
        eos_token_id=int(eos),
        pad_token_id=int(pad),
        drop_ids=frozenset(chat_special_ids(tokenizer)),
    )
