"""Encode at the model cards' SAE sizes: our sparse and dense TopK encode against SAELens's and sparsify's, the
encoder GEMM alone (the floor), and our BatchTopK encode in both modes.

Same weights in every library (codes checked equal first), batches of ``--batch`` tokens, float32, interleaved
rounds; prints median ms and median [min, max] of the paired ratios.

    OMP_NUM_THREADS=1 python benchmarks/sae_encode.py [--sizes backdoor bio] [--rounds 5]
"""

from __future__ import annotations

import torch
from harness import CARD_SIZES, interleaved, options, print_ratios, start
from libraries import activations, our_topk, saelens_topk, sparsify_topk

from cbd_plugin.sae import BatchTopKSAE


def batchtopk_like(ours) -> BatchTopKSAE:
    """A BatchTopK SAE with the TopK weights and a threshold near the k-th activation (about k active)."""
    sae = BatchTopKSAE(ours.activation_dim, ours.dict_size, ours.k).to(ours.W_enc.device)
    with torch.no_grad():
        sae.encoder.weight.copy_(ours.W_enc.T)
        sae.encoder.bias.copy_(ours.b_enc)
        sae.decoder.weight.copy_(ours.W_dec.T)
        sae.b_dec.copy_(ours.b_dec)
    return sae


def check_agreement(x, ours, lens, sparse) -> None:
    with torch.no_grad():
        dense = ours.encode(x)
        if lens is not None:
            print(f"  codes equal to SAELens's (max |diff|): {float((lens.encode(x) - dense).abs().max()):.2e}")
        if sparse is not None:
            top = sparse.encode(x)
            theirs = torch.zeros_like(dense).scatter_(1, top.top_indices, top.top_acts)
            print(f"  codes equal to sparsify's (max |diff|): {float((theirs - dense).abs().max()):.2e}")


def main():
    args = options(__doc__.split("\n\n")[0]).parse_args()
    start(args)
    for size in args.sizes:
        d, dict_size, k = CARD_SIZES[size]
        ours = our_topk(d, dict_size, k, args.device)
        lens, sparse, batch_topk = saelens_topk(ours), sparsify_topk(ours), batchtopk_like(ours)
        x = activations(args.batch, d, args.device)
        with torch.no_grad():
            batch_topk.threshold.fill_(float(ours.encode_sparse(x).top_acts.min()))
        print(f"# {size}: d {d}, dict {dict_size}, k {k}, batch {args.batch} tokens, float32")
        check_agreement(x, ours, lens, sparse)
        variants = {
            "ours sparse": lambda: ours.encode_sparse(x),
            "ours dense": lambda: ours.encode(x),
            "encoder GEMM (floor)": lambda: torch.addmm(ours.b_enc, x, ours.W_enc),
            "ours BatchTopK threshold": lambda: batch_topk.encode_sparse(x),
            "ours BatchTopK batch-top-k": lambda: batch_topk.encode_sparse(x, use_threshold=False),
        }
        if lens is not None:
            variants["SAELens"] = lambda: lens.encode(x)
        if sparse is not None:
            variants["sparsify"] = lambda: sparse.encode(x)
        with torch.no_grad():
            timings = interleaved(variants, args.rounds, args.warmup, args.device)
        print_ratios(
            f"encode, {size} size",
            timings,
            [
                ("ours sparse", "SAELens"),
                ("ours sparse", "sparsify"),
                ("ours dense", "SAELens"),
                ("ours sparse", "encoder GEMM (floor)"),
                ("ours BatchTopK batch-top-k", "encoder GEMM (floor)"),
                ("ours BatchTopK threshold", "encoder GEMM (floor)"),
            ],
            tokens=args.batch,
        )


if __name__ == "__main__":
    main()
