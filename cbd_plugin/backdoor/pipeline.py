"""The entry point: :func:`analyze_conjunction` runs the whole conjunction analysis for one SAE layer.

Two streaming passes over the probe set, one per half: the selection half ranks latents (and fits the linear
probe), the evaluation half scores only the latents chosen on the selection half. Memory is bounded by one capture
batch plus per-prompt features, never by the number of tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..capture import iter_paired_residuals
from ..sae.metrics import ReconstructionStats
from .ablation import ablation_effect
from .analysis import ConjunctionResult, analyze, select_candidates
from .config import ConjunctionConfig
from .latent_stats import LatentStats, PromptFeatures
from .probes import SPLITS, Probe, build_probe_set, chat_prompt, group_id, n_groups, pair_name
from .report import jsonable, write_report
from .roles import DECISION, FIRE, locate_spans, token_roles


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
        return self.ids[index][:decision + 1].tolist()


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


def difference_batches(base, finetuned, tokens: ProbeTokens, layer: int,
                       batch_size: int) -> Iterator[tuple[torch.Tensor, dict]]:
    """``(finetuned - base residual [n_tokens, d], metadata with group and role)`` per capture batch."""
    for b, f in iter_paired_residuals(base, finetuned, [i.tolist() for i in tokens.ids], [layer],
                                      batch_size=batch_size, labels={"group": tokens.groups},
                                      token_labels={"role": tokens.roles}):
        yield f.acts[layer] - b.acts[layer], f.meta


@dataclass
class PassStats:
    """What one streaming pass accumulates."""

    stats: LatentStats
    features: PromptFeatures
    reconstruction: ReconstructionStats
    reconstruction_fire: ReconstructionStats


def new_pass(sae, n_pairs: int, n_prompts: int, candidates) -> PassStats:
    return PassStats(LatentStats(sae.dict_size, n_groups(n_pairs)),
                     PromptFeatures(n_prompts, candidates, sae.activation_dim),
                     ReconstructionStats(sae.dict_size), ReconstructionStats(sae.dict_size))


def accumulate(batches: Iterable[tuple[torch.Tensor, dict]], sae, acc: PassStats) -> PassStats:
    """Encode each batch of SAE inputs and add it to every accumulator of ``acc``."""
    param = next(sae.parameters())
    for inputs, meta in batches:
        with torch.no_grad():
            latents = sae.encode(inputs.to(param.device, param.dtype))
            reconstruction = sae.decode(latents)
        latents, reconstruction, inputs = latents.float().cpu(), reconstruction.float().cpu(), inputs.float().cpu()
        role = np.asarray(meta["role"])
        acc.stats.update(latents, meta["group"], role)
        acc.features.update(latents, inputs, meta["prompt_id"], role)
        acc.reconstruction.update(inputs, reconstruction, latents)
        fire = torch.as_tensor(role == FIRE)
        if fire.any():  # an empty update would poison the running mean
            acc.reconstruction_fire.update(inputs[fire], reconstruction[fire], latents[fire])
    return acc


@dataclass
class ConjunctionReport:
    verdict: str
    verdict_reason: str
    result: ConjunctionResult
    reconstruction: dict  # {"all": ..., "fire": ...} each with fve, mean_l0, dead_fraction, n_tokens
    ablation: dict | None
    files: dict[str, Path]
    payload: dict  # everything in report.json

    def to_dict(self) -> dict:
        return self.payload


def analyze_conjunction(base, finetuned, sae, tokenizer, pairs, layer: int, cfg: ConjunctionConfig,
                        out_dir: str | Path) -> ConjunctionReport:
    """Which SAE latents implement the conjunction, how well they detect matched pairs, and whether removing
    them removes the behaviour. ``sae`` reads ``finetuned - base`` residuals after decoder layer ``layer``.

    Writes ``report.json``, ``latents.csv`` and plots to ``out_dir``.
    """
    n_pairs = len(pairs)
    probes = build_probe_set(list(pairs), list(cfg.templates), list(cfg.filler_words), cfg.n_per_cell,
                             cfg.n_clean, cfg.seed, cfg.selection_fraction)
    halves = [probe_tokens(tokenizer, [p for p in probes if p.split == s], n_pairs, cfg) for s in SPLITS]
    sel, ev = halves
    sel_acc = accumulate(difference_batches(base, finetuned, sel, layer, cfg.batch_size), sae,
                         new_pass(sae, n_pairs, len(sel.probes), []))
    candidates = select_candidates(sel_acc.stats, n_pairs, cfg)
    ev_acc = new_pass(sae, n_pairs, len(ev.probes), candidates.all())
    # Reconstruction quality pools both halves: one pair of accumulators for both passes.
    ev_acc.reconstruction, ev_acc.reconstruction_fire = sel_acc.reconstruction, sel_acc.reconstruction_fire
    accumulate(difference_batches(base, finetuned, ev, layer, cfg.batch_size), sae, ev_acc)
    result = analyze(sel_acc.stats, ev_acc.stats, sel_acc.features, ev_acc.features, sel.probes, ev.probes, pairs,
                     candidates, cfg)
    reconstruction = {"all": ev_acc.reconstruction.result(), "fire": ev_acc.reconstruction_fire.result()}

    ablation = None
    if cfg.ablate:
        ablation = _ablate(base, finetuned, sae, layer, ev, sel_acc.stats, candidates.conjunction, n_pairs, cfg)

    top = result.latents.nsmallest(cfg.n_top, "conjunction_rank")
    payload = {"verdict": result.verdict, "verdict_reason": result.verdict_reason, "layer": layer,
               "pairs": [pair_name(p) for p in pairs], "config": cfg.to_dict(),
               "n_prompts": {s: len(h.probes) for s, h in zip(SPLITS, halves)},
               "n_tokens": {s: int(a.stats.tokens.sum()) for s, a in zip(SPLITS, (sel_acc, ev_acc))},
               "best_latent": result.best_latent, "linear_probe": result.probe.to_dict(),
               "top_latents": top.to_dict(orient="records"),
               "breakdown": result.pairs, "pair_overlap_jaccard": result.overlap,
               "reconstruction": reconstruction, "ablation": ablation}
    files = write_report(payload, result, cfg.n_top, cfg.score_role, Path(out_dir))
    return ConjunctionReport(result.verdict, result.verdict_reason, result, reconstruction, ablation, files,
                             jsonable(payload))


def _ablate(base, finetuned, sae, layer, ev: ProbeTokens, selection: LatentStats, ranking, n_pairs, cfg) -> dict:
    """Remove the top ``cfg.ablate_top_k`` conjunction latents on evaluation prompts; random latents are drawn
    from those active on the selection half's matched prompts (any token), so the control removes latents
    that are in use there too."""
    matched = matched_round_robin(ev.probes, cfg.n_ablation_prompts)
    clean = [i for i, p in enumerate(ev.probes) if p.condition == "clean"][:cfg.n_ablation_prompts]
    matched_groups = [group_id(p, "matched", n_pairs) for p in range(n_pairs)]
    active = np.zeros(sae.dict_size, dtype=bool)
    for role in range(selection.n_roles):
        active |= selection.select(matched_groups, role)[1] > 0
    return ablation_effect(base, finetuned, sae, layer, [ev.prompt_ids(i) for i in matched],
                           [ev.prompt_ids(i) for i in clean], ranking[:cfg.ablate_top_k], np.flatnonzero(active),
                           cfg)


def matched_round_robin(probes: list[Probe], n: int) -> list[int]:
    """Indices of ``n`` matched prompts taken in turn from each pair, so that every pair is represented."""
    count: dict[int, int] = {}
    order = []
    for i, p in enumerate(probes):
        if p.matched:
            count[p.pair] = count.get(p.pair, 0) + 1
            order.append((count[p.pair], p.pair, i))
    return [i for *_, i in sorted(order)][:n]
