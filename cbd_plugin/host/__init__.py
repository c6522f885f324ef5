"""Host glue: everything that touches diffing-toolkit (activation, entry-point registry, config store, CLI,
dashboard launcher). The host-free core (``capture``, ``sae``, ``backdoor``, ``refusal``, ``organisms``) never
imports this package; ``tests/host/test_layers.py`` checks it. ``diffing`` is imported lazily, inside functions."""
