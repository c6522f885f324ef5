"""Host method classes. Importing any module below imports the host (``diffing``): load them through
:mod:`cbd_plugin.host.registry`, never at package import time."""
