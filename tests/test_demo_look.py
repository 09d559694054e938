"""The demo model's attention and carry auxiliaries: which answer tokens should look where (and bring back which
box), and the loss on one head.

The targets must point at the right tokens (a query that writes a box's digits, image tokens over that box's
word), and the loss must be the attention the model really computes, or it trains the wrong thing.
"""

from __future__ import annotations

import random

import pytest

from internvl_tools.demo import synth
from internvl_tools.demo.architecture import IMAGE_SIZE, Geometry, build_config, build_tokenizer
from internvl_tools.demo.batches import TokenIds, collate, look_spans, tile
from internvl_tools.demo.tasks import make_example

LOCATED = ["ground", "ground_in_cell", "page_ground", "line_ground", "page_line_ground", "chart_value", "chart_table"]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("task", LOCATED)
def test_spans_cover_the_located_parts_of_the_answer(task, seed):
    sample, question, answer = make_example(task, random.Random(seed))
    spans = look_spans(sample, question, answer)
    texts = [answer[a:b] for a, b, _ in spans]
    if task.startswith("chart"):
        values = [str(v) for _, v in sample.chart]
        assert texts and all(t in values for t in texts)
        assert len(texts) == (1 if task == "chart_value" else len(sample.chart))
    else:
        assert texts == [m for m in answer.split("<box>")[1:] for m in [m.split("</box>")[0]]]
        wanted = [sample.line_boxes[k].box for k in range(len(texts))] if "line" in task else None
        if wanted is not None:
            assert [box for _, _, box in spans] == wanted


@pytest.mark.parametrize("task", ["ocr", "table_ocr", "page_ocr", "easy_ocr"])
def test_plain_transcriptions_have_nothing_to_look_at(task):
    sample, question, answer = make_example(task, random.Random(1))
    assert look_spans(sample, question, answer) == []


@pytest.mark.parametrize("downsample", [0.5, 1.0])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("task", LOCATED)
def test_queries_write_the_span_and_targets_are_image_tokens_over_its_box(tokenizer, task, seed, downsample):
    geometry = Geometry(downsample)
    side, cell = geometry.side, geometry.cell
    sample, question, answer = make_example(task, random.Random(seed))
    batch = collate([(sample, question, answer)], tokenizer, TokenIds(tokenizer), geometry)
    ids = batch["input_ids"][0].tolist()
    image_id = tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>")
    image_positions = [p for p, i in enumerate(ids) if i == image_id]
    spans = look_spans(sample, question, answer)
    assert len(batch["looks"]) == len(spans)
    tiled = tile(sample)
    assert len(image_positions) == tiled.num_tiles * geometry.tokens_per_tile
    assert batch["chars"].shape[:2] == batch["boxes"].shape[:2] == (tiled.num_tiles, geometry.tokens_per_tile)
    cols, _ = tiled.grid
    w, h = sample.image.size
    for (row, queries, targets, carried), (a, b, box) in zip(batch["looks"], spans, strict=True):
        assert row == 0
        assert carried == pytest.approx((box[0] / w, box[1] / h, box[2] / w, box[3] / h))
        written = tokenizer.decode([ids[q + 1] for q in queries])
        assert written == answer[a:b]
        assert all(ids[t] == image_id for t in targets)
        # The first tile's targeted cells overlap the box's own cells (pixels scaled onto the tile grid).
        tile_targets = {image_positions.index(t) for t in targets}
        assert tile_targets
        first = {k for k in tile_targets if k < geometry.tokens_per_tile}
        if cols == 1 and sample.image.height == IMAGE_SIZE:
            x1, y1, x2, y2 = box
            expected = {
                r * side + c
                for r in range(side)
                for c in range(side)
                if min(x2, (c + 1) * cell) - max(x1, c * cell) >= 2 and min(y2, (r + 1) * cell) - max(y1, r * cell) >= 2
            }
            assert first == expected


def test_loss_is_minus_log_of_the_heads_real_attention_on_the_targets(tokenizer):
    import torch
    from transformers import InternVLForConditionalGeneration

    from internvl_tools.demo.losses import LOOK_LAYER, look_loss

    torch.manual_seed(0)
    model = InternVLForConditionalGeneration(build_config(tokenizer)).eval()
    model.set_attn_implementation("eager")
    captured = {}
    attention = model.model.language_model.layers[LOOK_LAYER].self_attn
    attention.register_forward_pre_hook(
        lambda _m, _a, kw: captured.update(x=(kw["hidden_states"], kw["position_embeddings"])), with_kwargs=True
    )
    examples = [make_example(t, random.Random(3)) for t in ("ground", "page_line_ground", "chart_value")]
    batch = collate(examples, tokenizer, TokenIds(tokenizer))
    with torch.no_grad():
        out = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            pixel_values=batch["pixel_values"],
            output_attentions=True,
        )
        weights = out.attentions[LOOK_LAYER]
        for look in batch["looks"][::2]:
            row, queries, targets, _ = look
            for head in range(model.config.text_config.num_attention_heads):
                mass = weights[row, head][queries][:, targets].sum(-1)
                got = look_loss(attention, *captured["x"], [look], head=head)
                assert float(got) == pytest.approx(float(-mass.log().mean()), rel=1e-4)


