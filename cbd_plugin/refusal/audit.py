"""Entry point: :func:`audit_refusal_depth`, the refusal-depth audit of a base and a fine-tuned model.

Steps: validate the prompt set and check it for a tier-format confound; per model, generate completions and
label them (:mod:`.classifier`), then stream the layer's residuals at the chosen positions through the SAE and
pool per prompt (:mod:`.features`); select hazard/benign latents on the *base* model's select split and use those
same latents for both models (:mod:`.signal`); measure depth per model (:mod:`.depth`), the changes and the
verdict (:mod:`.diff`); write JSON, CSV and plots (:mod:`.report`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..stats import Estimate, linear_probe_auroc
from .classifier import classify, label_distribution
from .completions import generate_completions
from .config import AuditConfig
from .depth import Depth, measure_depth
from .diff import DepthChange, Verdict, compare_depth, verdict
from .features import PooledFeatures, chat_prompt, pool_features, read_positions
from .prompts import FormatCheck, PromptSource, check_format, load_prompts, validate_prompts
from .signal import (FeatureVariance, HazardLatents, Separation, divergence, evaluate_separation, feature_variance,
                     hazard_signal)

MAIN, BASELINE = "sae", "baseline"


@dataclass
class ModelAudit:
    """One model's results; ``probe_auroc`` is the linear probe on its raw pooled residuals (select -> eval)."""

    name: str
    label_distribution: dict[str, float]
    depth: Depth
    feature_variance: FeatureVariance
    probe_auroc: Estimate
    reconstruction: dict  # the SAE's FVE / mean L0 / dead fraction on the positions read


@dataclass
class AuditReport:
    config: AuditConfig
    layer: int
    prompt_notes: list[str]
    format_check: FormatCheck
    separation: Separation  # base model: hazard latents (chosen on select), eval AUROC vs null vs probe
    models: dict[str, ModelAudit]
    change: DepthChange | None
    verdict: Verdict | None
    sae_comparison: dict | None
    samples: pd.DataFrame = field(repr=False)  # one row per (model, prompt, sample); written as CSV
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Everything but the per-sample frame (numpy values as they are; the report makes them JSON)."""
        return {f.name: asdict(v) if is_dataclass(v := getattr(self, f.name)) else v
                for f in fields(self) if f.name != "samples"} | {"models": {n: asdict(m) for n, m in self.models.items()}}


def prepare_prompts(prompts: pd.DataFrame | PromptSource | str | Path, tokenizer,
                    cfg: AuditConfig) -> tuple[pd.DataFrame, list[str], FormatCheck]:
    """Load (a jsonl path, a :class:`PromptSource` or a frame), validate and format-check the prompt set."""
    if isinstance(prompts, (str, Path)):
        prompts = PromptSource(path=str(prompts))
    frame = load_prompts(prompts) if isinstance(prompts, PromptSource) else prompts
    frame, notes = validate_prompts(frame, cfg.seed, cfg.select_fraction)
    check = check_format(frame, tokenizer, cfg.format_threshold, cfg.on_format_confound)
    return frame, notes, check


def run_model(name: str, model, tokenizer, frame: pd.DataFrame, layer: int, saes: dict,
              cfg: AuditConfig) -> tuple[pd.DataFrame, PooledFeatures]:
    """Completions, labels and pooled features of one model; returns per-sample rows and per-prompt features.

    With several samples per prompt, ``first_response`` reads the first sample's completion.
    """
    chats = [chat_prompt(tokenizer, text) for text in frame["text"]]
    completions = generate_completions(model, [c.ids for c in chats], cfg.max_new_tokens, cfg.temperature,
                                       cfg.n_samples, cfg.batch_size, cfg.seed)
    read = [read_positions(chat, tokenizer(texts[0], add_special_tokens=False)["input_ids"], cfg.positions,
                           cfg.n_response_tokens) for chat, texts in zip(chats, completions)]
    pooled = pool_features(model, [ids for ids, _ in read], [mask for _, mask in read], layer, saes, cfg.pooling,
                           cfg.batch_size)
    samples = pd.DataFrame([
        {"model": name, "id": pid, "tier": tier, "split": split, "sample": s, "completion": text,
         "label": classify(text), "n_positions": int(n)}
        for pid, tier, split, texts, n in zip(frame["id"], frame["tier"], frame["split"], completions,
                                              pooled.n_positions)
        for s, text in enumerate(texts)
    ])
    return samples, pooled


def prompt_table(samples: pd.DataFrame) -> pd.DataFrame:
    """Per-prompt refuse/comply fractions and majority label (``other`` unless a label has > half the samples)."""
    grouped = samples.groupby(["id", "tier", "split"], sort=False)["label"]
    table = grouped.agg(refuse_frac=lambda s: (s == "refuse").mean(),
                        comply_frac=lambda s: (s == "comply").mean()).reset_index()
    table["label"] = np.select([table["refuse_frac"] > 0.5, table["comply_frac"] > 0.5], ["refuse", "comply"],
                               "other")
    return table


def _audit_one(name: str, samples: pd.DataFrame, pooled: PooledFeatures, frame: pd.DataFrame,
               latents: HazardLatents, cfg: AuditConfig) -> tuple[ModelAudit, pd.DataFrame]:
    f = pooled.latents[MAIN]
    table = prompt_table(samples)
    table["signal"], table["divergence"] = hazard_signal(f, latents), divergence(f, latents)
    tiers, splits = frame["tier"].to_numpy(), frame["split"].to_numpy()
    sel, ev = [(splits == s) & np.isin(tiers, ["hazard", "benign"]) for s in ("select", "eval")]
    probe = linear_probe_auroc(pooled.raw[sel], tiers[sel] == "hazard", pooled.raw[ev], tiers[ev] == "hazard",
                               n_boot=cfg.n_boot, seed=cfg.seed)
    audit = ModelAudit(name, label_distribution(samples["label"]),
                       measure_depth(table, cfg.threshold_quantile, cfg.n_boot, cfg.seed),
                       feature_variance(f, table["signal"].to_numpy()), probe,
                       pooled.reconstruction[MAIN])
    return audit, table


def compare_saes(pooled: PooledFeatures, frame: pd.DataFrame, cfg: AuditConfig) -> dict:
    """What the contrastive term buys and costs: held-out separation (eval AUROC with its permutation null) and
    FVE of the audited SAE vs a baseline SAE trained without the term, on the base model's activations."""
    out = {}
    for name in (MAIN, BASELINE):
        sep = evaluate_separation(pooled.latents[name], pooled.raw, frame["tier"], frame["split"], cfg.n_latents,
                                  cfg.selection, cfg.n_perm, cfg.n_boot, cfg.seed)
        out[name] = {"eval_auroc": asdict(sep.signal_auroc), "selection_null_p95": sep.selection_null_p95,
                     "selection_p_value": sep.selection_p_value, "label_p_value": sep.label_p_value,
                     **pooled.reconstruction[name]}
    out["auroc_gain"] = out[MAIN]["eval_auroc"]["value"] - out[BASELINE]["eval_auroc"]["value"]
    out["fve_cost"] = out[BASELINE]["fve"] - out[MAIN]["fve"]
    return out


