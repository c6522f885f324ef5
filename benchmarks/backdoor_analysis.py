"""CPU-side time of the conjunction analysis's streaming accumulators: the old dense path against sparse codes.

One pass streams ``--tokens`` synthetic tokens, in batches of ``--batch``, through the accumulators that
``cbd_plugin.backdoor.pipeline.accumulate`` feeds: LatentStats, PromptFeatures (for every latent, as ``new_pass``
builds it) and ReconstructionStats twice (all tokens, fire tokens), at the model cards' SAE sizes (gemma-2-2b's
backdoor card: dict 9216, k 128, d 2304). Two variants, each with fresh accumulators:

* ``dense``: the per-batch work before sparse codes: the dense ``[n, dict]`` codes, the inputs and the
  reconstructions copied to the host as float32 (``.float().cpu()``; on a CPU-only machine a fresh host copy
  stands for it), then the dense updates;
* ``sparse``: ``SparseCodes`` on the device, the sparse updates, nothing copied back.

The issue's target is CPU-side time, so each pass is timed with ``time.process_time`` (the process's CPU
seconds, all threads) beside the harness's wall clock, in interleaved rounds (``harness.py``); printed: CPU seconds
per million tokens per variant and by step (median over rounds: allocating the accumulators, the host copies,
each accumulator), and the paired ratio dense / sparse, median [min, max] over rounds. The codes are generated
once and re-fed (prompt ids shifted), so only the accumulators are timed.

    OMP_NUM_THREADS=1 python benchmarks/backdoor_analysis.py [--sizes backdoor] [--tokens 32768] [--rounds 5]
"""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
import torch
from harness import CARD_SIZES, Timings, interleaved, options, peak_memory_mib, print_ratios, start

from cbd_plugin.backdoor.latent_stats import LatentStats, PromptFeatures
from cbd_plugin.backdoor.probes import n_groups
from cbd_plugin.backdoor.roles import DECISION, FIRE, ROLES
from cbd_plugin.sae.metrics import ReconstructionStats
from cbd_plugin.sae.sparse import SparseCodes


def synthetic_batch(n: int, d: int, dict_size: int, k: int, args):
    """One capture batch on the device: k-sparse non-negative codes (and the dense codes the old encode returned),
    inputs, reconstructions; host labels."""
    g = torch.Generator().manual_seed(0)
    indices = torch.rand(n, dict_size, generator=g).topk(k, dim=1).indices
    codes = SparseCodes((torch.rand(n, k, generator=g) + 0.1).to(args.device), indices.to(args.device))
    inputs = torch.randn(n, d, generator=g)
    reconstruction = (inputs + 0.5 * torch.randn(n, d, generator=g)).to(args.device)
    per = args.tokens_per_prompt
    role = np.resize(np.r_[np.full(per - 4, ROLES.index("other")), DECISION, FIRE, FIRE, FIRE], n)
    prompt_id = np.arange(n) // per
    group = prompt_id % n_groups(args.pairs)
    return codes, codes.to_dense(dict_size), inputs.to(args.device), reconstruction, group, role, prompt_id


def one_pass(batch, dict_size: int, d: int, args, sparse: bool) -> dict[str, float]:
    """Stream ``args.tokens`` tokens (the batch re-fed) through fresh accumulators: CPU seconds by step."""
    cpu = defaultdict(float)
    t = time.process_time()
    codes, dense, inputs, reconstruction, group, role, prompt_id = batch
    n_batches, per_batch = args.tokens // len(role), int(prompt_id.max()) + 1
    candidates = np.arange(dict_size if args.candidates is None else args.candidates)
    stats = LatentStats(dict_size, n_groups(args.pairs), device=args.device)
    features = PromptFeatures(per_batch * n_batches, candidates, d, device=args.device)
    recon, recon_fire = ReconstructionStats(dict_size), ReconstructionStats(dict_size)
    fire_index = torch.as_tensor(np.flatnonzero(role == FIRE), device=args.device)  # decided on the host
    cpu["allocation"] = time.process_time() - t  # the accumulators' state: per prompt, per (cell, latent)
    for b in range(n_batches):
        t = time.process_time()
        if sparse:
            latents, x, x_hat, fire = codes, inputs, reconstruction, fire_index
            fire_codes = SparseCodes(codes.top_acts[fire], codes.top_indices[fire])
        else:  # the old per-batch host copies and host mask
            latents, x, x_hat = (v.to("cpu", torch.float32, copy=True) for v in (dense, inputs, reconstruction))
            fire = torch.as_tensor(role == FIRE)
            fire_codes = latents[fire]
        steps = {
            "copy/select": None,
            "latent_stats": lambda: stats.update(latents, group, role),
            "prompt_features": lambda: features.update(latents, x, prompt_id + b * per_batch, role),
            "reconstruction": lambda: (
                recon.update(x, x_hat, latents),
                recon_fire.update(x[fire], x_hat[fire], fire_codes),
            ),
        }
        for name, step in steps.items():
            if step is not None:
                step()
            now = time.process_time()
            cpu[name] += now - t
            t = now
    return cpu


def main() -> None:
    parser = options(__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=1 << 15, help="tokens per pass (one timed call)")
    parser.add_argument("--pairs", type=int, default=4, help="trigger pairs: the probe set's groups")
    parser.add_argument("--tokens-per-prompt", type=int, default=32)
    parser.add_argument(
        "--candidates",
        type=int,
        default=None,
        help="PromptFeatures candidates: the first N latents (default: every latent, as new_pass)",
    )
    args = parser.parse_args()
    start(args)
    for size in args.sizes:
        d, dict_size, k = CARD_SIZES[size]
        batch = synthetic_batch(args.batch, d, dict_size, k, args)
        n_prompts = args.tokens // args.tokens_per_prompt
        print(
            f"# {size}: dict {dict_size}, k {k}, d {d}; {args.tokens} tokens per pass in batches of {args.batch}; "
            f"{len(ROLES)} roles x {n_groups(args.pairs)} groups; {n_prompts} prompts x "
            f"{args.candidates or dict_size} candidates"
        )
        cpu = {name: [] for name in ("dense", "sparse")}
        parts = {name: [] for name in cpu}  # per call: CPU seconds by step

        def timed(name, sparse):
            def run():
                t0 = time.process_time()
                parts[name].append(one_pass(batch, dict_size, d, args, sparse))
                cpu[name].append(time.process_time() - t0)

            return run

        wall = interleaved({name: timed(name, name == "sparse") for name in cpu}, args.rounds, args.warmup, args.device)
        cpu_timings = Timings({name: s[args.warmup :] for name, s in cpu.items()})  # warm-up calls left out
        per_m = 1e6 / args.tokens
        for name in cpu:
            steps = parts[name][args.warmup :]
            by_step = ", ".join(f"{p} {np.median([c[p] for c in steps]) * per_m:.1f}" for p in steps[0])
            print(
                f"  {name}: {cpu_timings.median(name) * per_m:.1f} CPU s / M tokens, wall "
                f"{wall.median(name) * per_m:.1f} s / M tokens (median CPU s / M by step: {by_step})"
            )
        print_ratios(f"{size}: process CPU seconds per pass", cpu_timings, [("dense", "sparse")], tokens=args.tokens)
        print_ratios(f"{size}: wall seconds per pass", wall, [("dense", "sparse")], tokens=args.tokens)
    print(f"# peak memory {peak_memory_mib(args.device):.0f} MiB ({args.device})")


if __name__ == "__main__":
    main()
