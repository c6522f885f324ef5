"""Hydra search-path plugin: adds the config folders of every installed diffing-toolkit plugin.

Hydra imports every module under the ``hydra_plugins`` namespace package when it starts; this one reads the
``diffing_toolkit.configs`` entry points (metadata only) and appends ``pkg://<package>`` for each, so
``diffing/method=...``, ``model=...`` and ``organism=...`` files shipped by plugins resolve in the host's
``main.py`` and through the compose API. It also stores the plugin's structured-config schemas
(:mod:`cbd_plugin.host.configstore`), which the method YAML files name in their defaults lists.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from cbd_plugin.host.registry import config_search_paths


class DiffingPluginsSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from cbd_plugin.host.configstore import register  # lazy: imports the config dataclasses' modules

        register()
        for provider, path in config_search_paths():
            search_path.append(provider=provider, path=path)
