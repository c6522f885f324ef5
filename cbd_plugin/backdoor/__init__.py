"""Conjunction analysis of a backdoor with an SAE on the fine-tuned minus base residual (host-free).

Entry point: :func:`analyze_conjunction` with a :class:`ConjunctionConfig`; it returns a :class:`ConjunctionReport`
and writes ``report.json``, CSVs and plots. Modules: ``probes`` (prompt sets), ``roles`` (token roles),
``latent_stats`` (streaming accumulators), ``behaviour`` (fire rates per condition, measured), ``analysis`` (latent
tables, AUROCs, linear probe), ``specificity`` (per-condition separations with intervals, permutation null),
``ablation`` (causal test with its control), ``verdict`` (the decision rule), ``report`` and ``figures`` (files,
plotly figures), ``pipeline`` (the entry point), ``training`` (host-free difference SAE), ``grid`` (verdicts over
organisms x layers x SAE seeds).
"""

from .config import ConjunctionConfig
from .pipeline import ConjunctionReport, analyze_conjunction
from .probes import FIRE_COMPLETION, TriggerPair, build_probe_set, fires

__all__ = [
    "FIRE_COMPLETION",
    "ConjunctionConfig",
    "ConjunctionReport",
    "TriggerPair",
    "analyze_conjunction",
    "build_probe_set",
    "fires",
]
