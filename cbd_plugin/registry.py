"""Entry-point registry for diffing methods and their Hydra config folders.

Two entry-point groups, readable by any host or plugin without importing a method module:

* ``diffing_toolkit.methods``: ``<method name> = <module>:<DiffingMethod subclass>``.
  The method name is what users pass as ``diffing/method=<name>``.
* ``diffing_toolkit.configs``: ``<plugin name> = <package>``, a package whose folder holds Hydra config
  groups in the host's layout (``diffing/method/*.yaml``, ``model/*.yaml``, ``organism/*.yaml``).

Listing reads only distribution metadata; a method module is imported when its class is loaded.
"""

from __future__ import annotations

import importlib.metadata as md
from dataclasses import dataclass
from functools import cached_property
from importlib.util import find_spec
from pathlib import Path

METHODS_GROUP = "diffing_toolkit.methods"
CONFIGS_GROUP = "diffing_toolkit.configs"

# The host's own methods (its get_method_class at e0b84a5); a newer host's method configs are added at runtime.
HOST_BUILTIN_METHODS = frozenset({
    "kl", "activation_analysis", "crosscoder", "sae_difference", "pca",
    "activation_difference_lens", "activation_oracle", "diff_mining", "weight_amplification",
})


class PluginError(RuntimeError):
    """Base class of every registry error; each message names the plugin involved."""


class PluginLoadError(PluginError):
    """An entry point could not be imported or does not point at a usable class."""


class DuplicateMethodError(PluginError):
    """Two distributions register the same method name."""


class ShadowedMethodError(PluginError):
    """A plugin registers a name that the host already uses for a built-in method."""


class UnknownMethodError(PluginError, LookupError):
    """No installed plugin registers the requested method name."""


@dataclass(frozen=True)
class PluginEntry:
    """One entry point of a registry group, with the distribution that declares it."""

    name: str
    target: str
    distribution: str
    entry_point: md.EntryPoint

    def describe(self) -> str:
        return f"entry point {self.name!r} -> {self.target!r} (group {self.entry_point.group!r}, distribution {self.distribution!r})"

    def load(self):
        try:
            return self.entry_point.load()
        except Exception as exc:  # any import-time failure of a plugin must name the plugin
            raise PluginLoadError(f"cannot load {self.describe()}: {type(exc).__name__}: {exc}") from exc


def _distribution_label(ep: md.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.metadata['Name']} {dist.version}" if dist is not None else "<unknown distribution>"


def _entries(group: str) -> list[PluginEntry]:
    # The same distribution can be visible twice (e.g. an editable install shadowing a wheel): keep one.
    seen, entries = set(), []
    for ep in md.entry_points(group=group):
        key = (ep.name, ep.value, getattr(ep.dist, "name", None))
        if key not in seen:
            seen.add(key)
            entries.append(PluginEntry(ep.name, ep.value, _distribution_label(ep), ep))
    return entries


def host_builtin_methods() -> frozenset[str]:
    """Built-in method names of the host: the known list plus the host's own method configs, if installed."""
    spec = find_spec("diffing")
    if spec is None or spec.origin is None:
        return HOST_BUILTIN_METHODS
    method_dir = Path(spec.origin).resolve().parents[2] / "configs" / "diffing" / "method"
    return HOST_BUILTIN_METHODS | {p.stem for p in method_dir.glob("*.yaml")}


class MethodRegistry:
    """The methods that installed distributions register, validated once per instance."""

    def __init__(self, builtin: frozenset[str] | None = None):
        self._builtin = host_builtin_methods() if builtin is None else builtin

    @cached_property
    def entries(self) -> dict[str, PluginEntry]:
        by_name: dict[str, PluginEntry] = {}
        for entry in _entries(METHODS_GROUP):
            if entry.name in self._builtin:
                raise ShadowedMethodError(
                    f"{entry.describe()} shadows the host's built-in method {entry.name!r}; rename the plugin method"
                )
            if entry.name in by_name:
                raise DuplicateMethodError(
                    f"method {entry.name!r} is registered twice: {by_name[entry.name].describe()} and {entry.describe()}"
                )
            by_name[entry.name] = entry
        return by_name

    def names(self) -> list[str]:
        return sorted(self.entries)

    def load(self, name: str) -> type:
        if name not in self.entries:
            raise UnknownMethodError(
                f"no plugin registers diffing method {name!r} (group {METHODS_GROUP!r}); installed: {self.names()}"
            )
        entry = self.entries[name]
        cls = entry.load()
        if not isinstance(cls, type):
            raise PluginLoadError(f"{entry.describe()} points at {cls!r}, not a class")
        return cls


def config_search_paths() -> list[tuple[str, str]]:
    """``(provider, "pkg://<package>")`` for every installed plugin's config package, in a stable order."""
    return [(f"diffing-plugin:{e.name}", f"pkg://{e.target}") for e in sorted(_entries(CONFIGS_GROUP), key=lambda e: e.name)]


def config_dirs() -> list[Path]:
    """Filesystem folders of the installed config packages (imports each package, not its methods)."""
    dirs = []
    for entry in _entries(CONFIGS_GROUP):
        spec = find_spec(entry.target)
        if spec is None or not spec.submodule_search_locations:
            raise PluginLoadError(f"{entry.describe()} is not an importable package")
        dirs.extend(Path(p) for p in spec.submodule_search_locations)
    return dirs
