"""Entry point: :func:`audit_refusal_depth`, the refusal-depth audit of a base and a fine-tuned model.

Two phases, so that one pass through each model serves any number of SAEs and layers (the verdict grid runs
many SAEs on the same captures):

1. :func:`run_model`: per model, completions and surface labels (:mod:`.classifier`), then one capture of
   every profiled layer at the chosen positions (:func:`.features.capture`).
2. :func:`analyse_runs`: encode with the SAE, select hazard/benign latents on the *base* model's select split
   and use those same latents for both models (:mod:`.signal`), depth per model (:mod:`.depth`), the depth
   profile over layers (:mod:`.profile`), the paired changes (:mod:`.diff`), the verdict (:mod:`.verdict`), and
   the files (:mod:`.report`). Before any verdict rests on the SAE, the instrument is checked: its fidelity on both
   models and its separation against random instruments of its shape (:mod:`.instrument`); the hazard topic's
   decodability within the hazard tier tells a re-encoded concept from a refusal flag (:mod:`.topic`). With
   ``profile_positions``, every other position kind is captured too, and the depth profile covers positions as
   well as layers (probes only).
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..artifacts import holds_output
from ..capture import check_model_pair, num_layers
from ..capture.models import hidden_size
from ..provenance import build_provenance, prompt_set_provenance
from ..stats import auroc, bootstrap
from . import classifier
from .completions import generate_completions
from .config import POSITIONS, AuditConfig
from .depth_profile import LayerProfile, at_layer, depth_profile
from .features import Capture, capture, chat_prompt, encode_pooled, read_positions, reconstruction
from .hazard_signal import FeatureVariance, Separation, divergence, evaluate_separation, feature_variance, hazard_signal
from .instrument import RandomNull, random_instrument_null
from .judge import surface_labeller
from .model_change import DepthChange, compare_depth
from .prefill import audit_prefill
from .prompts import FormatCheck, PromptSource, check_format, load_prompts, validate_prompts
from .refusal_metrics import Depth, measure_depth
from .topic import TopicDecoding, hazard_topics, topic_decoding
from .verdict import Evidence, Verdict, decide, positions_phrase

MAIN, BASELINE = "sae", "baseline"
MAX_DEAD_FRACTION = 0.10  # SAE health: more dead latents on the training tokens than this is flagged


@dataclass
class ModelRun:
    """One model's completions (one row per prompt and sample), its capture, and (``profile_positions``) a capture
    of the profiled layers at every other position kind."""

    name: str
    samples: pd.DataFrame
    capture: Capture
    other_positions: dict[str, Capture] = field(default_factory=dict)


@dataclass
class ModelAudit:
    """One model's results under one SAE."""

    name: str
    label_distribution: dict[str, float]
    depth: Depth
    feature_variance: FeatureVariance
    reconstruction: dict  # the SAE's FVE / mean L0 / dead fraction at the positions read


