"""The demo model's edge auxiliary: each image token names the 4-px bins of its cell where a word's box starts or
ends.

The target is only worth training if it places every word edge in the right token and bin, on single tiles, on
pages (every tile and the thumbnail) and in both token geometries; a word that starts inside a cell is the case the
target exists for.
"""

from __future__ import annotations

import random

import pytest

from internvl_tools.demo import synth
from internvl_tools.demo.architecture import IMAGE_SIZE, Geometry, build_tokenizer
from internvl_tools.demo.batches import TokenIds, aux_targets, tile, tile_frames


@pytest.fixture(scope="module")
def token_ids():
    return TokenIds(build_tokenizer())


def _expected_edges(sample: synth.Sample, frame: tuple[int, int, float, float], geometry: Geometry) -> set:
    """(token, edge index) of every word edge that falls in the tile ``frame`` (column, row, x scale, y scale)."""
    c, r, sx, sy = frame
    cell, side, bins = geometry.cell, geometry.side, geometry.edge_bins
    out = set()
    for word in sample.words:
        row = int(((word.box[1] + word.box[3]) / 2 * sy - r * IMAGE_SIZE) // cell)
        for which, x in enumerate((word.box[0], word.box[2])):
            px = x * sx - c * IMAGE_SIZE
            if 0 <= row < side and 0 <= px < IMAGE_SIZE:
                out.add((row * side + int(px // cell), which * bins + min(bins - 1, int(px % cell) // 4)))
    return out


@pytest.mark.parametrize("downsample", [0.5, 1.0])
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("kind", ["text", "table", "chart", "page"])
def test_every_word_edge_is_marked_in_its_token_and_bin_and_nothing_else(token_ids, kind, seed, downsample):
    geometry = Geometry(downsample)
    rng = random.Random(seed)
    sample = {
        "text": synth.text_tile,
        "table": synth.table_tile,
        "chart": synth.chart_tile,
        "page": lambda g: synth.page(g, tiles_wide=2),
    }[kind](rng)
    tiled = tile(sample)
    edges = aux_targets(sample, tiled, token_ids, geometry)["edges"]
    assert edges.shape == (tiled.num_tiles, geometry.tokens_per_tile, 2 * geometry.edge_bins)
    assert set(edges.unique().tolist()) <= {0.0, 1.0}
    for t, frame in enumerate(tile_frames(sample, tiled)):
        marked = {tuple(ij) for ij in edges[t].nonzero().tolist()}
        assert marked == _expected_edges(sample, frame, geometry)
    assert edges.sum() > 0


@pytest.mark.parametrize("seed", range(20))
def test_a_single_tile_word_is_found_again_from_its_marks_to_within_4_px(token_ids, seed):
    geometry = Geometry(0.5)
    sample = synth.text_tile(random.Random(seed))
    edges = aux_targets(sample, tile(sample), token_ids, geometry)["edges"][0]
    cell, side, bins = geometry.cell, geometry.side, geometry.edge_bins
    starts = {
        (token // side, token % side * cell + b * 4) for token, b in edges[:, :bins].nonzero().tolist()
    }  # (token row, bin's left pixel)
    for word in sample.words:
        row = int((word.box[1] + word.box[3]) / 2 // cell)
        assert any(r == row and left <= word.box[0] < left + 4 for r, left in starts), word
        if synth.starts_on_grid_column(word.box[0], tolerance=0):
            assert (row, word.box[0] // cell * cell + 4) in starts  # lines start at 4 + 32k: the second bin


def test_words_that_start_inside_a_cell_are_marked_off_its_first_bins(token_ids):
    geometry = Geometry(0.5)
    inside = 0
    for seed in range(40):
        sample = synth.text_tile(random.Random(seed))
        edges = aux_targets(sample, tile(sample), token_ids, geometry)["edges"][0]
        for word in sample.words:
            if not synth.starts_on_grid_column(word.box[0]):
                row = int((word.box[1] + word.box[3]) / 2 // geometry.cell)
                token = row * geometry.side + int(word.box[0] // geometry.cell)
                bin_ = int(word.box[0] % geometry.cell) // 4
                assert edges[token, bin_] == 1.0
                inside += bin_ >= 2
    assert inside >= 20  # the case the target exists for is common, not a corner
