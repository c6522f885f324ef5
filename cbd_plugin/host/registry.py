"""Entry-point registry for diffing methods and their Hydra config folders.

Two entry-point groups, readable by any host or plugin without importing a method module:

* ``diffing_toolkit.methods``: ``<method name> = <module>:<DiffingMethod subclass>``.
  The method name is what users pass as ``diffing/method=<name>``.
* ``diffing_toolkit.configs``: ``<plugin name> = <package>``, a package whose folder holds Hydra config
  groups in the host's layout (``diffing/method/*.yaml``, ``model/*.yaml``, ``organism/*.yaml``).

Listing reads only distribution metadata; a method module is imported when its class is loaded.

Isolation: a problem with one plugin fails only the names it concerns. A name registered by two distributions
raises :class:`DuplicateMethodError` when that name is looked up; a name shadowing a host built-in is ignored
(the built-in keeps resolving) with a :class:`PluginWarning`; a distribution whose entry-point metadata cannot be
read is skipped with a warning naming it; an entry point that fails to import fails only its own name.
"""

from __future__ import annotations

import importlib.metadata as md
import warnings
from dataclasses import dataclass
from functools import cached_property
from importlib.util import find_spec
from pathlib import Path

METHODS_GROUP = "diffing_toolkit.methods"
CONFIGS_GROUP = "diffing_toolkit.configs"

# The host's own methods (its get_method_class at e0b84a5); a newer host's method configs are added at runtime.
HOST_BUILTIN_METHODS = frozenset(
    {
        "kl",
        "activation_analysis",
        "crosscoder",
        "sae_difference",
        "pca",
        "activation_difference_lens",
        "activation_oracle",
        "diff_mining",
        "weight_amplification",
    }
)


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


class PluginWarning(UserWarning):
    """A plugin entry was ignored (it shadows a built-in, or its metadata is unreadable); the rest still work."""


@dataclass(frozen=True)
class PluginEntry:
    """One entry point of a registry group, with the distribution that declares it."""

    name: str
    target: str
    distribution: str
    entry_point: md.EntryPoint

    def describe(self) -> str:
        group, dist = self.entry_point.group, self.distribution
        return f"entry point {self.name!r} -> {self.target!r} (group {group!r}, distribution {dist!r})"

    def load(self):
        try:
            return self.entry_point.load()
        except Exception as exc:  # any import-time failure of a plugin must name the plugin
            raise PluginLoadError(f"cannot load {self.describe()}: {type(exc).__name__}: {exc}") from exc


def _distribution_label(dist: md.Distribution) -> str:
    return f"{dist.metadata['Name']} {dist.version}"


def _entries(group: str) -> list[PluginEntry]:
    """Every entry point of ``group``, read distribution by distribution so that one unreadable distribution is
    skipped (with a warning naming it) instead of hiding all the others."""
    seen, entries = set(), []
    for dist in md.distributions():
        try:
            label = _distribution_label(dist)
            selected = list(dist.entry_points.select(group=group))
        except Exception as exc:  # malformed METADATA / entry_points.txt of a third-party distribution
            where = getattr(dist, "_path", "<unknown location>")
            warnings.warn(
                f"ignoring the entry points of the distribution at {where}: {type(exc).__name__}: {exc}",
                PluginWarning,
                stacklevel=3,
            )
            continue
        for ep in selected:
            # The same distribution can be visible twice (e.g. an editable install shadowing a wheel): keep one.
            key = (ep.name, ep.value, label)
            if key not in seen:
                seen.add(key)
                entries.append(PluginEntry(ep.name, ep.value, label, ep))
    return entries


def host_builtin_methods() -> frozenset[str]:
    """Built-in method names of the host: the known list plus the host's own method configs, if installed."""
    try:
        spec = find_spec("diffing")
    except ImportError:  # a broken or blocked host install counts as absent
        spec = None
    if spec is None or spec.origin is None:
        return HOST_BUILTIN_METHODS
    method_dir = Path(spec.origin).resolve().parents[2] / "configs" / "diffing" / "method"
    return HOST_BUILTIN_METHODS | {p.stem for p in method_dir.glob("*.yaml")}


@dataclass(frozen=True)
class _Scan:
    """One reading of the methods group: usable entries, and the errors of the names that have a conflict."""

    usable: dict[str, PluginEntry]
    conflicts: dict[str, PluginError]


class MethodRegistry:
    """The methods that installed distributions register, validated once per instance."""

    def __init__(self, builtin: frozenset[str] | None = None):
        self.builtin = host_builtin_methods() if builtin is None else builtin

    @cached_property
    def _scan(self) -> _Scan:
        by_name: dict[str, list[PluginEntry]] = {}
        for entry in _entries(METHODS_GROUP):
            by_name.setdefault(entry.name, []).append(entry)
        usable, conflicts = {}, {}
        for name, entries in by_name.items():
            if name in self.builtin:
                error = ShadowedMethodError(
                    f"{'; '.join(e.describe() for e in entries)} shadows the host's built-in method {name!r}; "
                    "rename the plugin method (the built-in is used)"
                )
                warnings.warn(str(error), PluginWarning, stacklevel=4)
                conflicts[name] = error
            elif len(entries) > 1:
                conflicts[name] = DuplicateMethodError(
                    f"method {name!r} is registered twice: {' and '.join(e.describe() for e in entries)}; "
                    "uninstall one of the distributions"
                )
            else:
                usable[name] = entries[0]
        return _Scan(usable, conflicts)

    @property
    def entries(self) -> dict[str, PluginEntry]:
        """Plugin methods that resolve: neither registered twice nor shadowing a built-in."""
        return self._scan.usable

    def conflict(self, name: str) -> PluginError | None:
        """The error of a plugin name that cannot resolve (registered twice, or shadowing a built-in), else None."""
        return self._scan.conflicts.get(name)

    def names(self) -> list[str]:
        return sorted(self.entries)

    def load(self, name: str) -> type:
        if (error := self.conflict(name)) is not None:
            raise error
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
    return [
        (f"diffing-plugin:{e.name}", f"pkg://{e.target}") for e in sorted(_entries(CONFIGS_GROUP), key=lambda e: e.name)
    ]


def config_dirs() -> list[Path]:
    """Filesystem folders of the installed config packages (imports each package, not its methods).

    A config package that cannot be found is skipped with a :class:`PluginWarning` naming its entry point, so
    one broken plugin does not hide the others' configs.
    """
    dirs = []
    for entry in _entries(CONFIGS_GROUP):
        try:
            spec = find_spec(entry.target)
        except Exception as exc:  # a parent package that fails to import
            spec, reason = None, f"{type(exc).__name__}: {exc}"
        else:
            reason = "not an importable package"
        if spec is None or not spec.submodule_search_locations:
            warnings.warn(f"ignoring {entry.describe()}: {reason}", PluginWarning, stacklevel=2)
            continue
        dirs.extend(Path(p) for p in spec.submodule_search_locations)
    return dirs
