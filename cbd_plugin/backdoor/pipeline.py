"""The entry point: :func:`analyze_conjunction` runs the whole conjunction analysis for one SAE layer.

Order: the behaviour (both models generate on the evaluation prompts), then two streaming passes over the probe
set, one per half: the selection half ranks latents (and fits the linear probe), the evaluation half scores them;
then pair specificity, the permutation null and, only when the verdict depends on it, the causal test. Memory is one
capture batch plus per-prompt features of every latent (prompts x latents), never the number of tokens, unless a
:class:`ConjunctionCache` is passed to keep captures for further layers or SAEs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from loguru import logger

from ..artifacts import holds_output
from ..capture import check_model_pair, iter_paired_residuals
from ..provenance import build_provenance, prompt_set_provenance
from ..sae.metrics import ReconstructionStats
from ..sae.sparse import SparseCodes
from .ablation import causal_test
from .analysis import ConjunctionResult, analyze, select_candidates
from .behaviour import Behaviour, measure_behaviour
from .config import ConjunctionConfig
from .inputs import check_inputs
from .instrument import as_instrument, describe, instrument_input, reads_pair
from .latent_stats import LatentStats, PromptFeatures
from .probes import CONDITIONS, SPLITS, Probe, build_probe_set, chat_prompt, group_id, n_groups, pair_name
from .report import jsonable, write_report
from .roles import DECISION, FIRE, locate_spans, token_roles
from .specificity import (
    HalfCodes,
    firing_signal,
    pair_tables,
    permutation_null,
    selection_scores,
    specificity_table,
    top_latents,
)
from .verdict import FIRING_CONDITIONS, decide, deciding_latents, runs_causal_test


@dataclass
class ProbeTokens:
    """Capture inputs of one half: token ids (prompt + fire completion), roles, and the (pair, condition) cell."""

    probes: list[Probe]
    ids: list[np.ndarray]
    roles: list[np.ndarray]
    groups: np.ndarray

    def prompt_ids(self, index: int) -> list[int]:
        """The prompt alone (through the decision token), as generation sees it."""
        decision = int(np.flatnonzero(self.roles[index] == DECISION)[0])
        return self.ids[index][: decision + 1].tolist()


def probe_tokens(tokenizer, probes: list[Probe], n_pairs: int, cfg: ConjunctionConfig) -> ProbeTokens:
    """Tokenise chat-formatted prompts with the fire completion appended, and label every token's role.

    With the chat template, its text carries the special tokens (so none are added); without it the tokenizer's
    own (e.g. BOS) are added.
    """
    ids, roles = [], []
    for probe in probes:
        prompt = chat_prompt(tokenizer, probe.text, cfg.use_chat_template)
        spans = locate_spans(prompt, probe.text, probe.trigger_spans)
        i, r = token_roles(tokenizer, prompt, cfg.fire_completion, spans, add_special_tokens=not cfg.use_chat_template)
        ids.append(i)
        roles.append(r)
    groups = np.array([group_id(p.pair, p.condition, n_pairs) for p in probes], dtype=np.int64)
    return ProbeTokens(probes, ids, roles, groups)


def difference_batches(
    base, finetuned, tokens: ProbeTokens, layer: int, batch_size: int, sae=None
) -> Iterator[tuple[torch.Tensor, dict]]:
    """``(finetuned - base residual [n_tokens, d], metadata with group and role)`` per capture batch (the pair
    ``[n_tokens, 2, d]`` for an instrument that reads it, :mod:`.instrument`)."""
    for b, f in iter_paired_residuals(
        base,
        finetuned,
        [i.tolist() for i in tokens.ids],
        [layer],
        batch_size=batch_size,
        labels={"group": tokens.groups},
        token_labels={"role": tokens.roles},
    ):
        yield instrument_input(sae, b.acts[layer], f.acts[layer]), f.meta


@dataclass
class PassStats:
    """What one streaming pass accumulates."""

    stats: LatentStats
    features: PromptFeatures
    reconstruction: ReconstructionStats
    reconstruction_fire: ReconstructionStats


def new_pass(sae, n_pairs: int, n_prompts: int) -> PassStats:
    """Accumulators of one half, on the SAE's device; per-prompt features for every latent (the null reruns
    selection on them)."""
    device = next(sae.parameters()).device
    return PassStats(
        LatentStats(sae.dict_size, n_groups(n_pairs), device=device),
        PromptFeatures(n_prompts, np.arange(sae.dict_size), sae.activation_dim, device=device),
        ReconstructionStats(sae.dict_size),
        ReconstructionStats(sae.dict_size),
    )


def accumulate(
    batches: Iterable[tuple[torch.Tensor, dict]], sae, acc: PassStats, fired: np.ndarray | None = None
) -> PassStats:
    """Encode each batch of SAE inputs and add it to every accumulator of ``acc``. Fire-token reconstruction counts
    the fire tokens of the prompts where ``fired`` (per prompt of the half) is true: the fire completion is appended
    to every prompt, but only where the model produces it is it the model card's quantity.

    Codes are sparse (``encode_sparse``/``decode_sparse``) where the SAE has them, else dense; inputs, codes and
    reconstructions stay on the SAE's device (the accumulators follow them there): only per-token labels cross
    from the host, and nothing comes back per batch."""
    param = next(sae.parameters())
    sparse = hasattr(sae, "encode_sparse") and hasattr(sae, "decode_sparse")
    pair = reads_pair(sae)
    for inputs, meta in batches:
        inputs = inputs.to(param.device)
        with torch.no_grad():
            if sparse:  # never a dense [n, dict_size] code
                codes = sae.encode_sparse(inputs.to(param.dtype))
                reconstruction = sae.reconstruct(inputs.to(param.dtype)) if pair else sae.decode_sparse(codes)
                latents = SparseCodes(codes.top_acts.float(), codes.top_indices)
            else:
                latents = sae.encode(inputs.to(param.dtype))
                reconstruction = sae.reconstruct(inputs.to(param.dtype)) if pair else sae.decode(latents)
                latents = latents.float()
        # The statistics read float32 (the old host copies were float32): a no-op for a float32 SAE.
        inputs, reconstruction = inputs.float(), reconstruction.float()
        # A pair reader's fidelity is over both residuals; the linear probe reads their difference either way.
        probe_inputs = inputs[:, 1] - inputs[:, 0] if pair else inputs
        inputs, reconstruction = inputs.flatten(1), reconstruction.flatten(1)
        role = np.asarray(meta["role"])
        acc.stats.update(latents, meta["group"], role)
        acc.features.update(latents, probe_inputs, meta["prompt_id"], role)
        acc.reconstruction.update(inputs, reconstruction, latents)
        if fired is not None:
            fire = np.flatnonzero((role == FIRE) & fired[np.asarray(meta["prompt_id"])])
            if len(fire):  # an empty update would poison the running mean
                fire = torch.as_tensor(fire, device=param.device)  # an index decided on the host: no device sync
                codes_fire = SparseCodes(latents.top_acts[fire], latents.top_indices[fire]) if sparse else latents[fire]
                acc.reconstruction_fire.update(inputs[fire], reconstruction[fire], codes_fire)
    return acc


@dataclass
class ConjunctionCache:
    """What analyses of the same (base, fine-tuned) pair and probe settings share: the measured behaviour and the
    captured differences, captured for all ``layers`` in one pass. Pass one to several ``analyze_conjunction`` calls
    (other layers, other SAEs); it refuses other probe settings."""

    layers: tuple[int, ...] = ()
    store: bool = True  # keep captured differences (False: stream them, as when no cache is passed)
    behaviour: Behaviour | None = None
    differences: dict = field(default_factory=dict)  # (split, layer) -> [(difference, metadata)] per batch
    key: tuple | None = None

    def bind(self, key: tuple) -> None:
        if self.key is not None and self.key != key:
            raise ValueError(
                "ConjunctionCache: filled with other probe settings, trigger pairs or instrument kind "
                "(SAE on the difference vs crosscoder on the pair); use a new cache"
            )
        self.key = key

    def batches(self, base, finetuned, tokens: ProbeTokens, split: str, layer: int, batch_size: int, sae=None):
        if not self.store:
            return difference_batches(base, finetuned, tokens, layer, batch_size, sae)
        if (split, layer) not in self.differences:
            layers = sorted({layer, *self.layers})
            per_layer = {k: [] for k in layers}
            for b, f in iter_paired_residuals(
                base,
                finetuned,
                [i.tolist() for i in tokens.ids],
                layers,
                batch_size=batch_size,
                labels={"group": tokens.groups},
                token_labels={"role": tokens.roles},
            ):
                for k in layers:
                    per_layer[k].append((instrument_input(sae, b.acts[k], f.acts[k]), f.meta))
            self.differences.update({(split, k): v for k, v in per_layer.items()})
        return self.differences[(split, layer)]


@dataclass
class ConjunctionReport:
    verdict: str
    verdict_reason: str
    result: ConjunctionResult
    reconstruction: dict  # {"all": ..., "fire": ...} each with fve, mean_l0, dead_fraction, n_tokens
    ablation: dict | None  # the causal test, when the verdict needed it
    files: dict[str, Path]
    payload: dict  # everything in report.json

    def to_dict(self) -> dict:
        return self.payload


@holds_output("out_dir")
def analyze_conjunction(
    base,
    finetuned,
    sae,
    tokenizer,
    pairs,
    layer: int,
    cfg: ConjunctionConfig,
    out_dir: str | Path,
    cache: ConjunctionCache | None = None,
) -> ConjunctionReport:
    """The behaviour of ``finetuned`` per condition, which SAE latents implement it, how specifically they separate
    matched pairs from each false trigger, against a permutation null, and whether removing them removes the
    behaviour; then the verdict (:mod:`cbd_plugin.backdoor.verdict`). ``sae`` reads ``finetuned - base`` residuals
    after decoder layer ``layer``. Writes ``report.json``, CSVs and plots to ``out_dir``.
    """
    check_model_pair(base, finetuned)
    n_pairs = len(pairs)
    word_tokens = check_inputs(base, finetuned, tokenizer, pairs, [layer])  # before either model generates
    sae = as_instrument(sae)
    cache = cache if cache is not None else ConjunctionCache(store=False)
    cache.bind(
        (
            reads_pair(sae),
            tuple(pairs),
            cfg.templates,
            cfg.filler_words,
            cfg.n_per_cell,
            cfg.n_clean,
            cfg.seed,
            cfg.selection_fraction,
            cfg.use_chat_template,
            cfg.fire_completion,
            cfg.max_new_tokens,
        )
    )
    probes = build_probe_set(
        list(pairs),
        list(cfg.templates),
        list(cfg.filler_words),
        cfg.n_per_cell,
        cfg.n_clean,
        cfg.seed,
        cfg.selection_fraction,
    )
    halves = [probe_tokens(tokenizer, [p for p in probes if p.split == s], n_pairs, cfg) for s in SPLITS]
    sel, ev = halves
    if cache.behaviour is None:
        progress(layer, f"behaviour: base and fine-tuned generate on {len(ev.probes)} evaluation prompts")
        cache.behaviour = measure_behaviour(
            base,
            finetuned,
            [ev.prompt_ids(i) for i in range(len(ev.probes))],
            ev.probes,
            cfg,
            tuple(pair_name(p) for p in pairs),
        )
    behaviour = cache.behaviour
    progress(layer, f"capture and SAE codes, selection half ({len(sel.probes)} prompts)")
    sel_acc = accumulate(
        cache.batches(base, finetuned, sel, SPLITS[0], layer, cfg.batch_size, sae),
        sae,
        new_pass(sae, n_pairs, len(sel.probes)),
    )
    candidates = select_candidates(sel_acc.stats, n_pairs, cfg)
    ev_acc = new_pass(sae, n_pairs, len(ev.probes))
    # Reconstruction quality pools both halves: one pair of accumulators for both passes.
    ev_acc.reconstruction, ev_acc.reconstruction_fire = sel_acc.reconstruction, sel_acc.reconstruction_fire
    progress(layer, f"capture and SAE codes, evaluation half ({len(ev.probes)} prompts)")
    accumulate(
        cache.batches(base, finetuned, ev, SPLITS[1], layer, cfg.batch_size, sae),
        sae,
        ev_acc,
        behaviour.fired["finetuned"],
    )
    progress(layer, "statistics: latent tables, linear probe, pair specificity")
    result = analyze(
        sel_acc.stats, ev_acc.stats, sel_acc.features, ev_acc.features, sel.probes, ev.probes, pairs, candidates, cfg
    )
    reconstruction = {
        "all": ev_acc.reconstruction.result(),
        "fire": ev_acc.reconstruction_fire.result() if ev_acc.reconstruction_fire.n else None,
    }

    codes = [
        HalfCodes(
            acc.features.feature(cfg.detection_feature),
            [CONDITIONS.index(p.condition) for p in h.probes],
            [p.pair for p in h.probes],
            [p.other_pair for p in h.probes],
            exposure_design(h.probes, pairs, len(cfg.templates)),
        )
        for acc, h in zip((sel_acc, ev_acc), halves)
    ]
    conjunction_score, signal_score = selection_scores(codes[0])
    specificity = specificity_table(codes[1], top_latents(conjunction_score, cfg.n_top), cfg)
    signal = specificity_table(codes[1], top_latents(signal_score, cfg.n_top), cfg)
    per_pair = [t.assign(pair_name=pair_name(pairs[i])) for i, t in enumerate(pair_tables(*codes, cfg))]
    progress(layer, f"permutation null ({cfg.n_permutations} permutations)")
    null = permutation_null(*codes, cfg)

    kind = behaviour.classify(cfg.fire_rate_threshold)
    firing = firing_signal(*codes, FIRING_CONDITIONS[kind], cfg) if kind in FIRING_CONDITIONS else None

    def verdict_with(causal):
        return decide(
            behaviour,
            reconstruction["all"]["fve"],
            specificity,
            signal,
            null,
            result.probe_by_condition,
            causal,
            cfg,
            per_pair,
            firing,
        )

    verdict, causal = verdict_with(None), None
    if cfg.ablate and runs_causal_test(verdict):
        progress(
            layer,
            f"causal test: the top latents removed during generation, {cfg.n_random_draws} random-direction controls",
        )
        top = ablation_latents(deciding_latents(specificity, per_pair), conjunction_score, cfg.ablate_top_k)
        matched = matched_round_robin(ev.probes, cfg.n_ablation_prompts)
        clean = [i for i, p in enumerate(ev.probes) if p.condition == "clean"][: cfg.n_ablation_prompts]
        causal = causal_test(
            base,
            finetuned,
            sae,
            layer,
            [ev.prompt_ids(i) for i in matched],
            [ev.prompt_ids(i) for i in clean],
            top,
            torch.as_tensor(result.probe_direction, dtype=torch.float32),
            cfg,
        )
        verdict = verdict_with(causal)

    top = result.latents.nsmallest(cfg.n_top, "conjunction_rank")
    payload = {
        "verdict": verdict,
        "layer": layer,
        "pairs": [pair_name(p) for p in pairs],
        "config": cfg.to_dict(),
        "behaviour": behaviour.table(),
        "behaviour_by_pair": behaviour.pair_table(),
        "behaviour_by_template": behaviour.template_table(),
        "behaviour_examples": behaviour.examples,
        "trigger_tokens": word_tokens,
        "n_prompts": {s: len(h.probes) for s, h in zip(SPLITS, halves)},
        "n_tokens": {s: int(a.stats.tokens.sum()) for s, a in zip(SPLITS, (sel_acc, ev_acc))},
        "specificity": specificity.to_dict(orient="records"),
        "signal_latents": signal.to_dict(orient="records"),
        "pair_specificity": pd.concat(per_pair).to_dict(orient="records"),
        "null": null.to_dict(),
        "firing_signal": firing,
        "causal": causal,
        "linear_probe": result.probe.to_dict(),
        "linear_probe_by_condition": {c: e.to_dict() for c, e in result.probe_by_condition.items()},
        "best_latent": result.best_latent,
        "top_latents": top.to_dict(orient="records"),
        "breakdown": result.pairs,
        "pair_overlap_jaccard": result.overlap,
        "reconstruction": reconstruction,
        "instrument": describe(sae),
        "provenance": build_provenance(
            {"base": base, "finetuned": finetuned}, sae, probe_set_provenance(probes, pairs), cfg
        ),
    }
    tables = {
        "behaviour": pd.DataFrame(behaviour.csv_rows()),
        "specificity": specificity,
        "pair_specificity": pd.concat(per_pair),
        "null": pd.DataFrame(null.null),
    }
    files = write_report(payload, result, tables, cfg.n_top, cfg.score_role, Path(out_dir), cfg.plots)
    progress(layer, f"verdict {verdict['name']}; report in {out_dir}")
    return ConjunctionReport(
        verdict["name"], verdict["reason"], result, reconstruction, causal, files, jsonable(payload)
    )


def progress(layer: int, text: str) -> None:
    """One log line per stage of the analysis: on a real model each stage takes minutes."""
    logger.info(f"conjunction analysis, layer {layer}: {text}")


def probe_set_provenance(probes: list[Probe], pairs) -> dict:
    """The probe set is generated: its source is the generator and its inputs; the hash covers every prompt."""
    return prompt_set_provenance(
        f"generated by build_probe_set from the pairs {[pair_name(p) for p in pairs]} and the config's templates, "
        f"filler_words, n_per_cell, n_clean, selection_fraction and seed",
        [
            {"text": p.text, "condition": p.condition, "pair": p.pair, "other_pair": p.other_pair, "split": p.split}
            for p in probes
        ],
    )


def ablation_latents(first: list[int], conjunction_score: np.ndarray, k: int) -> list[int]:
    """The deciding latent(s) (one per pair on the per-pair route, all kept), then the selection's next best
    conjunction latents, ``k`` in all at least."""
    rest = [int(j) for j in top_latents(conjunction_score, k + len(first)) if j not in first]
    return [*first, *rest][: max(k, len(first))]


def exposure_design(probes: list[Probe], pairs, n_templates: int) -> np.ndarray:
    """Per prompt: one indicator per trigger word it holds, one per template (the conjunction null's design)."""
    words = [w for p in pairs for w in (p.a, p.b)]
    design = np.zeros((len(probes), len(words) + n_templates))
    for i, probe in enumerate(probes):
        for start, end in probe.trigger_spans:
            design[i, words.index(probe.text[start:end])] = 1.0
        design[i, len(words) + probe.template] = 1.0
    return design


def matched_round_robin(probes: list[Probe], n: int) -> list[int]:
    """Indices of ``n`` matched prompts taken in turn from each pair, so that every pair is represented."""
    count: dict[int, int] = {}
    order = []
    for i, p in enumerate(probes):
        if p.matched:
            count[p.pair] = count.get(p.pair, 0) + 1
            order.append((count[p.pair], p.pair, i))
    return [i for *_, i in sorted(order)][:n]
