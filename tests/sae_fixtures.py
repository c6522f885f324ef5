"""Random SAEs and uneven batching that the backdoor statistics tests share."""

import torch

from cbd_plugin.sae.batchtopk import BatchTopKSAE


def random_batchtopk(d: int, n_latents: int, k: int = 4, seed: int = 0) -> BatchTopKSAE:
    """A BatchTopK SAE with normal encoder and decoder weights and a random input normalisation."""
    torch.manual_seed(seed)
    sae = BatchTopKSAE(d, n_latents, k=k, activation_mean=torch.randn(d), activation_std=torch.rand(d) + 0.5)
    with torch.no_grad():
        sae.encoder.weight.normal_()
        sae.decoder.weight.normal_()
    return sae


def batches(n, sizes=(1, 7, 13, 40)):
    """Uneven consecutive slices covering range(n); prompts may straddle batches."""
    start, i = 0, 0
    while start < n:
        yield slice(start, min(n, start + sizes[i % len(sizes)]))
        start += sizes[i % len(sizes)]
        i += 1
