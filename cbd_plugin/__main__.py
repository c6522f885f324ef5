"""``python -m cbd_plugin ...`` is ``diffing-toolkit ...``."""

import sys

from cbd_plugin.host.cli import run_host

sys.exit(run_host())
