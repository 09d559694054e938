"""The engine end to end on tiny random checkpoints: the answers are noise, the behaviour is asserted."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from PIL import Image
from pydantic import BaseModel

from internvl_tools import InternVL
from internvl_tools.errors import ConfigError, ContextLengthError, InternVLError, TemplateError
from internvl_tools.prompts import build_prompt
from internvl_tools.results import ChatResult

GREEDY = {"max_new_tokens": 24}


def _image(seed: int, size: tuple[int, int] = (120, 90)) -> Image.Image:
    g = torch.Generator().manual_seed(seed)
    arr = torch.randint(0, 256, (size[1], size[0], 3), generator=g, dtype=torch.uint8).numpy()
    return Image.fromarray(arr)


def _conv(question: str, *images: object) -> list[dict]:
    content = [{"type": "image", "image": im} for im in images]
    content.append({"type": "text", "text": question})
    return [{"role": "user", "content": content}]


CONVERSATIONS = [
    _conv("What is in the picture?", _image(1)),
    _conv("Describe both.", _image(2), _image(3, (60, 200))),
    _conv("Hello, who are you?"),
    _conv("Read the text.", _image(4, (300, 40))),
]


def test_construction_is_cheap_and_lazy(tiny_native: Path) -> None:
    vlm = InternVL.from_pretrained(str(tiny_native))
    assert not vlm.is_loaded
    assert "not loaded" in repr(vlm)


def test_weights_are_shared_between_engines_with_the_same_settings(tiny_engine: InternVL, tiny_native: Path) -> None:
    other = InternVL.from_pretrained(str(tiny_native)).load()
    assert other.model is tiny_engine.model
    different = InternVL.from_pretrained(str(tiny_native), preprocess="exact")
    assert different.load().model is tiny_engine.model  # preprocessing is not a weight setting


def test_auto_device_and_dtype_on_cpu(tiny_engine: InternVL) -> None:
    param = next(tiny_engine.model.parameters())
    assert param.device.type == "cpu"
    assert param.dtype is torch.float32


def test_chat_returns_a_typed_result_with_consistent_usage(tiny_engine: InternVL) -> None:
    messages = CONVERSATIONS[0]
    result = tiny_engine.chat(messages, **GREEDY)
    assert isinstance(result, ChatResult)
    assert result.finish_reason in {"stop", "length"}
    assert result.usage.prompt_tokens == tiny_engine.count_tokens(messages)
    info = tiny_engine.info
    assert result.usage.image_tokens == result.usage.num_tiles * info.tokens_per_tile
    assert 1 <= result.usage.completion_tokens <= GREEDY["max_new_tokens"]
    assert result.usage.total_tokens == result.usage.prompt_tokens + result.usage.completion_tokens


def test_prompt_is_the_official_chat_string(tiny_engine: InternVL) -> None:
    state = tiny_engine._state()
    prepared = tiny_engine._prepare(CONVERSATIONS[0], state)
    expected = build_prompt(
        tiny_engine.info.template,
        "What is in the picture?",
        num_patches_list=[prepared.num_tiles],
        tokens_per_tile=tiny_engine.info.tokens_per_tile,
    )
    assert prepared.text == expected


def test_greedy_is_deterministic_and_ask_matches_chat(tiny_engine: InternVL) -> None:
    img = _image(7)
    a = tiny_engine.ask(img, "Describe.", **GREEDY)
    b = tiny_engine.chat(_conv("Describe.", img), **GREEDY).text
    assert a == b


@pytest.mark.parametrize("index", range(len(CONVERSATIONS)))
def test_stream_concatenates_to_chat_text(tiny_engine: InternVL, index: int) -> None:
    messages = CONVERSATIONS[index]
    deltas = list(tiny_engine.stream(messages, **GREEDY))
    assert all(isinstance(d, str) and d for d in deltas)
    assert "".join(deltas) == tiny_engine.chat(messages, **GREEDY).text


def test_batch_equals_one_by_one(tiny_engine: InternVL) -> None:
    singles = [tiny_engine.chat(c, **GREEDY) for c in CONVERSATIONS]
    batched = tiny_engine.batch(CONVERSATIONS, **GREEDY)
    assert [r.text for r in batched] == [r.text for r in singles]
    assert [r.usage.prompt_tokens for r in batched] == [r.usage.prompt_tokens for r in singles]
    assert [r.finish_reason for r in batched] == [r.finish_reason for r in singles]


def test_stop_sequence_trims_text_and_sets_finish_reason(tiny_engine: InternVL) -> None:
    messages = CONVERSATIONS[2]
    full = tiny_engine.chat(messages, max_new_tokens=40).text
    # Pick a stop string from the middle of the unconstrained answer.
    stop = next((full[i : i + 2] for i in range(3, len(full) - 2) if full[i : i + 2].strip() == full[i : i + 2]), None)
    if stop is None:
        pytest.skip("the random model's answer has no usable stop string")
    result = tiny_engine.chat(messages, max_new_tokens=40, stop=[stop])
    assert result.finish_reason == "stop"
    assert stop not in result.text
    assert full.startswith(result.text)
    assert result.text == full[: full.index(stop)].strip()
    streamed = "".join(tiny_engine.stream(messages, max_new_tokens=40, stop=[stop]))
    assert streamed == result.text


def test_length_finish_reason(tiny_engine: InternVL) -> None:
    result = tiny_engine.chat(CONVERSATIONS[2], max_new_tokens=1)
    assert result.usage.completion_tokens == 1
    assert result.finish_reason in {"length", "stop"}


def test_context_limit_error_names_the_numbers(tiny_engine: InternVL) -> None:
    context = tiny_engine.context_length
    long_text = "word " * (context + 10)
    with pytest.raises(ContextLengthError, match=rf"context of {context} tokens"):
        tiny_engine.chat(long_text, max_new_tokens=4)


def test_context_limit_error_suggests_max_tiles(tiny_native: Path) -> None:
    vlm = InternVL.from_pretrained(str(tiny_native), max_tiles=40)
    context = vlm.context_length
    filler = "word " * (context - 60)
    with pytest.raises(ContextLengthError, match=r"tiles") as info:
        vlm.chat(_conv(filler, _image(5, (1600, 1200))), max_new_tokens=4)
    assert "max_tiles=" in str(info.value) or "fewer" in str(info.value)


def test_many_threads_each_get_their_own_answer(tiny_engine: InternVL) -> None:
    questions = [f"Question number {i}?" for i in range(8)]
    expected = {q: tiny_engine.chat(q, max_new_tokens=8).text for q in questions}
    answers: dict[tuple[int, int], str] = {}
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for j in range(5):
                answers[(i, j)] = tiny_engine.chat(questions[i], max_new_tokens=8).text
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(answers) == 40
    for (i, _), text in answers.items():
        assert text == expected[questions[i]]


class Address(BaseModel):
    city: str
    postcode: str


class Party(BaseModel):
    name: str
    address: Address


class InvoiceData(BaseModel):
    number: str
    total: float
    paid: bool
    seller: Party
    items: list[str]


def test_extract_returns_a_valid_nested_instance_from_random_weights(tiny_engine: InternVL) -> None:
    result = tiny_engine.extract(_image(9), "Read the invoice.", InvoiceData, max_new_tokens=256)
    assert isinstance(result, InvoiceData)
    assert isinstance(result.seller.address, Address)


def test_extract_with_a_dict_schema_returns_a_dict(tiny_engine: InternVL) -> None:
    schema = {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": ["cat", "dog"]}, "count": {"type": "integer"}},
        "required": ["label", "count"],
    }
    result = tiny_engine.extract(None, "Count.", schema, max_new_tokens=128)
    assert result["label"] in {"cat", "dog"}
    assert isinstance(result["count"], int)


def test_grounding_tokens_are_kept_in_decoded_text(tiny_engine: InternVL) -> None:
    from internvl_tools.generation.text import decode_tokens

    state = tiny_engine._state()
    tok = state.tokenizer
    ids = tok("<ref>car</ref><box>[[1, 2, 3, 4]]</box><|im_end|>", add_special_tokens=False)["input_ids"]
    assert decode_tokens(tok, ids, state.drop_ids) == "<ref>car</ref><box>[[1, 2, 3, 4]]</box>"


@pytest.mark.parametrize(
    ("messages", "kwargs", "error"),
    [
        ([], {}, TemplateError),
        ([{"role": "robot", "content": "hi"}], {}, TemplateError),
        ([{"role": "user", "content": [{"type": "audio", "audio": "x"}]}], {}, TemplateError),
        ("hi", {"max_new_tokens": 0}, ConfigError),
        ("hi", {"frobnicate": 1}, ConfigError),
        ([{"role": "user", "content": [{"type": "image", "image": b"not an image"}]}], {}, InternVLError),
    ],
)
def test_bad_input_is_a_typed_error(tiny_engine: InternVL, messages: object, kwargs: dict, error: type) -> None:
    with pytest.raises(error):
        tiny_engine.chat(messages, **kwargs)


@pytest.mark.parametrize(
    ("family", "fmt"),
    [(f, "original") for f in ("qwen2", "internlm2", "phi3", "llama", "qwen3", "qwen3_moe", "gpt_oss")],
)
def test_original_format_checkpoints_chat(family: str, fmt: str) -> None:
    from internvl_tools.testing import tiny_checkpoint

    vlm = InternVL.from_pretrained(str(tiny_checkpoint(family, fmt)))
    messages = _conv("Describe.", _image(11))
    result = vlm.chat(messages, max_new_tokens=8)
    assert result.usage.num_tiles >= 1
    assert "".join(vlm.stream(messages, max_new_tokens=8)) == result.text


def test_checkpoint_chat_template_option(tiny_native: Path) -> None:
    vlm = InternVL.from_pretrained(str(tiny_native), prompt_format="checkpoint")
    state = vlm._state()
    prepared = vlm._prepare(_conv("Describe.", _image(12)), state)
    assert prepared.text.startswith("<|im_start|>user\n<img>")  # the -hf template has no system block
    assert prepared.text.endswith("Describe.<|im_end|>\n<|im_start|>assistant\n")
    assert isinstance(vlm.chat(_conv("Describe.", _image(12)), max_new_tokens=4).text, str)


def test_tiny_alias_builds_offline() -> None:
    assert isinstance(InternVL.from_pretrained("tiny").ask(None, "Hi", max_new_tokens=2), str)


@pytest.mark.parametrize(
    "rows", [slice(0, 3), slice(0, 1), slice(3, 4)], ids=["left-padded", "one-row", "one-wide-image"]
)
def test_lean_decoding_loop_equals_transformers_generate(tiny_engine: InternVL, rows: slice) -> None:
    """Our greedy loop must produce exactly the tokens of transformers' generate() (left-padded batch too), and
    pass a mask to the decoding steps only when the batch is padded."""
    from internvl_tools.generation.decoding import decode

    state = tiny_engine._state()
    prepared = [tiny_engine._prepare(c, state) for c in CONVERSATIONS[rows]]
    n = len(prepared)
    width = max(len(p.input_ids) for p in prepared)
    ids = torch.full((n, width), state.pad_token_id)
    mask = torch.zeros((n, width), dtype=torch.long)
    for row, p in enumerate(prepared):
        ids[row, width - len(p.input_ids) :] = torch.tensor(p.input_ids)
        mask[row, width - len(p.input_ids) :] = 1
    pixel_list = [p.pixel_values for p in prepared if p.pixel_values is not None]
    pixels = torch.cat(pixel_list) if pixel_list else None
    step_masks: list[bool] = []

    def record(_module, args, kwargs):
        if kwargs.get("input_ids") is not None and kwargs["input_ids"].shape[1] == 1:
            step_masks.append(kwargs.get("attention_mask") is not None)

    hook = state.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        with torch.inference_mode():
            ours = decode(
                state.model,
                ids,
                mask,
                pixels,
                max_new_tokens=12,
                eos_token_id=state.eos_token_id,
                pad_token_id=state.pad_token_id,
            )
    finally:
        hook.remove()
    with torch.inference_mode():
        theirs = state.model.generate(
            input_ids=ids,
            attention_mask=mask,
            pixel_values=pixels,
            max_new_tokens=12,
            do_sample=False,
            eos_token_id=state.eos_token_id,
            pad_token_id=state.pad_token_id,
        )[:, width:]
    assert ours.tolist() == theirs[:, : ours.shape[1]].tolist()
    padded = len({len(p.input_ids) for p in prepared}) > 1
    assert step_masks and set(step_masks) == {padded}


def test_beam_search_goes_through_generate(tiny_engine: InternVL) -> None:
    result = tiny_engine.chat(CONVERSATIONS[2], max_new_tokens=6, num_beams=2)
    assert isinstance(result.text, str)
    assert 1 <= result.usage.completion_tokens <= 6


def test_sampling_with_a_seed_is_reproducible(tiny_engine: InternVL) -> None:
    kwargs = {"max_new_tokens": 12, "temperature": 0.9, "top_p": 0.9, "top_k": 50, "seed": 123}
    assert tiny_engine.chat(CONVERSATIONS[2], **kwargs).text == tiny_engine.chat(CONVERSATIONS[2], **kwargs).text


def test_batch_with_one_bad_item_still_answers_the_rest(tiny_engine: InternVL) -> None:
    bad = [{"role": "user", "content": [{"type": "image", "image": b"\x89PNG broken"}, {"type": "text", "text": "?"}]}]
    too_long = "word " * (tiny_engine.context_length + 5)
    results = tiny_engine.batch([CONVERSATIONS[0], bad, CONVERSATIONS[2], too_long], **GREEDY)
    assert [r.finish_reason == "error" for r in results] == [False, True, False, True]
    assert "ImageDecodeError" in (results[1].error or "")
    assert "ContextLengthError" in (results[3].error or "")
    assert results[0].text == tiny_engine.chat(CONVERSATIONS[0], **GREEDY).text
    assert results[2].text == tiny_engine.chat(CONVERSATIONS[2], **GREEDY).text


# --- grounding end to end (content random; types, scales and prompts asserted) ------------------------------------


def _spy_prompts(engine: InternVL, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    original = engine.chat

    def chat(messages, **kwargs):
        seen.append(messages[0].text)
        return original(messages, **kwargs)

    monkeypatch.setattr(engine, "chat", chat)
    return seen


def test_ground_returns_pixel_boxes_of_the_original_image(tiny_engine: InternVL, monkeypatch) -> None:
    from internvl_tools.grounding.result import GroundingResult

    seen = _spy_prompts(tiny_engine, monkeypatch)
    img = _image(21, (640, 427))
    result = tiny_engine.ground(img, "the red car")
    assert isinstance(result, GroundingResult)
    assert seen == [
        "<image>\nPlease provide the bounding box coordinate of the region this sentence describes: "
        "<ref>the red car</ref>".removeprefix("<image>\n")
    ]
    assert tuple(result.image_size) == (640, 427)
    assert result.image is not None and result.image.size == (640, 427)
    for box in result.boxes:
        assert 0 <= box.x1 <= box.x2 <= 640 and 0 <= box.y1 <= box.y2 <= 427


def test_ground_maps_the_models_scale_to_pixels(tiny_engine: InternVL, monkeypatch) -> None:
    """Whatever the tiling, a 0-1000 answer maps onto the whole original image."""
    from internvl_tools.results import ChatResult, Usage

    def fake_chat(messages, **kwargs):
        return ChatResult(
            text="<ref>car</ref><box>[[100, 200, 500, 1000]]</box>",
            usage=Usage(prompt_tokens=1, completion_tokens=1),
            finish_reason="stop",
        )

    monkeypatch.setattr(tiny_engine, "chat", fake_chat)
    result = tiny_engine.ground(_image(22, (2000, 500)), "car")
    assert result.boxes[0].xyxy == pytest.approx((200.0, 100.0, 1000.0, 500.0))
    assert result.labels == ["car"]


def test_detect_and_grounded_ocr_and_region(tiny_engine: InternVL, monkeypatch) -> None:
    from internvl_tools.grounding.result import GroundingResult
    from internvl_tools.grounding.types import RegionDescription

    seen = _spy_prompts(tiny_engine, monkeypatch)
    img = _image(23, (300, 200))
    assert isinstance(tiny_engine.detect(img, max_new_tokens=16), GroundingResult)
    assert seen[-1] == "Please detect and label all objects in the following image and mark their positions."
    assert isinstance(tiny_engine.ocr_boxes(img, max_new_tokens=16), GroundingResult)
    region = tiny_engine.describe_region(img, (30, 20, 150, 100), max_new_tokens=8)
    assert isinstance(region, RegionDescription)
    assert "<box>[[100, 100, 500, 500]]</box>" in seen[-1]
    assert region.image_size == (300, 200)


def test_stream_result_matches_chat(tiny_engine: InternVL) -> None:
    from internvl_tools.generation.stream import TextStream

    stream = tiny_engine.stream(CONVERSATIONS[0], **GREEDY)
    assert isinstance(stream, TextStream) and stream.result is None
    text = "".join(stream)
    chat = tiny_engine.chat(CONVERSATIONS[0], **GREEDY)
    assert stream.result is not None
    assert stream.result.text == text == chat.text
    assert stream.result.usage == chat.usage
    assert stream.result.finish_reason == chat.finish_reason


def test_trust_remote_code_is_opt_in_and_failures_list_known_problems() -> None:
    from internvl_tools.errors import ModelLoadError
    from internvl_tools.testing import tiny_checkpoint

    path = tiny_checkpoint("internlm2", "original")
    assert InternVL.from_pretrained(str(path)).trust_remote_code is False
    assert InternVL.from_pretrained(str(path)).load().model.__class__.__name__ == "InternVLForConditionalGeneration"
    with pytest.raises(ModelLoadError, match="Known problems") as info:
        InternVL.from_pretrained(str(path), trust_remote_code=True).load()
    assert "without trust_remote_code" in str(info.value)


@pytest.mark.parametrize(
    ("answer", "stops", "first_done_at"),
    [
        ("The total is 12 EUR. Thank you", ["EUR"], "The total is 12 EUR"),
        ("The total is 12 EUR. Thank you", ["Thank", "12"], "The total is 12"),
        ("The total is 12 EUR. Thank you", ["nowhere"], None),
        ("abc " * 200 + "STOP here", ["STOP"], "abc " * 200 + "STOP"),  # found far from the start, in the tail
        ("naïve café — fin", ["café"], "naïve café"),  # multi-byte characters inside the stop string
    ],
)
def test_stop_strings_criterion_fires_at_the_first_token_completing_a_stop(
    tiny_engine: InternVL, answer: str, stops: list[str], first_done_at: str | None
) -> None:
    import torch

    from internvl_tools.generation.stopping import StopStrings

    state = tiny_engine._state()
    tokenizer = state.tokenizer
    prompt = [tokenizer.pad_token_id or 0] * 3
    ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    criterion = StopStrings(tokenizer, stops, len(prompt), state.drop_ids)
    fired = None
    for k in range(1, len(ids) + 1):
        if bool(criterion(torch.tensor([prompt + ids[:k]]), None)[0]):
            fired = k
            break
    if first_done_at is None:
        assert fired is None
    else:
        assert fired is not None
        text = tokenizer.decode(ids[:fired])
        assert text.startswith(first_done_at) and not tokenizer.decode(ids[: fired - 1]).startswith(first_done_at)


@pytest.mark.parametrize(
    ("history_images", "tiles"),
    [
        ("split", [3, 3, 3]),  # 6 tiles over 3 images: 2 each, a 3:1 image gets a 2x1 grid + thumbnail
        ("one_tile", [1, 4, 4]),  # the earlier turn's image: 1; the last turn's two share 6: 3x1 + thumbnail each
    ],
)
def test_history_images_sets_how_earlier_turns_share_the_tile_budget(
    tiny_native, history_images: str, tiles: list[int]
) -> None:
    from PIL import Image

    engine = InternVL.from_pretrained(str(tiny_native), max_tiles=6, history_images=history_images)
    state = engine._state()
    side = state.info.image_size
    wide = Image.new("RGB", (3 * side, side), (200, 30, 30))
    messages = [
        {"role": "user", "content": [{"type": "image", "image": wide}, {"type": "text", "text": "First?"}]},
        {"role": "assistant", "content": "Red."},
        {
            "role": "user",
            "content": [
                {"type": "image", "image": wide},
                {"type": "image", "image": wide},
                {"type": "text", "text": "And these?"},
            ],
        },
    ]
    prepared = engine._prepare(messages, state)
    assert prepared.pixel_values.shape[0] == sum(tiles)
    assert prepared.text.count("<img>") == 3


def test_history_images_is_validated() -> None:
    from internvl_tools.errors import ConfigError

    with pytest.raises(ConfigError, match="history_images must be 'split' or 'one_tile'"):
        InternVL.from_pretrained("tiny", history_images="last")


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_batch_prepares_on_threads_with_the_same_answers_and_errors_in_place(tiny_native: Path, threads, monkeypatch):
    """Decoding and tiling run side by side (they release the GIL); answers, order and per-item errors do not change."""
    names: set[str] = set()
    original = InternVL._prepare

    def spy(self, messages, state):
        names.add(threading.current_thread().name)
        return original(self, messages, state)

    monkeypatch.setattr(InternVL, "_prepare", spy)
    vlm = InternVL.from_pretrained(str(tiny_native), prepare_threads=threads)
    convs = [_conv(f"Q{k}?", _image(k)) for k in range(4)]
    convs.insert(2, _conv("Broken?", b"not an image at all"))
    results = vlm.batch(convs, max_new_tokens=6)
    sequential = InternVL.from_pretrained(str(tiny_native), prepare_threads=1).batch(convs, max_new_tokens=6)
    assert [r.text for r in results] == [r.text for r in sequential]
    assert [r.finish_reason == "error" for r in results] == [False, False, True, False, False]
    assert any(name.startswith("internvl-prepare") for name in names) is (threads > 1)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2"])
def test_prepare_threads_must_be_a_positive_int(bad):
    with pytest.raises(ConfigError, match="prepare_threads"):
        InternVL("tiny", prepare_threads=bad)
