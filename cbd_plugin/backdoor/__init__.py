"""Conjunction analysis of a backdoor with an SAE on the fine-tuned minus base residual (host-free).

Entry point: :func:`analyze_conjunction` with a :class:`ConjunctionConfig`; it returns a :class:`ConjunctionReport`
and writes ``report.json``, ``latents.csv`` and plots. Modules: ``probes`` (prompt sets), ``roles`` (token roles),
``latent_stats`` (streaming accumulators), ``analysis`` (scores, AUROCs, verdict), ``ablation`` (causal check),
``report`` (files), ``pipeline`` (the entry point).
"""

from .config import ConjunctionConfig
from .pipeline import ConjunctionReport, analyze_conjunction
from .probes import FIRE_COMPLETION, TriggerPair, build_probe_set, fires

__all__ = ["ConjunctionConfig", "ConjunctionReport", "FIRE_COMPLETION", "TriggerPair", "analyze_conjunction",
           "build_probe_set", "fires"]
