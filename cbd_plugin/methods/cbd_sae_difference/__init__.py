"""The ``cbd_sae_difference`` method: ``method.py`` (the host's method class), ``dashboard.py`` (its Streamlit page)."""

METHOD_FOLDER = "cbd_sae_difference"
"""The method's results folder under the host's ``results_dir``."""
