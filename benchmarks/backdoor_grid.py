"""Wall and CPU time of the verdict grid (tests/test_backdoor_organisms.py): AND, OR, any-two and null organisms x
layers 1-3 x SAE seeds 0-2, one process, one thread, the demo's settings. Budget: 4 minutes on 2 idle cores.

    OMP_NUM_THREADS=1 HF_HUB_CACHE=~/.cache/cbd_plugin/hub HF_HUB_OFFLINE=1 \
        python benchmarks/backdoor_grid.py [--out DIR]

Prints the grid (verdict and deciding figure per cell), the wall time and the process CPU time; on shared cores
the CPU time is the better estimate of the idle-machine wall time.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from cbd_plugin.backdoor.grid import GridSpec, run_grid
from cbd_plugin.backdoor.training import DifferenceSAEConfig
from cbd_plugin.demo import BASE, conjunction_config, conjunction_training_config, load
from cbd_plugin.organisms import RECIPES, build
from cbd_plugin.organisms.build import single_thread

ORGANISMS = ("tiny-cbd", "tiny-cbd-or", "tiny-cbd-any2", "tiny-cbd-null")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None, help="keep the cells' reports here (default: a temp dir)")
    args = parser.parse_args()
    names = [n for n in ORGANISMS if n in RECIPES]
    organisms = build([BASE, *names])
    spec = GridSpec(replace(conjunction_config(), plots=False), conjunction_training_config(), DifferenceSAEConfig())
    with single_thread(), tempfile.TemporaryDirectory() as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        table = run_grid(load(organisms[BASE]), {n: (load(organisms[n]), RECIPES[n].pairs) for n in names}, spec,
                         args.out or Path(tmp))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    with pd.option_context("display.width", 200, "display.max_colwidth", 60):
        print(table.drop(columns=["reason"]).to_string())
    print(f"{len(table)} cells: wall {wall:.0f}s, CPU {cpu:.0f}s (budget 240s on 2 idle cores)")


if __name__ == "__main__":
    main()
