"""Decode at the model cards' SAE sizes: our decode from sparse codes against sparsify's (which also gathers k
decoder rows), SAELens's (dense codes) and our dense decode.

Same weights and codes everywhere (outputs checked equal first), batches of ``--batch`` tokens, float32,
interleaved rounds; prints median ms and median [min, max] of the paired ratios.

    OMP_NUM_THREADS=1 python benchmarks/sae_decode.py [--sizes backdoor bio] [--rounds 5]
"""

from __future__ import annotations

import torch
from harness import CARD_SIZES, interleaved, options, print_ratios, start
from libraries import activations, our_topk, saelens_topk, sparsify_topk


def main():
    args = options(__doc__.split("\n\n")[0], rounds=7).parse_args()
    start(args)
    for size in args.sizes:
        d, dict_size, k = CARD_SIZES[size]
        ours = our_topk(d, dict_size, k, args.device)
        lens, sparse = saelens_topk(ours), sparsify_topk(ours)
        with torch.no_grad():
            codes = ours.encode_sparse(activations(args.batch, d, args.device))
            dense = codes.to_dense(dict_size)
            reference = ours.decode(dense)
        print(f"# {size}: d {d}, dict {dict_size}, k {k}, batch {args.batch} tokens, float32")
        variants = {"ours sparse": lambda: ours.decode_sparse(codes), "ours dense": lambda: ours.decode(dense)}
        if sparse is not None:
            variants["sparsify"] = lambda: sparse.decode(codes.top_acts, codes.top_indices)
        if lens is not None:
            variants["SAELens (dense codes)"] = lambda: lens.decode(dense)
        with torch.no_grad():
            for name, run in variants.items():
                print(f"  {name}: max |diff| from the dense formula {float((run() - reference).abs().max()):.2e}")
            timings = interleaved(variants, args.rounds, args.warmup, args.device)
        print_ratios(
            f"decode, {size} size",
            timings,
            [("ours sparse", "sparsify"), ("ours sparse", "SAELens (dense codes)"), ("ours sparse", "ours dense")],
            tokens=args.batch,
        )


if __name__ == "__main__":
    main()