def audit_refusal_depth(base, finetuned, tokenizer, sae, prompts, layer: int, cfg: AuditConfig | None = None,
                        out_dir: str | Path | None = None, baseline_sae=None) -> AuditReport:
    """Audit refusal depth of ``base`` and (if given) ``finetuned`` with one SAE at residual layer ``layer``.

    ``base``/``finetuned``: nnsight models (``cbd_plugin.capture.load_language_model`` or the host's nnterp
    models); ``finetuned=None`` audits the base alone (no change, no verdict). ``sae``: anything with
    ``encode``/``decode`` on ``[n, d]`` (``TopKSAE``, ``BatchTopKSAE``). ``prompts``: jsonl path,
    :class:`PromptSource` or frame (id, text, tier[, split]). ``baseline_sae``: the same SAE trained without the
    contrastive term, to report its separation/FVE trade-off. ``out_dir``: where report.json, samples.csv and
    the plots go (nothing written if None).
    """
    from .report import write_report  # matplotlib only when writing

    cfg = cfg or AuditConfig()
    frame, notes, check = prepare_prompts(prompts, tokenizer, cfg)
    base_saes = {MAIN: sae} | ({BASELINE: baseline_sae} if baseline_sae is not None else {})
    runs = {"base": run_model("base", base, tokenizer, frame, layer, base_saes, cfg)}
    if finetuned is not None:
        runs["finetuned"] = run_model("finetuned", finetuned, tokenizer, frame, layer, {MAIN: sae}, cfg)
    base_pooled = runs["base"][1]
    separation = evaluate_separation(base_pooled.latents[MAIN], base_pooled.raw, frame["tier"], frame["split"],
                                     cfg.n_latents, cfg.selection, cfg.n_perm, cfg.n_boot, cfg.seed)
    models, tables = {}, {}
    for name, (samples, pooled) in runs.items():
        # The same latents for both models, chosen on the base model's select split only.
        models[name], tables[name] = _audit_one(name, samples, pooled, frame, separation.latents, cfg)
    change = result = None
    if finetuned is not None:
        change = compare_depth(tables["base"], tables["finetuned"], models["base"].depth,
                               models["finetuned"].depth, cfg.n_boot, cfg.seed)
        result = verdict(change, models["finetuned"].depth, cfg)
    per_prompt = ["id", "label", "signal", "divergence"]
    samples = pd.concat([runs[name][0].merge(tables[name][per_prompt].rename(columns={"label": "prompt_label"}),
                                             on="id") for name in runs], ignore_index=True)
    report = AuditReport(cfg, layer, notes, check, separation, models, change, result,
                         compare_saes(base_pooled, frame, cfg) if baseline_sae is not None else None, samples)
    if out_dir is not None:
        report.files = write_report(report, out_dir)
    return report
