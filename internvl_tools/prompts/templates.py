"""The InternVL conversation templates: one immutable :class:`Template` per upstream registration, by name.

Owns the system messages' framing, role tags, separators, stop tokens and the gpt-oss channel header; the prompt
builders (:mod:`internvl_tools.prompts.builder`) and family detection (:mod:`internvl_tools.checkpoints.config`)
read templates from here. Source: ``docs/internvl_reference.md`` §1, checked against OpenGVLab/InternVL
``internvl_chat/internvl/conversation.py``.

>>> get_template("internvl2_5").stop_token
'<|im_end|>'
>>> sorted(TEMPLATES)[:2]
['Hermes-2', 'internlm2-chat']
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from internvl_tools.constants import SYSTEM_MESSAGE_25, SYSTEM_MESSAGE_GPT_OSS, SYSTEM_MESSAGE_OLD
from internvl_tools.errors import TemplateError

__all__ = ["TEMPLATES", "Template", "get_template"]

#: What a gpt-oss based InternVL writes right after ``<|start|>assistant`` for its answer (training format).
GPT_OSS_FINAL_HEADER = "<|channel|>final<|message|>"
_GPT_OSS_CHANNEL = "<|channel|>"
_GPT_OSS_MESSAGE = "<|message|>"


@dataclass(frozen=True)
class Template:
    """One InternVL conversation template (the official ``Conversation`` registration, immutable).

    ``style`` is how messages are joined: ``"mpt"`` (role + msg + sep), ``"mpt_two"`` (gpt-oss: ``sep2`` closes
    only a final assistant message) or ``"internvl_zh"`` (V1-1: ``role: msg`` with ``' '`` / ``'</s>'``).

    >>> t = get_template("Hermes-2")
    >>> t.render([("user", "Hi"), ("assistant", None)], system_message="S")
    '<|im_start|>system\\nS<|im_end|><|im_start|>user\\nHi<|im_end|><|im_start|>assistant\\n'
    >>> t.stop_sequences
    ('<|im_end|>', '<|endoftext|>')
    """

    name: str
    system_template: str
    system_message: str
    roles: tuple[str, str]
    sep: str
    sep2: str | None = None
    style: Literal["mpt", "mpt_two", "internvl_zh"] = "mpt"
    stop_str: str | None = None

    @property
    def stop_token(self) -> str:
        """The one token the official code makes the eos: ``sep.strip()``, or ``sep2.strip()`` for gpt-oss."""
        if self.style == "mpt_two" and self.sep2:
            return self.sep2.strip()
        return self.sep.strip()

    @property
    def stop_sequences(self) -> tuple[str, ...]:
        """Strings at which decoded text is cut: the stop token, then the template's ``stop_str`` if any.

        For gpt-oss only ``<|return|>`` is listed: ``<|end|>`` also closes an analysis message that precedes the
        final answer, so cutting there would return the reasoning instead of the answer.
        """
        out = [self.stop_token]
        if self.stop_str and self.stop_str not in out:
            out.append(self.stop_str)
        return tuple(out)

    def system_prompt(self, system_message: str | None = None) -> str:
        """The rendered system block without its separator (``internvl_zh``: the bare message)."""
        message = self.system_message if system_message is None else system_message
        if self.style == "internvl_zh":
            return message
        # Same result as the official ``system_template.format(system_message=...)``, without brace parsing.
        return self.system_template.replace("{system_message}", message)

    def render(
        self,
        turns: Sequence[tuple[str, str | None]],
        system_message: str | None = None,
        *,
        continue_final: bool = False,
    ) -> str:
        """Render ``(role, message)`` turns exactly as the official ``Conversation.get_prompt()``.

        ``role`` is ``"user"`` or ``"assistant"``. A falsy message (``None`` or ``""``) renders the bare role tag,
        as upstream does; end with ``("assistant", None)`` for the open slot the model answers in. The system
        block is always emitted, even for an empty message. ``system_message=None`` uses the template default.

        ``continue_final=True`` leaves the last (assistant) message open, without its separator, so generation
        continues it (answer prefill). Not an upstream feature.

        For gpt-oss, an assistant message that does not start with ``<|channel|>`` gets the
        ``<|channel|>final<|message|>`` header: the official ``chat()`` decodes with special tokens kept, so the
        answers it stores in history carry that header, and training renders assistant turns the same way.

        >>> get_template("internvl_zh").render([("user", "Q"), ("assistant", None)])
        ' <human>: Q <bot>:'
        """
        last = len(turns) - 1
        if continue_final and (not turns or turns[-1][0] != "assistant" or not turns[-1][1]):
            raise TemplateError("continue_final=True needs a final assistant turn with text to continue")
        # internvl_zh opens with the bare system message and sep2 (' '); the others with the system block and sep.
        opener = (self.sep2 or "") if self.style == "internvl_zh" else self.sep
        out = self.system_prompt(system_message) + opener
        for i, (role, message) in enumerate(turns):
            tag = self._role_tag(role)
            if self.style == "mpt_two" and role == "assistant" and message and not message.startswith(_GPT_OSS_CHANNEL):
                message = GPT_OSS_FINAL_HEADER + message
            if self.style == "internvl_zh":
                if not message:
                    out += tag + ":"
                    continue
                out += tag + ": " + message
            else:
                if not message:
                    out += tag
                    continue
                out += tag + message
            if continue_final and i == last:
                break
            out += self._closing_sep(role, is_last=i == last)
        return out

    def postprocess(self, text: str) -> str:
        """Cut decoded model output at the stop sequences and strip it, as the official ``chat()`` does.

        Upstream cuts only at ``stop_token``; cutting at ``stop_str`` too changes nothing for text decoded with
        special tokens skipped. For gpt-oss the reply's ``<|channel|>…<|message|>`` header is removed (the
        official code returns it) and, when an analysis message precedes it, only the final message is kept.

        >>> get_template("internvl2_5").postprocess(" A cat.<|im_end|>junk")
        'A cat.'
        >>> get_template("internvl3_5_gpt_oss").postprocess("<|channel|>final<|message|>A cat.<|return|>")
        'A cat.'
        """
        for stop in self.stop_sequences:
            text = text.split(stop)[0]
        if self.style == "mpt_two":
            if GPT_OSS_FINAL_HEADER in text:
                text = text.rsplit(GPT_OSS_FINAL_HEADER, 1)[1]
            elif text.lstrip().startswith(_GPT_OSS_CHANNEL) and _GPT_OSS_MESSAGE in text:
                text = text.split(_GPT_OSS_MESSAGE, 1)[1]
        return text.strip()

    def _role_tag(self, role: str) -> str:
        if role == "user":
            return self.roles[0]
        if role == "assistant":
            return self.roles[1]
        raise TemplateError(f"unknown role {role!r} in template {self.name!r}; use 'user' or 'assistant'")

    def _closing_sep(self, role: str, *, is_last: bool) -> str:
        if self.style == "internvl_zh":
            # Upstream alternates by message index (user even, assistant odd); keyed by role it is the same
            # for well-formed conversations and stays right if a caller repeats a role.
            return (self.sep2 or "") if role == "user" else self.sep
        if self.style == "mpt_two" and role == "assistant" and is_last and self.sep2 is not None:
            return self.sep2
        return self.sep


_CHATML_SYSTEM = "<|im_start|>system\n{system_message}"
_CHATML_ROLES = ("<|im_start|>user\n", "<|im_start|>assistant\n")

TEMPLATES: Mapping[str, Template] = MappingProxyType(
    {
        t.name: t
        for t in (
            # Hermes-2 and internlm2-chat render identically; they differ only in training (<s>), and
            # Hermes-2's stop_str is never read by chat().
            Template(
                "Hermes-2", _CHATML_SYSTEM, SYSTEM_MESSAGE_OLD, _CHATML_ROLES, "<|im_end|>", stop_str="<|endoftext|>"
            ),
            Template("internlm2-chat", _CHATML_SYSTEM, SYSTEM_MESSAGE_OLD, _CHATML_ROLES, "<|im_end|>"),
            Template(
                "phi3-chat",
                "<|system|>\n{system_message}",
                SYSTEM_MESSAGE_OLD,
                ("<|user|>\n", "<|assistant|>\n"),
                "<|end|>",
            ),
            Template("internvl2_5", _CHATML_SYSTEM, SYSTEM_MESSAGE_25, _CHATML_ROLES, "<|im_end|>\n"),
            Template(
                "internvl3_5_gpt_oss",
                "<|start|>system<|message|>{system_message}",
                SYSTEM_MESSAGE_GPT_OSS,
                ("<|start|>user<|message|>", "<|start|>assistant"),
                "<|end|>",
                sep2="<|return|>",
                style="mpt_two",
            ),
            # V1-1: empty system message; user messages end with sep2=' ', assistant messages with sep='</s>'.
            Template("internvl_zh", "", "", ("<human>", "<bot>"), "</s>", sep2=" ", style="internvl_zh"),
        )
    }
)


def _alias_key(name: str) -> str:
    return re.sub(r"[\s._-]+", "", name.lower())


_ALIASES: dict[str, str] = {_alias_key(n): n for n in TEMPLATES}
_ALIASES["gptoss"] = "internvl3_5_gpt_oss"


def get_template(name_or_template: str | Template) -> Template:
    """The template with this name; case, ``-``, ``_`` and ``.`` are ignored (``"internvl2.5"`` works).

    >>> get_template("InternVL2.5").name
    'internvl2_5'
    """
    if isinstance(name_or_template, Template):
        return name_or_template
    if not isinstance(name_or_template, str):
        raise TemplateError(f"template must be a name or a Template, got {type(name_or_template).__name__}")
    if name_or_template in TEMPLATES:
        return TEMPLATES[name_or_template]
    canonical = _ALIASES.get(_alias_key(name_or_template))
    if canonical is None:
        close = difflib.get_close_matches(name_or_template, list(TEMPLATES), n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise TemplateError(
            f"unknown conversation template {name_or_template!r}; known templates: {', '.join(TEMPLATES)}.{hint}"
        )
    return TEMPLATES[canonical]
