"""The contrastive-vs-plain claim on synthetic data: held-out best-latent AUROC gain of the contrastive term and
its FVE cost, per seed, with the mean and a 95% t-interval over seeds (the claim the tests assert on 4 seeds).

Data, SAE and training loop are the tests' (``tests/test_sae_trainer.py``: 64 atoms + a tier direction carried
by half of a hazard example's tokens, d 32, dict 64, k 4, 300 steps, contrastive weight 0.1, temperature 0.1).

    OMP_NUM_THREADS=1 python benchmarks/contrastive_separation.py [--seeds 8]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import scipy.stats
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_sae_trainer import separation_gain  # noqa: E402  (the tests' experiment, not a copy of it)


def main():
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--weight", type=float, default=0.1, help="contrastive weight")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for seed in range(args.seeds):
        rows.append(separation_gain(seed, args.weight))
        print(f"seed {seed}: AUROC gain {rows[-1][0]:+.3f}, FVE cost {rows[-1][1]:+.3f}", flush=True)
    for name, values in zip(("AUROC gain", "FVE cost"), np.array(rows).T):
        ci = scipy.stats.ttest_1samp(values, 0.0).confidence_interval(0.95)
        print(f"{name}: mean {values.mean():+.3f}, 95% t-interval [{ci.low:+.3f}, {ci.high:+.3f}], "
              f"range [{values.min():+.3f}, {values.max():+.3f}] over {len(values)} seeds")


if __name__ == "__main__":
    main()
