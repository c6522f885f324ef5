"""cbd-plugin: diffing-toolkit methods for conjunctive backdoors and refusal depth.

Importing this package imports neither the host (``diffing``) nor ``dictionary_learning``: host-dependent code
lives in :mod:`cbd_plugin.host` and :mod:`cbd_plugin.methods` and imports the host lazily.
"""

__version__ = "0.1.0"
