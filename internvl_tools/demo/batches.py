"""Training batches of the demo model: the exact engine inputs (tiles, prompt) plus the training-only targets.

Inputs are built by the package's own code, exactly as the engine builds them at inference:
:func:`internvl_tools.tiling.tile_image` for pixels and :func:`internvl_tools.prompts.build_chat_prompt` with the
``internvl2_5`` template and the checkpoint's system message. The auxiliary targets (:func:`aux_targets`) are what
each image token should know: the characters in its cell, the text tokens of the words it overlaps, and the boxes
of that word and line.

>>> import random
>>> from internvl_tools.demo.tasks import make_example
>>> sample, question, answer = make_example("line_ground", random.Random(0))
>>> approx_tokens(sample, question, answer) > TOKENS_PER_TILE
True
"""

from __future__ import annotations

import re
from typing import Any, Literal

from internvl_tools.demo import synth
from internvl_tools.demo.architecture import EDGE_BIN, GEOMETRY, IMAGE_SIZE, MAX_TILES, TOKENS_PER_TILE, Geometry
from internvl_tools.demo.tasks import SYSTEM_MESSAGE, TEMPLATE, grounding_question
from internvl_tools.generation.text import encode_prompt
from internvl_tools.prompts.builder import ImageSlot, PromptTurn, build_chat_prompt
from internvl_tools.tiling import tile_image

__all__ = [
    "BOX_FRAMES",
    "TokenIds",
    "approx_tokens",
    "aux_targets",
    "collate",
    "look_spans",
    "look_targets",
    "prompt_text",
    "tile",
    "tile_box",
    "tile_frames",
    "tile_pixels",
]

#: Frames the box auxiliary's targets can be given in (:func:`aux_targets`, ``--box-frame``).
BOX_FRAMES = ("image", "tile")


def prompt_text(question: str, num_tiles: int, tokens_per_tile: int = TOKENS_PER_TILE) -> str:
    """The exact prompt the engine builds for one image of ``num_tiles`` tiles and ``question``."""
    turn = PromptTurn("user", (ImageSlot(num_tiles), question))
    return build_chat_prompt(TEMPLATE, [turn], system_message=SYSTEM_MESSAGE, tokens_per_tile=tokens_per_tile).text


def tile(sample: synth.Sample) -> Any:
    """Tile a sample's image exactly as the engine does (budget :data:`MAX_TILES`, thumbnail, ImageNet stats)."""
    return tile_image(sample.image, max_tiles=MAX_TILES, image_size=IMAGE_SIZE, mode="fast")


def tile_frames(sample: synth.Sample, tiled: Any) -> list[tuple[int, int, float, float]]:
    """Per tile: (column, row, x scale, y scale) from image pixels to the tile grid's pixels (the thumbnail last).

    >>> import random
    >>> sample = synth.page(random.Random(0), tiles_wide=2, tiles_tall=1)
    >>> [frame[:2] for frame in tile_frames(sample, tile(sample))]
    [(0, 0), (1, 0), (0, 0)]
    """
    cols, rows = tiled.grid
    w, h = sample.image.size
    frames = [(c, r, cols * IMAGE_SIZE / w, rows * IMAGE_SIZE / h) for r in range(rows) for c in range(cols)]
    if tiled.num_tiles > cols * rows:
        frames.append((0, 0, IMAGE_SIZE / w, IMAGE_SIZE / h))  # the thumbnail: the whole image in one tile
    return frames


def tile_pixels(
    box: tuple[float, float, float, float], frame: tuple[int, int, float, float]
) -> tuple[float, float, float, float]:
    """``box`` (image pixels) in the pixels of one tile of the grid (:func:`tile_frames`), unclipped.

    >>> tile_pixels((130, 10, 160, 22), (1, 0, 1.0, 1.0))  # the second tile of a page two tiles wide
    (2.0, 10.0, 32.0, 22.0)
    """
    c, r, sx, sy = frame
    return (
        box[0] * sx - c * IMAGE_SIZE,
        box[1] * sy - r * IMAGE_SIZE,
        box[2] * sx - c * IMAGE_SIZE,
        box[3] * sy - r * IMAGE_SIZE,
    )


