"""Refusal-depth audit: does a model that refuses hazard prompts still represent the hazard inside?

Entry point: :func:`audit_refusal_depth` (base vs fine-tuned, one SAE, one layer) with :class:`AuditConfig`;
it returns an :class:`AuditReport` and writes report.json, samples.csv, depth_profile.csv and plots. Modules:
``prompts`` (tiered prompt sets, format check), ``classifier`` (surface labels), ``completions``, ``features``
(positions, pooling, one capture per model), ``signal`` (hazard latents, signal, D, permutation nulls),
``depth``, ``profile`` (probes per layer and position), ``diff`` (paired changes), ``instrument`` (the SAE's
fidelity and the random-instrument null), ``topic`` (the hazard topic within the hazard tier), ``verdict`` (the
rule and its checks), ``report``.
"""

from .audit import AuditReport, ModelAudit, ModelRun, analyse_runs, audit_refusal_depth, run_model
from .classifier import classify
from .config import AuditConfig
from .prompts import PromptSource
from .verdict import VERDICTS, Check, Verdict

__all__ = [
    "VERDICTS",
    "AuditConfig",
    "AuditReport",
    "Check",
    "ModelAudit",
    "ModelRun",
    "PromptSource",
    "Verdict",
    "analyse_runs",
    "audit_refusal_depth",
    "classify",
    "run_model",
]
