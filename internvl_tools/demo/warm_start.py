"""Warm starts of the demo model: initialise a model from an earlier demo checkpoint directory.

:func:`warm_start` copies every tensor whose name and shape match and maps the token embeddings by token string;
:func:`fold_projector` carries a projector across a change of pixel shuffle (0.5 to 1.0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["PROJECTOR", "fold_projector", "warm_start"]

#: The state-dict prefix of InternVL's multimodal projector (LN -> Linear -> GELU -> Linear).
PROJECTOR = "model.multi_modal_projector"


def fold_projector(old: dict[str, Any], own: dict[str, Any]) -> bool:
    """Fit a projector over single patches (pixel shuffle 1.0) from one over 2x2 patches (0.5); in place.

    The new projector gives each patch exactly what the old one gave a cell whose four patches all look like it:
    the layer norm of four equal blocks is the layer norm of one, so its scale moves into the first linear layer,
    whose four column blocks are summed. Returns False (and changes nothing) unless the old projector's input is
    four times the new one's.

    >>> import torch
    >>> def projector(width):
    ...     norm, linear = torch.nn.LayerNorm(width), torch.nn.Linear(width, 3)
    ...     _ = torch.nn.init.normal_(norm.weight), torch.nn.init.normal_(norm.bias)
    ...     return norm, linear
    >>> (n4, l4), (n1, l1) = projector(8), projector(2)
    >>> old = {f"{PROJECTOR}.layer_norm.{k}": v for k, v in n4.state_dict().items()}
    >>> old |= {f"{PROJECTOR}.linear_1.{k}": v for k, v in l4.state_dict().items()}
    >>> own = {f"{PROJECTOR}.layer_norm.{k}": v for k, v in n1.state_dict().items()}
    >>> own |= {f"{PROJECTOR}.linear_1.{k}": v for k, v in l1.state_dict().items()}
    >>> fold_projector(old, own)
    True
    >>> n1.load_state_dict({k.rsplit(".", 1)[1]: v for k, v in own.items() if ".layer_norm." in k})
    <All keys matched successfully>
    >>> l1.load_state_dict({k.rsplit(".", 1)[1]: v for k, v in own.items() if ".linear_1." in k})
    <All keys matched successfully>
    >>> patch = torch.randn(2)
    >>> torch.allclose(l1(n1(patch)), l4(n4(patch.repeat(4))), atol=1e-5)
    True
    """
    import torch

    norm_w, norm_b = f"{PROJECTOR}.layer_norm.weight", f"{PROJECTOR}.layer_norm.bias"
    lin_w, lin_b = f"{PROJECTOR}.linear_1.weight", f"{PROJECTOR}.linear_1.bias"
    if norm_w not in old or norm_w not in own or old[norm_w].shape[0] != 4 * own[norm_w].shape[0]:
        return False
    width = own[norm_w].shape[0]
    weight = old[lin_w] * old[norm_w][None, :]  # the layer norm's scale folded into the columns it feeds
    own[lin_w] = weight.view(weight.shape[0], 4, width).sum(1)
    own[lin_b] = old[lin_b] + old[lin_w] @ old[norm_b]
    own[norm_w] = torch.ones(width, dtype=old[norm_w].dtype)
    own[norm_b] = torch.zeros(width, dtype=old[norm_b].dtype)
    return True


def warm_start(model: Any, tokenizer: Any, directory: Path) -> dict[str, int]:
    """Initialise ``model`` from the demo checkpoint in ``directory`` (e.g. the shipped model); returns counts.

    Every tensor whose name and shape match is copied; a projector over 2x2 patches is folded into one over single
    patches (:func:`fold_projector`) when the pixel-shuffle ratio changed. The token embeddings (tied with the output
    layer) are matched by token string, since a tokenizer rebuilt from a changed corpus numbers its tokens
    differently; a token the old vocabulary lacks starts as the mean of the old rows its text splits into.

    >>> from transformers import InternVLForConditionalGeneration
    >>> from internvl_tools.demo.architecture import build_config, build_tokenizer
    >>> from internvl_tools.demo.evaluate import MODEL_DIR
    >>> tokenizer = build_tokenizer()
    >>> counts = warm_start(InternVLForConditionalGeneration(build_config(tokenizer)), tokenizer, MODEL_DIR)
    >>> counts["tokens_matched"] + counts["tokens_composed"] == len(tokenizer)
    True
    """
    import torch
    from transformers import InternVLForConditionalGeneration, PreTrainedTokenizerFast

    old_tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"))
    old = InternVLForConditionalGeneration.from_pretrained(directory).state_dict()
    own = model.state_dict()
    embedding = model.get_input_embeddings().weight
    tied = [k for k, v in own.items() if v.data_ptr() == embedding.data_ptr()]  # the embeddings and the output layer
    name = tied[0]
    copied = [k for k, v in own.items() if k in old and old[k].shape == v.shape]
    for key in copied:
        own[key] = old[key]
    folded = fold_projector(old, own)
    old_rows, old_vocab = old[name], old_tokenizer.get_vocab()
    rows = own[name].clone()
    matched = composed = 0
    for token, index in tokenizer.get_vocab().items():
        if token in old_vocab:
            rows[index] = old_rows[old_vocab[token]]
            matched += 1
            continue
        pieces = old_tokenizer(tokenizer.convert_tokens_to_string([token]), add_special_tokens=False)["input_ids"]
        if pieces:
            rows[index] = old_rows[torch.tensor(pieces)].mean(0)
            composed += 1
    for key in tied:
        own[key] = rows
    model.load_state_dict(own)
    return {
        "tensors": len(copied),
        "of": len(own),
        "tokens_matched": matched,
        "tokens_composed": composed,
        "projector_folded": int(folded),
    }
