"""Train the demo model from random weights on CPU: ``python -m internvl_tools.demo.train --out DIR --minutes N``.

The model is a ~4.7M-parameter transformers-native ``InternVLForConditionalGeneration`` (128-px tiles, patch 16,
16 image tokens per tile, a 4-layer Qwen2 language model) trained on the synthetic documents of
:mod:`internvl_tools.demo.synth` for four skills: transcription (single tiles and whole pages of up to 6 tiles with a
thumbnail), grounding (``<ref>…</ref><box>[[…]]</box>``), line-level grounded OCR (one ``<ref>line</ref><box>``
per line, in reading order) and chart reading (a bar's value; the chart as a table).

Inputs are built by the package's own code, exactly as the engine builds them at inference:
:func:`internvl_tools.tiling.tile_image` for pixels (dynamic tiling + thumbnail, ImageNet normalisation) and
:func:`internvl_tools.prompts.build_chat_prompt` with the ``internvl2_5`` template and the checkpoint's system
message for the prompt. The recipe (grid-snapped layouts, a byte-level BPE tokenizer with single-digit tokens, and a
training-only auxiliary losses: each image token predicts which characters lie in its 32-px cell, names the text
tokens of the words it overlaps (scored against the language model's own embeddings) and regresses their word and
line boxes) follows ``docs/tiny_trained_vlm.md``. Two more act on the language model
(:mod:`~internvl_tools.demo.losses`): one attention head is taught where a located answer part should look, and the
hidden state after that layer regresses the box being written; ``--look-first`` and ``--carry-first`` weigh each
box's first query more, the one that has only the image to go on; ``--place-aux`` has each image token name its
tile's index at that layer's input. The auxiliary heads are not part of the saved
model. The model's shape lives in :mod:`~internvl_tools.demo.architecture`, batches and targets in
:mod:`~internvl_tools.demo.batches`, checkpoint selection in :mod:`~internvl_tools.demo.selection`.

``--init DIR`` starts from an earlier demo checkpoint instead of random weights
(:func:`~internvl_tools.demo.warm_start.warm_start`); ``--until`` ends a segment at a step, and ``--resume``
continues it on the same schedule. ``--downsample 1.0`` drops the pixel
shuffle: 64 image tokens per tile over 16-px cells instead of 16 over 32-px cells (a 0.5 checkpoint given to
``--init`` has its projector folded: :func:`~internvl_tools.demo.warm_start.fold_projector`).

The command re-executes itself on jemalloc when the machine has it (``--allocator``,
:mod:`~internvl_tools.demo.allocator`): on glibc's malloc steps slow down as a run goes on.

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
import os
import random
import sys
import time
from pathlib import Path
from typing import Any, Literal

from internvl_tools.demo import synth
from internvl_tools.demo.allocator import ALLOCATORS, AllocatorNotFound, in_use, plan
from internvl_tools.demo.architecture import (
    DOWNSAMPLE,
    MAX_TILES,
    PATCH,
    Geometry,
    build_config,
    build_tokenizer,
    save_checkpoint,
)
from internvl_tools.demo.batches import BOX_FRAMES, TokenIds, approx_tokens, collate
from internvl_tools.demo.losses import (
    CARRY_WEIGHT,
    LOOK_HEAD,
    LOOK_LAYER,
    LOOK_WEIGHT,
    PLACE_AUX_WEIGHT,
    carry_loss,
    look_loss,
    place_loss,
)
from internvl_tools.demo.selection import quick_eval
from internvl_tools.demo.tasks import MIXTURE, draw_task, make_example, mixture_with
from internvl_tools.demo.warm_start import warm_start

__all__ = [
    "AUX_WEIGHT",
    "BOX_AUX_WEIGHT",
    "EDGE_AUX_WEIGHT",
    "TOKEN_AUX_WEIGHT",
    "main",
    "train",
]

AUX_WEIGHT = 20.0
#: Weights of the grounding auxiliaries: each image token names the text tokens of the words it holds (scored
#: against the language model's own embeddings) and regresses their word and line boxes.
TOKEN_AUX_WEIGHT = 50.0
BOX_AUX_WEIGHT = 5.0
#: The edge auxiliary (off by default): each image token names the 4-px bins of its cell where a word's box starts or
#: ends (:func:`~internvl_tools.demo.batches.aux_targets`), so a word that starts inside a cell can be placed.
EDGE_AUX_WEIGHT = 0.0


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
    look_weight: float = LOOK_WEIGHT,
    look_first: float = 0.0,
    carry_weight: float = CARRY_WEIGHT,
    carry_first: float = 0.0,
    edge_aux_weight: float = EDGE_AUX_WEIGHT,
    place_aux_weight: float = PLACE_AUX_WEIGHT,
    box_frame: Literal["image", "tile"] = "image",
    mixture: tuple[tuple[str, float], ...] = MIXTURE,
    micro_batches: int = 4,
    bf16: bool = True,
    until: int | None = None,
    init: Path | None = None,
    downsample: float = DOWNSAMPLE,
) -> Path:
    """Run the training; returns the directory of the best exported checkpoint (``out/best``).

    ``downsample`` is the pixel-shuffle ratio (:class:`~internvl_tools.demo.architecture.Geometry`); warm-starting
    a 1.0 model from a 0.5 checkpoint folds its projector (:func:`~internvl_tools.demo.warm_start.fold_projector`).
    """
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    from transformers import InternVLForConditionalGeneration

    geometry = Geometry(downsample)
    model = InternVLForConditionalGeneration(build_config(tokenizer, geometry))
    if init is not None and not resume:
        print("warm start from", init, warm_start(model, tokenizer, init), flush=True)
    classes = len(synth.CHARSET)
    hidden = model.config.text_config.hidden_size
    aux_head = torch.nn.ModuleDict(
        {
            "chars": torch.nn.Linear(hidden, geometry.slots * classes),
            "boxes": torch.nn.Linear(hidden, 8),
            "carry": torch.nn.Linear(hidden, 4),
        }
    )
    torch.nn.init.zeros_(aux_head["chars"].weight)
    torch.nn.init.constant_(aux_head["chars"].bias, -5.0)
    if edge_aux_weight:
        # Only when used, so the states of runs without it (``--resume``) load unchanged.
        aux_head["edges"] = torch.nn.Linear(hidden, 2 * geometry.edge_bins)
        torch.nn.init.zeros_(aux_head["edges"].weight)
        torch.nn.init.constant_(aux_head["edges"].bias, -3.0)
    if place_aux_weight:
        aux_head["place"] = torch.nn.Linear(hidden, MAX_TILES + 1)  # the tiles and the thumbnail
    image_id = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    embeddings = model.get_input_embeddings()
    token_ids = TokenIds(tokenizer)
    captured: dict[str, Any] = {}
    model.model.multi_modal_projector.register_forward_hook(lambda _m, _i, o: captured.__setitem__("feat", o))
    look_attention = model.model.language_model.layers[LOOK_LAYER].self_attn
    look_attention.register_forward_pre_hook(
        lambda _m, _a, kwargs: captured.update(look_in=(kwargs["hidden_states"], kwargs["position_embeddings"])),
        with_kwargs=True,
    )
    model.model.language_model.layers[LOOK_LAYER].register_forward_hook(
        lambda _m, _i, o: captured.__setitem__("carried", o[0] if isinstance(o, tuple) else o)
    )
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
        "mixture": dict(mixture),
        "aux_weight": AUX_WEIGHT,
        "token_aux_weight": token_aux_weight,
        "box_aux_weight": box_aux_weight,
        "carry_weight": carry_weight,
        "carry_first": carry_first,
        "edge_aux_weight": edge_aux_weight,
        "place_aux_weight": place_aux_weight,
        "box_frame": box_frame,
        "look_weight": look_weight,
        "look_first": look_first,
        "look_layer_head": [LOOK_LAYER, LOOK_HEAD],
        "patch": PATCH,
        "downsample": geometry.downsample,
        "tokens_per_tile": geometry.tokens_per_tile,
        "max_tiles": MAX_TILES,
        "vocab": len(tokenizer),
        "threads": threads,
        "micro_batches": micro_batches,
        "bf16_autocast": bf16,
        "init": None if init is None else str(init),
        "allocator": in_use(os.environ),
    }
    (out / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"params {n_params:,}  vocab {len(tokenizer)}  steps {steps}  cap {minutes} min", flush=True)
    log = (out / "curves.csv").open("a", newline="")
    writer = csv.writer(log)
    if start_step == 0:
        writer.writerow(
            [
                "step",
                "elapsed_s",
                "loss",
                "lm_loss",
                "aux_loss",
                "token_aux_loss",
                "box_aux_loss",
                "lr",
                "look_loss",
                "carry_loss",
                "edge_aux_loss",
                "place_loss",
            ]
        )
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

    last = steps if until is None else min(steps, until)
    while step < last:
        if time.monotonic() - started > minutes * 60:
            stopped_early = True
            break
        examples = []
        for i in range(batch_size):
            rng = random.Random(seed * 10**7 + step * batch_size + i)
            examples.append(make_example(draw_task(rng, mixture), rng))
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        # Micro-batches of examples sorted by estimated length (image tokens + text): far less padding (chart
        # answers are short, grounded pages long).
        examples.sort(key=lambda e: approx_tokens(*e, geometry.tokens_per_tile))
        size = -(-len(examples) // micro_batches)
        chunks = [examples[i : i + size] for i in range(0, len(examples), size)]
        opt.zero_grad(set_to_none=True)
        lm_total = aux_total = token_total = box_total = look_total = carry_total = edge_total = place_total = 0.0
        for chunk in chunks:
            share = len(chunk) / len(examples)
            batch = collate(chunk, tokenizer, token_ids, geometry, box_frame)
            # bf16 autocast: about a third faster per step on this CPU (AMX); losses are computed in fp32 by
            # autocast's own policy, and the saved weights stay fp32.
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
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
                box_err = (torch.sigmoid(aux_head["boxes"](feat).float()) - batch["boxes"]).abs() * mask
                box_loss = box_err.sum() / mask.sum().clamp(min=1.0)
                edge_loss = bce(aux_head["edges"](feat), batch["edges"]) if edge_aux_weight else torch.zeros(())
            looked = (
                look_loss(look_attention, *captured["look_in"], batch["looks"], first=look_first)
                if look_weight and batch["looks"]
                else torch.zeros(())
            )
            carried = (
                carry_loss(aux_head["carry"], captured["carried"], batch["looks"], first=carry_first)
                if carry_weight and batch["looks"]
                else torch.zeros(())
            )
            placed = (
                place_loss(
                    aux_head["place"], captured["look_in"][0], batch["input_ids"] == image_id, geometry.tokens_per_tile
                )
                if place_aux_weight
                else torch.zeros(())
            )
            loss = (
                outputs.loss.float()
                + AUX_WEIGHT * aux_loss.float()
                + token_aux_weight * token_loss.float()
                + box_aux_weight * box_loss.float()
                + look_weight * looked
                + carry_weight * carried
                + edge_aux_weight * edge_loss.float()
                + place_aux_weight * placed
            ) * share
            loss.backward()
            lm_total += outputs.loss.item() * share
            aux_total += aux_loss.item() * share
            token_total += token_loss.item() * share
            box_total += box_loss.item() * share
            look_total += looked.item() * share
            carry_total += carried.item() * share
            edge_total += edge_loss.item() * share
            place_total += placed.item() * share
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % 10 == 0:
            elapsed = time.monotonic() - started
            writer.writerow(
                [
                    step,
                    round(elapsed, 1),
                    round(
                        lm_total
                        + AUX_WEIGHT * aux_total
                        + token_aux_weight * token_total
                        + box_aux_weight * box_total
                        + look_weight * look_total
                        + carry_weight * carry_total
                        + edge_aux_weight * edge_total
                        + place_aux_weight * place_total,
                        4,
                    ),
                    round(lm_total, 4),
                    round(aux_total, 5),
                    round(token_total, 5),
                    round(box_total, 5),
                    f"{lr_at(step):.2e}",
                    round(look_total, 4),
                    round(carry_total, 4),
                    round(edge_total, 5),
                    round(place_total, 4),
                ]
            )
            log.flush()
            if step % 50 == 0:
                print(
                    f"step {step} {elapsed:.0f}s lm {lm_total:.3f} aux {aux_total:.4f} tok {token_total:.5f} "
                    f"box {box_total:.4f} look {look_total:.3f} carry {carry_total:.4f} edge {edge_total:.4f} "
                    f"place {place_total:.3f}",
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
    parser.add_argument(
        "--look", type=float, default=LOOK_WEIGHT, help="weight of the attention auxiliary (0 turns it off)"
    )
    parser.add_argument(
        "--look-first",
        type=float,
        default=0.0,
        help="extra weight of each look's first query in the attention auxiliary (0: all queries alike)",
    )
    parser.add_argument(
        "--mix",
        default="",
        help="replace mixture weights, e.g. 'ground=0.2,page_line_ground=0.04' (the rest keep theirs; scaled to 1)",
    )
    parser.add_argument(
        "--carry", type=float, default=CARRY_WEIGHT, help="weight of the carry auxiliary (0 turns it off)"
    )
    parser.add_argument(
        "--carry-first",
        type=float,
        default=0.0,
        help="extra weight of each look's first query in the carry auxiliary (0: all queries alike)",
    )
    parser.add_argument(
        "--edge-aux",
        type=float,
        default=EDGE_AUX_WEIGHT,
        help="weight of the edge auxiliary: where words start and end inside each image token's cell (0: off)",
    )
    parser.add_argument(
        "--place-aux",
        type=float,
        default=PLACE_AUX_WEIGHT,
        help="weight of the place auxiliary: each image token names the index of its tile in the image (0: off)",
    )
    parser.add_argument(
        "--box-frame",
        default="image",
        choices=BOX_FRAMES,
        help="frame of the box auxiliary's targets: the whole image's (as answers are written) or each tile's own",
    )
    parser.add_argument(
        "--allocator",
        default="auto",
        choices=ALLOCATORS,
        help="malloc to train on: jemalloc keeps steps from slowing down as a run goes on (auto: jemalloc when "
        "installed; the command re-executes itself with LD_PRELOAD)",
    )
    parser.add_argument("--micro-batches", type=int, default=4, help="length-sorted micro-batches per step")
    parser.add_argument("--no-bf16", action="store_true", help="train in fp32 (default: bf16 autocast)")
    parser.add_argument(
        "--init", type=Path, default=None, help="start from this demo checkpoint's weights (vocabulary mapped by token)"
    )
    parser.add_argument(
        "--until", type=int, default=None, help="stop after this step (a segment; --resume continues the schedule)"
    )
    parser.add_argument(
        "--downsample",
        type=float,
        default=DOWNSAMPLE,
        choices=(0.5, 1.0),
        help="pixel-shuffle ratio: 0.5 gives 16 image tokens per tile over 32-px cells, 1.0 gives 64 over 16-px cells",
    )
    args = parser.parse_args(argv)
    try:
        mixture = mixture_with(args.mix)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        env = plan(args.allocator, os.environ)
    except AllocatorNotFound as exc:
        parser.error(str(exc))
    if env is not None and argv is None:  # a command, not a call from Python: start again on jemalloc
        print(f"training on jemalloc (LD_PRELOAD={env['LD_PRELOAD']})", flush=True)
        os.execve(sys.executable, [sys.executable, "-m", "internvl_tools.demo.train", *sys.argv[1:]], env)
    if env is not None and args.allocator == "jemalloc":  # a call from Python: this process's malloc is fixed
        parser.error(
            "--allocator jemalloc cannot switch the malloc of a process that is already running (a call of main() "
            f"from Python): run the command instead, start Python with LD_PRELOAD={env['LD_PRELOAD']}, "
            "or pass --allocator system"
        )
    if args.allocator == "auto" and in_use(os.environ) == "system":
        fix = "install jemalloc (apt install libjemalloc2)" if env is None else "run the command instead of main()"
        print(
            f"warning: training on glibc's malloc, whose steps slow down as a run goes on; {fix} for flat, "
            "faster steps",
            file=sys.stderr,
            flush=True,
        )
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
        look_weight=args.look,
        look_first=args.look_first,
        carry_weight=args.carry,
        carry_first=args.carry_first,
        edge_aux_weight=args.edge_aux,
        place_aux_weight=args.place_aux,
        box_frame=args.box_frame,
        mixture=mixture,
        micro_batches=args.micro_batches,
        bf16=not args.no_bf16,
        until=args.until,
        init=args.init,
        downsample=args.downsample,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
