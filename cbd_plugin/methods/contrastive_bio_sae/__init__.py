"""The ``contrastive_bio_sae`` method: ``method.py`` (the host's method class), ``dashboard.py`` (its page)."""

METHOD_FOLDER = "contrastive_bio_sae"
"""The method's results folder under the host's ``results_dir``."""
