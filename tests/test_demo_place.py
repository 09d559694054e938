"""The demo model's place auxiliary (``--place-aux``): each image token names the index of its tile in the image.

A tile is encoded on its own, so where it sits in a page is only in the order of its image tokens; the language
model reads that order causally, so the target is the tile's index (thumbnail last), not its place in a grid whose
end the token has not seen. The targets must follow the prompt's layout exactly: every tile's tokens, in order, on
every page shape the generator draws.
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from internvl_tools.demo import synth
from internvl_tools.demo.architecture import MAX_TILES, TOKENS_PER_TILE, build_tokenizer
from internvl_tools.demo.batches import TokenIds, collate, tile
from internvl_tools.demo.losses import place_loss, tile_places


@given(
    rows=st.lists(st.lists(st.booleans(), min_size=1, max_size=40), min_size=1, max_size=4),
    per=st.sampled_from([1, 2, 16]),
)
@settings(max_examples=60, deadline=None)
def test_each_image_token_is_given_its_rank_over_the_tile_size_in_its_own_row(rows, per):
    import torch

    width = max(len(r) for r in rows)
    mask = torch.tensor([r + [False] * (width - len(r)) for r in rows])
    expected = [k // per for r in rows for k in range(sum(r))]
    assert tile_places(mask, per).tolist() == expected


@pytest.mark.parametrize(("wide", "tall"), [(1, 1), (2, 1), (1, 3), (3, 2), (2, 3)])
def test_on_every_page_shape_each_tile_and_the_thumbnail_get_their_tokens_in_prompt_order(wide, tall):
    tokenizer = build_tokenizer()
    sample = synth.page(random.Random(wide * 10 + tall), tall, tiles_wide=wide)
    tiles = tile(sample).num_tiles
    examples = [(sample, "<ocr>", "x"), (synth.page(random.Random(1), 1, tiles_wide=1), "<ocr>", "x")]
    batch = collate(examples, tokenizer, TokenIds(tokenizer))
    mask = batch["input_ids"] == tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    places = tile_places(mask, TOKENS_PER_TILE).tolist()
    first = places[: tiles * TOKENS_PER_TILE]
    assert first == [t for t in range(tiles) for _ in range(TOKENS_PER_TILE)]
    assert tiles == (1 if wide * tall == 1 else wide * tall + 1)  # the thumbnail comes last, after the grid
    assert max(places) <= MAX_TILES  # the head's classes: the tiles and the thumbnail
    assert places[tiles * TOKENS_PER_TILE :] == [0] * TOKENS_PER_TILE  # the second row starts again at 0


def test_the_loss_is_near_zero_when_the_tokens_hold_their_tile_and_chance_when_they_do_not():
    import torch

    mask = torch.zeros(2, 40, dtype=torch.bool)
    mask[0, 3:35] = True  # two tiles of 16 tokens
    mask[1, 5:21] = True  # one tile
    head = torch.nn.Linear(MAX_TILES + 1, MAX_TILES + 1)
    torch.nn.init.eye_(head.weight)
    head.weight.data *= 20.0
    torch.nn.init.zeros_(head.bias)
    held = torch.zeros(2, 40, MAX_TILES + 1)
    held[mask] = torch.nn.functional.one_hot(tile_places(mask, 16), MAX_TILES + 1).float()
    swapped = held.clone()
    swapped[0, 3:35] = held[0, 3:35].flip(0)  # the first image's two tiles hold each other's index
    with torch.no_grad():
        assert float(place_loss(head, held, mask, 16)) < 1e-6
        assert float(place_loss(head, swapped, mask, 16)) > 10.0
        blank = float(place_loss(head, torch.zeros(2, 40, MAX_TILES + 1), mask, 16))
    assert math.isclose(blank, math.log(MAX_TILES + 1), rel_tol=1e-6)
