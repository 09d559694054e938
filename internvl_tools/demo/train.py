"""Train the demo model from random weights on CPU: ``python -m internvl_tools.demo.train --out DIR --minutes N``.

The model is a ~4.7M-parameter transformers-native ``InternVLForConditionalGeneration`` (128-px tiles, patch 16,
16 image tokens per tile, a 4-layer Qwen2 language model) trained on the synthetic documents of
:mod:`internvl_tools.demo.synth` for three skills: transcription (single tiles and whole 2-3 tile pages with a
thumbnail), grounding (``<ref>…</ref><box>[[…]]</box>``) and chart reading (a bar's value; the chart as a table).

Inputs are built by the package's own code, exactly as the engine builds them at inference:
:func:`internvl_tools.tiling.tile_image` for pixels (dynamic tiling + thumbnail, ImageNet normalisation) and
:func:`internvl_tools.prompts.build_chat_prompt` with the ``internvl2_5`` template and the checkpoint's system
message for the prompt. The recipe (grid-snapped layouts, a byte-level BPE tokenizer with single-digit tokens, and a
training-only auxiliary loss that makes each image token predict which characters lie in its 32-px cell) follows
``docs/tiny_trained_vlm.md``. The auxiliary head is not part of the saved model.

Determinism: sample ``i`` is drawn from ``random.Random(seed * 10**7 + i)`` and the model from ``torch.manual_seed``;
the LR schedule is step-based (``--steps``); ``--minutes`` is a safety cap that stops early (the card says where).
Every ``--ckpt-minutes`` the run evaluates a small fixed held-out set and exports the best-scoring weights to
``OUT/best`` (a complete checkpoint directory), so a usable model exists whenever the run is stopped.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import time
from pathlib import Path
from typing import Any

from internvl_tools.constants import IMAGENET_MEAN, IMAGENET_STD, PROCESSOR_SPECIAL_TOKENS
from internvl_tools.demo import synth
from internvl_tools.demo.evaluate import iou, parse_box
from internvl_tools.demo.metrics import char_accuracy
from internvl_tools.demo.tasks import (
    MIXTURE,
    SYSTEM_MESSAGE,
    TABLE_QUESTION,
    TEMPLATE,
    VALUE_QUESTION,
    draw_task,
    grounding_question,
    make_example,
)
from internvl_tools.documents.blocks import LAYOUT_PROMPT
from internvl_tools.documents.tasks import CHART_PROMPT, OCR_PROMPT
from internvl_tools.grounding.prompts import GROUNDED_OCR_PROMPT
from internvl_tools.generation.text import encode_prompt
from internvl_tools.prompts.builder import ImageSlot, PromptTurn, build_chat_prompt
from internvl_tools.prompts.templates import get_template
from internvl_tools.testing.tokenizers import HF_CHAT_TEMPLATE
from internvl_tools.tiling import tile_image

IMAGE_SIZE = 128
PATCH = 16
#: Image tokens per row of a tile after InternVL's 0.5 pixel shuffle, and the square cell each token covers.
SIDE = IMAGE_SIZE // PATCH // 2
CELL = IMAGE_SIZE // SIDE
TOKENS_PER_TILE = SIDE * SIDE
MAX_TILES = synth.PAGE_MAX_TILES
AUX_WEIGHT = 20.0
SLOTS = CELL // 8  # horizontal 8-px sub-slots per cell in the character target
#: Weights of the grounding auxiliaries: each image token names the text tokens of the words it holds (scored
#: against the language model's own embeddings) and regresses their word and line boxes.
TOKEN_AUX_WEIGHT = 50.0
BOX_AUX_WEIGHT = 5.0


# --- tokenizer and model ----------------------------------------------------------------------------------------

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


# --- batches ----------------------------------------------------------------------------------------------------


def prompt_text(question: str, num_tiles: int) -> str:
    """The exact prompt the engine builds for one image of ``num_tiles`` tiles and ``question``."""
    turn = PromptTurn("user", (ImageSlot(num_tiles), question))
    return build_chat_prompt(TEMPLATE, [turn], system_message=SYSTEM_MESSAGE, tokens_per_tile=TOKENS_PER_TILE).text


def tile(sample: synth.Sample) -> Any:
    """Tile a sample's image exactly as the engine does (budget :data:`MAX_TILES`, thumbnail, ImageNet stats)."""
    return tile_image(sample.image, max_tiles=MAX_TILES, image_size=IMAGE_SIZE, mode="fast")


