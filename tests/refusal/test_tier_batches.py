"""Balanced tier batches for the audit's contrastive SAE (cbd_plugin.refusal.tier_batches)."""

import numpy as np
import pytest
import torch

from cbd_plugin.capture import TokenRows
from cbd_plugin.refusal.tier_batches import BalancedTierBatches
from cbd_plugin.sae import unpack_labels

D = 6


def corpus(n_benign=7, n_hazard=5, n_other=3, seed=0):
    """Examples of 1-4 tokens; the activations encode (example id, position) so batches can be checked."""
    rng = np.random.default_rng(seed)
    tiers = [0] * n_benign + [1] * n_hazard + [-1] * n_other
    rows, tier, eid = [], [], []
    for i in rng.permutation(len(tiers)):  # tokens of an example are contiguous, examples in random order
        for pos in range(rng.integers(1, 5)):
            rows.append([i + 100, pos] + [0.0] * (D - 2))
            tier.append(tiers[i])
            eid.append(i + 100)
    return torch.tensor(rows), np.array(tier), np.array(eid)


def test_balanced_batches_carry_both_tiers_as_whole_examples():
    acts, tier, eid = corpus()
    tokens_per_example = {e: int((eid == e).sum()) for e in np.unique(eid)}
    stream = BalancedTierBatches(acts, tier, eid, examples_per_tier=2, seed=0, other_per_batch=1)
    seen = {0: [], 1: []}
    for _, batch in zip(range(14), stream):
        x, t, e = unpack_labels(batch, D)
        assert torch.equal(x[:, 0].long(), e)  # activations travel with their own labels
        ids = {int(i): int(t[e == i][0]) for i in e.unique()}
        assert sorted(ids.values()) == [-1, 0, 0, 1, 1]
        for i, ti in ids.items():
            assert int((e == i).sum()) == tokens_per_example[i]  # whole examples
            assert (t[e == i] == ti).all()
            if ti >= 0:
                seen[ti].append(i)
    # Epochs: 5 hazard examples at 2 per batch make 2 batches of distinct examples; 7 benign ones make 3.
    assert len(set(seen[1][:4])) == 4 and len(set(seen[0][:6])) == 6
    assert set(seen[0]) == set(eid[tier == 0]) and set(seen[1]) == set(eid[tier == 1])


def test_balanced_batches_are_deterministic_and_resume():
    acts, tier, eid = corpus()
    first = [b for _, b in zip(range(9), BalancedTierBatches(acts, tier, eid, 3, seed=4))]
    again = [b for _, b in zip(range(9), BalancedTierBatches(acts, tier, eid, 3, seed=4))]
    other = [b for _, b in zip(range(9), BalancedTierBatches(acts, tier, eid, 3, seed=5))]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(a.shape == b.shape and torch.equal(a, b) for a, b in zip(first, other))
    stream = BalancedTierBatches(acts, tier, eid, 3, seed=4)
    it = iter(stream)
    for _ in range(5):
        next(it)
    state = stream.state_dict()
    assert state["next_batch"] == 5
    resumed = BalancedTierBatches(acts, tier, eid, 3, seed=4)
    resumed.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(first[5:], iter(resumed)))
    with pytest.raises(ValueError, match=r"cannot resume: the batch stream differs in \['seed'\]"):
        BalancedTierBatches(acts, tier, eid, 3, seed=9).load_state_dict(state)


def test_balanced_batches_from_rows_on_disk_equal_the_tensors():
    acts, tier, eid = corpus()
    rows = TokenRows(D, acts.dtype)
    rows.append(acts[:7])
    rows.append(acts[7:])
    from_tensor, from_disk = (BalancedTierBatches(a, tier, eid, 2, seed=3, other_per_batch=1) for a in (acts, rows))
    assert from_disk.fingerprint() == from_tensor.fingerprint()
    assert all(torch.equal(a, b) for _, a, b in zip(range(12), from_tensor, from_disk))
    four = TokenRows(D, torch.float32)
    four.append(torch.randn(4, D))
    with pytest.raises(ValueError, match="example id 0's tokens are not contiguous rows"):
        BalancedTierBatches(four, np.zeros(4, int), np.array([0, 1, 0, 1]), 1)  # example 0: rows 0 and 2
    bad = TokenRows(D, torch.float32)
    bad.append(torch.cat([acts[:3], torch.full((1, D), float("nan"))]))
    with pytest.raises(
        ValueError, match=r"1 token\(s\) of acts hold NaN/Inf, first at token 3 \(counted in rows \[0, 4\)"
    ):
        BalancedTierBatches(bad, np.zeros(len(bad), int), np.arange(len(bad)), 1)


def test_balanced_batches_reject_bad_inputs():
    acts, tier, eid = corpus()
    with pytest.raises(ValueError, match=r"tier 1 has 5 examples, fewer than the 6 each batch needs"):
        BalancedTierBatches(acts, tier, eid, examples_per_tier=6)
    with pytest.raises(ValueError, match=r"example id 1 mixes tiers \[0, 1\]"):
        BalancedTierBatches(torch.zeros(4, D), [0, 1, 1, 0], [1, 1, 2, 3], 1)
    with pytest.raises(ValueError, match="differ in length"):
        BalancedTierBatches(acts[:-1], tier, eid, 2)
