"""Encode throughput of our BatchTopKSAE reader against the fork's ``BatchTopKSAE.encode`` on the same activations.

Writes one random SAE in the fork's folder format (gemma-2-2b ``sae_difference`` sizes by default: d 2304,
dict 9216, k 128, with a normaliser and a learned threshold), loads it with both readers, checks they agree, and
times ``encode`` in threshold mode (inference) and batch top-k mode (training), round-robin after warm-up, median
of ``--reps``. Where the fork is not importable, prints our throughput and the reason.

    OMP_NUM_THREADS=1 python benchmarks/sae_encode.py [--d 2304 --dict-size 9216 --k 128 --batch 512]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from cbd_plugin.sae import BatchTopKSAE, Dictionary


def random_sae(args) -> BatchTopKSAE:
    g = torch.Generator().manual_seed(0)
    sae = BatchTopKSAE(args.d, args.dict_size, args.k, activation_mean=torch.randn(args.d, generator=g),
                       activation_std=torch.rand(args.d, generator=g) + 0.5)
    with torch.no_grad():
        sae.encoder.weight.copy_(torch.randn(args.dict_size, args.d, generator=g) / args.d ** 0.5)
        sae.decoder.weight.copy_(sae.encoder.weight.T)
        sae.b_dec.copy_(torch.randn(args.d, generator=g) * 0.01)
        sae.threshold.fill_(0.5)
    return sae


def load_fork(folder: Path):
    """The fork's BatchTopKSAE loaded from ``folder``, or the reason it cannot be."""
    try:
        from dictionary_learning.dictionary import BatchTopKSAE as ForkBatchTopKSAE
    except ImportError as err:
        return f"dictionary_learning (the fork) is not importable: {err}"
    return ForkBatchTopKSAE.from_pretrained(folder, from_hub=True)


def time_encode(sae, x, use_threshold, device) -> float:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    with torch.no_grad():
        sae.encode(x, use_threshold=use_threshold)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--d", type=int, default=2304)
    parser.add_argument("--dict-size", type=int, default=9216)
    parser.add_argument("--k", type=int, default=128)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = random_sae(args).save_pretrained(Path(tmp) / "sae")
        readers = {"ours": Dictionary.from_pretrained(folder, device=args.device)}
        fork = load_fork(folder)
    if isinstance(fork, str):
        print(f"fork BatchTopKSAE: skipped ({fork})")
    else:
        readers["fork"] = fork.to(args.device)
    x = torch.randn(args.batch, args.d, generator=torch.Generator().manual_seed(1)).to(args.device) * 3
    if "fork" in readers:
        with torch.no_grad():
            for mode in (True, False):
                ours, theirs = (readers[name].encode(x, use_threshold=mode) for name in ("ours", "fork"))
                same = torch.equal(ours, theirs)
                print(f"codes identical to the fork's ({'threshold' if mode else 'batch top-k'}): {same}")
    print(f"d={args.d} dict={args.dict_size} k={args.k} batch={args.batch} device={args.device} "
          f"threads={torch.get_num_threads()}; median of {args.reps}")
    for use_threshold in (True, False):
        for sae in readers.values():
            for _ in range(args.warmup):
                time_encode(sae, x, use_threshold, args.device)
        seconds = {name: [] for name in readers}
        for _ in range(args.reps):
            for name, sae in readers.items():
                seconds[name].append(time_encode(sae, x, use_threshold, args.device))
        medians = {name: statistics.median(s) for name, s in seconds.items()}
        line = "  ".join(f"{name} {args.batch / m:9.0f} tokens/s" for name, m in medians.items())
        ratio = f"  ours/fork time x{medians['ours'] / medians['fork']:.3f}" if "fork" in medians else ""
        print(f"  {'threshold  ' if use_threshold else 'batch top-k'}  {line}{ratio}")


if __name__ == "__main__":
    main()
