"""Sparse codes: identical to the dense path for TopK and both BatchTopK modes, and sparse gradients equal dense."""

import pytest
import torch

from cbd_plugin.sae import BatchTopKSAE, TopKSAE
from cbd_plugin.sae.sparse import SelectedPreActivations, SparseCodes, SparseDecode, dense_to_codes, topk_codes

D, DICT = 24, 96


def random_batchtopk(k=6, normalizer=True, threshold=0.3):
    g = torch.Generator().manual_seed(0)
    mean, std = (torch.randn(D, generator=g), torch.rand(D, generator=g) + 0.5) if normalizer else (None, None)
    sae = BatchTopKSAE(D, DICT, k, activation_mean=mean, activation_std=std)
    with torch.no_grad():
        sae.encoder.weight.copy_(torch.randn(DICT, D, generator=g))
        sae.encoder.bias.copy_(torch.randn(DICT, generator=g) * 0.1)
        sae.decoder.weight.copy_(torch.randn(D, DICT, generator=g))
        sae.b_dec.copy_(torch.randn(D, generator=g))
        sae.threshold.fill_(threshold)
    return sae


def assert_same_decode(sae, codes, dense_codes):
    """In float64, so the comparison sees the formula, not float32 summation order."""
    sae = sae.double()
    with torch.no_grad():
        sparse = sae.decode_sparse(codes._replace(top_acts=codes.top_acts.double()))
        torch.testing.assert_close(sparse, sae.decode(dense_codes.double()), atol=1e-6, rtol=0)


def dense_topk_reference(sae: TopKSAE, x):
    """The pre-sparse formula: scatter of the top-k of relu(x' W_enc + b_enc)."""
    acts = torch.relu((x - sae.b_dec if sae.subtract_b_dec else x) @ sae.W_enc + sae.b_enc)
    top = acts.topk(sae.k, dim=-1)
    return torch.zeros_like(acts).scatter_(-1, top.indices, top.values)


@pytest.mark.parametrize("subtract_b_dec", [True, False])
def test_topk_sparse_equals_dense(subtract_b_dec):
    g = torch.Generator().manual_seed(1)
    sae = TopKSAE(D, DICT, 5, subtract_b_dec=subtract_b_dec, generator=g)
    with torch.no_grad():
        sae.b_enc.copy_(torch.randn(DICT, generator=g) - 2.5)  # some rows have fewer than k positive latents
        sae.b_dec.copy_(torch.randn(D, generator=g))
        x = torch.randn(3, 40, D, generator=g)
        codes = sae.encode_sparse(x)
        assert codes.top_acts.shape == codes.top_indices.shape == (120, 5)
        reference = dense_topk_reference(sae, x.reshape(-1, D))
        assert (reference != 0).sum(1).min() < 5  # the zero-padding case is exercised
        torch.testing.assert_close(codes.to_dense(DICT), reference, atol=1e-6, rtol=0)
        torch.testing.assert_close(sae.encode(x), reference.reshape(3, 40, DICT), atol=1e-6, rtol=0)
    assert_same_decode(sae, codes, reference)


@pytest.mark.parametrize("normalizer", [True, False])
@pytest.mark.parametrize("use_threshold", [True, False])
def test_batchtopk_sparse_equals_dense(normalizer, use_threshold):
    sae = random_batchtopk(normalizer=normalizer)
    x = torch.randn(2, 30, D, generator=torch.Generator().manual_seed(2)) * 2
    with torch.no_grad():
        acts = torch.relu(sae.encoder(sae.normalize_activations(x.reshape(-1, D)) - sae.b_dec))
        if use_threshold:
            reference = acts * (acts > sae.threshold)
        else:
            top = acts.flatten().topk(6 * 60)
            reference = torch.zeros_like(acts).flatten().scatter_(0, top.indices, top.values).view_as(acts)
        codes = sae.encode_sparse(x, use_threshold=use_threshold)
        counts = (reference != 0).sum(1)
        assert codes.top_acts.shape[1] == counts.max() and counts.min() < counts.max()  # rows differ in width
        assert (codes.active().sum(1) == counts).all()
        torch.testing.assert_close(codes.to_dense(DICT), reference, atol=1e-6, rtol=0)
        torch.testing.assert_close(
            sae.encode(x, use_threshold=use_threshold), reference.view(2, 30, DICT), atol=1e-6, rtol=0
        )
    assert_same_decode(sae, codes, reference)


