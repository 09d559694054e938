"""Tokenizers of the tiny test checkpoints, trained offline on a fixed corpus: byte-level BPE (Qwen2 style) and
InternLM2's sentencepiece layout, each with the InternVL special tokens; byte-identical on every run.

>>> import tempfile
>>> from pathlib import Path
>>> ids = write_internlm2_tokenizer(Path(tempfile.mkdtemp()))
>>> ids["<unk>"], ids["<s>"], ids["</s>"]
(0, 1, 2)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from internvl_tools.constants import INTERNVL_SPECIAL_TOKENS, PROCESSOR_SPECIAL_TOKENS, VIDEO_PLACEHOLDER

__all__ = [
    "HF_CHAT_TEMPLATE",
    "TINY_VOCAB_SIZE",
    "build_bpe_tokenizer",
    "build_hub_tokenizer",
    "write_hub_tokenizer",
    "write_internlm2_tokenizer",
]

#: Every tiny model has this many embedding rows; tokenizers are smaller (a padded vocabulary, like InternVL2_5-1B).
TINY_VOCAB_SIZE = 512

_CHATML = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
_PHI3_MARKERS = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
_INTERNLM2_MARKERS = (
    "<|plugin|>",
    "<|interpreter|>",
    "<|action_end|>",
    "<|action_start|>",
    "<|im_end|>",
    "<|im_start|>",
)

# InternVL3.5 bases (docs/internvl_reference.md §9): the language model's own added tokens come first, InternVL's
# nine after them. (token, special) pairs; Qwen3 marks its tool and think tokens non-special.
_QWEN3_ADDED = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<think>", False),
    ("</think>", False),
)
_GPT_OSS_ADDED = tuple(
    (token, True)
    for token in (
        "<|startoftext|>",
        "<|endoftext|>",
        "<|return|>",
        "<|constrain|>",
        "<|channel|>",
        "<|start|>",
        "<|end|>",
        "<|message|>",
        "<|call|>",
    )
)
_HUB_EOS = {"qwen3": "<|im_end|>", "qwen3_moe": "<|im_end|>", "gpt_oss": "<|return|>"}
# Qwen2/3's pre-tokenizer split (their tokenizer.json and the slow Qwen2Tokenizer use the same pattern).
_QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

#: The chat template shipped with the native ``-hf`` checkpoints: ChatML, no default system message.
HF_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}{{ '<IMG_CONTEXT>\\n' }}"
    "{% elif content['type'] == 'video' %}{{ '<video>\\n' }}"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# A small multilingual corpus: enough merges that ordinary text does not decode byte by byte, and CJK / emoji in
# the training data so the tokenizers see multi-byte characters (byte fallback covers everything else).
_CORPUS_LINES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please describe the image in detail. What is the total on this invoice?",
    "Image-1: Image-2: Frame1: Frame2: Frame3: Compare the two pictures.",
    "Sure, I will detect and label all objects in the image and mark their positions.",
    "Please provide the bounding box coordinate of the region this sentence describes:",
    "the red car, the lady, a cat on the sofa, two dogs, a chart with bars, a table of numbers",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000 [[12, 34, 567, 890]] [[0, 0, 1000, 1000]] 3.14 -42 50%",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz !\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~",
    "user assistant system Hello! Hi there. And then? Answer the question using a single word or phrase.",
    "你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的多模态大语言模型。",
    "你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, 是一个有用无害的人工智能助手。",
    "请识别图中所有文字，并输出坐标框。图片里有什么？这是一只猫。日本語のテキスト。한국어 텍스트.",
    "Emoji: 😀 😂 🚗 🐱 🐶 📄 📊 ✅ ❤️ 👍 🎉 — café naïve résumé Ünïcödé ß ø å",
    "def main():\n    return {'key': \"value\", 'items': [1, 2, 3]}\n\tindented\n\n",
)


def _corpus() -> list[str]:
    # Repeat so that BPE / unigram training sees frequent pairs; ordering is fixed for determinism.
    return [line for _ in range(8) for line in _CORPUS_LINES]


def _special_tokens(family: str) -> list[str]:
    tokens = [*_CHATML, *INTERNVL_SPECIAL_TOKENS, VIDEO_PLACEHOLDER]
    if family == "phi3":
        tokens += list(_PHI3_MARKERS)
    return tokens


def build_bpe_tokenizer(family: str) -> Any:
    """Train a byte-level BPE tokenizer (Qwen2-style: no BOS) on the built-in corpus; ``family`` "phi3" adds the
    Phi-3 chat markers and makes ``<|end|>`` the eos.

    >>> tok = build_bpe_tokenizer("qwen2")
    >>> tok.eos_token, tok.convert_ids_to_tokens(tok.convert_tokens_to_ids("<IMG_CONTEXT>"))
    ('<|im_end|>', '<IMG_CONTEXT>')
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = _special_tokens(family)
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE - 32,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_corpus(), trainer=trainer)
    eos = "<|end|>" if family == "phi3" else "<|im_end|>"
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=eos,
        pad_token="<|endoftext|>",
        extra_special_tokens=dict(PROCESSOR_SPECIAL_TOKENS),
        additional_special_tokens=[t for t in specials if t not in ("<|endoftext|>", eos)],
        chat_template=HF_CHAT_TEMPLATE,
    )


def _hub_added(family: str) -> tuple[tuple[str, bool], ...]:
    base = _GPT_OSS_ADDED if family == "gpt_oss" else _QWEN3_ADDED
    return (*base, *((t, True) for t in INTERNVL_SPECIAL_TOKENS), (VIDEO_PLACEHOLDER, True))