@dataclass
class AuditReport:
    config: AuditConfig
    layer: int
    prompt_notes: list[str]
    format_check: FormatCheck
    separation: Separation  # base model: hazard latents (chosen on select), eval AUROC vs null vs probe
    models: dict[str, ModelAudit]
    depth_profile: list[LayerProfile]  # every profiled layer at the audit positions
    position_profile: list[LayerProfile]  # every profiled layer at each other position kind (probes only)
    change: DepthChange | None
    verdict: Verdict | None
    random_null: RandomNull  # the SAE's separation against random instruments of its shape (base model)
    topic_decoding: dict[str, TopicDecoding]  # per model: the hazard topic within the hazard tier
    sae_health: dict  # dead fraction etc. on the SAE's training distribution and at the positions read
    classifier_confusion: dict | None  # the surface classifier's estimated per-class precision/recall
    sae_comparison: dict | None
    samples: pd.DataFrame = field(repr=False)  # one row per (model, prompt, sample); written as CSV
    files: dict[str, str] = field(default_factory=dict)
    provenance: dict | None = None  # what was analysed (cbd_plugin.provenance)
    prefill: dict | None = None  # refusal after k prefilled compliance tokens per model (refusal.prefill)

    def to_dict(self) -> dict:
        """Everything but the per-sample frame (numpy values as they are; the report makes them JSON)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self) if f.name != "samples"}


def _plain(value):
    if is_dataclass(value):
        return asdict(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def prepare_prompts(
    prompts: pd.DataFrame | PromptSource | str | Path, tokenizer, cfg: AuditConfig
) -> tuple[pd.DataFrame, list[str], FormatCheck]:
    """Load (a jsonl path, a :class:`PromptSource` or a frame), validate and format-check the prompt set."""
    if isinstance(prompts, (str, Path)):
        prompts = PromptSource(path=str(prompts))
    frame = load_prompts(prompts) if isinstance(prompts, PromptSource) else prompts
    frame, notes = validate_prompts(frame, cfg.seed, cfg.select_fraction)
    check = check_format(frame, tokenizer, cfg.format_threshold, cfg.on_format_confound)
    return frame, notes, check


@functools.lru_cache(maxsize=4)
def _labeller(judge_json: str):
    return surface_labeller(json.loads(judge_json))


def labeller(cfg: AuditConfig):
    """``(labels(completions), estimated_confusion())``: the rules, or the configured judge, built once per setting
    (a judge model is loaded once for both models and the report)."""
    return _labeller(json.dumps(cfg.judge, sort_keys=True))


def check_inputs(sae, layer: int, n_layers: int, hidden_size: int) -> None:
    """Before any generation: the layer exists and the SAE reads residuals of the model's width."""
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n_layers:
        raise ValueError(
            f"audit_refusal_depth: layer={layer!r} is not a decoder block of a model with {n_layers} layers (0-indexed)"
        )
    width = getattr(sae, "activation_dim", None)
    if width is not None and width != hidden_size:
        raise ValueError(
            f"audit_refusal_depth: SAE activation_dim {width} does not match the model's hidden size "
            f"{hidden_size} (an SAE for another model or layer type?)"
        )


def run_model(
    name: str,
    model,
    tokenizer,
    frame: pd.DataFrame,
    layers: list[int],
    sae_layers: list[int],
    cfg: AuditConfig,
    keep_prompt_tokens: bool = False,
) -> ModelRun:
    """Completions, labels and one capture of ``layers`` (token residuals kept at ``sae_layers``; with
    ``keep_prompt_tokens``, every prompt token there too, for the SAE's health). With several samples per
    prompt, ``first_response`` reads the first sample's completion."""
    chats = [chat_prompt(tokenizer, text) for text in frame["text"]]
    completions = generate_completions(
        model, [c.ids for c in chats], cfg.max_new_tokens, cfg.temperature, cfg.n_samples, cfg.batch_size, cfg.seed
    )
    read = [
        read_positions(
            chat, tokenizer(texts[0], add_special_tokens=False)["input_ids"], cfg.positions, cfg.n_response_tokens
        )
        for chat, texts in zip(chats, completions)
    ]
    prompt_masks = None
    if keep_prompt_tokens:
        prompt_masks = [
            (np.arange(len(ids)) >= chat.content_start) & (np.arange(len(ids)) < len(chat.ids))
            for chat, (ids, _) in zip(chats, read)
        ]
    captured = capture(
        model,
        [ids for ids, _ in read],
        [mask for _, mask in read],
        layers,
        sae_layers,
        cfg.pooling,
        cfg.batch_size,
        prompt_masks,
    )
    others = {}
    for positions in (p for p in POSITIONS if cfg.profile_positions and p != cfg.positions):
        at = [
            read_positions(
                chat, tokenizer(texts[0], add_special_tokens=False)["input_ids"], positions, cfg.n_response_tokens
            )
            for chat, texts in zip(chats, completions)
        ]
        others[positions] = capture(
            model, [ids for ids, _ in at], [mask for _, mask in at], layers, [], cfg.pooling, cfg.batch_size
        )
    labels = iter(labeller(cfg)[0]([text for texts in completions for text in texts]))
    samples = pd.DataFrame(
        [
            {
                "model": name,
                "id": pid,
                "tier": tier,
                "split": split,
                "sample": s,
                "completion": text,
                "label": next(labels),
                "n_positions": int(n),
            }
            for pid, tier, split, texts, n in zip(
                frame["id"], frame["tier"], frame["split"], completions, captured.n_positions
            )
            for s, text in enumerate(texts)
        ]
    )
    return ModelRun(name, samples, captured, others)


