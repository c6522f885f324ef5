"""``cbd-demo``: both methods end to end on the tiny model organisms, on a CPU, without the diffing-toolkit host.

* Conjunction analysis (the core of ``cbd_sae_difference``): tiny-cbd (AND-gated), tiny-cbd-or (OR-gated),
  tiny-cbd-any2 (fires on any two trigger words) and tiny-cbd-null (never fires), each against tiny-base: a TopK
  SAE on the fine-tuned minus base residual, then ``analyze_conjunction``. Expected verdicts: conjunctive,
  or_gated, any_two_gated, no_backdoor_signal (the verdict grid over layers and SAE seeds:
  ``cbd_plugin.backdoor.grid``).
* Refusal-depth audit (the core of ``contrastive_bio_sae``): one contrastive SAE on tiny-base, then
  ``audit_refusal_depth`` of tiny-refusal-shallow, -deep and -null against tiny-base. Expected verdicts:
  shallow, rerouted (tiny-refusal-deep is the re-encoded control: a refitted probe still reads the tier at the
  audit layer, as its build checks), no_change.

Reports go under ``--out``: ``conjunction/<organism>/{sae,report}``, ``refusal/sae``, ``refusal/<organism>``,
and the printed tables in ``summary.txt``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import pandas as pd
from loguru import logger

from .artifacts import atomic_write_text
from .backdoor import ConjunctionConfig, ConjunctionReport, analyze_conjunction
from .backdoor.training import DifferenceSAEConfig, difference_activations, difference_metadata, train_difference_sae
from .backdoor.verdict import per_pair_route
from .capture import load_language_model
from .organisms import RECIPES, build
from .organisms.build import single_thread
from .organisms.corpus import TEMPLATES, probe_settings
from .refusal import AuditConfig, AuditReport, audit_refusal_depth
from .refusal.training import TINY_SAE, train_tier_sae
from .stats import Estimate

BASE = "tiny-base"
ORGANISMS = {
    "conjunction": ("tiny-cbd", "tiny-cbd-or", "tiny-cbd-any2", "tiny-cbd-null"),
    "refusal": ("tiny-refusal-shallow", "tiny-refusal-deep", "tiny-refusal-null"),
}
# The last of the tiny organisms' 4 decoder layers: there the fine-tune has computed the conjunction (a linear probe
# on the difference reaches AUROC 1.0 on tiny-cbd; 0.90 and 0.98 after layers 1 and 2, where no single latent of
# such an SAE exceeds 0.72).
CONJUNCTION_LAYER = 3
N_BOOT = 200
REFUSAL_SAE = TINY_SAE


def conjunction_training_config() -> ConjunctionConfig:
    """The SAE's training prompts: the organisms' fine-tuning templates (the analysis probes held-out ones)."""
    return ConjunctionConfig(**{**probe_settings(), "templates": TEMPLATES["train"]}, n_per_cell=24, n_clean=96)


def conjunction_config() -> ConjunctionConfig:
    return ConjunctionConfig(
        **probe_settings(),
        n_per_cell=24,
        n_clean=48,
        n_boot=N_BOOT,
        n_ablation_prompts=24,
        max_new_tokens=4,
        batch_size=32,
    )


def refusal_config() -> AuditConfig:
    # last_prompt: where these organisms decide their first reply token (their behaviour.json audit position).
    return AuditConfig(positions="last_prompt", max_new_tokens=10, batch_size=64, n_boot=N_BOOT, n_perm=199)


def load(organism):
    return load_language_model(str(organism.path))


def conjunction_reports(organisms: dict, out: Path, names=ORGANISMS["conjunction"]) -> dict[str, ConjunctionReport]:
    """For each organism: an SAE on its difference from the base at ``CONJUNCTION_LAYER``, then the analysis."""
    base = load(organisms[BASE])
    reports = {}
    for name in names:
        start = time.perf_counter()
        logger.info(f"conjunction: {name} vs {BASE}: training the difference SAE, then the analysis")
        finetuned, pairs = load(organisms[name]), RECIPES[name].pairs
        diffs = difference_activations(
            base, finetuned, base.tokenizer, pairs, [CONJUNCTION_LAYER], conjunction_training_config()
        )
        sae = train_difference_sae(
            diffs[CONJUNCTION_LAYER],
            out / name / "sae",
            DifferenceSAEConfig(),
            difference_metadata(base, finetuned, CONJUNCTION_LAYER),
        )
        reports[name] = analyze_conjunction(
            base, finetuned, sae, base.tokenizer, pairs, CONJUNCTION_LAYER, conjunction_config(), out / name / "report"
        )
        logger.info(f"conjunction: {name}: {reports[name].verdict} ({time.perf_counter() - start:.0f}s)")
    return reports


def refusal_reports(organisms: dict, out: Path, names=ORGANISMS["refusal"]) -> dict[str, AuditReport]:
    """One SAE on the base's residuals over the select split, then each organism's audit. Every refusal organism
    ships the same prompt set and audit layer: the first organism's serve all."""
    base, first = load(organisms[BASE]), organisms[names[0]]
    prompts, layer = first.data_dir / "prompts.jsonl", first.behaviour["refusal"]["audit_layer"]
    logger.info(f"refusal: training the contrastive SAE on {BASE}")
    sae = train_tier_sae(base, base.tokenizer, pd.read_json(prompts, lines=True), layer, REFUSAL_SAE, out / "sae")
    reports = {}
    for name in names:
        start = time.perf_counter()
        reports[name] = audit_refusal_depth(
            base, load(organisms[name]), base.tokenizer, sae, prompts, layer, refusal_config(), out / name
        )
        logger.info(f"refusal: {name}: {reports[name].verdict.name} ({time.perf_counter() - start:.0f}s)")
    return reports


