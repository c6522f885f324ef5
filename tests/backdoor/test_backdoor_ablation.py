"""Ablation arithmetic on hand-built SAEs (the edit inside generation: test_backdoor_pipeline.py)."""

import pytest
import torch

from cbd_plugin.backdoor.ablation import random_rotation, remove_latents
from cbd_plugin.sae.batchtopk import BatchTopKSAE
from cbd_plugin.sae.topk import TopKSAE

D = 8


def random_batchtopk(d=D, dict_size=32, normalised=True):
    torch.manual_seed(0)
    kw = {"activation_mean": torch.randn(d), "activation_std": torch.rand(d) + 0.5} if normalised else {}
    sae = BatchTopKSAE(d, dict_size, k=4, target_rms=2.0, **kw)
    with torch.no_grad():
        sae.encoder.weight.normal_()
        sae.encoder.bias.normal_(0, 0.1)
        sae.decoder.weight.normal_()
        sae.b_dec.normal_()
        sae.threshold.fill_(0.2)
    return sae


def test_removing_nothing_changes_nothing():
    sae = random_batchtopk()
    resid, base = torch.randn(2, 5, D), torch.randn(2, 5, D)
    torch.testing.assert_close(remove_latents(resid, base, sae, []), resid)


@pytest.mark.parametrize("normalised", [True, False])
def test_removal_equals_encode_decode_arithmetic(normalised):
    sae = random_batchtopk(normalised=normalised)
    resid, base = torch.randn(3, 4, D) * 3, torch.randn(3, 4, D)
    ids = [1, 5, 9, 30]
    with torch.no_grad():
        f = sae.encode(resid - base)
        assert (f[..., ids] > 0).any()  # the removed latents are active somewhere
        kept = f.clone()
        kept[..., ids] = 0
        expected = resid - (sae.decode(f) - sae.decode(kept))
        got = remove_latents(resid, base, sae, ids)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_removing_every_latent_of_an_exact_sae_gives_the_base_residual():
    # encode = [relu(x), relu(-x)], decode = relu(x) - relu(-x) = x: the SAE reconstructs the difference exactly,
    # so removing all latents must leave exactly the base residual.
    sae = BatchTopKSAE(D, 2 * D, k=D, activation_mean=torch.randn(D), activation_std=torch.rand(D) + 0.5)
    eye = torch.eye(D)
    scale = sae.activation_global_scale
    with torch.no_grad():
        sae.encoder.weight.copy_(torch.cat([eye, -eye]))
        sae.decoder.weight.copy_(torch.cat([eye, -eye], dim=1))
        # Undo the normalisation's shift inside the SAE: b_dec = -mean * scale makes x_n - b_dec = x * scale.
        sae.b_dec.copy_(-sae.activation_mean * scale)
    resid, base = torch.randn(2, 3, D), torch.randn(2, 3, D)
    with torch.no_grad():
        torch.testing.assert_close(sae.decode(sae.encode(resid - base)), resid - base, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(remove_latents(resid, base, sae, range(2 * D)), base, atol=1e-5, rtol=1e-5)
        # Removing only the positive half removes only the positive part of the difference.
        half = remove_latents(resid, base, sae, range(D))
        torch.testing.assert_close(half, resid - (resid - base).clamp(min=0), atol=1e-5, rtol=1e-5)


def test_topk_sae_removal_by_hand():
    sae = TopKSAE(2, 2, k=2)
    with torch.no_grad():
        sae.W_enc.copy_(torch.eye(2))
        sae.W_dec.copy_(torch.tensor([[1.0, 1.0], [0.0, 2.0]]))
        sae.b_enc.zero_()
        sae.b_dec.copy_(torch.tensor([0.5, -1.0]))
    resid, base = torch.tensor([[3.0, 2.0]]), torch.tensor([[1.0, 1.0]])
    # diff (2, 1); x - b_dec = (1.5, 2); f = (1.5, 2); latent 1's contribution = 2 * (0, 2) = (0, 4).
    with torch.no_grad():
        torch.testing.assert_close(remove_latents(resid, base, sae, [1]), torch.tensor([[3.0, -2.0]]))


def test_rotated_removal_moves_the_residual_exactly_as_far_in_another_direction():
    sae = random_batchtopk()
    resid, base = torch.randn(3, 4, D) * 3, torch.randn(3, 4, D)
    ids = [1, 5, 9, 30]
    rotation = random_rotation(D, seed=0)
    torch.testing.assert_close(rotation @ rotation.T, torch.eye(D), atol=1e-5, rtol=0)
    assert not torch.allclose(rotation, random_rotation(D, seed=1))
    with torch.no_grad():
        removed = resid - remove_latents(resid, base, sae, ids)
        rotated = resid - remove_latents(resid, base, sae, ids, rotation)
    # the same norm at every token, in another direction
    torch.testing.assert_close(rotated.norm(dim=-1), removed.norm(dim=-1), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(rotated, removed @ rotation, atol=1e-5, rtol=1e-5)
    cosine = torch.nn.functional.cosine_similarity(rotated.flatten(0, 1), removed.flatten(0, 1), dim=-1)
    assert cosine[removed.flatten(0, 1).norm(dim=-1) > 0].abs().max() < 0.99