def prompt_table(samples: pd.DataFrame) -> pd.DataFrame:
    """Per-prompt refuse/comply fractions and majority label (``other`` unless a label has > half the samples)."""
    flags = samples.assign(
        refuse_frac=(samples["label"] == "refuse").astype(float),
        comply_frac=(samples["label"] == "comply").astype(float),
    )
    table = flags.groupby(["id", "tier", "split"], sort=False)[["refuse_frac", "comply_frac"]].mean().reset_index()
    table["label"] = np.select([table["refuse_frac"] > 0.5, table["comply_frac"] > 0.5], ["refuse", "comply"], "other")
    return table


def _encode(run: ModelRun, sae, layer: int, n_prompts: int, cfg: AuditConfig) -> tuple[np.ndarray, dict]:
    return encode_pooled(sae, run.capture.read_acts[layer], run.capture.read_prompt, n_prompts, cfg.pooling)


def compare_saes(base: ModelRun, saes: dict, frame: pd.DataFrame, layer: int, cfg: AuditConfig) -> dict:
    """What the contrastive term buys and costs, on the base model: held-out separation (eval AUROC with its
    nulls) and FVE of the audited SAE vs a baseline trained without the term, and the AUROC gain with a paired
    bootstrap interval over eval prompts."""
    out, signals = {}, {}
    tiers, splits = frame["tier"].to_numpy(), frame["split"].to_numpy()
    for name, sae in saes.items():
        latents, recon = _encode(base, sae, layer, len(frame), cfg)
        sep = separation_on_base(latents, base.capture.pooled[layer], tiers, splits, cfg)
        signals[name] = hazard_signal(latents, sep.latents)
        out[name] = {
            "eval_auroc": asdict(sep.signal_auroc),
            "selection_null_p95": sep.selection_null_p95,
            "selection_p_value": sep.selection_p_value,
            "label_p_value": sep.label_p_value,
            **recon,
        }
    ev = (splits == "eval") & np.isin(tiers, ["hazard", "benign"])
    y = tiers[ev] == "hazard"
    gain = bootstrap(
        lambda a, b, yy: auroc(a, yy) - auroc(b, yy),
        signals[MAIN][ev],
        signals[BASELINE][ev],
        y,
        n_boot=cfg.n_boot,
        seed=cfg.seed,
        stratify=y,
    )
    out["auroc_gain"] = asdict(gain)
    out["fve_cost"] = out[BASELINE]["fve"] - out[MAIN]["fve"]
    return out


def sae_health(base: ModelRun, sae, layer: int, at_read: dict) -> dict:
    """The SAE's FVE / L0 / dead fraction on every prompt token from the content on (its training distribution)
    and at the positions read; a warning when the former's dead fraction exceeds ``MAX_DEAD_FRACTION``."""
    health = {"positions_read": at_read, "max_dead_fraction": MAX_DEAD_FRACTION, "warnings": []}
    acts = base.capture.prompt_acts.get(layer)
    if acts is not None:
        health["prompt_tokens"] = reconstruction(sae, acts)
        if health["prompt_tokens"]["dead_fraction"] > MAX_DEAD_FRACTION:
            health["warnings"].append(
                f"{health['prompt_tokens']['dead_fraction']:.1%} of latents never fire on the "
                f"prompt tokens (more than {MAX_DEAD_FRACTION:.0%})"
            )
    return health