def build_hub_tokenizer(family: str) -> Any:
    """The ``tokenizers`` backend of an InternVL3.5 base (``qwen3``, ``qwen3_moe``, ``gpt_oss``) as the hub ships it:
    byte-level BPE with Qwen's split and NFC, the regular vocabulary first, then the language model's added tokens
    (Qwen3's end with ``<think>``/``</think>``; GPT-OSS's harmony markers), then InternVL's, no BOS.

    >>> backend = build_hub_tokenizer("qwen3")
    >>> backend.token_to_id("<IMG_CONTEXT>") == backend.token_to_id("</think>") + 3
    True
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    if family not in _HUB_EOS:
        raise ValueError(f"no hub tokenizer layout for {family!r}; choose one of {', '.join(_HUB_EOS)}")
    backend = Tokenizer(models.BPE())
    backend.normalizer = normalizers.NFC()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN_SPLIT), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE - 48,
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_corpus(), trainer=trainer)
    for token, special in _hub_added(family):
        added = AddedToken(token, special=special, normalized=False, lstrip=False, rstrip=False, single_word=False)
        if special:
            backend.add_special_tokens([added])
        else:
            backend.add_tokens([added])
    return backend


def write_hub_tokenizer(directory: Path, family: str) -> dict[str, int]:
    """Write an InternVL3.5 base's tokenizer files as the hub has them; return the ids of its added tokens.

    Qwen3: ``vocab.json``, ``merges.txt``, ``tokenizer.json`` and a ``Qwen2Tokenizer`` config with
    ``added_tokens_decoder`` (eos ``<|im_end|>``, pad ``<|endoftext|>``). GPT-OSS: ``tokenizer.json`` and a
    ``PreTrainedTokenizerFast`` config (eos ``<|return|>``, pad ``<|endoftext|>``). Neither needs remote code.
    """
    backend = build_hub_tokenizer(family)
    ids = {token: backend.token_to_id(token) for token, _ in _hub_added(family)}
    specials = dict(_hub_added(family))
    (directory / "tokenizer.json").write_text(backend.to_str(), encoding="utf-8")

    def entry(content: str) -> dict[str, Any]:
        return {
            "content": content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": specials[content],
        }

    config: dict[str, Any] = {
        "added_tokens_decoder": {str(i): entry(t) for t, i in sorted(ids.items(), key=lambda kv: kv[1])},
        "additional_special_tokens": [*INTERNVL_SPECIAL_TOKENS, VIDEO_PLACEHOLDER],
        "clean_up_tokenization_spaces": False,
        "eos_token": _HUB_EOS[family],
        "pad_token": "<|endoftext|>",
        "model_max_length": 2048,
    }
    if family == "gpt_oss":
        config.update(tokenizer_class="PreTrainedTokenizerFast", bos_token="<|startoftext|>")
    else:
        config.update(
            tokenizer_class="Qwen2Tokenizer",
            bos_token=None,
            unk_token=None,
            add_prefix_space=False,
            errors="replace",
            split_special_tokens=False,
        )
        model = json.loads(backend.to_str())["model"]
        write_json(directory / "vocab.json", backend.get_vocab(with_added_tokens=False))
        merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
        (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    write_json(directory / "tokenizer_config.json", config)
    return ids


def write_internlm2_tokenizer(directory: Path) -> dict[str, int]:
    """Write an InternLM2-style sentencepiece tokenizer; return the configured ids of the added tokens.

    Like the real one: ``<unk>``/``<s>``/``</s>`` are ids 0/1/2, the chat markers are sentencepiece pieces
    ``[UNUSED_TOKEN_141..146]`` renamed by ``added_tokens_decoder``, and the nine InternVL tokens follow the
    sentencepiece vocabulary.
    """
    import io

    import sentencepiece as spm

    unused = [f"[UNUSED_TOKEN_{i}]" for i in range(141, 147)]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus()),
        model_writer=model,
        model_type="bpe",
        vocab_size=490,
        character_coverage=1.0,
        byte_fallback=True,
        add_dummy_prefix=False,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        split_digits=True,
        user_defined_symbols=unused,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    (directory / "tokenizer.model").write_bytes(model.getvalue())
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(model.getvalue())
    size = sp.get_piece_size()

    ids: dict[str, int] = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for marker, piece in zip(_INTERNLM2_MARKERS, unused, strict=True):
        ids[marker] = sp.piece_to_id(piece)
    for offset, token in enumerate(INTERNVL_SPECIAL_TOKENS):
        ids[token] = size + offset

    def entry(content: str) -> dict[str, Any]:
        return {
            "content": content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }

    config = {
        "tokenizer_class": "InternLM2Tokenizer",
        "auto_map": {"AutoTokenizer": ["tokenization_internlm2.InternLM2Tokenizer", None]},
        "added_tokens_decoder": {str(i): entry(t) for t, i in sorted(ids.items(), key=lambda kv: kv[1])},
        "additional_special_tokens": [*_INTERNLM2_MARKERS[4:], *INTERNVL_SPECIAL_TOKENS],
        "bos_token": "<s>",
        "eos_token": "</s>",
        "pad_token": "</s>",
        "unk_token": "<unk>",
        "add_bos_token": True,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 4096,
    }
    write_json(directory / "tokenizer_config.json", config)
    write_json(
        directory / "special_tokens_map.json",
        {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "</s>", "unk_token": "<unk>"},
    )
    return ids


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as tiny checkpoints write every JSON file: sorted keys, indent 2, UTF-8, final newline."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
