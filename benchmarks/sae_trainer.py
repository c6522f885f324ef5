"""Training step at the model cards' SAE sizes: our TopK trainer (plain and with the contrastive term) against
sparsify's and SAELens's TopK training step, all with AdamW (lr 3e-4, weight decay 0.01), unit-norm decoder rows
and gradient clipping where the library has them, no dead latents yet (AuxK off on every side).

Batches of ``--batch`` tokens (``--tokens-per-example`` tokens per example, half benign, half hazard; the
contrastive variant gets them as packed labels), float32, interleaved rounds of one step per variant; prints
median ms and median [min, max] of the paired ratios.

    OMP_NUM_THREADS=1 python benchmarks/sae_trainer.py [--sizes bio backdoor] [--rounds 5]
"""

from __future__ import annotations

import itertools

import torch
from harness import CARD_SIZES, interleaved, optional, options, print_ratios, start
from libraries import activations, our_topk, saelens_topk, sparsify_topk

from cbd_plugin.sae import ContrastiveTopKTrainer, pack_labels

LR, WEIGHT_DECAY = 3e-4, 0.01


def our_step(args, d, dict_size, k, **overrides):
    trainer = ContrastiveTopKTrainer(
        steps=10**6,
        activation_dim=d,
        dict_size=dict_size,
        k=k,
        lr=LR,
        weight_decay=WEIGHT_DECAY,
        seed=0,
        device=args.device,
        layer=0,
        lm_name="benchmark",
        **overrides,
    )
    counter = itertools.count(1)  # step 0 sets b_dec to the geometric median: not a typical step
    return lambda batch: trainer.update(next(counter), batch)


def sparsify_step(sae):
    optimizer = torch.optim.AdamW(sae.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)

    def step(x):
        out = sae(x)
        optimizer.zero_grad(set_to_none=True)
        out.fvu.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        optimizer.step()
        sae.set_decoder_norm_to_unit_norm()

    return step


def saelens_step(sae):
    saes = optional("sae_lens")
    optimizer = torch.optim.AdamW(sae.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    counter = itertools.count()

    def step(x):
        out = sae.training_forward_pass(
            saes.saes.sae.TrainStepInput(
                sae_in=x, coefficients={}, dead_neuron_mask=None, n_training_steps=next(counter), is_logging_step=False
            )
        )
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        optimizer.step()

    return step


def main():
    parser = options(__doc__.split("\n\n")[0])
    parser.add_argument("--tokens-per-example", type=int, default=32)
    parser.add_argument(
        "--without",
        nargs="*",
        default=[],
        choices=["sparsify", "SAELens"],
        help="leave these libraries out (SAELens's dense step is slow: more rounds fit without it)",
    )
    args = parser.parse_args()
    start(args)
    for size in args.sizes:
        d, dict_size, k = CARD_SIZES[size]
        x = activations(args.batch, d, args.device)
        example = torch.arange(args.batch) // args.tokens_per_example
        packed = pack_labels(x, example % 2, example).to(args.device)
        plain, contrastive = our_step(args, d, dict_size, k, contrastive_weight=0.0), our_step(args, d, dict_size, k)
        variants = {
            "ours plain": lambda step=plain: step(x),
            "ours contrastive (mean)": lambda step=contrastive: step(packed),
        }
        reference = our_topk(d, dict_size, k, args.device)
        sparse = None if "sparsify" in args.without else sparsify_topk(reference)
        if sparse is not None:
            sparse_step = sparsify_step(sparse)
            variants["sparsify"] = lambda step=sparse_step: step(x)
        lens = None if "SAELens" in args.without else saelens_topk(reference, training=True)
        if lens is not None:
            lens_step = saelens_step(lens)
            variants["SAELens"] = lambda step=lens_step: step(x)
        print(
            f"# {size}: d {d}, dict {dict_size}, k {k}, batch {args.batch} tokens "
            f"({args.batch // args.tokens_per_example} examples), float32"
        )
        timings = interleaved(variants, args.rounds, args.warmup, args.device)
        print_ratios(
            f"training step, {size} size",
            timings,
            [("ours plain", "sparsify"), ("ours plain", "SAELens"), ("ours contrastive (mean)", "ours plain")],
            tokens=args.batch,
        )
        del variants, plain, contrastive, sparse, lens


if __name__ == "__main__":
    main()