def test_batchtopk_untrained_threshold_keeps_every_positive_latent():
    sae = random_batchtopk(threshold=-1.0)
    x = torch.randn(10, D, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        dense = torch.relu(sae.encoder(sae.normalize_activations(x) - sae.b_dec))
        codes = sae.encode_sparse(x)
    torch.testing.assert_close(codes.to_dense(DICT), dense, atol=1e-6, rtol=0)


@pytest.mark.parametrize("subtract_b_dec", [True, False])
def test_sparse_gradients_equal_dense_autograd(subtract_b_dec):
    g = torch.Generator().manual_seed(4)
    n, k = 50, 7
    W_enc, b_enc, W_dec, b_dec = (
        torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()
        for shape in ((D, DICT), (DICT,), (DICT, D), (D,))
    )
    x, target = (torch.randn(n, D, generator=g, dtype=torch.float64) for _ in range(2))

    def x_enc():
        return x - b_dec if subtract_b_dec else x

    def dense_loss():
        acts = torch.relu(x_enc() @ W_enc + b_enc)
        top = acts.topk(k, dim=-1)
        f = torch.zeros_like(acts).scatter(-1, top.indices, top.values)
        return (f @ W_dec + b_dec - target).pow(2).sum() + f.sum()

    def sparse_loss():
        with torch.no_grad():
            pre = torch.addmm(b_enc, x_enc(), W_enc)
            indices = topk_codes(pre, k).top_indices
            values = pre.gather(1, indices)
        acts = SelectedPreActivations.apply(x, W_enc, b_enc, b_dec if subtract_b_dec else None, indices, values)
        acts = acts.relu()
        return (SparseDecode.apply(acts, indices, W_dec) + b_dec - target).pow(2).sum() + acts.sum()

    params = (W_enc, b_enc, W_dec, b_dec)
    dense_grads = torch.autograd.grad(dense_loss(), params)
    sparse_grads = torch.autograd.grad(sparse_loss(), params)
    for name, a, b in zip(("W_enc", "b_enc", "W_dec", "b_dec"), dense_grads, sparse_grads):
        torch.testing.assert_close(b, a, atol=1e-9, rtol=1e-9, msg=lambda m: f"{name}: {m}")


def test_empty_codes_decode_to_the_bias():
    sae = TopKSAE(D, DICT, 3)
    codes = SparseCodes(torch.zeros(4, 0), torch.zeros(4, 0, dtype=torch.long))
    with torch.no_grad():
        assert torch.equal(sae.decode_sparse(codes), sae.b_dec.expand(4, D))


def test_dense_codes_round_trip():
    f = torch.tensor([[0.0, 2.0, 0.0, -1.0], [0.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0]])
    codes = dense_to_codes(f)
    assert codes.top_acts.shape == (3, 2) and codes.active().sum(1).tolist() == [2, 0, 1]
    assert torch.equal(codes.to_dense(4), f)


def test_every_dictionary_has_sparse_codes_equal_to_its_dense_code():
    """The Dictionary defaults (used by dictionaries without a sparse encoder, here JumpReLU) round-trip."""
    from cbd_plugin.sae import JumpReLUSAE

    torch.manual_seed(0)
    sae = JumpReLUSAE(16, 64)
    with torch.no_grad():
        for p in sae.parameters():
            p.normal_()
    x = torch.randn(5, 16)
    codes = sae.encode_sparse(x)
    torch.testing.assert_close(codes.to_dense(64), sae.encode(x))
    torch.testing.assert_close(sae.decode_sparse(codes), sae.decode(sae.encode(x)))
