"""The verdict grid: organisms x layers x SAE seeds, one verdict per cell, captures shared within an organism.

Per organism: one capture of the SAE-training differences at every layer, one measurement of the behaviour and one
capture of the probe set's differences at every layer (a :class:`ConjunctionCache`); per layer and seed: a fresh
difference SAE and the analysis. Used by the slow grid test and to print the README's grid.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
from loguru import logger

from .config import ConjunctionConfig
from .depth import write_depth_profile
from .inputs import check_inputs
from .pipeline import ConjunctionCache, analyze_conjunction
from .training import DifferenceSAEConfig, difference_activations, difference_metadata, train_difference_sae


@dataclass(frozen=True)
class GridSpec:
    """What the grid runs: the analysis and SAE-training settings, layers and SAE seeds."""

    analysis: ConjunctionConfig
    training_prompts: ConjunctionConfig  # probe settings of the SAE's training prompts
    sae: DifferenceSAEConfig
    layers: tuple[int, ...] = (1, 2, 3)
    seeds: tuple[int, ...] = (0, 1, 2)


def deciding_figure(verdict: dict) -> str:
    """The check that decided: the first failed one, else the last one that ran."""
    ran = [c for c in verdict["checks"] if c["passed"] is not None]
    failed = [c for c in ran if c["passed"] is False and c["name"] != "behaviour"]
    c = failed[0] if failed else (ran[-1] if ran else verdict["checks"][0])
    interval = f" [{c['interval'][0]:.2f}, {c['interval'][1]:.2f}]" if c["interval"] else ""
    value = f"{c['value']:.3f}" if c["value"] is not None else "n/a"
    return f"{c['name']} {value}{interval}"


def sae_rule(payload: dict) -> dict:
    """What the SAE checks alone say, whatever the behaviour (controls included): ``route`` ``shared`` (one latent
    passes the pair-specificity and interaction bounds), ``per_pair`` (every pair has its own) or ``none``, and
    ``pairs_covered`` (pairs with a passing latent of their own, of all)."""
    per_pair = pd.DataFrame(payload.get("pair_specificity") or [], columns=["pair", "passes"])
    covered = per_pair.groupby("pair").passes.any()
    shared = any(r["passes"] for r in payload["specificity"])
    route = "shared" if shared else ("per_pair" if len(covered) and covered.all() else "none")
    return {"route": route, "pairs_covered": f"{int(covered.sum())}/{len(covered)}"}


def run_grid(base, organisms: dict, spec: GridSpec, out: Path) -> pd.DataFrame:
    """``organisms``: {name: (finetuned model, trigger pairs)}. One row per cell: verdict, behaviour, the pairs it
    holds for, deciding figure, both nulls' p, reason, SAE quality. Writes each organism and seed's depth profile
    (``<out>/<organism>/depth_seed_<seed>/``)."""
    for finetuned, pairs in organisms.values():  # every organism's inputs, before any capture
        check_inputs(base, finetuned, base.tokenizer, pairs, spec.layers)
    rows = []
    for name, (finetuned, pairs) in organisms.items():
        start = time.perf_counter()
        payloads = {seed: [] for seed in spec.seeds}
        diffs = difference_activations(base, finetuned, base.tokenizer, pairs, spec.layers, spec.training_prompts)
        cache = ConjunctionCache(layers=spec.layers)
        for layer in spec.layers:
            for seed in spec.seeds:
                cell = out / name / f"layer_{layer}" / f"seed_{seed}"
                sae = train_difference_sae(
                    diffs[layer],
                    cell / "sae",
                    replace(spec.sae, seed=seed),
                    difference_metadata(base, finetuned, layer),
                )
                report = analyze_conjunction(
                    base, finetuned, sae, base.tokenizer, pairs, layer, spec.analysis, cell / "report", cache
                )
                verdict, null_p = report.payload["verdict"], report.payload["null"]["p_value"]
                payloads[seed].append(report.payload)
                rows.append(
                    {
                        "organism": name,
                        "layer": layer,
                        "seed": seed,
                        "verdict": verdict["name"],
                        "behaviour": verdict["behaviour"],
                        "pairs": len(verdict["pairs"]),
                        "deciding": deciding_figure(verdict),
                        "fve": report.reconstruction["all"]["fve"],
                        "dead_fraction": report.reconstruction["all"]["dead_fraction"],
                        "conjunction_null_p": null_p["conjunction"],
                        "label_null_p": null_p["specificity"],
                        **sae_rule(report.payload),
                        "reason": verdict["reason"],
                    }
                )
                logger.info(f"grid {name} layer {layer} seed {seed}: {verdict['name']} ({rows[-1]['deciding']})")
        for seed, reports in payloads.items():
            write_depth_profile(
                reports,
                out / name / f"depth_seed_{seed}",
                spec.analysis.separation_threshold,
                f"{name}, SAE seed {seed}",
            )
        logger.info(f"grid {name}: {time.perf_counter() - start:.0f}s")
    return pd.DataFrame(rows)
