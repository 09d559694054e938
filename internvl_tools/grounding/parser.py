"""The tolerant parser of InternVL grounding answers, ``<ref>…</ref><box>[[…]]</box>``, into pixel boxes.

The prompts that ask for boxes are in :mod:`internvl_tools.grounding.prompts`; writing results back out (fine-tuning
records) and drawing them are in :mod:`~internvl_tools.grounding.records` and :mod:`~internvl_tools.grounding.drawing`.

InternVL answers grounding prompts with ``<ref>phrase</ref><box>[[x1, y1, x2, y2], ...]</box>``: integers on a
0–1000 scale relative to the *whole original image* (``round(x / W * 1000)``). :func:`parse_grounding` turns
any such text into pixel boxes and never raises on the text: every problem becomes a
:class:`~internvl_tools.grounding.types.GroundingWarning` that says what was wrong and where (character offsets).

>>> r = parse_grounding("<ref>the lady</ref><box>[[243, 469, 558, 746]]</box>", (427, 640))
>>> [round(v, 3) for v in r.boxes[0].xyxy]
[103.761, 300.16, 238.266, 477.44]

Parsing rules (each one is a test in ``tests/test_grounding.py``):

* Several ``<ref>``/``<box>`` pairs and several boxes per ``<box>`` are all kept, in order. A repeated label
  gives a separate object each time (``GroundingResult.by_label()`` merges them).
* Free text (e.g. the detection answer's ``Sure, I will detect…`` preface) is ignored.
* A ``<box>`` without a ``<ref>`` gives an object with ``label=None``. A bare list outside ``<box>`` is the
  tag-stripped form that ``chat()`` returns (``the lady[[243, 469, 558, 746]]``): its label is the free text on
  the same line just before the list (``None`` if there is none or it is over 200 characters).
* A list attaches to the latest ``<ref>`` if that ref has no list yet (any text may come between), or if only
  spaces on the same line separate it from that object's previous list
  (``<ref>a</ref><box>[[…]]</box><box>[[…]]</box>`` is one object; a ``<box>`` on the next line is a new one).
* ``<ref>x</ref>`` with no list gives an object with zero boxes and a ``ref_without_box`` warning.
* Missing ``]``, ``</ref>`` or ``</box>`` are tolerated (warned). When the text ends inside a list (truncated
  generation), the boxes closed with ``]`` are kept and the incomplete rest is dropped with a ``truncated``
  warning; an unclosed box at the very end is dropped even with four numbers, since its last number may be cut.
* Each box needs exactly four numbers (``wrong_count`` otherwise, box dropped). Numbers next to nested lists
  (``[245, [1, 2, 3, 4]]``) are ignored (``stray_numbers``). ``nan``/``inf`` (``non_finite``) and runaway
  numbers (more than 7 integer digits, or beyond 10× the scale) drop their box (``runaway_number``).
* Values below 0 or above the scale are clipped (``out_of_range``); reversed corners are swapped
  (``reversed_corners``); zero-width or zero-height boxes are kept (``degenerate_box``).
* ``coords`` says how to read the numbers: ``norm1000`` (default), ``norm1`` (0–1 fractions, InternVL-Chat-V1-2
  style) or ``pixel``. There is no guessing from the size of the numbers (the official eval's ``sum >= 4``
  heuristic misreads small boxes).
* Full-width brackets, commas and digits (``［［1，2，3，4］］``) and spaces or newlines anywhere are accepted.
  The scanner is a single regular-expression pass plus a stack, linear in the length of the text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

from internvl_tools.constants import GROUNDING_SCALE
from internvl_tools.errors import ConfigError
from internvl_tools.grounding.result import GroundingResult
from internvl_tools.grounding.types import (
    BoundingBox,
    CoordSystem,
    GroundedObject,
    GroundingWarning,
    WarningCode,
    check_image_size,
)

__all__ = ["parse_grounding"]

# One character for one character, so offsets into the normalised text are offsets into the original.
_NORMALISE = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)}  # full-width ASCII: ［，］１２＜ref＞ …
_NORMALISE.update({0x3000: " ", 0x3001: ",", 0x3010: "[", 0x3011: "]", 0x2212: "-", 0xFE63: "-"})

_TOKEN = re.compile(
    r"(?P<tag></?(?:ref|box)>)"
    r"|(?P<open>\[)"
    r"|(?P<close>\])"
    r"|(?P<num>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?)"
    r"|(?P<nonfinite>[+-]?(?<![a-z])(?:nan|inf(?:inity)?)(?![a-z]))"
    r"|(?P<nl>\n)",
    re.IGNORECASE,
)
# What may sit between numbers and brackets inside a list without ending it.
_SEPARATORS = re.compile(r"[\s,;'\"]*")
_LIST_END_TAGS = ("<ref>", "</ref>", "<box>", "</box>")

_MAX_DEPTH = 16
_MAX_INT_DIGITS = 7
_MAX_NUMBER_CHARS = 40
_RUNAWAY_FACTOR = 10
_MAX_WARNINGS = 100
_MAX_PHRASE_CHARS = 200
_SNIPPET_CHARS = 40

_Token = tuple[str, int, int]


def _tokens(text: str, pos: int) -> Iterator[_Token]:
    for match in _TOKEN.finditer(text, pos):
        start, end = match.span()
        if start > pos:
            yield ("text", pos, start)
        kind = match.lastgroup or "text"
        yield (match.group().lower() if kind == "tag" else kind, start, end)
        pos = end
    if pos < len(text):
        yield ("text", pos, len(text))
    while True:
        yield ("eof", len(text), len(text))


class _Stream:
    """A token stream with one token of push-back that can restart at an offset."""

    __slots__ = ("_buf", "_it", "_text")

    def __init__(self, text: str) -> None:
        self._text = text
        self._it = _tokens(text, 0)
        self._buf: _Token | None = None

    def next(self) -> _Token:
        token = self._buf
        if token is None:
            return next(self._it)
        self._buf = None
        return token

    def push(self, token: _Token) -> None:
        self._buf = token

    def peek(self) -> _Token:
        token = self.next()
        self._buf = token
        return token

    def seek(self, pos: int) -> None:
        self._it = _tokens(self._text, pos)
        self._buf = None


class _Node:
    __slots__ = ("has_child", "ignored_opens", "nums", "start")

    def __init__(self, start: int) -> None:
        self.start = start
        self.nums: list[_Token] = []
        self.has_child = False
        self.ignored_opens = 0


class _Object:
    __slots__ = ("boxes", "end", "had_list", "label", "start")

    def __init__(self, label: str | None, start: int, end: int) -> None:
        self.label = label
        self.boxes: list[BoundingBox] = []
        self.had_list = False
        self.start = start
        self.end = end


class _Parser:
    def __init__(self, raw: str, image_size: tuple[int, int], coords: CoordSystem) -> None:
        self.raw = raw
        self.text = raw.translate(_NORMALISE)
        self.stream = _Stream(self.text)
        self.width, self.height = image_size
        self.coords = coords
        if coords == "norm1000":
            self.scale_x = self.scale_y = float(GROUNDING_SCALE)
        elif coords == "norm1":
            self.scale_x = self.scale_y = 1.0
        else:
            self.scale_x, self.scale_y = float(self.width), float(self.height)
        self.objects: list[_Object] = []
        self.warnings: list[GroundingWarning] = []
        self.current: _Object | None = None
        self.gap_clean = True  # only whitespace since the current object's last list
        self.line_start = 0
        self.last_struct_end = 0
        self.list_truncated = False  # the last list ran into the end of the text (already reported)

    # --- helpers --------------------------------------------------------------------------------------------

    def warn(self, code: WarningCode, message: str, start: int, end: int) -> None:
        if len(self.warnings) > _MAX_WARNINGS:
            return
        if len(self.warnings) == _MAX_WARNINGS:
            code, start, end = "too_many_warnings", start, start
            message = f"more than {_MAX_WARNINGS} problems; the rest are not listed (from offset {start})"
        self.warnings.append(GroundingWarning(code=code, message=message, start=start, end=end))

    def snippet(self, start: int, end: int) -> str:
        piece = self.raw[start:end]
        if len(piece) > _SNIPPET_CHARS:
            piece = piece[: _SNIPPET_CHARS - 3] + "..."
        return repr(piece)

    def where(self, start: int, end: int | None = None) -> str:
        if end is None or end <= start:
            return f"at offset {start}"
        return f"{self.snippet(start, end)} at offset {start}"

    # --- driver ---------------------------------------------------------------------------------------------

    def run(self) -> GroundingResult:
        stream = self.stream
        text = self.text
        while True:
            token = stream.next()
            kind, start, end = token
            if kind == "text":
                if not text[start:end].isspace():
                    self.gap_clean = False
                continue
            if kind == "eof":
                break
            if kind in ("<ref>", "<box>", "open"):
                stream.push(token)
            if kind == "<ref>":
                self.parse_ref()
            elif kind == "<box>":
                self.parse_box()
            elif kind == "open":
                phrase = self.phrase_before(start)  # before the list moves last_struct_end
                self.attach(self.parse_list(), start, label=phrase)
            elif kind in ("</ref>", "</box>"):
                self.warn("stray_tag", f"{kind} {self.where(start)} closes nothing; ignored", start, end)
            elif kind == "nl":
                self.line_start = end
                self.gap_clean = False  # a list on a new line starts a new object
            else:
                self.gap_clean = False
        self.close_current()
        return self.result()

    def result(self) -> GroundingResult:
        objects = [GroundedObject.model_construct(label=o.label, boxes=o.boxes) for o in self.objects]
        return GroundingResult.model_construct(
            objects=objects,
            image_size=(self.width, self.height),
            raw_text=self.raw,
            coords=self.coords,
            warnings=self.warnings,
        )

    def close_current(self) -> None:
        obj = self.current
        if obj is not None and obj.label is not None and not obj.had_list:
            self.warn(
                "ref_without_box",
                f"<ref>{obj.label}</ref> {self.where(obj.start)} has no box list after it; kept with zero boxes",
                obj.start,
                obj.end,
            )

    def attach(self, boxes: list[BoundingBox], list_start: int, *, label: str | None) -> None:
        """Give boxes to the current object, or to a new one called ``label`` when they do not belong to it."""
        obj = self.current
        if obj is None or (obj.had_list and not self.gap_clean):
            if not boxes:
                return  # nothing usable and nothing to attach to: the warnings already say why
            obj = _Object(label, list_start, list_start)
            self.objects.append(obj)
            self.current = obj
        obj.had_list = True
        obj.boxes.extend(boxes)
        self.gap_clean = True

    def phrase_before(self, pos: int) -> str | None:
        begin = max(self.line_start, self.last_struct_end)
        phrase = self.raw[begin:pos].strip().rstrip(":=：-").strip().strip("\"'`*").strip()
        if not phrase or len(phrase) > _MAX_PHRASE_CHARS:
            return None
        return phrase

    # --- <ref> ----------------------------------------------------------------------------------------------

    def parse_ref(self) -> None:
        stream = self.stream
        _, ref_start, label_start = stream.next()
        first_open: int | None = None
        while True:
            kind, start, end = stream.peek()
            if kind == "</ref>":
                stream.next()
                label_end, closed, after = start, True, end
                break
            if kind in ("<ref>", "<box>", "</box>", "nl", "eof"):
                label_end, closed, after = start, False, start
                break
            if kind == "open" and first_open is None:
                first_open = start
            stream.next()
        if not closed and first_open is not None:
            # No </ref>: the label ends where a box list begins; read that list again as a list.
            label_end = after = first_open
            stream.seek(first_open)
        label = self.raw[label_start:label_end].strip() or None
        if not closed:
            if stream.peek()[0] == "eof" and after == len(self.text):
                self.warn(
                    "truncated",
                    f"text ends inside <ref> {self.where(ref_start, label_end)}; kept the label with zero boxes",
                    ref_start,
                    label_end,
                )
            else:
                self.warn(
                    "unclosed_tag",
                    f"<ref> {self.where(ref_start, label_end)} has no </ref>; the label ends at offset {label_end}",
                    ref_start,
                    label_end,
                )
        self.close_current()
        obj = _Object(label, ref_start, after)
        if label is None or (not closed and after == len(self.text)):
            # An empty <ref></ref> is not worth a ref_without_box warning; a truncated one is reported already.
            obj.had_list = True
        self.objects.append(obj)
        self.current = obj
        self.gap_clean = True
        self.last_struct_end = after

    # --- <box> ----------------------------------------------------------------------------------------------

    def skip_separators(self, *, closes: bool = False) -> None:
        stream = self.stream
        while True:
            kind, start, end = stream.peek()
            if kind == "nl" or (kind == "text" and _SEPARATORS.fullmatch(self.text, start, end)):
                stream.next()
            elif closes and kind == "close":
                stream.next()  # an extra ']' after a complete list
            else:
                return

    def parse_box(self) -> None:
        stream = self.stream
        _, box_start, _ = stream.next()
        self.skip_separators()
        kind, start, end = stream.peek()
        if kind != "open":
            if kind == "</box>":
                stream.next()
                end_at = end
            else:
                end_at = start
            code: WarningCode = "truncated" if kind == "eof" else "box_without_list"
            self.warn(code, f"<box> {self.where(box_start)} holds no bracketed list", box_start, end_at)
            self.attach([], box_start, label=None)
            self.last_struct_end = end_at
            return
        boxes: list[BoundingBox] = []
        while True:
            boxes.extend(self.parse_list())
            self.skip_separators(closes=True)
            kind, start, end = stream.peek()
            if kind == "open":
                continue  # <box>[1, 2, 3, 4], [5, 6, 7, 8]</box>
            if kind == "</box>":
                stream.next()
                self.last_struct_end = end
            else:
                self.last_struct_end = start
                if kind == "eof":
                    if not self.list_truncated:
                        self.warn(
                            "truncated", f"text ends before </box> (opened at offset {box_start})", box_start, start
                        )
                else:
                    self.warn(
                        "unclosed_tag",
                        f"<box> opened at offset {box_start} is not closed; {self.where(start, end)} follows the list",
                        box_start,
                        start,
                    )
            break
        self.attach(boxes, box_start, label=None)

    # --- lists ----------------------------------------------------------------------------------------------

    def parse_list(self) -> list[BoundingBox]:
        """Read one bracketed structure from the current '[' and return its valid boxes, in order."""
        stream = self.stream
        _, list_start, _ = stream.next()
        stack = [_Node(list_start)]
        leaves: list[tuple[_Node, int, bool]] = []  # (node, end offset, closed by ']')
        strays: list[_Node] = []
        deep_warned = False
        nxt = stream.next
        is_separator = _SEPARATORS.fullmatch
        text = self.text
        while True:
            token = nxt()
            kind, start, end = token
            if kind == "num" or kind == "nonfinite":
                stack[-1].nums.append(token)
            elif kind == "close":
                node = stack[-1]
                if node.ignored_opens:
                    node.ignored_opens -= 1
                    continue
                stack.pop()
                if node.has_child:
                    if node.nums:
                        strays.append(node)
                else:
                    leaves.append((node, end, True))
                if not stack:
                    self.last_struct_end = end
                    self.list_truncated = False
                    return self.finish_leaves(leaves, strays)
            elif kind == "open":
                if len(stack) >= _MAX_DEPTH:
                    stack[-1].ignored_opens += 1
                    if not deep_warned:
                        deep_warned = True
                        self.warn(
                            "too_deep",
                            f"brackets nested deeper than {_MAX_DEPTH} at offset {start}; extra levels ignored",
                            start,
                            end,
                        )
                    continue
                stack[-1].has_child = True
                stack.append(_Node(start))
            elif kind == "nl" or (kind == "text" and is_separator(text, start, end)):
                pass
            else:
                stream.push(token)
                break  # a tag, other text or the end of the text ends the structure early
        truncated = kind == "eof"
        stop = start
        incomplete: list[_Node] = []
        while stack:
            node = stack.pop()
            if node.has_child:
                if node.nums:
                    strays.append(node)
            elif truncated:
                if node.nums:
                    incomplete.append(node)
            else:
                leaves.append((node, stop, False))
        boxes = self.finish_leaves(leaves, strays)
        self.list_truncated = truncated
        if truncated:
            dropped = ", ".join(f"{self.snippet(n.start, stop)} at offset {n.start}" for n in incomplete)
            detail = f"; dropped the incomplete box {dropped}" if dropped else ""
            self.warn(
                "truncated",
                f"text ends inside the box list opened at offset {list_start}; kept {len(boxes)} complete "
                f"box(es){detail}",
                incomplete[0].start if incomplete else list_start,
                stop,
            )
        else:
            what = "a tag" if kind in _LIST_END_TAGS else "other text"
            self.warn(
                "unclosed_bracket",
                f"the box list opened at offset {list_start} is not closed with ']' before {what} "
                f"{self.where(start, end)}; its complete boxes are kept",
                list_start,
                stop,
            )
        self.last_struct_end = stop
        return boxes

    def finish_leaves(self, leaves: list[tuple[_Node, int, bool]], strays: list[_Node]) -> list[BoundingBox]:
        for node in strays:
            first, last = node.nums[0][1], node.nums[-1][2]
            self.warn(
                "stray_numbers",
                f"numbers {self.where(first, last)} sit beside nested box lists; ignored",
                first,
                last,
            )
        boxes = []
        for node, end, closed in leaves:  # a leaf closes before its next sibling opens: already in order
            box = self.make_box(node, end, closed)
            if box is not None:
                boxes.append(box)
        return boxes

    def make_box(self, node: _Node, end: int, closed: bool) -> BoundingBox | None:
        start = node.start
        count = len(node.nums)
        if count == 0:
            self.warn("empty_box", f"empty list {self.where(start, end)}; ignored", start, end)
            return None
        if count != 4:
            self.warn(
                "wrong_count",
                f"box {self.where(start, end)} has {count} number(s), expected 4 (x1, y1, x2, y2); dropped",
                start,
                end,
            )
            return None
        values: list[float] = []
        for axis, (kind, n_start, n_end) in enumerate(node.nums):
            token = self.text[n_start:n_end]
            scale = self.scale_x if axis % 2 == 0 else self.scale_y
            if kind == "nonfinite":
                self.warn("non_finite", f"box {self.where(start, end)} contains {token!r}; dropped", start, end)
                return None
            if len(token) > _MAX_INT_DIGITS and (
                len(token) > _MAX_NUMBER_CHARS
                or len(token.lstrip("+-").lower().split("e")[0].split(".")[0]) > _MAX_INT_DIGITS
            ):
                self.warn(
                    "runaway_number",
                    f"box {self.where(start, end)} has a runaway number {self.snippet(n_start, n_end)} "
                    f"at offset {n_start}; dropped",
                    start,
                    end,
                )
                return None
            try:
                value = float(token)
            except ValueError:  # pragma: no cover - the token pattern only admits float syntax
                self.warn("non_finite", f"box {self.where(start, end)}: {token!r} is not a number; dropped", start, end)
                return None
            if not math.isfinite(value) or abs(value) > _RUNAWAY_FACTOR * scale:
                self.warn(
                    "runaway_number",
                    f"box {self.where(start, end)} has {token} at offset {n_start}, far outside the "
                    f"0–{scale:g} {self.coords} scale; dropped",
                    start,
                    end,
                )
                return None
            values.append(value)
        x1, y1, x2, y2 = values
        if x1 > x2 or y1 > y2:
            self.warn(
                "reversed_corners",
                f"box {self.where(start, end)} has its corners in the wrong order; swapped",
                start,
                end,
            )
            x1, x2 = min(x1, x2), max(x1, x2)
            y1, y2 = min(y1, y2), max(y1, y2)
        clipped = [
            min(max(v, 0.0), self.scale_x if i % 2 == 0 else self.scale_y) for i, v in enumerate((x1, y1, x2, y2))
        ]
        if clipped != [x1, y1, x2, y2]:
            self.warn(
                "out_of_range",
                f"box {self.where(start, end)} reaches outside the 0–{self.scale_x:g} {self.coords} scale; clipped "
                f"to {[round(v, 6) for v in clipped]}",
                start,
                end,
            )
        cx1, cy1, cx2, cy2 = clipped
        if cx1 == cx2 or cy1 == cy2:
            self.warn("degenerate_box", f"box {self.where(start, end)} has zero width or height; kept", start, end)
        return BoundingBox.model_construct(
            x1=cx1 / self.scale_x * self.width,
            y1=cy1 / self.scale_y * self.height,
            x2=cx2 / self.scale_x * self.width,
            y2=cy2 / self.scale_y * self.height,
        )


def parse_grounding(text: str, image_size: tuple[int, int], coords: CoordSystem = "norm1000") -> GroundingResult:
    """Read InternVL grounding output into pixel boxes of the original image. Never raises on ``text``.

    ``image_size`` is ``(width, height)`` of the original image (a :class:`ConfigError` if it is not two
    positive integers). ``coords`` says what the numbers are: ``"norm1000"`` (InternVL's 0–1000 scale, default),
    ``"norm1"`` (0–1) or ``"pixel"``. See the module docstring for every rule.

    >>> r = parse_grounding('''Sure, I will detect and label all objects in the image and mark their positions.
    ...
    ... <ref>helmet</ref><box>[[1, 2, 269, 235]]</box>
    ... <ref>walkie-talkie</ref><box>[[295, 2, 370, 226], [374, 0, 447, 226]]</box>''', (800, 800))
    >>> r.labels
    ['helmet', 'walkie-talkie', 'walkie-talkie']
    >>> parse_grounding("the lady[[243, 469, 558, 746]]", (427, 640)).labels
    ['the lady']
    >>> [w.code for w in parse_grounding("<ref>a</ref><box>[[10, 20, 30", (100, 100)).warnings]
    ['truncated']
    """
    size = check_image_size(image_size)
    if coords not in ("norm1000", "norm1", "pixel"):
        raise ConfigError(f"coords must be 'norm1000', 'norm1' or 'pixel', got {coords!r}")
    if text is None:
        text = ""
    elif isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", errors="replace")
    elif not isinstance(text, str):
        text = str(text)
    return _Parser(text, size, coords).run()
