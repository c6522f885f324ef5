"""Time and memory of the conjunction analysis's streaming statistics on synthetic SAE codes.

Feeds batches of k-sparse latents (gemma-2-2b scale by default: dict 9216, k 128, d 2304) through the three
accumulators one streaming pass uses (LatentStats, PromptFeatures, sae.metrics.ReconstructionStats x2), at 1x and 4x the
token count: time per million tokens, the 4x/1x time ratio (linear: ~4; the median batch time, robust to other
processes on shared cores, ~1), and peak RSS growth (token-level state is fixed; only per-prompt features grow,
with the number of prompts). The batch is generated once and re-fed, so only the accumulators are timed.

    OMP_NUM_THREADS=1 python benchmarks/backdoor_analysis.py [--tokens 65536] [--batch-tokens 2048]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from cbd_plugin.backdoor.latent_stats import LatentStats, PromptFeatures
from cbd_plugin.sae.metrics import ReconstructionStats
from cbd_plugin.backdoor.probes import n_groups
from cbd_plugin.backdoor.roles import DECISION, FIRE, ROLES


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def synthetic_batch(args, rng):
    """One capture batch: k-sparse non-negative latents, inputs, reconstructions and per-token labels."""
    n = args.batch_tokens
    latents = torch.zeros(n, args.dict_size)
    active = torch.rand(n, args.dict_size, generator=rng).topk(args.k, dim=1).indices
    latents.scatter_(1, active, torch.rand(n, args.k, generator=rng) + 0.1)
    inputs = torch.randn(n, args.d, generator=rng)
    reconstruction = inputs + 0.5 * torch.randn(n, args.d, generator=rng)
    tokens_per_prompt = args.tokens_per_prompt
    role = np.resize(np.r_[np.full(tokens_per_prompt - 4, 3), DECISION, FIRE, FIRE, FIRE], n)
    group = np.repeat(np.arange(n // tokens_per_prompt + 1) % n_groups(args.pairs), tokens_per_prompt)[:n]
    prompt_id = np.repeat(np.arange(n // tokens_per_prompt + 1), tokens_per_prompt)[:n]
    return latents, inputs, reconstruction, group, role, prompt_id


def one_pass(batch, n_tokens: int, args) -> dict[str, float]:
    """Seconds per accumulator to stream ``n_tokens`` tokens (the batch re-fed, prompt ids shifted) through
    fresh accumulators."""
    latents, inputs, reconstruction, group, role, prompt_id = batch
    n_batches = n_tokens // len(role)
    per_batch = int(prompt_id.max()) + 1
    stats = LatentStats(args.dict_size, n_groups(args.pairs))
    features = PromptFeatures(per_batch * n_batches, np.arange(args.candidates) * 7, args.d)
    recon, recon_fire = ReconstructionStats(args.dict_size), ReconstructionStats(args.dict_size)
    fire = torch.as_tensor(role == FIRE)
    steps = {"latent_stats": lambda b: stats.update(latents, group, role),
             "prompt_features": lambda b: features.update(latents, inputs, prompt_id + b * per_batch, role),
             "reconstruction": lambda b: (recon.update(inputs, reconstruction, latents),
                                          recon_fire.update(inputs[fire], reconstruction[fire], latents[fire]))}
    seconds = {name: [] for name in steps}
    for b in range(n_batches):
        for name, step in steps.items():
            start = time.perf_counter()
            step(b)
            seconds[name].append(time.perf_counter() - start)
    return {name: np.array(t) for name, t in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1 << 16, help="tokens of the 1x run")
    parser.add_argument("--batch-tokens", type=int, default=2048)
    parser.add_argument("--dict-size", type=int, default=9216)
    parser.add_argument("--k", type=int, default=128)
    parser.add_argument("--d", type=int, default=2304)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--candidates", type=int, default=96)
    parser.add_argument("--tokens-per-prompt", type=int, default=32)
    args = parser.parse_args()

    batch = synthetic_batch(args, torch.Generator().manual_seed(0))
    one_pass(batch, args.batch_tokens, args)  # warm-up: allocator and kernels
    rss_start = peak_rss_mib()
    t1 = one_pass(batch, args.tokens, args)
    rss_1x = peak_rss_mib()
    t4 = one_pass(batch, 4 * args.tokens, args)
    rss_4x = peak_rss_mib()

    print(f"dict {args.dict_size}, k {args.k}, d {args.d}, {args.batch_tokens} tokens/batch, "
          f"{len(ROLES)} roles x {n_groups(args.pairs)} groups, {torch.get_num_threads()} torch thread(s)")
    print(f"{'tokens':>10} {'seconds':>9} {'s / M tokens':>13} {'median-batch s / M':>19} {'peak RSS MiB':>13}"
          "   median-batch s / M tokens by accumulator")
    per_batch = {}
    for n, seconds, rss in ((args.tokens, t1, rss_1x), (4 * args.tokens, t4, rss_4x)):
        total = sum(t.sum() for t in seconds.values())
        # The median batch is robust to other processes on shared cores; the total is what a run costs.
        per_batch[n] = sum(np.median(t) for t in seconds.values())
        parts = ", ".join(f"{k} {np.median(v) / args.batch_tokens * 1e6:.1f}" for k, v in seconds.items())
        print(f"{n:>10} {total:>9.2f} {total / n * 1e6:>13.1f} {per_batch[n] / args.batch_tokens * 1e6:>19.1f} "
              f"{rss:>13.0f}   {parts}")
    total_ratio = sum(t.sum() for t in t4.values()) / sum(t.sum() for t in t1.values())
    print(f"time ratio 4x/1x: total {total_ratio:.2f} (linear = 4.00); median batch "
          f"{per_batch[4 * args.tokens] / per_batch[args.tokens]:.2f} (linear = 1.00)")
    n_prompts = 4 * args.tokens // args.tokens_per_prompt
    fixed = 3 * n_groups(args.pairs) * len(ROLES) * args.dict_size * 8 / 2**20
    print(f"peak RSS growth: 1x run +{rss_1x - rss_start:.0f} MiB, 4x run +{rss_4x - rss_1x:.0f} MiB more. Token-level "
          f"state is fixed (LatentStats {fixed:.0f} MiB); what grows is per prompt, not per token: the 4x run's "
          f"{n_prompts} prompts x ({args.candidates} + {args.d}) float32 features = "
          f"{n_prompts * (args.candidates + args.d) * 4 / 2**20:.0f} MiB")

if __name__ == "__main__":
    main()