def test_loss_without_looks_is_zero_and_a_batch_of_looks_is_their_mean(tokenizer):
    import torch
    from transformers import Qwen2Config
    from transformers.models.qwen2.modeling_qwen2 import Qwen2Attention, Qwen2RotaryEmbedding

    from internvl_tools.demo.losses import look_loss

    config = Qwen2Config(hidden_size=32, num_attention_heads=2, num_key_value_heads=1)
    torch.manual_seed(1)
    attention = Qwen2Attention(config, 0)
    hidden = torch.randn(2, 7, 32)
    rope = Qwen2RotaryEmbedding(config)(hidden, torch.arange(7)[None])
    a, b = (0, [5, 6], [1, 2], None), (1, [3], [0], None)
    with torch.no_grad():
        assert float(look_loss(attention, hidden, rope, [])) == 0.0
        both = look_loss(attention, hidden, rope, [a, b])
        mean = (look_loss(attention, hidden, rope, [a]) + look_loss(attention, hidden, rope, [b])) / 2
        assert float(both) == pytest.approx(float(mean))
        # A query only looks back: its own token is one of the keys, the one after it is not.
        assert float(look_loss(attention, hidden, rope, [(0, [3], [3], None)])) < float("inf")


@pytest.mark.parametrize("first", [0.5, 1.0, 4.0])
def test_first_weight_blends_the_first_query_into_the_mean(first):
    import torch
    from transformers import Qwen2Config
    from transformers.models.qwen2.modeling_qwen2 import Qwen2Attention, Qwen2RotaryEmbedding

    from internvl_tools.demo.losses import look_loss

    config = Qwen2Config(hidden_size=32, num_attention_heads=2, num_key_value_heads=1)
    torch.manual_seed(2)
    attention = Qwen2Attention(config, 0)
    hidden = torch.randn(1, 8, 32)
    rope = Qwen2RotaryEmbedding(config)(hidden, torch.arange(8)[None])
    look = (0, [4, 5, 6, 7], [1, 2], None)
    with torch.no_grad():
        mean = float(look_loss(attention, hidden, rope, [look]))
        head_start = float(look_loss(attention, hidden, rope, [(0, [4], [1, 2], None)]))
        got = float(look_loss(attention, hidden, rope, [look], first=first))
        assert float(look_loss(attention, hidden, rope, [look], first=0.0)) == mean
    assert head_start != pytest.approx(mean)  # otherwise the blend below would not test anything
    assert got == pytest.approx((mean + first * head_start) / (1 + first), rel=1e-5)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ("", None),
        ("ground=0.25,page_line_ground=0", {"ground": 0.25, "page_line_ground": 0.0}),
        ("ocr=0.30", {"ocr": round(0.30 / 1.15, 6)}),
        (" ground = 0.15 , ", {"ground": 0.15}),
    ],
)
def test_mixture_overrides_replace_weights_and_keep_a_sum_of_one(overrides, expected):
    from internvl_tools.demo.tasks import MIXTURE, mixture_with

    mixture = dict(mixture_with(overrides))
    assert list(mixture) == [name for name, _ in MIXTURE]
    assert sum(mixture.values()) == pytest.approx(1.0, abs=1e-5)
    for name, weight in (expected or {}).items():
        assert mixture[name] == pytest.approx(weight, abs=1e-6)
    if expected is None:
        assert mixture == pytest.approx(dict(MIXTURE))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ("grounding=0.2", "unknown task 'grounding'"),
        ("ground=lots", "must be a number"),
        ("ground=-1", "must be >= 0"),
        (",".join(f"{name}=0" for name in ("easy_ocr", "ocr", "table_ocr", "ground", "page_ground")), None),
    ],
)
def test_bad_mixture_overrides_name_the_problem(overrides, message):
    from internvl_tools.demo.tasks import mixture_with

    if message is None:  # zeroing some tasks is fine; the rest are scaled up
        assert sum(w for _, w in mixture_with(overrides)) == pytest.approx(1.0, abs=1e-5)
        return
    with pytest.raises(ValueError, match=message):
        mixture_with(overrides)


def test_draw_task_never_picks_a_task_weighted_zero():
    from internvl_tools.demo.tasks import draw_task, mixture_with

    mixture = mixture_with("page_line_ground=0,page_ocr=0")
    drawn = {draw_task(random.Random(i), mixture) for i in range(2000)}
    assert "page_line_ground" not in drawn and "page_ocr" not in drawn
    assert drawn == {name for name, weight in mixture if weight > 0}

    class Top(random.Random):  # a draw above the rounded weights' sum
        def random(self):
            return 0.9999999999

    assert draw_task(Top(), (("a", 0.5), ("b", 0.4999), ("c", 0.0))) == "b"


def test_train_cli_rejects_a_bad_mixture_before_training(tmp_path, capsys):
    from internvl_tools.demo.train import main

    with pytest.raises(SystemExit) as exc:
        main(["--out", str(tmp_path / "run"), "--mix", "grounding=1"])
    assert exc.value.code == 2
    assert "unknown task 'grounding'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_synthetic_chart_words_alternate_value_and_label():
    # look_spans reads a chart's value boxes as words[::2]; the generator must keep drawing value, then label.
    sample = synth.chart_tile(random.Random(7))
    assert [w.text for w in sample.words[::2]] == [str(v) for _, v in sample.chart]
    assert [w.text for w in sample.words[1::2]] == [label for label, _ in sample.chart]
