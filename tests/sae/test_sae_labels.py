"""Tier labels packed into batches, and streaming held-out metrics."""

import pytest
import torch

from cbd_plugin.sae import ReconstructionStats, TopKSAE, evaluate_sae, pack_labels, unpack_labels

D = 6


def test_pack_unpack_roundtrip_and_plain_batches():
    acts = torch.randn(5, D)
    packed = pack_labels(acts, torch.tensor([0, 0, 1, 1, -1]), torch.tensor([3, 3, 7, 7, 2**24 - 1]))
    assert packed.shape == (5, D + 2) and packed.dtype == torch.float32
    x, tier, eid = unpack_labels(packed, D)
    assert torch.equal(x, acts)
    assert tier.tolist() == [0, 0, 1, 1, -1] and eid.tolist() == [3, 3, 7, 7, 2**24 - 1]
    x, tier, eid = unpack_labels(acts, D)
    assert x is acts and tier is None and eid is None
    assert unpack_labels(pack_labels(acts, 1, 9), D)[1].tolist() == [1] * 5  # scalars broadcast


def test_pack_unpack_errors():
    with pytest.raises(ValueError, match=r"batch has 7 columns; expected 6 \(plain\) or 8"):
        unpack_labels(torch.zeros(2, 7), D)
    with pytest.raises(ValueError, match=r"example ids must lie in \[0, 2\*\*24\)"):
        pack_labels(torch.zeros(2, D), 0, torch.tensor([0, 2**24]))
    with pytest.raises(ValueError, match=r"tier codes must be -1, 0 or 1, got \[0, 2\]"):
        pack_labels(torch.zeros(2, D), torch.tensor([0, 2]), 0)


def test_streaming_metrics_equal_the_formula_on_all_tokens():
    g = torch.Generator().manual_seed(0)
    sae = TopKSAE(D, 16, 2, generator=g)
    x = torch.randn(300, D, generator=g) * 2 + 1e3  # a large offset: the streamed variance must not cancel
    with torch.no_grad():
        x_hat, f = sae(x, output_features=True)
    x64, xh64 = x.double(), x_hat.double()
    fve = 1 - ((x64 - xh64) ** 2).sum() / ((x64 - x64.mean(0)) ** 2).sum()
    l0 = (f != 0).sum(1).double().mean()
    dead = (~(f != 0).any(0)).double().mean()
    stats = ReconstructionStats(16)
    for chunk in (slice(0, 7), slice(7, 150), slice(150, 300)):
        stats.update(x[chunk], x_hat[chunk], f[chunk])
    res = stats.result()
    assert res["n_tokens"] == 300
    assert res["fve"] == pytest.approx(float(fve), rel=1e-6)
    assert res["mean_l0"] == pytest.approx(float(l0)) and res["mean_l0"] <= 2
    assert res["dead_fraction"] == pytest.approx(float(dead))
    batches = [pack_labels(x[:100], 0, 1), x[100:]]  # packed and plain batches mix
    assert evaluate_sae(sae, batches) == pytest.approx(res)


def test_metrics_by_hand():
    stats = ReconstructionStats(3)
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0]])  # mean (1, 0); total sum of squares 2
    stats.update(x[:1], torch.tensor([[0.5, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]]))
    stats.update(x[1:], torch.tensor([[2.0, 0.5]]), torch.tensor([[1.0, 2.0, 0.0]]))
    res = stats.result()
    # residual sum of squares 0.25 + 0.25 of a raw sum of squares 0 + 4
    assert res == {
        "fve": pytest.approx(1 - 0.5 / 2),
        "mean_l0": 1.5,
        "dead_fraction": pytest.approx(1 / 3),
        "n_tokens": 2,
        "error_norm_fraction": pytest.approx((0.5 / 4) ** 0.5),
    }
    with pytest.raises(ValueError, match="no tokens"):
        ReconstructionStats(3).result()


def test_metrics_from_sparse_codes_equal_dense():
    g = torch.Generator().manual_seed(1)
    sae = TopKSAE(D, 16, 2, generator=g)
    x = torch.randn(50, D, generator=g)
    with torch.no_grad():
        codes = sae.encode_sparse(x)
        dense, sparse = ReconstructionStats(16), ReconstructionStats(16)
        dense.update(x, sae.decode(codes.to_dense(16)), codes.to_dense(16))
        sparse.update(x, sae.decode_sparse(codes), codes)
    assert sparse.result() == pytest.approx(dense.result(), rel=1e-6)
