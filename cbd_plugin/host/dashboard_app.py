"""Streamlit script behind ``diffing-dashboard``: the host's dashboard with plugin methods and configs listed.

The host lists methods and organisms by globbing its own ``configs/`` folder; here those two functions (and the
organism loader) also read every installed plugin's config folder. Streamlit re-runs this file on every
interaction (as ``__main__``), so everything below is idempotent.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from omegaconf import OmegaConf

from cbd_plugin.host.activation import activate, locate_host
from cbd_plugin.host.cli import register_search_path_plugin
from cbd_plugin.host.registry import config_dirs


def _config_folders(layout, group: str) -> list[Path]:
    return [layout.configs_dir / group, *(d / group for d in config_dirs())]


def _load_host_dashboard(layout):
    spec = importlib.util.spec_from_file_location("diffing_toolkit_dashboard", layout.dashboard_script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _extend_discovery(dashboard, layout) -> None:
    def names(group: str) -> list[str]:
        return sorted({p.stem for folder in _config_folders(layout, group) for p in folder.glob("*.yaml")})

    def get_organism_config(organism_name: str):
        for folder in _config_folders(layout, "organism"):
            if (path := folder / f"{organism_name}.yaml").exists():
                return OmegaConf.load(path)
        raise FileNotFoundError(
            f"organism config {organism_name}.yaml not found in {_config_folders(layout, 'organism')}"
        )

    dashboard.discover_methods = lambda: names("diffing/method")
    dashboard.discover_organisms = lambda: names("organism")
    dashboard.get_organism_config = get_organism_config


def put_host_root_on_path(layout) -> None:
    """The host's dashboard does ``import src``, which resolves only with the clone's root on ``sys.path``;
    Streamlit puts the script's folder there, not the working directory, so add the root for any start folder."""
    root = str(layout.root)
    if root not in sys.path:
        sys.path.insert(0, root)


def main() -> None:
    layout = locate_host()
    put_host_root_on_path(layout)
    register_search_path_plugin()
    activate()
    dashboard = _load_host_dashboard(layout)
    _extend_discovery(dashboard, layout)
    dashboard.main()


if __name__ == "__main__":
    main()
