"""The project's shared vocabulary, spelt once: prompt tiers, held-out split names and SAE file names.

Every module that names a tier, a split or an SAE file imports it from here, so a report, a prompt file and a
loader can never disagree on a spelling.
"""

TIERS = ("benign", "dual_use", "hazard")
"""Refusal prompt tiers, in plotting order: benign biology, dual-use, hazard-adjacent."""

SELECT, EVAL = "select", "eval"
SPLITS = (SELECT, EVAL)
"""Held-out splits: statistics and latents are chosen on ``select`` and measured on ``eval``, never the reverse."""

PLUGIN_CONFIG, PLUGIN_WEIGHTS = "config.json", "model.safetensors"
"""The plugin's (and the host fork's) SAE folder: ``config.json`` + ``model.safetensors``."""

SAELENS_CONFIG, SAELENS_WEIGHTS = "cfg.json", "sae_weights.safetensors"
"""SAELens's SAE folder."""

SPARSIFY_WEIGHTS = "sae.safetensors"
"""EleutherAI sparsify's weights file (beside a ``cfg.json``)."""
