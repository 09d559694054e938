"""Scores of the demo model's answers: edit distance, character accuracy and exact lines, shared by training's
checkpoint selection (:mod:`internvl_tools.demo.train`) and the held-out evaluation
(:mod:`internvl_tools.demo.evaluate`, which also scores boxes).

>>> char_accuracy("Total 12", "Total 13")
0.875
"""

from __future__ import annotations

__all__ = ["char_accuracy", "edit_distance", "line_hits"]


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance.

    >>> edit_distance("kitten", "sitting")
    3
    """
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def char_accuracy(prediction: str, reference: str) -> float:
    """``max(0, 1 - edit_distance / len(reference))`` on stripped strings."""
    prediction, reference = prediction.strip(), reference.strip()
    if not reference:
        return float(not prediction)
    return max(0.0, 1.0 - edit_distance(prediction, reference) / len(reference))


def line_hits(prediction: str, reference: str) -> tuple[int, int]:
    """(reference lines reproduced exactly at the same index, number of reference lines)."""
    pred, ref = prediction.strip().split("\n"), reference.strip().split("\n")
    return sum(p.strip() == r for p, r in zip(pred, ref, strict=False)), len(ref)
