"""The demo model's shape, tokenizer and ``InternVLConfig``, and how a checkpoint directory is written.

128-px tiles, patch 16 and InternVL's 0.5 pixel shuffle give 16 image tokens per tile, each over a 32-px cell; at most
:data:`MAX_TILES` tiles plus the thumbnail. The tokenizer is byte-level BPE with the Qwen2 pre-tokenizer (single-digit
tokens) and InternVL's special tokens; the model uses transformers' native classes only.

>>> TOKENS_PER_TILE, CELL
(16, 32)
"""

from __future__ import annotations

import json
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
    "IMAGE_SIZE",
    "MAX_TILES",
    "PATCH",
    "SIDE",
    "SPECIALS",
    "TOKENS_PER_TILE",
    "build_config",
    "build_tokenizer",
    "save_checkpoint",
    "tokenizer_corpus",
]

IMAGE_SIZE = 128
PATCH = 16
#: Image tokens per row of a tile after InternVL's 0.5 pixel shuffle, and the square cell each token covers.
SIDE = IMAGE_SIZE // PATCH // 2
CELL = IMAGE_SIZE // SIDE
TOKENS_PER_TILE = SIDE * SIDE
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


def build_config(tokenizer: Any) -> Any:
    """The demo model's ``InternVLConfig`` (native transformers classes only)."""
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
        image_seq_length=TOKENS_PER_TILE,
        downsample_ratio=0.5,
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
        image_seq_length=TOKENS_PER_TILE,
        chat_template=HF_CHAT_TEMPLATE,
    )
    processor.save_pretrained(directory)
    pre = processor.image_processor.to_dict()
    pre["processor_class"] = "InternVLProcessor"
    (directory / "preprocessor_config.json").write_text(json.dumps(pre, indent=2, sort_keys=True) + "\n")
    return directory
