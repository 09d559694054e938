"""The training-only auxiliaries that act on the demo's language model (the others act on image tokens).

The attention auxiliary (:func:`look_loss`) teaches one head of one layer where a located answer part should look:
a box's numbers at the image tokens over their word or line, a chart value at the number printed above its bar
(targets from :func:`~internvl_tools.demo.batches.look_targets`). The carry auxiliary (:func:`carry_loss`) has the
hidden state after that layer regress the box being written, so what the head found is brought back to where the
numbers are written. Both can weigh each box's first query more (:func:`first_weighted`; ``--look-first``,
``--carry-first`` of :mod:`~internvl_tools.demo.train`): it is the one query that has only the image to go on.
The place auxiliary (:func:`place_loss`, ``--place-aux``, off by default) asks each image token, as that head reads
it, which tile of the image it belongs to: tiles are encoded alone, so where a tile sits is only in the order of
the image tokens, and a box on a page several tiles tall is written in the whole page's frame.

>>> import torch
>>> head = torch.nn.Linear(8, 4)
>>> float(carry_loss(head, torch.zeros(1, 3, 8), []))
0.0
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CARRY_WEIGHT",
    "LOOK_HEAD",
    "LOOK_LAYER",
    "LOOK_WEIGHT",
    "PLACE_AUX_WEIGHT",
    "carry_loss",
    "first_weighted",
    "look_loss",
    "place_loss",
    "tile_places",
]

#: The attention auxiliary: one head of one language-model layer is taught where a located answer part should look
#: (the image tokens over the word, line or chart value it writes: :func:`~internvl_tools.demo.batches.look_spans`).
LOOK_WEIGHT = 1.0
LOOK_LAYER = 2
LOOK_HEAD = 0
#: The carry auxiliary: after that layer, the hidden state of each query regresses its span's 0-1 box (L1), so what
#: the head looks at is brought back to where the numbers are written.
CARRY_WEIGHT = 5.0
#: The place auxiliary (off by default): at the input of that layer, each image token names the index of its tile
#: in the image (the thumbnail last), which only the token order tells.
PLACE_AUX_WEIGHT = 0.0


def first_weighted(per_query: Any, first: float) -> Any:
    """A look's loss from its queries' (``--look-first``, ``--carry-first``): their mean, the first one weighted more.

    >>> import torch
    >>> float(first_weighted(torch.tensor([3.0, 1.0]), 0.0)), float(first_weighted(torch.tensor([3.0, 1.0]), 1.0))
    (2.0, 2.5)
    """
    return (per_query.mean() + first * per_query[0]) / (1.0 + first)


def look_loss(
    attention: Any, hidden: Any, position_embeddings: Any, looks: list, head: int = LOOK_HEAD, first: float = 0.0
) -> Any:
    """Mean of -log(attention mass on the right image tokens) of one head, over the queries of ``looks``.

    ``first`` weighs each look's first query (the one that writes the box's first number or the value's first
    digit) that much more than the mean of its queries: later queries can find the place from the numbers already
    written, the first one only from what the image shows.

    ``attention`` is a Qwen2 attention module, ``hidden`` and ``position_embeddings`` its inputs in the forward pass
    just run (captured by a hook), ``looks`` the batch's (row, query positions, image-token positions, box) from
    :func:`~internvl_tools.demo.batches.collate` (the box is the carry auxiliary's and is ignored here). The scores
    are recomputed exactly as the module computes them (same projections, rotary embedding, scaling, causal mask),
    so the gradient reaches the weights the model attends with.

    >>> import torch
    >>> from transformers import Qwen2Config
    >>> from transformers.models.qwen2.modeling_qwen2 import Qwen2Attention, Qwen2RotaryEmbedding
    >>> config = Qwen2Config(hidden_size=32, num_attention_heads=2, num_key_value_heads=1)
    >>> hidden = torch.randn(1, 6, 32)
    >>> rope = Qwen2RotaryEmbedding(config)(hidden, torch.arange(6)[None])
    >>> loss = look_loss(Qwen2Attention(config, 0), hidden, rope, [(0, [4, 5], [1, 2])])
    >>> bool(loss > 0)
    True
    """
    import torch
    from transformers.models.qwen2.modeling_qwen2 import rotate_half

    per_kv = attention.config.num_attention_heads // attention.config.num_key_value_heads
    dim = attention.head_dim
    cos, sin = position_embeddings

    def rotate(x: Any, row: int, positions: Any) -> Any:
        row = min(row, cos.shape[0] - 1)  # one shared row when every sequence has the same positions
        return x * cos[row, positions].float() + rotate_half(x) * sin[row, positions].float()

    keys: dict[int, Any] = {}  # per row: the head's rotated keys, shared by that row's looks (a page has many lines)
    losses = []
    for row, queries, image, *_ in looks:
        if row not in keys:
            length = hidden.shape[1]
            k = attention.k_proj(hidden[row]).float().view(length, -1, dim)[:, head // per_kv]
            keys[row] = rotate(k, row, torch.arange(length))
        q_pos = torch.tensor(queries)
        last = int(q_pos.max()) + 1
        q = rotate(attention.q_proj(hidden[row, q_pos]).float().view(len(queries), -1, dim)[:, head], row, q_pos)
        scores = (q @ keys[row][:last].T) * attention.scaling
        scores = scores.masked_fill(torch.arange(last)[None, :] > q_pos[:, None], float("-inf"))
        logp = torch.log_softmax(scores, dim=-1)
        missed = -torch.logsumexp(logp[:, torch.tensor(image)], dim=-1)
        losses.append(first_weighted(missed, first))
    return torch.stack(losses).mean() if losses else hidden.new_zeros(()).float()


def carry_loss(head: Any, hidden: Any, looks: list, first: float = 0.0) -> Any:
    """Mean L1 error of ``sigmoid(head(hidden))`` at each look's queries against its 0-1 box (0 without looks).

    ``first`` weighs each look's first query that much more than the mean of its queries, as in :func:`look_loss`:
    later queries can copy the numbers already written, so the mean is mostly earned where it is easy, while the
    first query has only the image to place the box from.

    >>> import torch
    >>> head = torch.nn.Linear(8, 4)
    >>> _ = torch.nn.init.zeros_(head.weight), torch.nn.init.zeros_(head.bias)  # predicts 0.5 everywhere
    >>> float(carry_loss(head, torch.zeros(1, 3, 8), [(0, [1, 2], [0], (0.5, 0.5, 0.5, 1.0))]))
    0.125
    >>> hidden = torch.zeros(1, 3, 8)
    >>> hidden[0, 2, 0] = 1.0  # the second query alone predicts the box's last number right
    >>> _ = head.weight.data[3, 0].fill_(100.0)
    >>> [round(float(carry_loss(head, hidden, [(0, [1, 2], [0], (0.5, 0.5, 0.5, 1.0))], w)), 4) for w in (0, 4)]
    [0.0625, 0.1125]
    """
    import torch

    errors = []
    for row, queries, _image, box in looks:
        got = torch.sigmoid(head(hidden[row, torch.tensor(queries)]).float())
        per_query = (got - torch.tensor(box)).abs().mean(dim=-1)
        errors.append(first_weighted(per_query, first))
    return torch.stack(errors).mean() if errors else hidden.new_zeros(()).float()


def tile_places(image_mask: Any, tokens_per_tile: int) -> Any:
    """The index of each image token's tile in its image (thumbnail last), over ``image_mask``'s True positions.

    ``image_mask`` is (batch, length), True at ``<IMG_CONTEXT>`` tokens; each row holds one image whose tiles are
    ``tokens_per_tile`` consecutive image tokens each, as the prompt lays them out.

    >>> import torch
    >>> mask = torch.tensor([[0, 1, 1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 0, 0, 0, 0]]).bool()
    >>> tile_places(mask, 2).tolist()
    [0, 0, 1, 1, 2, 2, 0, 0]
    """
    rank = image_mask.long().cumsum(dim=1) - 1
    return (rank // tokens_per_tile)[image_mask]


def place_loss(head: Any, hidden: Any, image_mask: Any, tokens_per_tile: int) -> Any:
    """Cross-entropy of ``head(hidden)`` at the image tokens against their tiles' indices (:func:`tile_places`).

    The causal language model can count image tokens but not see those after it, so the target is the tile's index,
    not its place in a grid it has not yet seen the end of.

    >>> import math, torch
    >>> head = torch.nn.Linear(8, 7)
    >>> _ = torch.nn.init.zeros_(head.weight), torch.nn.init.zeros_(head.bias)  # uniform over 7 tiles
    >>> mask = torch.tensor([[0, 1, 1, 1, 1, 0]]).bool()
    >>> math.isclose(float(place_loss(head, torch.zeros(1, 6, 8), mask, 2)), math.log(7), rel_tol=1e-6)
    True
    """
    import torch

    logits = head(hidden[image_mask]).float()
    return torch.nn.functional.cross_entropy(logits, tile_places(image_mask, tokens_per_tile))
