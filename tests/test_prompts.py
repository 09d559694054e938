"""Specification of internvl_tools.prompts: the official chat() prompts byte for byte, and the engine's builder;
and of family detection (internvl_tools.checkpoints.config), which picks the template.

Expected strings are written out by hand from docs/internvl_reference.md §1–3 and §7 (and the upstream
conversation rules they describe). The system messages are literal copies of §1.2, not imported from
``internvl_tools.constants``, so a typo there fails here.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from internvl_tools.checkpoints.config import FamilyInfo, detect_family, detect_template
from internvl_tools.errors import ConfigError, TemplateError
from internvl_tools.prompts import (
    TEMPLATES,
    ChatPrompt,
    ImageSlot,
    PromptTurn,
    Template,
    VideoSlot,
    build_chat_prompt,
    build_prompt,
    expand_image_placeholders,
    get_template,
)

SYS_OLD = "你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, 是一个有用无害的人工智能助手。"
SYS_25 = "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。"
SYS_OSS = (
    "You are InternVL, a large language model trained by Shanghai AI Laboratory.\nKnowledge cutoff: 2024-06\n"
    "Current date: 2025-08-06\n\nReasoning: low\n\n# Valid channels: final. Channel must be included for every message."
)


def ctx(n_tiles: int, per_tile: int = 256) -> str:
    return "<img>" + "<IMG_CONTEXT>" * (per_tile * n_tiles) + "</img>"


CTX = "<img>" + "<IMG_CONTEXT>" * 256 + "</img>"

# --- §7 reference prompts: question "Describe.", one image of one tile --------------------------------------------

REFERENCE_ONE_IMAGE = {
    "internvl2_5": (
        f"<|im_start|>system\n{SYS_25}<|im_end|>\n<|im_start|>user\n{CTX}\nDescribe.<|im_end|>\n<|im_start|>assistant\n"
    ),
    "Hermes-2": (
        f"<|im_start|>system\n{SYS_OLD}<|im_end|><|im_start|>user\n{CTX}\nDescribe.<|im_end|><|im_start|>assistant\n"
    ),
    "internlm2-chat": (
        f"<|im_start|>system\n{SYS_OLD}<|im_end|><|im_start|>user\n{CTX}\nDescribe.<|im_end|><|im_start|>assistant\n"
    ),
    "phi3-chat": f"<|system|>\n{SYS_OLD}<|end|><|user|>\n{CTX}\nDescribe.<|end|><|assistant|>\n",
    "internvl_zh": f" <human>: {CTX}\nDescribe. <bot>:",
    # Not in §7: derived from §1.3 MPT_TWO (system_template '<|start|>system<|message|>{system_message}' upstream).
    "internvl3_5_gpt_oss": (
        f"<|start|>system<|message|>{SYS_OSS}<|end|><|start|>user<|message|>{CTX}\nDescribe.<|end|><|start|>assistant"
    ),
}


def test_every_template_has_a_reference_vector() -> None:
    assert set(REFERENCE_ONE_IMAGE) == set(TEMPLATES)


@pytest.mark.parametrize("name", list(REFERENCE_ONE_IMAGE))
def test_build_prompt_matches_reference_one_image(name: str) -> None:
    assert build_prompt(name, "Describe.", num_patches_list=[1]) == REFERENCE_ONE_IMAGE[name]


@pytest.mark.parametrize("name", list(REFERENCE_ONE_IMAGE))
def test_build_prompt_accepts_template_object(name: str) -> None:
    assert build_prompt(TEMPLATES[name], "Describe.", num_patches_list=[1]) == REFERENCE_ONE_IMAGE[name]


def test_text_only_history_internvl2_5() -> None:
    got = build_prompt("internvl2_5", "And then?", history=[("Hello", "Hi there.")])
    assert got == (
        f"<|im_start|>system\n{SYS_25}<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
        "Hi there.<|im_end|>\n<|im_start|>user\nAnd then?<|im_end|>\n<|im_start|>assistant\n"
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (
            "Hermes-2",
            f"<|im_start|>system\n{SYS_OLD}<|im_end|><|im_start|>user\nHello<|im_end|><|im_start|>assistant\n"
            "Hi there.<|im_end|><|im_start|>user\nAnd then?<|im_end|><|im_start|>assistant\n",
        ),
        (
            "phi3-chat",
            f"<|system|>\n{SYS_OLD}<|end|><|user|>\nHello<|end|><|assistant|>\nHi there.<|end|>"
            "<|user|>\nAnd then?<|end|><|assistant|>\n",
        ),
        # ret = '' + ' '; user messages end with ' ', assistant messages with '</s>'; open slot '<bot>:'.
        ("internvl_zh", " <human>: Hello <bot>: Hi there.</s><human>: And then? <bot>:"),
        # History answers get the final-channel header the official chat() keeps in its responses.
        (
            "internvl3_5_gpt_oss",
            f"<|start|>system<|message|>{SYS_OSS}<|end|><|start|>user<|message|>Hello<|end|>"
            "<|start|>assistant<|channel|>final<|message|>Hi there.<|end|>"
            "<|start|>user<|message|>And then?<|end|><|start|>assistant",
        ),
    ],
)
def test_text_only_history_other_templates(name: str, expected: str) -> None:
    assert build_prompt(name, "And then?", history=[("Hello", "Hi there.")]) == expected


def test_gpt_oss_history_answer_with_header_is_not_doubled() -> None:
    with_header = build_prompt(
        "internvl3_5_gpt_oss", "And then?", history=[("Hello", "<|channel|>final<|message|>Hi there.")]
    )
    assert with_header == build_prompt("internvl3_5_gpt_oss", "And then?", history=[("Hello", "Hi there.")])
    assert with_header.count("<|channel|>") == 1


def test_gpt_oss_final_assistant_message_closes_with_return() -> None:
    tpl = get_template("internvl3_5_gpt_oss")
    got = tpl.render([("user", "Q"), ("assistant", "A")], system_message="S")
    assert got == (
        "<|start|>system<|message|>S<|end|><|start|>user<|message|>Q<|end|>"
        "<|start|>assistant<|channel|>final<|message|>A<|return|>"
    )


def test_multi_image_official_form() -> None:
    question = "Image-1: <image>\nImage-2: <image>\nCompare."
    got = build_prompt("internvl2_5", question, num_patches_list=[7, 5])
    user = (
        "Image-1: <img>"
        + "<IMG_CONTEXT>" * 1792
        + "</img>\nImage-2: <img>"
        + "<IMG_CONTEXT>" * 1280
        + "</img>\nCompare."
    )
    assert got == (
        f"<|im_start|>system\n{SYS_25}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )


def test_video_official_form() -> None:
    question = "Frame1: <image>\nFrame2: <image>\nFrame3: <image>\nWhat happens?"
    got = build_prompt("internvl2_5", question, num_patches_list=[1, 1, 1])
    user = f"Frame1: {CTX}\nFrame2: {CTX}\nFrame3: {CTX}\nWhat happens?"
    assert got == (
        f"<|im_start|>system\n{SYS_25}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
    )


def test_image_placeholder_in_question_is_not_prefixed() -> None:
    got = build_prompt("internvl2_5", "Look: <image>\nWhat?", num_patches_list=[2])
    assert "<|im_start|>user\nLook: " + ctx(2) + "\nWhat?<|im_end|>" in got


def test_text_only_question_gets_no_image_prefix() -> None:
    got = build_prompt("internvl2_5", "Hi")
    assert got.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert "<img>" not in got


def test_combined_images_share_one_block() -> None:
    # README "combined images": two images stacked under one '<image>' are one entry of 3+2 tiles.
    got = build_prompt("internvl2_5", "Describe both.", num_patches_list=[5])
    assert got.count("<img>") == 1 and got.count("<IMG_CONTEXT>") == 5 * 256


def test_history_with_image_first_placeholder_gets_the_tokens() -> None:
    # Turn 2 of an image chat: chat() stored the question with '<image>\n' prepended; no new prefix is added.
    got = build_prompt(
        "internvl2_5", "And the colour?", history=[("<image>\nWhat is it?", "A cat.")], num_patches_list=[3]
    )
    assert got == (
        f"<|im_start|>system\n{SYS_25}<|im_end|>\n<|im_start|>user\n{ctx(3)}\nWhat is it?<|im_end|>\n"
        "<|im_start|>assistant\nA cat.<|im_end|>\n<|im_start|>user\nAnd the colour?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_history_without_placeholder_and_images_is_an_error() -> None:
    # With history chat() adds no '<image>'; images with nowhere to go would be silently dropped upstream.
    with pytest.raises(TemplateError, match=r"0 '<image>' placeholder\(s\) but num_patches_list has 1 entry"):
        build_prompt("internvl2_5", "What is it?", history=[("Hello", "Hi.")], num_patches_list=[1])


@pytest.mark.parametrize(
    ("question", "history", "patches", "counts"),
    [
        ("<image>\n<image>\nQ", (), [1], ("2 '<image>'", "1 entry")),
        ("<image>\nQ", (), [], ("1 '<image>'", "0 entries")),
        ("Q", [("<image>\nold", "A.")], [], ("1 '<image>'", "0 entries")),
        ("Image-1: <image>\nQ", (), [1, 2], ("1 '<image>'", "2 entries")),
    ],
)
def test_placeholder_count_mismatch_names_both_counts(question, history, patches, counts) -> None:
    with pytest.raises(TemplateError) as err:
        build_prompt("internvl2_5", question, history=history, num_patches_list=patches)
    for c in counts:
        assert c in str(err.value)
    assert "num_patches" in str(err.value)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_patch_counts_and_tile_sizes_are_refused(bad) -> None:
    with pytest.raises(TemplateError):
        build_prompt("internvl2_5", "Q", num_patches_list=[bad])
    with pytest.raises(TemplateError):
        build_prompt("internvl2_5", "Q", num_patches_list=[1], tokens_per_tile=bad)


@pytest.mark.parametrize(("per_tile", "n"), [(64, 1), (1, 3), (256, 13)])
def test_tokens_per_tile_scales_context(per_tile: int, n: int) -> None:
    got = build_prompt("internvl2_5", "Describe.", num_patches_list=[n], tokens_per_tile=per_tile)
    assert f"<|im_start|>user\n<img>{'<IMG_CONTEXT>' * (per_tile * n)}</img>\nDescribe.<|im_end|>" in got


def test_expand_image_placeholders_in_order() -> None:
    assert expand_image_placeholders("x<image>y<image>z", [2, 1], tokens_per_tile=1) == (
        "x<img><IMG_CONTEXT><IMG_CONTEXT></img>y<img><IMG_CONTEXT></img>z"
    )
    assert expand_image_placeholders("no images", [], tokens_per_tile=4) == "no images"


# --- system messages -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected_system"),
    [
        ("Hermes-2", SYS_OLD),
        ("internlm2-chat", SYS_OLD),
        ("phi3-chat", SYS_OLD),
        ("internvl2_5", SYS_25),
        ("internvl3_5_gpt_oss", SYS_OSS),
        ("internvl_zh", ""),
    ],
)
def test_default_system_messages(name: str, expected_system: str) -> None:
    assert get_template(name).system_message == expected_system


def test_system_message_override_and_empty_block_still_emitted() -> None:
    got = build_prompt("internvl2_5", "Hi", system_message="You are terse.")
    assert got.startswith("<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nHi")
    empty = build_prompt("internvl2_5", "Hi", system_message="")
    assert empty == "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert build_prompt("internvl_zh", "Hi", system_message="Be kind.") == "Be kind. <human>: Hi <bot>:"
    # Braces in a system message are text, not format fields.
    assert "{json}" in build_prompt("phi3-chat", "Hi", system_message="Answer in {json}.")


# --- stop tokens and post-processing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "stop_token", "stop_sequences"),
    [
        ("Hermes-2", "<|im_end|>", ("<|im_end|>", "<|endoftext|>")),
        ("internlm2-chat", "<|im_end|>", ("<|im_end|>",)),
        ("phi3-chat", "<|end|>", ("<|end|>",)),
        ("internvl2_5", "<|im_end|>", ("<|im_end|>",)),
        ("internvl3_5_gpt_oss", "<|return|>", ("<|return|>",)),
        ("internvl_zh", "</s>", ("</s>",)),
    ],
)
def test_stop_tokens(name: str, stop_token: str, stop_sequences: tuple[str, ...]) -> None:
    tpl = get_template(name)
    assert tpl.stop_token == stop_token
    assert tpl.stop_sequences == stop_sequences


@pytest.mark.parametrize(
    ("name", "raw", "clean"),
    [
        ("internvl2_5", "  A red car.<|im_end|>\n<|im_start|>user", "A red car."),
        ("internvl2_5", "no stop token \n", "no stop token"),
        ("Hermes-2", "Yes.<|endoftext|>more", "Yes."),
        ("phi3-chat", "Two cats.<|end|><|user|>", "Two cats."),
        ("internvl_zh", "你好</s><human>", "你好"),
        ("internvl3_5_gpt_oss", "<|channel|>final<|message|>A cat.<|return|>", "A cat."),
        ("internvl3_5_gpt_oss", "A cat.<|return|>", "A cat."),
        (
            "internvl3_5_gpt_oss",
            "<|channel|>analysis<|message|>think<|end|><|start|>assistant<|channel|>final<|message|>Done.<|return|>",
            "Done.",
        ),
        ("internvl2_5", "<ref>car</ref><box>[[1, 2, 3, 4]]</box><|im_end|>", "<ref>car</ref><box>[[1, 2, 3, 4]]</box>"),
    ],
)
def test_postprocess(name: str, raw: str, clean: str) -> None:
    assert get_template(name).postprocess(raw) == clean


# --- get_template ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alias", "name"),
    [
        ("internvl2.5", "internvl2_5"),
        ("InternVL2_5", "internvl2_5"),
        ("hermes-2", "Hermes-2"),
        ("Hermes2", "Hermes-2"),
        ("internlm2_chat", "internlm2-chat"),
        ("PHI3-CHAT", "phi3-chat"),
        ("internvl3.5-gpt-oss", "internvl3_5_gpt_oss"),
        ("internvl-zh", "internvl_zh"),
    ],
)
def test_get_template_aliases(alias: str, name: str) -> None:
    assert get_template(alias) is TEMPLATES[name]


def test_get_template_unknown_lists_known_names() -> None:
    with pytest.raises(TemplateError) as err:
        get_template("vicuna_v1")
    for name in TEMPLATES:
        assert name in str(err.value)
    with pytest.raises(TemplateError, match="internvl2_5"):
        get_template("internvl25x")
    with pytest.raises(TemplateError):
        get_template(3)  # type: ignore[arg-type]


def test_templates_are_immutable() -> None:
    with pytest.raises(TypeError):
        TEMPLATES["x"] = TEMPLATES["internvl2_5"]  # type: ignore[index]
    with pytest.raises(AttributeError):
        TEMPLATES["internvl2_5"].sep = "x"  # type: ignore[misc]


def test_render_rejects_unknown_roles() -> None:
    with pytest.raises(TemplateError, match="'system'"):
        get_template("internvl2_5").render([("system", "x")])


# --- build_chat_prompt ----------------------------------------------------------------------------------------------


def user(*parts) -> PromptTurn:
    return PromptTurn("user", parts)


@pytest.mark.parametrize("name", list(TEMPLATES))
@pytest.mark.parametrize("n", [1, 7])
def test_chat_single_image_equals_build_prompt(name: str, n: int) -> None:
    got = build_chat_prompt(name, [user(ImageSlot(n), "Describe.")])
    assert got.text == build_prompt(name, "Describe.", num_patches_list=[n])
    assert (got.num_patches_list, got.num_images, got.num_video_frames) == ((n,), 1, 0)


def test_chat_single_image_matches_reference_vector() -> None:
    assert build_chat_prompt("Hermes-2", [user(ImageSlot(1), "Describe.")]).text == REFERENCE_ONE_IMAGE["Hermes-2"]


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_chat_multi_image_equals_official_form(name: str) -> None:
    got = build_chat_prompt(name, [user(ImageSlot(7), ImageSlot(5), "Compare.")])
    official = build_prompt(name, "Image-1: <image>\nImage-2: <image>\nCompare.", num_patches_list=[7, 5])
    assert got.text == official
    assert got.num_patches_list == (7, 5) and got.num_images == 2
    assert "Image-1: <img>" + "<IMG_CONTEXT>" * 1792 + "</img>\nImage-2: <img>" in got.text


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_chat_video_equals_readme_form(name: str) -> None:
    got = build_chat_prompt(name, [user(VideoSlot(3), "What happens?")])
    official = build_prompt(
        name, "Frame1: <image>\nFrame2: <image>\nFrame3: <image>\nWhat happens?", num_patches_list=[1, 1, 1]
    )
    assert got.text == official
    assert f"Frame1: {CTX}\nFrame2: {CTX}\nFrame3: {CTX}\nWhat happens?" in got.text
    assert (got.num_patches_list, got.num_images, got.num_video_frames) == ((1, 1, 1), 0, 3)


def test_chat_video_patches_per_frame_and_image_mix() -> None:
    got = build_chat_prompt(
        "internvl2_5", [user(ImageSlot(3), VideoSlot(2, patches_per_frame=2), "Q")], tokens_per_tile=1
    )
    # One image only: no Image-N label; frames are numbered per video.
    assert "<|im_start|>user\n<image>\nFrame1: <image>\nFrame2: <image>\nQ<|im_end|>" in got.unexpanded
    assert got.num_patches_list == (3, 2, 2)
    assert (got.num_images, got.num_video_frames) == (1, 2)


def test_chat_images_in_later_turns_match_chat_history() -> None:
    turns = [
        user(ImageSlot(3), "What is it?"),
        PromptTurn("assistant", ["A cat."]),
        user("And the colour?"),
    ]
    got = build_chat_prompt("internvl2_5", turns)
    assert got.text == build_prompt(
        "internvl2_5", "And the colour?", history=[("<image>\nWhat is it?", "A cat.")], num_patches_list=[3]
    )


def test_chat_images_counted_across_the_conversation() -> None:
    turns = [
        user(ImageSlot(2), "What is it?"),
        PromptTurn("assistant", "A cat."),
        user(ImageSlot(4), "And this one?"),
    ]
    got = build_chat_prompt("Hermes-2", turns, tokens_per_tile=1)
    assert got.unexpanded == (
        f"<|im_start|>system\n{SYS_OLD}<|im_end|><|im_start|>user\nImage-1: <image>\nWhat is it?<|im_end|>"
        "<|im_start|>assistant\nA cat.<|im_end|><|im_start|>user\nImage-2: <image>\nAnd this one?<|im_end|>"
        "<|im_start|>assistant\n"
    )
    assert got.num_patches_list == (2, 4)
    assert got.text.index(ctx(2, 1)) < got.text.index(ctx(4, 1))


@pytest.mark.parametrize(
    ("labels", "parts", "user_text"),
    [
        ("always", [ImageSlot(1), "Q"], "Image-1: <image>\nQ"),
        ("never", [ImageSlot(1), ImageSlot(1), "Q"], "<image>\n<image>\nQ"),
        ("auto", [ImageSlot(1), "Q"], "<image>\nQ"),
        ("auto", ["Look:", ImageSlot(1), "and", ImageSlot(1)], "Look:\nImage-1: <image>\nand\nImage-2: <image>\n"),
        ("auto", ["Line\n", ImageSlot(1)], "Line\n<image>\n"),
        ("auto", ["a", "b", ""], "ab"),
        ("auto", [ImageSlot(1)], "<image>\n"),
    ],
)
def test_chat_part_rendering_rules(labels: str, parts: list, user_text: str) -> None:
    got = build_chat_prompt("internvl2_5", [user(*parts)], image_labels=labels)  # type: ignore[arg-type]
    assert got.unexpanded == (
        f"<|im_start|>system\n{SYS_25}<|im_end|>\n<|im_start|>user\n{user_text}<|im_end|>\n<|im_start|>assistant\n"
    )


def test_chat_system_turn_overrides_system_message() -> None:
    turns = [PromptTurn("system", ["Be brief."]), user("Hi")]
    got = build_chat_prompt("internvl2_5", turns, system_message="ignored")
    assert got.text == build_prompt("internvl2_5", "Hi", system_message="Be brief.")
    assert build_chat_prompt("internvl2_5", [user("Hi")], system_message="S").text == build_prompt(
        "internvl2_5", "Hi", system_message="S"
    )


def test_chat_consecutive_same_role_turns_merge() -> None:
    got = build_chat_prompt("internvl_zh", [user("Hello"), user(ImageSlot(1)), user("There")], tokens_per_tile=1)
    assert got.unexpanded == " <human>: Hello\n<image>\nThere <bot>:"
    merged = build_chat_prompt("internvl2_5", [user("a"), user("b")])
    assert "<|im_start|>user\na\nb<|im_end|>" in merged.text


def test_chat_trailing_assistant_turn_is_a_prefill() -> None:
    got = build_chat_prompt("internvl2_5", [user("Give JSON."), PromptTurn("assistant", ["{"])])
    assert got.text.endswith("<|im_start|>user\nGive JSON.<|im_end|>\n<|im_start|>assistant\n{")
    oss = build_chat_prompt("internvl3_5_gpt_oss", [user("Q"), PromptTurn("assistant", ["Sure"])])
    assert oss.text.endswith("<|start|>user<|message|>Q<|end|><|start|>assistant<|channel|>final<|message|>Sure")
    zh = build_chat_prompt("internvl_zh", [user("Q"), PromptTurn("assistant", ["好"])])
    assert zh.text == " <human>: Q <bot>: 好"
    # An empty final assistant turn is just the open slot.
    empty = build_chat_prompt("internvl2_5", [user("Q"), PromptTurn("assistant", [])])
    assert empty.text == build_prompt("internvl2_5", "Q")


@pytest.mark.parametrize(
    ("turns", "match"),
    [
        ([], "start with a user turn"),
        ([PromptTurn("system", ["S"])], "start with a user turn"),
        ([PromptTurn("assistant", ["Hi"]), user("Q")], "start with a user turn"),
        ([user("Q"), PromptTurn("system", ["S"])], "only allowed as the first turn"),
        ([PromptTurn("system", [ImageSlot(1)]), user("Q")], "text only"),
        ([user("Q"), PromptTurn("assistant", [ImageSlot(1)])], "only appear in user turns"),
        ([user("")], "no content"),
        ([user(), PromptTurn("assistant", "A"), user("Q")], "no content"),
        ([user("see <image> here")], "reserved for images"),
        ([user("<IMG_CONTEXT>")], "reserved for images"),
        ([user("<img>x</img>")], "reserved for images"),
        ([PromptTurn("system", ["<image>"]), user("Q")], "reserved for images"),
        (["not a turn"], "PromptTurn"),
    ],
)
def test_chat_invalid_conversations(turns: list, match: str) -> None:
    with pytest.raises(TemplateError, match=match):
        build_chat_prompt("internvl2_5", turns)


def test_chat_invalid_options_and_slots() -> None:
    with pytest.raises(TemplateError):
        build_chat_prompt("internvl2_5", [user("Q")], image_labels="sometimes")  # type: ignore[arg-type]
    with pytest.raises(TemplateError, match="reserved"):
        build_chat_prompt("internvl2_5", [user("Q")], system_message="<image>")
    for bad in (
        lambda: ImageSlot(0),
        lambda: VideoSlot(0),
        lambda: VideoSlot(2, patches_per_frame=0),
        lambda: PromptTurn("tool", ["x"]),
        lambda: PromptTurn("user", [3]),
    ):  # type: ignore[arg-type, list-item]
        with pytest.raises(TemplateError):
            bad()


def test_chat_prompt_is_a_frozen_record() -> None:
    got = build_chat_prompt("internvl2_5", [user(ImageSlot(2), "Q")], tokens_per_tile=1)
    assert isinstance(got, ChatPrompt)
    with pytest.raises(AttributeError):
        got.text = "x"  # type: ignore[misc]


_SAFE_TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12).filter(
    lambda s: not any(tok in s for tok in ("<image>", "<img>", "</img>", "<IMG_CONTEXT>"))
)
_PART = st.one_of(_SAFE_TEXT, st.builds(ImageSlot, st.integers(1, 5)), st.builds(VideoSlot, st.integers(1, 3)))


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(sorted(TEMPLATES)),
    parts=st.lists(_PART, max_size=6),
    per_tile=st.integers(1, 8),
    labels=st.sampled_from(["auto", "always", "never"]),
)
def test_chat_context_token_accounting(name: str, parts: list, per_tile: int, labels: str) -> None:
    assume(any(not isinstance(p, str) or p for p in parts))  # an empty user turn is an error (tested above)
    got = build_chat_prompt(name, [user(*parts)], tokens_per_tile=per_tile, image_labels=labels)  # type: ignore[arg-type]
    images = [p for p in parts if isinstance(p, ImageSlot)]
    videos = [p for p in parts if isinstance(p, VideoSlot)]
    placeholders = len(images) + sum(v.num_frames for v in videos)
    total_patches = sum(p.num_patches for p in images) + sum(v.num_frames * v.patches_per_frame for v in videos)
    assert got.text.count("<IMG_CONTEXT>") == total_patches * per_tile
    assert got.text.count("<img>") == got.text.count("</img>") == placeholders == len(got.num_patches_list)
    assert sum(got.num_patches_list) == total_patches
    assert (got.num_images, got.num_video_frames) == (len(images), sum(v.num_frames for v in videos))
    # Collapsing each image block back to '<image>' gives the unexpanded prompt.
    assert re.sub(r"<img>(?:<IMG_CONTEXT>)*</img>", "<image>", got.text) == got.unexpanded
    assert got.unexpanded.count("Image-") == (
        len(images) if labels == "always" or (labels == "auto" and len(images) > 1) else 0
    ) + sum(t.count("Image-") for t in parts if isinstance(t, str))


# --- family detection -----------------------------------------------------------------------------------------------


def original(template: str | None, llm_arch: str, llm_type: str | None, **extra) -> dict:
    cfg = {
        "architectures": ["InternVLChatModel"],
        "auto_map": {
            "AutoConfig": "configuration_internvl_chat.InternVLChatConfig",
            "AutoModel": "modeling_internvl_chat.InternVLChatModel",
        },
        "model_type": "internvl_chat",
        "downsample_ratio": 0.5,
        "force_image_size": 448,
        "llm_config": {"architectures": [llm_arch], "hidden_size": 896},
        "vision_config": {"architectures": ["InternVisionModel"], "model_type": "intern_vit_6b", "image_size": 448},
        "select_layer": -1,
    }
    if llm_type is not None:
        cfg["llm_config"]["model_type"] = llm_type
    if template is not None:
        cfg["template"] = template
    cfg.update(extra)
    return cfg


def native(text_type: str, text_arch: str) -> dict:
    return {
        "architectures": ["InternVLForConditionalGeneration"],
        "model_type": "internvl",
        "downsample_ratio": 0.5,
        "image_seq_length": 256,
        "image_token_id": 151667,
        "projector_hidden_act": "gelu",
        "text_config": {"architectures": [text_arch], "model_type": text_type, "hidden_size": 896},
        "vision_config": {"model_type": "internvl_vision", "image_size": [448, 448], "patch_size": [14, 14]},
    }


DYNAMIC = {"dynamic_image_size": True, "use_thumbnail": True, "ps_version": "v2", "max_dynamic_patch": 12}

DETECTION_CASES = [
    # (id, config, model_id, expected FamilyInfo)
    (
        "InternVL2-1B",
        original("Hermes-2", "Qwen2ForCausalLM", "qwen2", **DYNAMIC),
        None,
        FamilyInfo("original", "Hermes-2", "qwen2", "InternVL2"),
    ),
    (
        "InternVL2-2B",
        original("internlm2-chat", "InternLM2ForCausalLM", "internlm2", **DYNAMIC),
        "OpenGVLab/InternVL2-2B",
        FamilyInfo("original", "internlm2-chat", "internlm2", "InternVL2"),
    ),
    (
        "InternVL2-2B-no-hint",
        original("internlm2-chat", "InternLM2ForCausalLM", "internlm2", **DYNAMIC),
        None,
        FamilyInfo("original", "internlm2-chat", "internlm2", "InternVL-Chat-V1-5 or InternVL2"),
    ),
    (
        "Mini-InternVL-Chat-4B-V1-5",
        original("phi3-chat", "Phi3ForCausalLM", "phi3", **DYNAMIC),
        "OpenGVLab/Mini-InternVL-Chat-4B-V1-5",
        FamilyInfo("original", "phi3-chat", "phi3", "InternVL-Chat-V1-5"),
    ),
    (
        "InternVL2_5-8B",
        original("internvl2_5", "InternLM2ForCausalLM", "internlm2", **DYNAMIC),
        None,
        FamilyInfo("original", "internvl2_5", "internlm2", "InternVL2.5"),
    ),
    (
        "InternVL3-1B",
        original("internvl2_5", "Qwen2ForCausalLM", "qwen2", **DYNAMIC),
        "OpenGVLab/InternVL3-1B",
        FamilyInfo("original", "internvl2_5", "qwen2", "InternVL3"),
    ),
    (
        "InternVL3-1B-name-or-path",
        original("internvl2_5", "Qwen2ForCausalLM", "qwen2", _name_or_path="/ckpt/InternVL3-1B", **DYNAMIC),
        None,
        FamilyInfo("original", "internvl2_5", "qwen2", "InternVL3"),
    ),
    (
        "InternVL2_5-1B-no-hint",
        original("internvl2_5", "Qwen2ForCausalLM", "qwen2", **DYNAMIC),
        None,
        FamilyInfo("original", "internvl2_5", "qwen2", "InternVL2.5 or InternVL3"),
    ),
    (
        "InternVL3_5-1B-original",
        original("internvl2_5", "Qwen3ForCausalLM", "qwen3", **DYNAMIC),
        None,
        FamilyInfo("original", "internvl2_5", "qwen3", "InternVL3.5"),
    ),
    (
        "InternVL3-1B-hf",
        native("qwen2", "Qwen2ForCausalLM"),
        None,
        FamilyInfo("native", "internvl2_5", "qwen2", "InternVL3"),
    ),
    (
        "InternVL3_5-1B-HF",
        native("qwen3", "Qwen3ForCausalLM"),
        None,
        FamilyInfo("native", "internvl2_5", "qwen3", "InternVL3.5"),
    ),
    (
        "InternVL3_5-30B-A3B-HF",
        native("qwen3_moe", "Qwen3MoeForCausalLM"),
        None,
        FamilyInfo("native", "internvl2_5", "qwen3_moe", "InternVL3.5"),
    ),
    (
        "InternVL3_5-GPT-OSS-20B-A4B-Preview-HF",
        native("gpt_oss", "GptOssForCausalLM"),
        None,
        FamilyInfo("native", "internvl3_5_gpt_oss", "gpt_oss", "InternVL3.5"),
    ),
    (
        "InternVL-Chat-V1-2",
        original("Hermes-2", "LlamaForCausalLM", "llama"),
        None,
        FamilyInfo("original", "Hermes-2", "llama", "InternVL-Chat-V1-2"),
    ),
    (
        "InternVL2-40B",
        original("Hermes-2", "LlamaForCausalLM", "llama", **DYNAMIC),
        None,
        FamilyInfo("original", "Hermes-2", "llama", "InternVL2"),
    ),
    (
        "InternVL-Chat-V1-1",
        original("internvl_zh", "LlamaForCausalLM", "llama"),
        None,
        FamilyInfo("original", "internvl_zh", "llama", "InternVL-Chat-V1-1"),
    ),
    # No template field: inferred from the language model; model_type missing: read from architectures.
    (
        "no-template-internlm2",
        original(None, "InternLM2ForCausalLM", None),
        None,
        FamilyInfo("original", "internlm2-chat", "internlm2", "InternVL-Chat-V1-5 or InternVL2"),
    ),
    (
        "no-template-phi3",
        original(None, "Phi3ForCausalLM", "phi3"),
        None,
        FamilyInfo("original", "phi3-chat", "phi3", "InternVL-Chat-V1-5 or InternVL2"),
    ),
    (
        "no-template-qwen2",
        original(None, "Qwen2ForCausalLM", None),
        None,
        FamilyInfo("original", "Hermes-2", "qwen2", "InternVL2"),
    ),
    (
        "system-override",
        original("internvl2_5", "Qwen2ForCausalLM", "qwen2", system_message="Be terse."),
        "OpenGVLab/InternVL2_5-1B",
        FamilyInfo("original", "internvl2_5", "qwen2", "InternVL2.5", "Be terse."),
    ),
    # The language-model class decides over a contradicting llm_config.model_type (upstream InternVLChatConfig
    # builds the language model from architectures[0]); detection and weight mapping read it the same way.
    (
        "llm-architecture-over-model-type",
        original("internvl2_5", "InternLM2ForCausalLM", "llama", **DYNAMIC),
        None,
        FamilyInfo("original", "internvl2_5", "internlm2", "InternVL2.5"),
    ),
    # Native: text_config.model_type decides (transformers' AutoConfig dispatches on it).
    (
        "native-model-type-over-architecture",
        native("qwen3", "Qwen2ForCausalLM"),
        None,
        FamilyInfo("native", "internvl2_5", "qwen3", "InternVL3.5"),
    ),
    # model_type decides the format over a contradicting top-level architectures entry.
    (
        "model-type-over-architectures",
        {**native("qwen2", "Qwen2ForCausalLM"), "architectures": ["InternVLChatModel"]},
        None,
        FamilyInfo("native", "internvl2_5", "qwen2", "InternVL3"),
    ),
    # A name that contradicts the config does not override it.
    (
        "contradicting-name",
        original("phi3-chat", "Phi3ForCausalLM", "phi3"),
        "me/InternVL3-finetune",
        FamilyInfo("original", "phi3-chat", "phi3", "InternVL-Chat-V1-5 or InternVL2"),
    ),
]


@pytest.mark.parametrize(
    ("config", "model_id", "expected"), [c[1:] for c in DETECTION_CASES], ids=[c[0] for c in DETECTION_CASES]
)
def test_detect_family(config: dict, model_id: str | None, expected: FamilyInfo) -> None:
    assert detect_family(config, model_id=model_id) == expected
    assert detect_template(config) == expected.template


def test_detect_accepts_objects_with_to_dict() -> None:
    class Cfg:
        def to_dict(self) -> dict:
            return native("qwen2", "Qwen2ForCausalLM")

    assert detect_template(Cfg()) == "internvl2_5"  # type: ignore[arg-type]


def test_native_without_text_config_defaults_to_qwen2() -> None:
    assert detect_family({"model_type": "internvl"}) == FamilyInfo("native", "internvl2_5", "qwen2", "InternVL3")


@pytest.mark.parametrize(
    ("config", "error", "match"),
    [
        ({"model_type": "qwen2_vl", "architectures": ["Qwen2VLForConditionalGeneration"]}, ConfigError, "template="),
        ({}, ConfigError, "not an InternVL config"),
        (original("vicuna_v1", "LlamaForCausalLM", "llama"), TemplateError, "vicuna_v1"),
        (original(None, "MistralForCausalLM", "mistral"), ConfigError, "pass template="),
    ],
)
def test_detect_unsupported_configs(config: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        detect_template(config)


def test_detected_template_renders_reference() -> None:
    cfg = original("Hermes-2", "Qwen2ForCausalLM", "qwen2", **DYNAMIC)
    assert build_prompt(detect_template(cfg), "Describe.", num_patches_list=[1]) == REFERENCE_ONE_IMAGE["Hermes-2"]


def test_template_is_a_value_object() -> None:
    tpl = get_template("internvl2_5")
    assert isinstance(tpl, Template)
    assert tpl.roles == ("<|im_start|>user\n", "<|im_start|>assistant\n")
    assert tpl.sep == "<|im_end|>\n" and get_template("Hermes-2").sep == "<|im_end|>"


def test_empty_answer_in_history_renders_bare_role_tag_as_upstream() -> None:
    # Upstream appends only the role tag for a falsy message, so an empty answer leaves no separator.
    got = build_prompt("Hermes-2", "Q2", history=[("Q1", "")], system_message="S")
    assert got == (
        "<|im_start|>system\nS<|im_end|><|im_start|>user\nQ1<|im_end|><|im_start|>assistant\n"
        "<|im_start|>user\nQ2<|im_end|><|im_start|>assistant\n"
    )


def test_empty_history_counts_as_no_history() -> None:
    assert build_prompt("internvl2_5", "Q", history=[], num_patches_list=[1]) == build_prompt(
        "internvl2_5", "Q", num_patches_list=[1]
    )
    assert "<|im_start|>user\n<img>" in build_prompt("internvl2_5", "Q", history=[], num_patches_list=[1])