def analyse_runs(
    runs: dict[str, ModelRun],
    frame: pd.DataFrame,
    sae,
    layer: int,
    cfg: AuditConfig,
    prompt_notes: list[str] | None = None,
    format_check: FormatCheck | None = None,
    baseline_sae=None,
    out_dir: str | Path | None = None,
    provenance: dict | None = None,
    prefill: dict | None = None,
) -> AuditReport:
    """Phase 2 (module docstring) for ``runs`` = {"base": ..., optionally "finetuned": ...} of ``frame``;
    ``provenance`` (:func:`audit_provenance`) and ``prefill`` (the prefill curves,
    ``refusal.prefill.audit_prefill``) go into the report as they are."""
    tiers, splits = frame["tier"].to_numpy(), frame["split"].to_numpy()
    latents, recon = {}, {}
    for name, run in runs.items():
        latents[name], recon[name] = _encode(run, sae, layer, len(frame), cfg)
    base_capture = runs["base"].capture
    separation = separation_on_base(latents["base"], base_capture.pooled[layer], tiers, splits, cfg)
    models, tables, signals = {}, {}, {}
    for name, run in runs.items():
        # The same latents for both models, chosen on the base model's select split only.
        table = prompt_table(run.samples)
        table["signal"] = signals[name] = hazard_signal(latents[name], separation.latents)
        table["divergence"] = divergence(latents[name], separation.latents)
        tables[name] = table
        models[name] = ModelAudit(
            name,
            classifier.label_distribution(run.samples["label"]),
            measure_depth(table, cfg.threshold_quantile, cfg.n_boot, cfg.seed),
            feature_variance(latents[name], table["signal"].to_numpy()),
            recon[name],
        )
    finetuned = runs.get("finetuned")
    profile = depth_profile(
        base_capture,
        finetuned.capture if finetuned else None,
        tiers,
        splits,
        {layer: (signals["base"], signals.get("finetuned"))},
        cfg.n_boot,
        cfg.seed,
        cfg.positions,
    )
    position_profile = [
        row
        for positions, cap in runs["base"].other_positions.items()
        for row in depth_profile(
            cap,
            finetuned.other_positions[positions] if finetuned else None,
            tiers,
            splits,
            {},
            cfg.n_boot,
            cfg.seed,
            positions,
        )
    ]
    null = random_instrument_null(
        sae,
        base_capture.read_acts[layer],
        base_capture.read_prompt,
        signals["base"],
        recon["base"]["mean_l0"],
        tiers,
        splits,
        cfg,
    )
    topics, source = hazard_topics(frame)
    topic = {
        name: topic_decoding(run.capture.pooled[layer], topics, source, splits, cfg.n_boot, 1 - cfg.alpha, cfg.seed)
        for name, run in runs.items()
    }
    change = result = None
    if finetuned is not None:
        change = compare_depth(
            tables["base"], tables["finetuned"], models["base"].depth, models["finetuned"].depth, cfg.n_boot, cfg.seed
        )
        probes = at_layer(profile, layer)
        result = decide(
            Evidence(
                separation.signal_auroc,
                separation.label_p_value,
                separation.p_floor,
                change,
                models["finetuned"].depth.refused_hazard_auroc,
                probes.base_probe,
                probes.base_fitted_probe,
                probes.refit_probe,
                recon,
                sae.dict_size,
                null,
                topic["finetuned"],
                f"layer {layer}, {positions_phrase(cfg)}",
            ),
            cfg,
        )
    per_prompt = ["id", "label", "signal", "divergence"]
    samples = pd.concat(
        [
            run.samples.merge(tables[name][per_prompt].rename(columns={"label": "prompt_label"}), on="id")
            for name, run in runs.items()
        ],
        ignore_index=True,
    )
    comparison = (
        compare_saes(runs["base"], {MAIN: sae, BASELINE: baseline_sae}, frame, layer, cfg)
        if baseline_sae is not None
        else None
    )
    report = AuditReport(
        cfg,
        layer,
        list(prompt_notes or []),
        format_check,
        separation,
        models,
        profile,
        position_profile,
        change,
        result,
        null,
        topic,
        sae_health(runs["base"], sae, layer, recon["base"]),
        labeller(cfg)[1](),
        comparison,
        samples,
        provenance=provenance,
        prefill=prefill,
    )
    if out_dir is not None:
        from .report import write_report  # matplotlib only when writing

        report.files = write_report(report, out_dir)
    return report