def number(x: float) -> str:
    return "n/a" if x is None or math.isnan(x) else f"{x:.2f}"


def interval(e: Estimate) -> str:
    return "n/a" if math.isnan(e.value) else f"{e.value:.2f} [{e.lo:.2f}, {e.hi:.2f}]"


def render(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows])


def separation_text(row) -> str:
    """``latent:condition AUROC [lo, hi]`` of a specificity row's weakest separation."""
    weakest = row["weakest"]
    return f"{int(row['latent'])}:{weakest} " + interval(
        Estimate(row[f"auroc_{weakest}"], row[f"auroc_{weakest}_lo"], row[f"auroc_{weakest}_hi"])
    )


def pair_tables_of(payload: dict) -> list[pd.DataFrame]:
    """report.json's ``pair_specificity`` records as one table per pair (report order); empty for older reports."""
    records = payload.get("pair_specificity") or []
    return [t.reset_index(drop=True) for _, t in pd.DataFrame(records).groupby("pair", sort=False)] if records else []


def conjunction_latent_cell(payload: dict) -> str:
    """What the specificity checks rest on (:mod:`cbd_plugin.backdoor.verdict`): the shared latent, as
    ``latent:condition AUROC [95% CI]`` of its weakest separation (the best shared latent when no route passes),
    or on the per-pair route ``per-pair: n/n pairs, weakest pair:latent:condition AUROC [95% CI]``, the pair whose
    deciding latent has the lowest separation lower bound."""
    per_pair = per_pair_route(pd.DataFrame(payload["specificity"]), pair_tables_of(payload))
    if per_pair is None:
        return separation_text(max(payload["specificity"], key=lambda r: (r["passes"], r["specificity_lo"])))
    j = min(per_pair, key=lambda r: r.specificity_lo)
    pair = j["pair_name"] if "pair_name" in j else f"pair {int(j['pair'])}"
    return f"per-pair: {len(per_pair)}/{len(per_pair)} pairs, weakest {pair}:{separation_text(j)}"


def conjunction_table(reports: dict[str, ConjunctionReport]) -> str:
    header = [
        "organism",
        "verdict",
        "matched fire [95% CI]",
        "best conjunction latent: weakest separation [95% CI]",
        "null p",
        "fire after top-k / control / probe",
        "dead",
    ]
    rows = []
    for name, report in reports.items():
        payload = report.payload
        matched = next(r for r in payload["behaviour"] if r["model"] == "finetuned" and r["condition"] == "matched")
        causal = report.ablation
        after = (
            "not-run"
            if causal is None
            else "/".join(
                number(x)
                for x in (
                    causal["top"]["fire_rate_matched"],
                    causal["random"]["fire_rate_matched_mean"],
                    causal["probe_direction"]["fire_rate_matched"],
                )
            )
        )
        rows.append(
            [
                name,
                report.verdict,
                interval(Estimate(matched["fire_rate"], matched["lo"], matched["hi"])),
                conjunction_latent_cell(payload),
                f"{payload['null']['p_value']['conjunction']:.3f}",
                after,
                number(report.reconstruction["all"]["dead_fraction"]),
            ]
        )
    return render(header, rows)


def refusal_table(reports: dict[str, AuditReport]) -> str:
    header = [
        "organism",
        "verdict",
        "hazard refusal base -> ft",
        "change [95% CI]",
        "base features on refused (ft) [95% CI]",
        "refitted probe (ft) [95% CI]",
    ]
    rows = []
    for name, report in reports.items():
        base, finetuned = report.models["base"].depth, report.models["finetuned"].depth
        rates = f"{number(base.refusal_rate['hazard'].value)} -> {number(finetuned.refusal_rate['hazard'].value)}"
        probe = next(row.refit_probe for row in report.depth_profile if row.layer == report.layer)
        rows.append(
            [
                name,
                report.verdict.name,
                rates,
                interval(report.change.refusal_rate["hazard"]),
                interval(finetuned.refused_hazard_auroc),
                interval(probe),
            ]
        )
    return render(header, rows)


RUNS = {
    "conjunction": (
        conjunction_reports,
        conjunction_table,
        f"Conjunction analysis (layer {CONJUNCTION_LAYER}; fire rates: matched pairs, fine-tuned)",
    ),
    "refusal": (refusal_reports, refusal_table, "Refusal-depth audit (fine-tuned vs base)"),
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        prog="cbd-demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=list(RUNS), help="run one method only")
    parser.add_argument("--out", type=Path, default=Path("cbd_demo"), help="report folder (default ./cbd_demo)")
    args = parser.parse_args(argv)
    methods = [args.only] if args.only else list(RUNS)
    start = time.perf_counter()
    organisms = build([BASE, *(name for m in methods for name in ORGANISMS[m])])
    sections = []
    # One thread: on 2 shared cores, 2 threads ran the same work up to 20x slower (they wait for each other).
    with single_thread():
        for method in methods:
            run, table, title = RUNS[method]
            sections.append(f"{title}\n{table(run(organisms, args.out / method))}")
    summary = "\n\n".join(sections)
    atomic_write_text(args.out / "summary.txt", summary + "\n")
    print(summary)
    logger.info(f"done in {time.perf_counter() - start:.0f}s; reports under {args.out}")


if __name__ == "__main__":
    main()
