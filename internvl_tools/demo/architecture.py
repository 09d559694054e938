"""The demo model's shape, tokenizer and ``InternVLConfig``, and how a checkpoint directory is written.

128-px tiles, patch 16 and InternVL's 0.5 pixel shuffle give 16 image tokens per tile, each over a 32-px cell; a
pixel shuffle of 1.0 (:class:`Geometry`) gives 64 tokens over 16-px cells. At most :data:`MAX_TILES` tiles plus the
thumbnail. The tokenizer is byte-level BPE with the Qwen2 pre-tokenizer (single-digit
tokens) and InternVL's special tokens; the model uses transformers' native classes only.

>>> TOKENS_PER_TILE, CELL
(16, 32)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from internvl_tools.constants import IMAGENET_MEAN, IMAGENET_STD, PROCESSOR_SPECIAL_TOKENS
from internvl_tools.demo import synth
from internvl_tools.demo.tasks import SYSTEM_MESSAGE, TABLE_QUESTION, TEMPLATE, VALUE_QUESTION, grounding_question
from internvl_tools.documents.blocks import LAYOUT_PROMPT
from internvl_tools.documents.tasks import CHART_PROMPT, OCR_PROMPT
from internvl_tools.grounding.prompts import GROUNDED_OCR_PROMPT
from internvl_tools.prompts.templates import get_template
from internvl_tools.testing.tokenizers import HF_CHAT_TEMPLATE

__all__ = [
    "CELL",
    "DOWNSAMPLE",
    "EDGE_BIN",
    "GEOMETRY",
    "IMAGE_SIZE",
    "MAX_TILES",
    "PATCH",
    "SIDE",
    "SPECIALS",
    "TOKENS_PER_TILE",
    "Geometry",
    "build_config",
    "build_tokenizer",
    "save_checkpoint",
    "tokenizer_corpus",
]

IMAGE_SIZE = 128
PATCH = 16
#: InternVL's pixel-shuffle ratio (``downsample_ratio``) by default: 0.5 merges 2x2 patches into one image token.
DOWNSAMPLE = 0.5
#: Pixels per bin of the edge auxiliary's target (where inside a cell a word's box starts or ends).
EDGE_BIN = 4


@dataclass(frozen=True)
class Geometry:
    """Where a tile's image tokens sit for a pixel-shuffle ratio: ``side`` x ``side`` tokens over square cells.

    >>> [(g.tokens_per_tile, g.cell, g.slots) for g in (Geometry(0.5), Geometry(1.0))]
    [(16, 32, 4), (64, 16, 2)]
    >>> Geometry(0.25)
    Traceback (most recent call last):
    ...
    ValueError: downsample must be 0.5 (InternVL's 2x2 pixel shuffle) or 1.0 (one token per patch), not 0.25
    """

    downsample: float = DOWNSAMPLE

    def __post_init__(self) -> None:
        if self.downsample not in (0.5, 1.0):
            raise ValueError(
                "downsample must be 0.5 (InternVL's 2x2 pixel shuffle) or 1.0 (one token per patch), "
                f"not {self.downsample}"
            )

    @property
    def side(self) -> int:
        """Image tokens per row (and column) of a tile."""
        return round(IMAGE_SIZE // PATCH * self.downsample)

    @property
    def cell(self) -> int:
        """Pixels on each side of the square cell one image token covers."""
        return IMAGE_SIZE // self.side

    @property
    def tokens_per_tile(self) -> int:
        """Image tokens per tile (InternVL's ``num_image_token``)."""
        return self.side * self.side

    @property
    def slots(self) -> int:
        """Horizontal 8-px sub-slots per cell in the character auxiliary's target."""
        return self.cell // 8

    @property
    def edge_bins(self) -> int:
        """4-px bins per cell in the edge auxiliary's target (where a word's box starts or ends inside the cell).

        >>> Geometry(0.5).edge_bins, Geometry(1.0).edge_bins
        (8, 4)
        """
        return self.cell // EDGE_BIN

    @classmethod
    def of(cls, config: Any) -> Geometry:
        """The geometry of a built or loaded ``InternVLConfig``.

        >>> from types import SimpleNamespace
        >>> Geometry.of(SimpleNamespace(downsample_ratio=1.0)).tokens_per_tile
        64
        """
        return cls(float(config.downsample_ratio))


GEOMETRY = Geometry()
#: The default geometry's image tokens per row of a tile, the square cell each token covers, and tokens per tile.
SIDE = GEOMETRY.side
CELL = GEOMETRY.cell
TOKENS_PER_TILE = GEOMETRY.tokens_per_tile
MAX_TILES = synth.PAGE_MAX_TILES

QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIALS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<img>",
    "</img>",
    "<IMG_CONTEXT>",
    "<quad>",
    "</quad>",
    "<ref>",
    "</ref>",
    "<box>",
    "</box>",
    "<video>",
]


def tokenizer_corpus() -> list[str]:
    """Everything the model reads or writes: generator vocabulary, prompts, system messages, chat markup."""
    words = [*synth.WORDS, *synth.MONTHS, "Month", "Value"]
    lines = [*words, *(f"x {w}" for w in words), *(f"\n{w}" for w in words)]
    lines += [
        OCR_PROMPT,
        CHART_PROMPT,
        GROUNDED_OCR_PROMPT,
        LAYOUT_PROMPT,
        grounding_question("Total"),
        VALUE_QUESTION.format("Jan"),
        TABLE_QUESTION,
        SYSTEM_MESSAGE,
        get_template(TEMPLATE).system_message,
        "system\nuser\nassistant\n",
        "| Month | Value |\n| --- | --- |\n| Jan | 12 |",
        "[[12, 250, 400, 1000]]",
        "1,234.56 2024-03-14",
    ]
    return lines * 4


def build_tokenizer() -> Any:
    """A byte-level BPE tokenizer with the Qwen2 pre-tokenizer (single-digit tokens) and InternVL's specials."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=4000,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(tokenizer_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=dict(PROCESSOR_SPECIAL_TOKENS),
        additional_special_tokens=[t for t in SPECIALS if t not in ("<|endoftext|>", "<|im_end|>")],
        chat_template=HF_CHAT_TEMPLATE,
    )


def build_config(tokenizer: Any, geometry: Geometry = GEOMETRY) -> Any:
    """The demo model's ``InternVLConfig`` (native transformers classes only) for ``geometry``'s pixel shuffle."""
    from transformers import InternVLConfig, InternVLVisionConfig, Qwen2Config

    vision = InternVLVisionConfig(
        hidden_size=192,
        num_hidden_layers=4,
        num_attention_heads=3,
        intermediate_size=640,
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
        layer_scale_init_value=0.1,
        use_absolute_position_embeddings=True,
        norm_type="layer_norm",
    )
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    text = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=256,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    cfg = InternVLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>"),
        image_seq_length=geometry.tokens_per_tile,
        downsample_ratio=geometry.downsample,
        tie_word_embeddings=True,
    )
    cfg.system_message = SYSTEM_MESSAGE
    return cfg


def save_checkpoint(model: Any, tokenizer: Any, directory: Path) -> Path:
    """Write a complete native checkpoint directory (weights, config, tokenizer, processor) to ``directory``."""
    from transformers import GotOcr2ImageProcessorPil, InternVLProcessor, InternVLVideoProcessor

    directory.mkdir(parents=True, exist_ok=True)
    model.config.system_message = SYSTEM_MESSAGE
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(directory)
    size = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    processor = InternVLProcessor(
        image_processor=GotOcr2ImageProcessorPil(
            size=size,
            image_mean=list(IMAGENET_MEAN),
            image_std=list(IMAGENET_STD),
            crop_to_patches=True,
            max_patches=MAX_TILES,
            min_patches=1,
        ),
        tokenizer=tokenizer,
        video_processor=InternVLVideoProcessor(size=size, image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD)),
        image_seq_length=model.config.image_seq_length,
        chat_template=HF_CHAT_TEMPLATE,
    )
    processor.save_pretrained(directory)
    pre = processor.image_processor.to_dict()
    pre["processor_class"] = "InternVLProcessor"
    (directory / "preprocessor_config.json").write_text(json.dumps(pre, indent=2, sort_keys=True) + "\n")
    return directory
