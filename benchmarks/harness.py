"""Shared benchmark harness: common options, interleaved rounds in one process, paired ratios.

Every round runs each variant once, in an order rotated from round to round, so load from other processes hits
all variants alike; a ratio is taken within each round (paired) and reported as the median and [min, max] over
rounds. Scripts print measurements only, never pass/fail lines: one noisy run on a shared machine decides nothing.

    from harness import options, start, interleaved, print_ratios
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

# The model cards' SAE sizes: (activation_dim, dict_size, k).
CARD_SIZES = {"backdoor": (2304, 9216, 128), "bio": (2304, 6144, 32)}


def options(description: str, rounds: int = 5, warmup: int = 1) -> argparse.ArgumentParser:
    """A parser with the options every benchmark shares; scripts add their own."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--sizes",
        nargs="+",
        default=list(CARD_SIZES),
        choices=list(CARD_SIZES),
        help="the model cards' SAE sizes to run",
    )
    parser.add_argument("--batch", type=int, default=2048, help="tokens per batch")
    parser.add_argument("--rounds", type=int, default=rounds, help="interleaved timing rounds")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed calls per variant first")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu")
    return parser


def start(args) -> None:
    """Set the threads and print the machine line every result is read against."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(
        f"# {platform.processor() or platform.machine()} cpus={os.cpu_count()} load(1,5,15 min)={load} "
        f"torch={torch.__version__} threads={torch.get_num_threads()} device={args.device}"
    )


def sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


@dataclass
class Timings:
    """Seconds per round for each variant (same length, same round order)."""

    seconds: dict[str, list[float]]

    def median(self, name: str) -> float:
        return statistics.median(self.seconds[name])

    def ratio(self, name: str, baseline: str) -> tuple[float, float, float]:
        """Median, min and max over rounds of the paired ratio ``name / baseline``."""
        ratios = [a / b for a, b in zip(self.seconds[name], self.seconds[baseline])]
        return statistics.median(ratios), min(ratios), max(ratios)


def interleaved(variants: dict[str, Callable[[], object]], rounds: int, warmup: int, device: str = "cpu") -> Timings:
    """Time each zero-argument callable once per round, rotating the order; ``warmup`` untimed calls first."""
    names = list(variants)
    for name in names:
        for _ in range(warmup):
            variants[name]()
    seconds = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            sync(device)
            t0 = time.perf_counter()
            variants[name]()
            sync(device)
            seconds[name].append(time.perf_counter() - t0)
    return Timings(seconds)


def print_ratios(title: str, timings: Timings, pairs: list[tuple[str, str]], tokens: int | None = None) -> None:
    """One line per variant (median seconds, tokens/s) and one per ``(name, baseline)`` ratio."""
    print(f"## {title}")
    for name in timings.seconds:
        rate = f"  {tokens / timings.median(name):12,.0f} tokens/s" if tokens else ""
        print(f"  {name:40s} {timings.median(name) * 1e3:10.1f} ms{rate}")
    for name, baseline in pairs:
        if name in timings.seconds and baseline in timings.seconds:
            med, lo, hi = timings.ratio(name, baseline)
            print(f"  {name} / {baseline}: {med:.2f}x [{lo:.2f}, {hi:.2f}] over {len(timings.seconds[name])} rounds")


def peak_memory_mib(device: str = "cpu") -> float:
    """Peak resident memory of this process (CPU) or peak allocated device memory, in MiB."""
    if str(device).startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def optional(import_name: str):
    """The imported module, or None with a printed reason (the bench extra is not installed)."""
    try:
        return __import__(import_name, fromlist=["_"])
    except ImportError as err:
        print(f"# {import_name}: skipped ({err}); pip install -e '.[bench]'")
        return None
