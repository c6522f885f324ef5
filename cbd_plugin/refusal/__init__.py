"""Refusal-depth audit: does a model that refuses hazard prompts still represent the hazard inside?

Entry point: :func:`audit_refusal_depth` (base vs fine-tuned, one SAE, one layer) with :class:`AuditConfig`;
it returns an :class:`AuditReport` and writes report.json, samples.csv and plots. Modules: ``prompts`` (tiered
prompt sets, format check), ``classifier`` (surface labels), ``completions``, ``features`` (positions, pooling),
``signal`` (hazard latents, signal, D, permutation null, probe), ``depth``, ``diff`` (changes, verdict),
``report``.
"""

from .audit import AuditReport, ModelAudit, audit_refusal_depth
from .classifier import classify
from .config import AuditConfig
from .prompts import PromptSource

__all__ = ["AuditConfig", "AuditReport", "ModelAudit", "PromptSource", "audit_refusal_depth", "classify"]
