"""Checkpoint selection during training: greedy answers on a small fixed set drawn from :data:`SELECTION_SEED`.

>>> SELECTION_SEED
777777
"""

from __future__ import annotations

import random
from typing import Any

from internvl_tools.demo import synth
from internvl_tools.demo.batches import prompt_text, tile
from internvl_tools.demo.evaluate import iou, line_box_hits, parse_box
from internvl_tools.demo.metrics import char_accuracy
from internvl_tools.demo.tasks import make_example
from internvl_tools.generation.text import encode_prompt

__all__ = ["SELECTION_SEED", "greedy_answers", "quick_eval"]


def greedy_answers(
    model: Any, tokenizer: Any, examples: list[tuple[synth.Sample, str, str]], max_new_tokens: int = 48
) -> list[str]:
    """Greedy answers for examples, batched with left padding (used for checkpoint selection)."""
    import torch

    prompts, pixels = [], []
    for sample, question, _ in examples:
        tiled = tile(sample)
        prompts.append(encode_prompt(tokenizer, prompt_text(question, tiled.num_tiles, model.config.image_seq_length)))
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