@holds_output("out_dir")
def audit_refusal_depth(
    base,
    finetuned,
    tokenizer,
    sae,
    prompts,
    layer: int,
    cfg: AuditConfig | None = None,
    out_dir: str | Path | None = None,
    baseline_sae=None,
) -> AuditReport:
    """Audit refusal depth of ``base`` and (if given) ``finetuned`` with one SAE at residual layer ``layer``.

    ``base``/``finetuned``: nnsight models (``cbd_plugin.capture.load_language_model`` or the host's nnterp
    models); ``finetuned=None`` audits the base alone (no change, no verdict). ``sae``: anything with
    ``encode``/``decode`` on ``[n, d]`` (``TopKSAE``, ``BatchTopKSAE``; their
    ``encode_sparse``/``decode_sparse`` are used where present, on the SAE's device). ``prompts``: jsonl path,
    :class:`PromptSource` or frame (id, text, tier[, split]). ``baseline_sae``: the same SAE trained without the
    contrastive term, to report its separation/FVE trade-off. ``out_dir``: where report.json, samples.csv and
    the plots go (nothing written if None).
    """
    cfg = cfg or AuditConfig()
    if finetuned is not None:
        check_model_pair(base, finetuned)
    check_inputs(sae, layer, num_layers(base), hidden_size(base))
    frame, notes, check = prepare_prompts(prompts, tokenizer, cfg)
    layers = cfg.layers_to_profile(num_layers(base), layer)
    runs = {"base": run_model("base", base, tokenizer, frame, layers, [layer], cfg, keep_prompt_tokens=True)}
    if finetuned is not None:
        runs["finetuned"] = run_model("finetuned", finetuned, tokenizer, frame, layers, [layer], cfg)
    models = {name: model for name, model in (("base", base), ("finetuned", finetuned)) if model is not None}
    prefill = audit_prefill(models, tokenizer, frame, runs["base"].samples, batch_size=cfg.batch_size)
    return analyse_runs(
        runs,
        frame,
        sae,
        layer,
        cfg,
        notes,
        check,
        baseline_sae,
        out_dir,
        audit_provenance(base, finetuned, sae, prompts, frame, cfg),
        prefill,
    )


def audit_provenance(base, finetuned, sae, prompts, frame: pd.DataFrame, cfg: AuditConfig) -> dict:
    """The provenance block: models, SAE, the prompt set (its source and the hash of the validated rows: id, text,
    tier, split), seeds, config, versions."""
    if isinstance(prompts, PromptSource):
        source = json.dumps({k: v for k, v in asdict(prompts).items() if v not in (None, {}, [])}, default=str)
    else:
        source = str(prompts) if isinstance(prompts, (str, Path)) else "in-memory DataFrame"
    rows = frame[["id", "text", "tier", "split"]].to_dict(orient="records")
    return build_provenance({"base": base, "finetuned": finetuned}, sae, prompt_set_provenance(source, rows), cfg)


def separation_on_base(latents, pooled, tiers, splits, cfg: AuditConfig):
    """The hazard latents chosen on the base's select split and their held-out separation, with the config's
    selection, permutation and bootstrap settings (one place for both the audit SAE and a baseline SAE)."""
    return evaluate_separation(
        latents, pooled, tiers, splits, cfg.n_latents, cfg.selection, cfg.n_perm, cfg.n_boot, cfg.seed
    )