def _frames(sample: synth.Sample, tiled: Any) -> list[tuple[int, int, float, float]]:
    """Per tile: (column, row, x scale, y scale) from image pixels to the tile grid's pixels."""
    cols, rows = tiled.grid
    w, h = sample.image.size
    frames = [(c, r, cols * IMAGE_SIZE / w, rows * IMAGE_SIZE / h) for r in range(rows) for c in range(cols)]
    if tiled.num_tiles > cols * rows:
        frames.append((0, 0, IMAGE_SIZE / w, IMAGE_SIZE / h))  # the thumbnail: the whole image in one tile
    return frames


def _cells(box: tuple[float, float, float, float], frame: tuple[int, int, float, float]) -> dict[int, float]:
    """Image-token cells of one tile that ``box`` (image pixels) overlaps by >= 2 px each way: {token: area}."""
    c, r, sx, sy = frame
    x1, y1 = box[0] * sx - c * IMAGE_SIZE, box[1] * sy - r * IMAGE_SIZE
    x2, y2 = box[2] * sx - c * IMAGE_SIZE, box[3] * sy - r * IMAGE_SIZE
    out = {}
    for row in range(max(0, int(y1 // CELL)), min(SIDE, int(y2 // CELL) + 1)):
        for col in range(max(0, int(x1 // CELL)), min(SIDE, int(x2 // CELL) + 1)):
            dx = min(x2, (col + 1) * CELL) - max(x1, col * CELL)
            dy = min(y2, (row + 1) * CELL) - max(y1, row * CELL)
            if dx >= 2 and dy >= 2:
                out[row * SIDE + col] = dx * dy
    return out


def _groups(sample: synth.Sample) -> list[tuple[str, tuple[int, int, int, int]]]:
    """Spans whose text each covered token names: every word, and for charts each bar's column (label and value)."""
    groups = [(w.text, w.box) for w in sample.words]
    if sample.kind == "chart":
        for value, label in zip(sample.words[::2], sample.words[1::2], strict=True):
            groups.append((f"{label.text} {value.text}", synth.union([value.box, label.box])))
    return groups


def aux_targets(sample: synth.Sample, tiled: Any, token_ids: Any) -> dict[str, Any]:
    """Training-only targets per tile and image token.

    ``chars``: which characters have their centre in each 8-px slot of the token's cell; ``tokens``: the text
    tokens (``token_ids(text)``) of every word the cell overlaps (a chart's bar column also names its label and
    value); ``boxes``/``box_mask``: the 0-1 boxes of the word and the line that overlap the cell most.
    """
    import torch

    n = tiled.num_tiles
    classes = len(synth.CHARSET)
    chars = torch.zeros(n, TOKENS_PER_TILE, SLOTS * classes)
    vocab = token_ids.vocab_size
    tokens = torch.zeros(n, TOKENS_PER_TILE, vocab)
    boxes = torch.zeros(n, TOKENS_PER_TILE, 8)
    mask = torch.zeros(n, TOKENS_PER_TILE, 8)
    frames = _frames(sample, tiled)
    for t, frame in enumerate(frames):
        c, r, sx, sy = frame
        for ch, x, y in sample.chars:
            k = synth.CHARSET.find(ch)
            if k < 0:
                continue
            px, py = x * sx - c * IMAGE_SIZE, y * sy - r * IMAGE_SIZE
            if not (0 <= px < IMAGE_SIZE and 0 <= py < IMAGE_SIZE):
                continue
            token = int(py // CELL) * SIDE + int(px // CELL)
            slot = int((px % CELL) // (CELL // SLOTS))
            chars[t, token, slot * classes + k] = 1.0
        for text, box in _groups(sample):
            ids = token_ids(text)
            for token in _cells(box, frame):
                tokens[t, token, ids] = 1.0
        for offset, items in ((0, sample.words), (4, sample.line_boxes)):
            best: dict[int, float] = {}
            for item in items:
                for token, area in _cells(item.box, frame).items():
                    if area > best.get(token, 0.0):
                        best[token] = area
                        boxes[t, token, offset : offset + 4] = torch.tensor(item.box_1000) / 1000
                        mask[t, token, offset : offset + 4] = 1.0
    return {"chars": chars, "tokens": tokens, "boxes": boxes, "box_mask": mask}


class TokenIds:
    """Cached text → token ids of the demo tokenizer (the targets of the token auxiliary)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.vocab_size = len(tokenizer)
        self.cache: dict[str, list[int]] = {}

    def __call__(self, text: str) -> list[int]:
        if text not in self.cache:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            ids += self.tokenizer(" " + text, add_special_tokens=False)["input_ids"]
            self.cache[text] = sorted(set(ids))
        return self.cache[text]


def approx_tokens(sample: synth.Sample, question: str, answer: str) -> float:
    """A cheap estimate of an example's sequence length, for grouping examples of similar length."""
    w, h = sample.image.size
    tiles = min(MAX_TILES, round(w * h / IMAGE_SIZE**2)) + (w * h > IMAGE_SIZE**2)
    return tiles * TOKENS_PER_TILE + (len(question) + len(answer)) / 2.5


def collate(examples: list[tuple[synth.Sample, str, str]], tokenizer: Any, token_ids: TokenIds) -> dict[str, Any]:
    """Right-padded input ids, labels on the answer plus ``<|im_end|>``, pixels and auxiliary targets."""
    import torch

    ids_list, label_list, pixels, targets = [], [], [], []
    for sample, question, answer in examples:
        tiled = tile(sample)
        prompt_ids = encode_prompt(tokenizer, prompt_text(question, tiled.num_tiles))
        answer_ids = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids_list.append(prompt_ids + answer_ids)
        label_list.append([-100] * len(prompt_ids) + answer_ids)
        pixels.append(tiled.pixel_values)
        targets.append(aux_targets(sample, tiled, token_ids))
    width = max(len(x) for x in ids_list)
    pad = tokenizer.pad_token_id
    input_ids = torch.full((len(ids_list), width), pad, dtype=torch.long)
    labels = torch.full((len(ids_list), width), -100, dtype=torch.long)
    mask = torch.zeros((len(ids_list), width), dtype=torch.long)
    for i, (ids, lab) in enumerate(zip(ids_list, label_list, strict=True)):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(lab)] = torch.tensor(lab)
        mask[i, : len(ids)] = 1
    return {
        "input_ids": input_ids,
        "labels": labels,
        "attention_mask": mask,
        "pixel_values": torch.cat(pixels),
        **{key: torch.cat([t[key] for t in targets]) for key in targets[0]},
    }


# --- quick greedy eval (model.generate on the same inputs the engine builds) -----------------------------------


def greedy_answers(
    model: Any, tokenizer: Any, examples: list[tuple[synth.Sample, str, str]], max_new_tokens: int = 48
) -> list[str]:
    """Greedy answers for examples, batched with left padding (used for checkpoint selection)."""
    import torch

    prompts, pixels = [], []
    for sample, question, _ in examples:
        tiled = tile(sample)
        prompts.append(encode_prompt(tokenizer, prompt_text(question, tiled.num_tiles)))
        pixels.append(tiled.pixel_values)
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p)
        mask[i, width - len(p) :] = 1
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            pixel_values=torch.cat(pixels),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    return [
        tokenizer.decode([t for t in row[width:].tolist() if t not in (tokenizer.eos_token_id, tokenizer.pad_token_id)])
        for row in out
    ]


#: Generator seed of the checkpoint-selection set; the card's held-out seeds (``evaluate.HELD_OUT_SEED`` and
#: ``evaluate.UNSEEN_SEED``) are never drawn in training or selection.
SELECTION_SEED = 777_777


def line_box_hits(answer: str, sample: synth.Sample) -> tuple[int, int]:
    """(lines whose predicted box has IoU >= 0.5 with the true line box, lines) for a grounded-OCR answer.

    Predicted lines are matched to the truth in reading order by their text (the first unused equal text), so a
    right box on a wrongly read line does not count.
    """
    from internvl_tools.grounding.parser import parse_grounding

    got = parse_grounding(answer, (1000, 1000)).boxes
    used: set[int] = set()
    hits = 0
    for truth in sample.line_boxes:
        for k, box in enumerate(got):
            if k not in used and (box.label or "").strip() == truth.text:
                used.add(k)
                hits += iou(box.xyxy, truth.box_1000) >= 0.5
                break
    return hits, len(sample.line_boxes)


def quick_eval(model: Any, tokenizer: Any, seed: int = SELECTION_SEED, n: int = 24) -> dict[str, float]:
    """Char accuracy (tiles, pages), word and line grounding, exact chart values on a small fixed selection set."""
    rng = random.Random(seed)
    tiles = [make_example("ocr", rng) for _ in range(n)]
    pages = [make_example("page_ocr", rng) for _ in range(n // 3)]
    grounds = [make_example("ground", rng) for _ in range(n)]
    charts = [make_example("chart_value", rng) for _ in range(n)]
    lines = [make_example("line_ground", rng) for _ in range(n // 2)]
    model.eval()
    res = {}
    res["ocr_char"] = (
        sum(char_accuracy(a, e[2]) for a, e in zip(greedy_answers(model, tokenizer, tiles), tiles, strict=True)) / n
    )
    res["page_char"] = sum(
        char_accuracy(a, e[2]) for a, e in zip(greedy_answers(model, tokenizer, pages, 240), pages, strict=True)
    ) / len(pages)
    hits = 0
    for a, e in zip(greedy_answers(model, tokenizer, grounds, 32), grounds, strict=True):
        got, want = parse_box(a), parse_box(e[2])
        hits += got is not None and iou(got, want) >= 0.5
    res["ground_iou50"] = hits / n
    res["chart_exact"] = (
        sum(a.strip() == e[2] for a, e in zip(greedy_answers(model, tokenizer, charts, 8), charts, strict=True)) / n
    )
    found = total = 0
    for a, e in zip(greedy_answers(model, tokenizer, lines, 160), lines, strict=True):
        h, t = line_box_hits(a, e[0])
        found, total = found + h, total + t
    res["line_iou50"] = found / max(1, total)
    model.train()
    res["score"] = res["ocr_char"] + res["page_char"] + res["ground_iou50"] + res["chart_exact"] + res["line_iou50"]
    return res


# --- training ---------------------------------------------------------------------------------------------------


def train(
    out: Path,
    *,
    minutes: float,
    seed: int,
    steps: int,
    batch_size: int = 16,
    lr: float = 1e-3,
    ckpt_minutes: float = 5.0,
    threads: int = 2,
    resume: bool = False,
    token_aux_weight: float = TOKEN_AUX_WEIGHT,
    box_aux_weight: float = BOX_AUX_WEIGHT,
) -> Path:
    """Run the training; returns the directory of the best exported checkpoint (``out/best``)."""
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    from transformers import InternVLForConditionalGeneration

    model = InternVLForConditionalGeneration(build_config(tokenizer))
    classes = len(synth.CHARSET)
    hidden = model.config.text_config.hidden_size
    aux_head = torch.nn.ModuleDict(
        {"chars": torch.nn.Linear(hidden, SLOTS * classes), "boxes": torch.nn.Linear(hidden, 8)}
    )
    torch.nn.init.zeros_(aux_head["chars"].weight)
    torch.nn.init.constant_(aux_head["chars"].bias, -5.0)
    embeddings = model.get_input_embeddings()
    token_ids = TokenIds(tokenizer)
    captured: dict[str, Any] = {}
    model.model.multi_modal_projector.register_forward_hook(lambda _m, _i, o: captured.__setitem__("feat", o))
    params = list(model.parameters()) + list(aux_head.parameters())
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98)
    )
    warmup = 50

    def lr_at(step: int) -> float:
        if step < warmup:
            return lr * (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, steps - warmup))
        return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))

    start_step = 0
    state_file = out / "state.pt"
    if resume and state_file.is_file():
        state = torch.load(state_file, weights_only=False)
        model.load_state_dict(state["model"])
        aux_head.load_state_dict(state["aux"])
        opt.load_state_dict(state["opt"])
        start_step = state["step"]
    n_params = sum(p.numel() for p in model.parameters())
    meta = {
        "seed": seed,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "params": n_params,
        "mixture": dict(MIXTURE),
        "aux_weight": AUX_WEIGHT,
        "token_aux_weight": token_aux_weight,
        "box_aux_weight": box_aux_weight,
        "patch": PATCH,
        "tokens_per_tile": TOKENS_PER_TILE,
        "max_tiles": MAX_TILES,
        "vocab": len(tokenizer),
        "threads": threads,
    }
    (out / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"params {n_params:,}  vocab {len(tokenizer)}  steps {steps}  cap {minutes} min", flush=True)
    log = (out / "curves.csv").open("a", newline="")
    writer = csv.writer(log)
    if start_step == 0:
        writer.writerow(["step", "elapsed_s", "loss", "lm_loss", "aux_loss", "token_aux_loss", "box_aux_loss", "lr"])
    evlog = (out / "evals.csv").open("a", newline="")
    evwriter = csv.writer(evlog)
    if start_step == 0:
        evwriter.writerow(
            ["step", "elapsed_s", "ocr_char", "page_char", "ground_iou50", "chart_exact", "line_iou50", "score"]
        )
    best = -1.0
    if (out / "best" / "score.json").is_file():
        best = json.loads((out / "best" / "score.json").read_text())["score"]
    started = time.monotonic()
    last_ckpt = started
    bce = torch.nn.BCEWithLogitsLoss()
    model.train()
    step = start_step
    stopped_early = False

    def checkpoint(step: int) -> None:
        nonlocal best
        res = quick_eval(model, tokenizer)
        elapsed = time.monotonic() - started
        keys = ("ocr_char", "page_char", "ground_iou50", "chart_exact", "line_iou50", "score")
        evwriter.writerow([step, round(elapsed, 1), *(round(res[k], 4) for k in keys)])
        evlog.flush()
        print(f"eval step {step}: {res}", flush=True)
        torch.save(
            {"model": model.state_dict(), "aux": aux_head.state_dict(), "opt": opt.state_dict(), "step": step},
            state_file,
        )
        if res["score"] >= best:
            best = res["score"]
            save_checkpoint(model, tokenizer, out / "best")
            (out / "best" / "score.json").write_text(json.dumps({"step": step, **res}) + "\n")

    while step < steps:
        if time.monotonic() - started > minutes * 60:
            stopped_early = True
            break
        examples = []
        for i in range(batch_size):
            rng = random.Random(seed * 10**7 + step * batch_size + i)
            examples.append(make_example(draw_task(rng), rng))
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        # Two micro-batches sorted by estimated length (image tokens + text): far less padding (chart answers are
        # short, grounded pages long).
        examples.sort(key=lambda e: approx_tokens(*e))
        half = len(examples) // 2
        opt.zero_grad(set_to_none=True)
        lm_total = aux_total = token_total = box_total = 0.0
        for chunk in (examples[:half], examples[half:]):
            batch = collate(chunk, tokenizer, token_ids)
            outputs = model(
                input_ids=batch["input_ids"],
                attention_mask=batch["attention_mask"],
                pixel_values=batch["pixel_values"],
                labels=batch["labels"],
            )
            feat = captured["feat"]
            aux_loss = bce(aux_head["chars"](feat), batch["chars"])
            token_loss = bce(feat @ embeddings.weight.T, batch["tokens"])
            mask = batch["box_mask"]
            box_err = (torch.sigmoid(aux_head["boxes"](feat)) - batch["boxes"]).abs() * mask
            box_loss = box_err.sum() / mask.sum().clamp(min=1.0)
            loss = (
                outputs.loss + AUX_WEIGHT * aux_loss + token_aux_weight * token_loss + box_aux_weight * box_loss
            ) / 2
            loss.backward()
            lm_total += outputs.loss.item() / 2
            aux_total += aux_loss.item() / 2
            token_total += token_loss.item() / 2
            box_total += box_loss.item() / 2
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % 10 == 0:
            elapsed = time.monotonic() - started
            writer.writerow(
                [
                    step,
                    round(elapsed, 1),
                    round(lm_total + AUX_WEIGHT * aux_total + token_aux_weight * token_total + box_aux_weight * box_total, 4),
                    round(lm_total, 4),
                    round(aux_total, 5),
                    round(token_total, 5),
                    round(box_total, 5),
                    f"{lr_at(step):.2e}",
                ]
            )
            log.flush()
            if step % 50 == 0:
                print(
                    f"step {step} {elapsed:.0f}s lm {lm_total:.3f} aux {aux_total:.4f} tok {token_total:.5f} "
                    f"box {box_total:.4f}",
                    flush=True,
                )
        if time.monotonic() - last_ckpt > ckpt_minutes * 60:
            checkpoint(step)
            last_ckpt = time.monotonic()
    checkpoint(step)
    wall = time.monotonic() - started
    summary = {
        **meta,
        "steps_done": step,
        "stopped_early": stopped_early,
        "wall_s": round(wall, 1),
        "best": json.loads((out / "best" / "score.json").read_text()),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary), flush=True)
    return out / "best"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m internvl_tools.demo.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, type=Path, help="run directory (curves, checkpoints, best/)")
    parser.add_argument("--minutes", type=float, default=120.0, help="wall-clock cap (stops early)")
    parser.add_argument("--steps", type=int, default=9000, help="planned optimiser steps (sets the LR schedule)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--ckpt-minutes", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resume", action="store_true", help="continue from OUT/state.pt")
    parser.add_argument(
        "--token-aux", type=float, default=TOKEN_AUX_WEIGHT, help="weight of the token auxiliary (0 turns it off)"
    )
    parser.add_argument("--box-aux", type=float, default=BOX_AUX_WEIGHT, help="weight of the box auxiliary (0: off)")
    args = parser.parse_args(argv)
    train(
        args.out,
        minutes=args.minutes,
        seed=args.seed,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        ckpt_minutes=args.ckpt_minutes,
        threads=args.threads,
        resume=args.resume,
        token_aux_weight=args.token_aux,
        box_aux_weight=args.box_aux,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
