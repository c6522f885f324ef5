"""The same TopK SAE in our format, SAELens's and sparsify's (the ``bench`` extra), sharing one set of weights so
the benchmarks can check that they agree before timing them."""

from __future__ import annotations

import torch
from harness import optional

from cbd_plugin.sae import TopKSAE


def our_topk(d: int, dict_size: int, k: int, device: str) -> TopKSAE:
    g = torch.Generator().manual_seed(0)
    sae = TopKSAE(d, dict_size, k, generator=g)
    with torch.no_grad():
        sae.b_enc.copy_(torch.randn(dict_size, generator=g) * 0.01)
        sae.b_dec.copy_(torch.randn(d, generator=g) * 0.01)
    return sae.to(device)


def saelens_topk(ours: TopKSAE, training: bool = False):
    """SAELens's TopKSAE (or TopKTrainingSAE) with our weights, or None where SAE Lens is not installed."""
    saes = optional("sae_lens")
    if saes is None:
        return None
    device = str(ours.W_enc.device)
    fields = dict(
        d_in=ours.activation_dim,
        d_sae=ours.dict_size,
        k=ours.k,
        device=device,
        apply_b_dec_to_input=True,
        rescale_acts_by_decoder_norm=False,
    )
    sae = (
        saes.TopKTrainingSAE(saes.TopKTrainingSAEConfig(**fields))
        if training
        else saes.TopKSAE(saes.TopKSAEConfig(**fields))
    )
    with torch.no_grad():
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            getattr(sae, name).copy_(getattr(ours, name))
    return sae


def sparsify_topk(ours: TopKSAE):
    """sparsify's SparseCoder with our weights (encoder.weight = W_enc^T), or None where it is not installed."""
    sparsify = optional("sparsify")
    if sparsify is None:
        return None
    cfg = sparsify.SparseCoderConfig(num_latents=ours.dict_size, k=ours.k)
    sae = sparsify.SparseCoder(ours.activation_dim, cfg, device=ours.W_enc.device)
    with torch.no_grad():
        sae.encoder.weight.copy_(ours.W_enc.T)
        sae.encoder.bias.copy_(ours.b_enc)
        sae.W_dec.copy_(ours.W_dec)
        sae.b_dec.copy_(ours.b_dec)
    return sae


def activations(n: int, d: int, device: str, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed)).to(device)
