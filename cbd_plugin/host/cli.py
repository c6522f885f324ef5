"""Console scripts: ``diffing-toolkit`` (the host's ``main.py``) and ``diffing-dashboard`` (its Streamlit app).

Both run the host's own entry files with every plugin active; Hydra arguments pass through unchanged. Before the
host starts (its imports alone take half a minute), ``diffing-toolkit`` checks that the run's models can be
loaded, and ``diffing-dashboard`` points the host's dashboard at the storage the plugin's runs use unless told
otherwise.
"""

from __future__ import annotations

import runpy
import sys
from importlib.resources import files
from importlib.util import find_spec
from pathlib import Path

from cbd_plugin.host.activation import HostNotFoundError, activate, locate_host

# Hydra flags under which main.py runs nothing, or sweeps: the model check is left to the host then.
NOT_ONE_RUN = {
    "--cfg",
    "-c",
    "--info",
    "-i",
    "--help",
    "-h",
    "--hydra-help",
    "--multirun",
    "-m",
    "--version",
    "--shell-completion",
    "-sc",
}
# The dashboard's default infrastructure: the plugin's, whose storage is $CBD_PLUGIN_RUNS (default
# $TMPDIR/cbd_plugin_runs) like every run of the plugin's presets; the host's own default is a cluster path.
DASHBOARD_INFRASTRUCTURE = "local_cpu"


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


def check_run_models(configs_dir: Path, argv: list[str]) -> None:
    """Compose the run's config as main.py will and check that its models can be loaded
    (:func:`cbd_plugin.methods.settings.check_models_available`; raises ``ConfigError`` naming the id and its
    config key). A config Hydra cannot compose is left to main.py, which reports it in its own words."""
    if any(arg.split("=")[0] in NOT_ONE_RUN for arg in argv):
        return
    from hydra import compose, initialize_config_dir
    from omegaconf.errors import OmegaConfBaseException

    from cbd_plugin.methods.settings import check_models_available

    try:
        with initialize_config_dir(str(configs_dir), version_base=None):
            cfg = compose("config", overrides=[arg for arg in argv if not arg.startswith("-")])
    except Exception:
        return
    try:
        check_models_available(cfg)
    except OmegaConfBaseException:  # a value only the host's resolvers can read: the host checks it itself
        return


def run_host(argv: list[str] | None = None) -> int:
    """``diffing-toolkit [hydra overrides...]``: the host's main.py with plugin methods and configs active."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        layout = locate_host()
    except HostNotFoundError as exc:
        return _fail(exc)
    register_search_path_plugin()
    from cbd_plugin.methods.settings import ConfigError

    try:
        check_run_models(layout.configs_dir, argv)
    except ConfigError as exc:
        return _fail(exc)
    activate()
    sys.argv = [str(layout.main_script), *argv]
    try:
        runpy.run_path(str(layout.main_script), run_name="__main__")
    except SystemExit as exc:  # Hydra exits with a code on --help, errors, ...
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def plugin_storage(infrastructure: str = DASHBOARD_INFRASTRUCTURE) -> Path:
    """``storage.base_dir`` of one of the plugin's infrastructure configs, resolved from the environment as the
    run resolved it."""
    from omegaconf import OmegaConf

    config = files("cbd_plugin.method_configs") / "infrastructure" / f"{infrastructure}.yaml"
    return Path(OmegaConf.load(str(config)).storage.base_dir)


def dashboard_arguments(argv: list[str]) -> tuple[list[str], str]:
    """``(arguments after the script for streamlit run, a line saying where the dashboard reads runs)``.

    ``argv`` is ``[streamlit options] [-- dashboard overrides]``. Without an ``infrastructure`` override the
    plugin's is added, so plain ``diffing-dashboard`` finds the runs the plugin's presets wrote."""
    cut = argv.index("--") if "--" in argv else len(argv)
    streamlit_args, overrides = argv[:cut], argv[cut + 1 :]
    if any(o.lstrip("+~").startswith("infrastructure") for o in overrides):
        return argv, "diffing-dashboard: reading the results of the infrastructure given on the command line"
    results = plugin_storage() / "diffing_results"
    note = "" if results.is_dir() else " (nothing there yet)"
    line = (
        f"diffing-dashboard: reading runs under {results}{note}, the plugin's storage ($CBD_PLUGIN_RUNS, "
        f"default $TMPDIR/cbd_plugin_runs); `diffing-dashboard -- infrastructure=<name>` reads another"
    )
    return [*streamlit_args, "--", *overrides, f"infrastructure={DASHBOARD_INFRASTRUCTURE}"], line


def run_dashboard(argv: list[str] | None = None) -> int:
    """``diffing-dashboard [streamlit args] [-- dashboard args]``: the host's dashboard with plugin methods listed,
    reading the plugin's run storage unless an ``infrastructure`` override says otherwise."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        locate_host()
    except HostNotFoundError as exc:
        return _fail(exc)
    from streamlit.web import cli as streamlit_cli

    arguments, where = dashboard_arguments(argv)
    print(where, file=sys.stderr)
    app = find_spec("cbd_plugin.host.dashboard_app").origin  # not imported: it is a Streamlit script
    sys.argv = ["streamlit", "run", app, *arguments]
    return streamlit_cli.main()
