"""Throughput of the contrastive TopK trainer's step, with and without the contrastive term, and against the
fork's ``BatchTopKTrainer`` at the same sizes where ``dictionary_learning`` (the fork) is importable.

Every variant trains on the same batches (examples of ``--tokens-per-example`` tokens, half benign, half hazard,
labels packed as extra columns); variants are timed round-robin, after warm-up steps, and the median over
``--reps`` repetitions of ``--steps`` updates is reported as tokens/s, with each variant's time relative to the
plain TopK step (target: the contrastive term costs at most 25%).

    OMP_NUM_THREADS=1 python benchmarks/sae_trainer.py [--d 256 --dict-size 1024 --k 32 --batch 1024]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from cbd_plugin.sae import ContrastiveTopKTrainer, pack_labels


def our_trainer(args, **overrides):
    cfg = dict(steps=10**6, activation_dim=args.d, dict_size=args.dict_size, k=args.k, seed=0, device=args.device,
               layer=0, lm_name="benchmark")
    return ContrastiveTopKTrainer(**{**cfg, **overrides})


def fork_trainer(args):
    """The fork's BatchTopKTrainer, or the reason it cannot be built."""
    try:
        from dictionary_learning.trainers.batch_top_k import BatchTopKTrainer
    except ImportError as err:
        return f"dictionary_learning (the fork) is not importable: {err}"
    return BatchTopKTrainer(steps=10**6, activation_dim=args.d, dict_size=args.dict_size, k=args.k, layer=0,
                            lm_name="benchmark", lr=3e-4, warmup_steps=0, seed=0, device=args.device)


def make_batches(args):
    g = torch.Generator().manual_seed(0)
    example_id = torch.arange(args.batch) // args.tokens_per_example
    tier = example_id % 2
    return [pack_labels(torch.randn(args.batch, args.d, generator=g), tier, example_id).to(args.device)
            for _ in range(args.steps)]


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_steps(trainer, batches, first_step, unpack, device) -> float:
    sync(device)
    start = time.perf_counter()
    for i, batch in enumerate(batches):
        # The fork normalises its input in place: every variant gets a fresh copy.
        trainer.update(first_step + i, (batch[:, :-2] if unpack else batch).clone())
    sync(device)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--d", type=int, default=256)
    parser.add_argument("--dict-size", type=int, default=1024)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--tokens-per-example", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    batches = make_batches(args)
    # name -> (trainer, whether it gets plain [B, d] batches)
    variants = {"topk plain": (our_trainer(args, contrastive_weight=0.0), True),
                "topk + contrastive (mean)": (our_trainer(args, pooling="mean"), False),
                "topk + contrastive (max)": (our_trainer(args, pooling="max"), False),
                "topk + contrastive (token)": (our_trainer(args, pooling="token"), False)}
    fork = fork_trainer(args)
    if isinstance(fork, str):
        print(f"fork BatchTopKTrainer: skipped ({fork})")
    else:
        variants["fork BatchTopKTrainer"] = (fork, True)
    for trainer, unpack in variants.values():
        trainer.update(0, (batches[0][:, :-2] if unpack else batches[0]).clone())
        for i in range(args.warmup):
            time_steps(trainer, batches[:1], 1 + i, unpack, args.device)
    seconds = {name: [] for name in variants}
    for rep in range(args.reps):
        for name, (trainer, unpack) in variants.items():
            seconds[name].append(time_steps(trainer, batches, 100 + rep * args.steps, unpack, args.device))
    print(f"d={args.d} dict={args.dict_size} k={args.k} batch={args.batch} tokens "
          f"({args.batch // args.tokens_per_example} examples) device={args.device} "
          f"threads={torch.get_num_threads()}; median of {args.reps} x {args.steps} steps")
    base = statistics.median(seconds["topk plain"])
    for name, times in seconds.items():
        median = statistics.median(times)
        print(f"  {name:28s} {args.batch * args.steps / median:10.0f} tokens/s   x{median / base:.3f} vs plain")
    overhead = statistics.median(seconds["topk + contrastive (mean)"]) / base - 1
    verdict = "met" if overhead <= 0.25 else "MISSED"
    print(f"contrastive (mean pooling) overhead: {overhead:+.1%} (target <= +25%: {verdict})")


if __name__ == "__main__":
    main()
