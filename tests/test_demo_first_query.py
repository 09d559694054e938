"""The first query of each look can be weighted in the attention and carry auxiliaries (``--look-first``,
``--carry-first``): the one query that must place a box from the image alone, since later ones can copy the numbers
already written.

Both losses follow one rule, checked here on random tensors: a look's loss is ``(mean over its queries + w * its
first query's) / (1 + w)``, so ``w = 0`` is the plain mean and a look of one query is the same for every ``w``.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from internvl_tools.demo.losses import carry_loss, look_loss  # noqa: E402

WEIGHTS = [0.0, 1.0, 2.5]


def _attention_case(seed: int):
    from transformers import Qwen2Config
    from transformers.models.qwen2.modeling_qwen2 import Qwen2Attention, Qwen2RotaryEmbedding

    torch.manual_seed(seed)
    config = Qwen2Config(hidden_size=32, num_attention_heads=2, num_key_value_heads=1)
    hidden = torch.randn(2, 9, 32)
    rope = Qwen2RotaryEmbedding(config)(hidden, torch.arange(9)[None])
    return Qwen2Attention(config, 0), hidden, rope


def _look(attention, hidden, rope, looks, first):
    with torch.no_grad():
        return float(look_loss(attention, hidden, rope, looks, first=first))


def _carry(head, hidden, looks, first):
    with torch.no_grad():
        return float(carry_loss(head, hidden, looks, first=first))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("first", WEIGHTS)
def test_a_looks_loss_is_its_queries_mean_and_its_first_query_mixed_by_the_weight(seed, first):
    attention, hidden, rope = _attention_case(seed)
    head = torch.nn.Linear(32, 4)
    box = (0.1, 0.2, 0.6, 0.4)
    look = (1, [5, 6, 8], [1, 2, 3], box)
    only_first = (1, [5], [1, 2, 3], box)
    for loss, args in ((_look, (attention, hidden, rope)), (_carry, (head, hidden))):
        mean, at_first = loss(*args, [look], 0.0), loss(*args, [only_first], 0.0)
        assert loss(*args, [look], first) == pytest.approx((mean + first * at_first) / (1 + first), rel=1e-5)


@pytest.mark.parametrize("first", WEIGHTS[1:])
def test_a_look_of_one_query_and_a_batch_without_looks_do_not_depend_on_the_weight(first):
    attention, hidden, rope = _attention_case(3)
    head = torch.nn.Linear(32, 4)
    single = [(0, [7], [2, 4], (0.3, 0.3, 0.5, 0.5))]
    assert _look(attention, hidden, rope, single, first) == pytest.approx(_look(attention, hidden, rope, single, 0.0))
    assert _carry(head, hidden, single, first) == pytest.approx(_carry(head, hidden, single, 0.0))
    assert _carry(head, hidden, [], first) == 0.0 and _look(attention, hidden, rope, [], first) == 0.0


def test_weighting_the_first_query_raises_the_loss_when_only_the_first_query_is_wrong():
    head = torch.nn.Linear(4, 4)
    torch.nn.init.zeros_(head.bias)
    with torch.no_grad():
        head.weight.copy_(torch.eye(4) * 50)
    box = (1.0, 1.0, 1.0, 1.0)
    hidden = torch.zeros(1, 4, 4)
    hidden[0, 2:] = 1.0  # queries 2 and 3 predict the box (sigmoid(50) = 1); query 1 predicts 0.5 everywhere
    losses = [_carry(head, hidden, [(0, [1, 2, 3], [0], box)], w) for w in WEIGHTS]
    assert losses == sorted(losses) and losses[0] < losses[-1]
    hidden[0, 1:] = hidden[0, [2, 1, 3]]  # now the first query is right and the second wrong
    losses = [_carry(head, hidden, [(0, [1, 2, 3], [0], box)], w) for w in WEIGHTS]
    assert losses == sorted(losses, reverse=True) and losses[0] > losses[-1]
