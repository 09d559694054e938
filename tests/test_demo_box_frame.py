"""The demo model's box auxiliary: the frame its per-token box targets are given in (``--box-frame``).

A tile is encoded on its own, so a token on a page's third tile row sees the same pixels as one on the first; a box
target in the whole page's frame (``image``, runs 1-11) asks it for a tile row it cannot see. In the ``tile`` frame
every token's target is the part of its word or line that its own tile shows. On a single tile (no thumbnail) the
two frames agree, so only multi-tile samples change.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from internvl_tools.demo import synth
from internvl_tools.demo.architecture import IMAGE_SIZE, Geometry, build_tokenizer
from internvl_tools.demo.batches import TokenIds, aux_targets, tile, tile_box, tile_frames


@pytest.fixture(scope="module")
def token_ids():
    return TokenIds(build_tokenizer())


@pytest.mark.parametrize(
    ("box", "frame", "expected"),
    [
        ((4, 10, 36, 22), (0, 0, 1.0, 1.0), (4 / 128, 10 / 128, 36 / 128, 22 / 128)),  # first tile: pixels / 128
        ((132, 10, 164, 22), (1, 0, 1.0, 1.0), (4 / 128, 10 / 128, 36 / 128, 22 / 128)),  # second column
        ((4, 266, 36, 278), (0, 2, 1.0, 1.0), (4 / 128, 10 / 128, 36 / 128, 22 / 128)),  # third row
        ((120, 10, 140, 22), (0, 0, 1.0, 1.0), (120 / 128, 10 / 128, 1.0, 22 / 128)),  # crosses the edge: clipped
        ((4, 266, 36, 278), (0, 0, 1.0, 1 / 3), (4 / 128, 266 / 384, 36 / 128, 278 / 384)),  # thumbnail: the page
    ],
)
def test_a_box_is_put_on_the_scale_of_the_tile_that_shows_it(box, frame, expected):
    assert tile_box(box, frame) == pytest.approx(expected)


def _cell_box(token: int, geometry: Geometry) -> tuple[float, float, float, float]:
    row, col = divmod(token, geometry.side)
    size = geometry.cell / IMAGE_SIZE
    return (col * size, row * size, (col + 1) * size, (row + 1) * size)


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10**6),
    shape=st.sampled_from(synth.PAGE_GRIDS),
    downsample=st.sampled_from([0.5, 1.0]),
)
def test_in_the_tile_frame_every_token_target_overlaps_the_token_itself(token_ids, seed, shape, downsample):
    geometry = Geometry(downsample)
    sample = synth.page(random.Random(seed), tiles_wide=shape[0], tiles_tall=shape[1])
    tiled = tile(sample)
    targets = aux_targets(sample, tiled, token_ids, geometry, box_frame="tile")
    assert len(tile_frames(sample, tiled)) == targets["boxes"].shape[0] == tiled.num_tiles
    for t in range(tiled.num_tiles):
        for token in targets["box_mask"][t, :, 0].nonzero().flatten().tolist():
            for offset in (0, 4):  # the word's box, the line's box
                box = tuple(targets["boxes"][t, token, offset : offset + 4].tolist())
                assert _overlaps(box, _cell_box(token, geometry)), (t, token, box)


def test_in_the_image_frame_tokens_below_the_first_tile_row_are_asked_for_a_place_they_do_not_show(token_ids):
    sample = synth.page(random.Random(3), tiles_tall=3)
    tiled = tile(sample)
    targets = aux_targets(sample, tiled, token_ids, Geometry(0.5), box_frame="image")
    misplaced = [
        (t, token)
        for t in (1, 2)  # the second and third tile rows (the thumbnail is the last tile)
        for token in targets["box_mask"][t, :, 0].nonzero().flatten().tolist()
        if not _overlaps(tuple(targets["boxes"][t, token, :4].tolist()), _cell_box(token, Geometry(0.5)))
    ]
    assert misplaced


@pytest.mark.parametrize("make", [synth.text_tile, synth.table_tile, synth.chart_tile])
@pytest.mark.parametrize("seed", range(3))
def test_on_a_single_tile_both_frames_give_the_same_targets_to_the_rounding_of_the_answer(token_ids, make, seed):
    sample = make(random.Random(seed))
    tiled = tile(sample)
    assert tiled.num_tiles == 1
    image = aux_targets(sample, tiled, token_ids, box_frame="image")
    own = aux_targets(sample, tiled, token_ids, box_frame="tile")
    assert (image["box_mask"] == own["box_mask"]).all()
    assert float((image["boxes"] - own["boxes"]).abs().max()) <= 0.5 / 1000 + 1e-6


def test_an_unknown_frame_is_refused_with_the_choices(token_ids):
    sample = synth.text_tile(random.Random(0))
    with pytest.raises(ValueError, match="image, tile"):
        aux_targets(sample, tile(sample), token_ids, box_frame="page")