def _cells(
    box: tuple[float, float, float, float], frame: tuple[int, int, float, float], geometry: Geometry
) -> dict[int, float]:
    """Image-token cells of one tile that ``box`` (image pixels) overlaps by >= 2 px each way: {token: area}."""
    side, cell = geometry.side, geometry.cell
    x1, y1, x2, y2 = tile_pixels(box, frame)
    out = {}
    for row in range(max(0, int(y1 // cell)), min(side, int(y2 // cell) + 1)):
        for col in range(max(0, int(x1 // cell)), min(side, int(x2 // cell) + 1)):
            dx = min(x2, (col + 1) * cell) - max(x1, col * cell)
            dy = min(y2, (row + 1) * cell) - max(y1, row * cell)
            if dx >= 2 and dy >= 2:
                out[row * side + col] = dx * dy
    return out


def _groups(sample: synth.Sample) -> list[tuple[str, tuple[int, int, int, int]]]:
    """Spans whose text each covered token names: every word, and for charts each bar's column (label and value)."""
    groups = [(w.text, w.box) for w in sample.words]
    if sample.kind == "chart":
        for value, label in zip(sample.words[::2], sample.words[1::2], strict=True):
            groups.append((f"{label.text} {value.text}", synth.union([value.box, label.box])))
    return groups


def look_spans(sample: synth.Sample, question: str, answer: str) -> list[tuple[int, int, tuple[int, int, int, int]]]:
    """Where each located part of ``answer`` should look: (start, end) characters of the answer and a pixel box.

    A grounding answer's box numbers look at their word, each grounded-OCR line's box numbers at that line, a chart
    value (asked for, or in a table row) at the value printed above its bar. Other answers have no spans.

    >>> s = synth.Sample("text", None, words=[synth.Word("Tax", (4, 10, 30, 22), (31, 78, 234, 172))])
    >>> look_spans(s, grounding_question("Tax"), "<ref>Tax</ref><box>[[31, 78, 234, 172]]</box>")
    [(19, 39, (4, 10, 30, 22))]
    """
    spans: list[tuple[int, int, tuple[int, int, int, int]]] = []
    if sample.kind == "chart":
        values = {label: word.box for (label, _), word in zip(sample.chart, sample.words[::2], strict=True)}
        if answer.isdigit():
            label = question.split("value of ", 1)[1].split(" ", 1)[0]
            return [(0, len(answer), values[label])] if label in values else []
        for match in re.finditer(r"^\| (\w+) \| (\d+) \|$", answer, flags=re.M):
            if match.group(1) in values:
                spans.append((match.start(2), match.end(2), values[match.group(1)]))
        return spans
    boxes = [m.span(1) for m in re.finditer(r"<box>(.*?)</box>", answer)]
    phrase = question.split("<ref>", 1)[-1].split("</ref>", 1)[0]
    if question == grounding_question(phrase):
        word = next((w for w in sample.words if w.text == phrase), None)
        return [(*boxes[0], word.box)] if word is not None and boxes else []
    if len(boxes) == len(sample.line_boxes):
        spans = [(a, b, line.box) for (a, b), line in zip(boxes, sample.line_boxes, strict=True)]
    return spans


def look_targets(
    sample: synth.Sample,
    tiled: Any,
    spans: list[tuple[int, int, tuple[int, int, int, int]]],
    offsets: list,
    geometry: Geometry = GEOMETRY,
) -> list[tuple[list[int], list[int], tuple[float, float, float, float]]]:
    """Per span: (answer token positions whose next-token prediction writes the span, image tokens over its box,
    the box on a 0-1 scale of the image).

    ``offsets`` are the answer tokens' (start, end) characters; image tokens count over all tiles, thumbnail last.
    """
    frames = tile_frames(sample, tiled)
    w, h = sample.image.size
    out = []
    for a, b, box in spans:
        queries = [j - 1 for j, (s, e) in enumerate(offsets) if s < b and e > a and j > 0]
        if a == 0:
            queries = [-1, *queries]  # the last prompt token writes the answer's first token
        per_tile = geometry.tokens_per_tile
        image = sorted(t * per_tile + k for t, frame in enumerate(frames) for k in _cells(box, frame, geometry))
        if queries and image:
            out.append((queries, image, (box[0] / w, box[1] / h, box[2] / w, box[3] / h)))
    return out


def tile_box(box: tuple[float, float, float, float], frame: tuple[int, int, float, float]) -> tuple[float, ...]:
    """``box`` (image pixels) on a 0-1 scale of one tile (:func:`tile_frames`), clipped to the part the tile shows.

    >>> tile_box((130, 10, 160, 22), (1, 0, 1.0, 1.0))  # a word in the second tile of a page two tiles wide
    (0.015625, 0.078125, 0.25, 0.171875)
    """
    return tuple(min(1.0, max(0.0, v / IMAGE_SIZE)) for v in tile_pixels(box, frame))


def aux_targets(
    sample: synth.Sample,
    tiled: Any,
    token_ids: Any,
    geometry: Geometry = GEOMETRY,
    box_frame: Literal["image", "tile"] = "image",
) -> dict[str, Any]:
    """Training-only targets per tile and image token.

    ``chars``: which characters have their centre in each 8-px slot of the token's cell; ``tokens``: the text
    tokens (``token_ids(text)``) of every word the cell overlaps (a chart's bar column also names its label and
    value); ``boxes``/``box_mask``: the 0-1 boxes of the word and the line that overlap the cell most, in the whole
    image's frame (``box_frame="image"``, the answer's) or in the token's own tile's (``"tile"``: all a tile's
    encoder sees, since tiles are encoded one by one and a page's tile row is not in its pixels); ``edges``:
    in which 4-px bin of the cell a word's box starts (the first ``edge_bins`` values) or ends (the rest), at the
    cell of the word's middle row that holds that edge: a word that starts inside a cell is placed to within 4 px.
    """
    import torch

    if box_frame not in BOX_FRAMES:
        raise ValueError(f"box_frame must be one of {', '.join(BOX_FRAMES)}, not {box_frame!r}")
    n, per_tile = tiled.num_tiles, geometry.tokens_per_tile
    side, cell, slots = geometry.side, geometry.cell, geometry.slots
    classes = len(synth.CHARSET)
    chars = torch.zeros(n, per_tile, slots * classes)
    tokens = torch.zeros(n, per_tile, token_ids.vocab_size)
    boxes = torch.zeros(n, per_tile, 8)
    mask = torch.zeros(n, per_tile, 8)
    bins = geometry.edge_bins
    edges = torch.zeros(n, per_tile, 2 * bins)
    frames = tile_frames(sample, tiled)
    for t, frame in enumerate(frames):
        c, r, sx, sy = frame
        for ch, x, y in sample.chars:
            k = synth.CHARSET.find(ch)
            if k < 0:
                continue
            px, py = x * sx - c * IMAGE_SIZE, y * sy - r * IMAGE_SIZE
            if not (0 <= px < IMAGE_SIZE and 0 <= py < IMAGE_SIZE):
                continue
            token = int(py // cell) * side + int(px // cell)
            slot = int((px % cell) // (cell // slots))
            chars[t, token, slot * classes + k] = 1.0
        for text, box in _groups(sample):
            ids = token_ids(text)
            for token in _cells(box, frame, geometry):
                tokens[t, token, ids] = 1.0
        for offset, items in ((0, sample.words), (4, sample.line_boxes)):
            best: dict[int, float] = {}
            for item in items:
                if box_frame == "tile":
                    target = torch.tensor(tile_box(item.box, frame))
                else:
                    target = torch.tensor(item.box_1000) / 1000
                for token, area in _cells(item.box, frame, geometry).items():
                    if area > best.get(token, 0.0):
                        best[token] = area
                        boxes[t, token, offset : offset + 4] = target
                        mask[t, token, offset : offset + 4] = 1.0
        for word in sample.words:
            row = ((word.box[1] + word.box[3]) / 2 * sy - r * IMAGE_SIZE) // cell
            for side_index, x in enumerate((word.box[0], word.box[2])):
                px = x * sx - c * IMAGE_SIZE
                if 0 <= row < side and 0 <= px < IMAGE_SIZE:
                    token = int(row) * side + int(px // cell)
                    edges[t, token, side_index * bins + min(bins - 1, int((px % cell) // EDGE_BIN))] = 1.0
    return {"chars": chars, "tokens": tokens, "boxes": boxes, "box_mask": mask, "edges": edges}


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


def approx_tokens(sample: synth.Sample, question: str, answer: str, tokens_per_tile: int = TOKENS_PER_TILE) -> float:
    """A cheap estimate of an example's sequence length, for grouping examples of similar length."""
    w, h = sample.image.size
    tiles = min(MAX_TILES, round(w * h / IMAGE_SIZE**2)) + (w * h > IMAGE_SIZE**2)
    return tiles * tokens_per_tile + (len(question) + len(answer)) / 2.5


def collate(
    examples: list[tuple[synth.Sample, str, str]],
    tokenizer: Any,
    token_ids: TokenIds,
    geometry: Geometry = GEOMETRY,
    box_frame: Literal["image", "tile"] = "image",
) -> dict[str, Any]:
    """Right-padded input ids, labels on the answer plus ``<|im_end|>``, pixels and auxiliary targets.

    ``looks`` lists (row, query positions, image-token positions, 0-1 box): where a located answer part should
    look (:func:`look_spans`) and what it should bring back, for the attention and carry auxiliaries.
    """
    import torch

    ids_list, label_list, pixels, targets, looks = [], [], [], [], []
    image_id = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    for row, (sample, question, answer) in enumerate(examples):
        tiled = tile(sample)
        prompt_ids = encode_prompt(tokenizer, prompt_text(question, tiled.num_tiles, geometry.tokens_per_tile))
        encoded = tokenizer(answer, add_special_tokens=False, return_offsets_mapping=True)
        answer_ids = encoded["input_ids"] + [tokenizer.eos_token_id]
        ids_list.append(prompt_ids + answer_ids)
        label_list.append([-100] * len(prompt_ids) + answer_ids)
        pixels.append(tiled.pixel_values)
        targets.append(aux_targets(sample, tiled, token_ids, geometry, box_frame))
        image_positions = [p for p, i in enumerate(prompt_ids) if i == image_id]
        spans = look_spans(sample, question, answer)
        for queries, image, box in look_targets(sample, tiled, spans, encoded["offset_mapping"], geometry):
            looks.append((row, [len(prompt_ids) + q for q in queries], [image_positions[k] for k in image], box))
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
        "looks": looks,
    }
