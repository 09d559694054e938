"""A remote-code-free tokenizer for InternLM2-based InternVL checkpoints.

InternVL-Chat-V1-5, Mini-InternVL-Chat-2B-V1-5, InternVL2-2B/8B/26B and InternVL2.5-2B/8B/26B ship a sentencepiece
``tokenizer.model`` with ``tokenizer_class: InternLM2Tokenizer`` (remote code). Every transformers Llama tokenizer
gives wrong ids for them (no BOS, renumbered chat markers). :class:`InternLM2Tokenizer` reproduces the original ids
with sentencepiece itself: the text is split on the added tokens of ``tokenizer_config.json`` (the chat markers are
sentencepiece pieces renamed there, e.g. ``<|im_end|>`` = 92542; the nine InternVL tokens follow the vocabulary),
each piece of plain text is encoded by sentencepiece, and ``<s>`` goes first.

It is a transformers ``PythonBackend`` (slow tokenizer) subclass, so padding, ``return_tensors``, ``batch_decode`` and
``convert_tokens_to_ids`` behave as on any Hugging Face tokenizer. The InternVL grounding tokens (``<ref>``,
``<box>``, ...) are registered special tokens: decode with ``skip_special_tokens=False`` to keep them.

>>> from internvl_tools.testing import tiny_checkpoint                    # doctest: +SKIP
>>> tok = InternLM2Tokenizer.from_directory(tiny_checkpoint("internlm2", "original"))  # doctest: +SKIP
>>> tok("<|im_start|>user\\nhi<|im_end|>")["input_ids"][0] == tok.bos_token_id  # doctest: +SKIP
True
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from transformers import AddedToken
from transformers.tokenization_python import PythonBackend

from internvl_tools.errors import ModelLoadError

__all__ = ["InternLM2Tokenizer"]

_SPIECE_UNDERLINE = "\u2581"


class InternLM2Tokenizer(PythonBackend):
    """Sentencepiece tokenizer with InternLM2's exact ids (BOS first, configured added-token ids).

    Build it with :meth:`from_directory` from a checkpoint folder holding ``tokenizer.model`` and
    ``tokenizer_config.json``.
    """

    vocab_files_names: ClassVar[dict[str, str]] = {"vocab_file": "tokenizer.model"}
    model_input_names: ClassVar[list[str]] = ["input_ids", "attention_mask"]

    def __init__(
        self,
        vocab_file: str,
        unk_token: str = "<unk>",
        bos_token: str = "<s>",
        eos_token: str = "</s>",
        pad_token: str | None = "</s>",
        add_bos_token: bool = True,
        add_eos_token: bool = False,
        **kwargs: Any,
    ) -> None:
        import sentencepiece as spm

        self.vocab_file = vocab_file
        self.sp_model = spm.SentencePieceProcessor()
        self.sp_model.Load(vocab_file)
        self.add_bos_token = add_bos_token
        self.add_eos_token = add_eos_token
        kwargs.setdefault("special_tokens_pattern", "none")
        kwargs.setdefault("clean_up_tokenization_spaces", False)
        super().__init__(
            unk_token=unk_token,
            bos_token=bos_token,
            eos_token=eos_token,
            pad_token=pad_token,
            **kwargs,
        )

    # --- construction -----------------------------------------------------------------------------------------

    @classmethod
    def from_directory(cls, directory: str | Path, **overrides: Any) -> InternLM2Tokenizer:
        """Load ``tokenizer.model`` + ``tokenizer_config.json`` (added tokens with their configured ids).

        >>> tok = InternLM2Tokenizer.from_directory("/path/to/InternVL2-2B")  # doctest: +SKIP
        >>> tok.convert_tokens_to_ids("<IMG_CONTEXT>")                       # doctest: +SKIP
        92546
        """
        directory = Path(directory)
        model_file = directory / "tokenizer.model"
        if not model_file.is_file():
            raise ModelLoadError(
                f"{directory} has no tokenizer.model; an InternLM2-based InternVL checkpoint needs its sentencepiece "
                "model. Download the checkpoint's tokenizer files too."
            )
        config: dict[str, Any] = {}
        config_file = directory / "tokenizer_config.json"
        if config_file.is_file():
            config = json.loads(config_file.read_text(encoding="utf-8"))
        decoder: dict[int, AddedToken] = {}
        for key, value in (config.get("added_tokens_decoder") or {}).items():
            if isinstance(value, dict):
                token = AddedToken(
                    value["content"],
                    lstrip=bool(value.get("lstrip", False)),
                    rstrip=bool(value.get("rstrip", False)),
                    normalized=bool(value.get("normalized", False)),
                    single_word=bool(value.get("single_word", False)),
                    special=bool(value.get("special", True)),
                )
            else:
                token = AddedToken(str(value), special=True, normalized=False)
            decoder[int(key)] = token

        def _token(name: str, default: str | None) -> str | None:
            value = config.get(name, default)
            if isinstance(value, dict):
                value = value.get("content", default)
            return value

        kwargs: dict[str, Any] = {
            "unk_token": _token("unk_token", "<unk>"),
            "bos_token": _token("bos_token", "<s>"),
            "eos_token": _token("eos_token", "</s>"),
            "pad_token": _token("pad_token", "</s>"),
            "add_bos_token": bool(config.get("add_bos_token", True)),
            "add_eos_token": bool(config.get("add_eos_token", False)),
            "added_tokens_decoder": decoder,
        }
        extra = config.get("additional_special_tokens") or config.get("extra_special_tokens")
        if isinstance(extra, list):
            kwargs["extra_special_tokens"] = [t["content"] if isinstance(t, dict) else t for t in extra]
        kwargs.update(overrides)
        tokenizer = cls(str(model_file), **kwargs)
        tokenizer.name_or_path = str(directory)
        return tokenizer

    # --- vocabulary ---------------------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return int(self.sp_model.get_piece_size())

    def get_vocab(self) -> dict[str, int]:
        vocab = {self.sp_model.id_to_piece(i): i for i in range(self.vocab_size)}
        vocab.update(self._added_tokens_encoder)
        return vocab

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        return list(self.sp_model.encode(text, out_type=str))

    def _convert_token_to_id(self, token: str) -> int:
        return int(self.sp_model.piece_to_id(token))

    def _convert_id_to_token(self, index: int) -> str:
        if 0 <= index < self.vocab_size:
            return str(self.sp_model.id_to_piece(index))
        return str(self.unk_token)

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        # Added tokens are not sentencepiece pieces (or are renamed ones): emit them verbatim and let sentencepiece
        # decode the plain runs between them, which restores spaces and byte-fallback characters.
        added = set(self._added_tokens_encoder) | set(self.all_special_tokens)
        out: list[str] = []
        run: list[str] = []
        for token in tokens:
            if token in added:
                if run:
                    out.append(self.sp_model.decode_pieces(run))
                    run = []
                out.append(token)
            else:
                run.append(token)
        if run:
            out.append(self.sp_model.decode_pieces(run))
        return "".join(out)

    def build_inputs_with_special_tokens(
        self, token_ids_0: list[int], token_ids_1: list[int] | None = None
    ) -> list[int]:
        bos = [self.bos_token_id] if self.add_bos_token and self.bos_token_id is not None else []
        eos = [self.eos_token_id] if self.add_eos_token and self.eos_token_id is not None else []
        ids = bos + token_ids_0 + eos
        if token_ids_1 is not None:
            ids = ids + bos + token_ids_1 + eos
        return ids

    def get_special_tokens_mask(
        self,
        token_ids_0: list[int],
        token_ids_1: list[int] | None = None,
        already_has_special_tokens: bool = False,
    ) -> list[int]:
        if already_has_special_tokens:
            return super().get_special_tokens_mask(token_ids_0, token_ids_1, already_has_special_tokens=True)
        bos = [1] if self.add_bos_token else []
        eos = [1] if self.add_eos_token else []
        mask = bos + [0] * len(token_ids_0) + eos
        if token_ids_1 is not None:
            mask = mask + bos + [0] * len(token_ids_1) + eos
        return mask

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        target = Path(save_directory) / ((filename_prefix + "-" if filename_prefix else "") + "tokenizer.model")
        if Path(self.vocab_file).resolve() != target.resolve():
            target.write_bytes(Path(self.vocab_file).read_bytes())
        return (str(target),)
