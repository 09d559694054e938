"""``read_rendered`` (the Ray corpus's inference step) on pages of several documents in one batch: every result
belongs to its own page, even when page numbers repeat across documents (they always do: each has a page 1)."""

from __future__ import annotations

import random

import pytest

from internvl_tools.demo import synth
from internvl_tools.demo.metrics import char_accuracy
from internvl_tools.documents import ReadOptions, read_rendered
from internvl_tools.documents.render import RenderedPage


@pytest.fixture(scope="module")
def demo():
    from internvl_tools import InternVL

    return InternVL.from_pretrained("demo").load()


def page_one(image=None, error=None) -> RenderedPage:
    return RenderedPage(
        number=1,
        label="1",
        width_pt=128.0,
        height_pt=128.0,
        scale=1.0,
        image=image,
        error=error,
        error_type=None if error is None else "PageRenderError",
    )


@pytest.mark.parametrize("batch_size", [1, 2, 4])
def test_pages_of_different_documents_with_the_same_number_keep_their_own_text(demo, batch_size):
    tiles = [synth.text_tile(random.Random(seed)) for seed in (11, 12, 13)]
    pages = [
        page_one(tiles[0].image),
        page_one(error="broken page"),
        page_one(tiles[1].image),
        page_one(tiles[2].image),
    ]
    results = read_rendered(demo, pages, ReadOptions(batch_size=batch_size, max_new_tokens=48))
    assert [r.page for r in results] == [1, 1, 1, 1]
    assert [r.ok for r in results] == [True, False, True, True]
    assert results[1].error == "broken page"
    read = [results[0], results[2], results[3]]
    for k, result in enumerate(read):
        scores = [char_accuracy(result.text, tile.text) for tile in tiles]
        assert scores[k] == max(scores) and scores[k] >= 0.6, (k, result.text, [t.text for t in tiles])
