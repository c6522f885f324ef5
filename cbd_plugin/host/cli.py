"""Console scripts: ``diffing-toolkit`` (the host's ``main.py``) and ``diffing-dashboard`` (its Streamlit app).

Both run the host's own entry files with every plugin active; Hydra arguments pass through unchanged.
"""

from __future__ import annotations

import runpy
import sys
from importlib.util import find_spec

from cbd_plugin.host.activation import HostNotFoundError, activate, locate_host


def _fail(exc: Exception) -> int:
    print(f"diffing-toolkit: {exc}", file=sys.stderr)
    return 2


def plugin_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_search_path_plugin() -> None:
    """Register our Hydra search-path plugin explicitly.

    Hydra finds plugins by scanning the ``hydra_plugins`` namespace package, which setuptools' default editable
    install hides; registering the class directly makes the configs visible under every install mode.
    """
    from hydra.core.plugins import Plugins
    from hydra.plugins.search_path_plugin import SearchPathPlugin

    from hydra_plugins.cbd_plugin_searchpath import DiffingPluginsSearchPathPlugin

    plugins = Plugins.instance()
    # By name: Hydra's scan loads plugin modules itself, so its class object may not be the one imported here.
    if plugin_name(DiffingPluginsSearchPathPlugin) not in map(plugin_name, plugins.discover(SearchPathPlugin)):
        plugins.register(DiffingPluginsSearchPathPlugin)


def run_host(argv: list[str] | None = None) -> int:
    """``diffing-toolkit [hydra overrides...]``: the host's main.py with plugin methods and configs active."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        layout = locate_host()
    except HostNotFoundError as exc:
        return _fail(exc)
    register_search_path_plugin()
    activate()
    sys.argv = [str(layout.main_script), *argv]
    try:
        runpy.run_path(str(layout.main_script), run_name="__main__")
    except SystemExit as exc:  # Hydra exits with a code on --help, errors, ...
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def run_dashboard(argv: list[str] | None = None) -> int:
    """``diffing-dashboard [streamlit args] [-- dashboard args]``: the host's dashboard with plugin methods listed."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        locate_host()
    except HostNotFoundError as exc:
        return _fail(exc)
    from streamlit.web import cli as streamlit_cli

    app = find_spec("cbd_plugin.host.dashboard_app").origin  # not imported: it is a Streamlit script
    sys.argv = ["streamlit", "run", app, *argv]
    return streamlit_cli.main()
