"""Activation of entry-point methods inside the diffing-toolkit host, without editing the host.

The host resolves a method name with the if/elif chain ``diffing.pipeline.diffing_pipeline.get_method_class``,
and several modules bind that function at import time (``from .diffing_pipeline import get_method_class``).
:func:`activate` wraps it so that plugin names resolve through :class:`~cbd_plugin.host.registry.MethodRegistry`,
and rebinds the wrapper in every loaded module that holds the original; modules imported later pick up the
wrapper from ``diffing_pipeline`` itself. A host carrying the upstream patch (``upstream/``) already looks up
entry points: then nothing is changed.

Every ``diffing`` import here is lazy: importing the host takes 10+ s and the host is optional.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from cbd_plugin.host.registry import METHODS_GROUP, MethodRegistry

HOST_INSTALL_HINT = (
    "install the host from a git clone, editable: `git clone https://github.com/science-of-finetuning/diffing-toolkit "
    "&& pip install -e diffing-toolkit` (its dictionary_learning fork: science-of-finetuning/crosscoder_learning); "
    "see README.md, section 'Using it with the host'"
)


class HostNotFoundError(RuntimeError):
    """The host is not importable, or is installed without its configs (a non-editable install)."""


@dataclass(frozen=True)
class HostLayout:
    """Where an editable host clone keeps what a wheel of it lacks."""

    root: Path

    @property
    def configs_dir(self) -> Path:
        return self.root / "configs"

    @property
    def main_script(self) -> Path:
        return self.root / "main.py"

    @property
    def dashboard_script(self) -> Path:
        return self.root / "dashboard.py"


def locate_host() -> HostLayout:
    """Find the host clone without importing it (``diffing/__init__`` imports every method)."""
    try:
        spec = find_spec("diffing")
    except ImportError:  # a broken or blocked install counts as absent
        spec = None
    if spec is None or spec.origin is None:
        raise HostNotFoundError(f"the diffing-toolkit host (package `diffing`) is not installed: {HOST_INSTALL_HINT}")
    # Mirrors the host's own PROJECT_ROOT: src/diffing/__init__.py -> clone root.
    layout = HostLayout(Path(spec.origin).resolve().parents[2])
    missing = [p for p in (layout.configs_dir / "config.yaml", layout.main_script) if not p.exists()]
    if missing:
        raise HostNotFoundError(
            f"the diffing-toolkit host at {Path(spec.origin).parent} has no {', '.join(map(str, missing))}: "
            f"it looks like a non-editable install, which ships neither configs nor main.py; {HOST_INSTALL_HINT}"
        )
    return layout


def host_has_entry_point_lookup(diffing_pipeline_module) -> bool:
    """True for a host that carries the upstream patch (it declares the group it reads)."""
    return getattr(diffing_pipeline_module, "METHOD_ENTRY_POINT_GROUP", None) == METHODS_GROUP


def make_get_method_class(host_get_method_class, registry: MethodRegistry):
    """The host's lookup, extended: plugin names load from entry points, every other name goes to the host.

    Built-in names always go to the host (a plugin shadowing one is ignored by the registry); a plugin name
    registered twice raises its :class:`~cbd_plugin.host.registry.DuplicateMethodError`, for that name only.
    """

    def get_method_class(method_name: str):
        if method_name in registry.builtin:
            return host_get_method_class(method_name)
        if method_name in registry.entries or registry.conflict(method_name) is not None:
            return registry.load(method_name)
        return host_get_method_class(method_name)

    get_method_class.__wrapped__ = host_get_method_class
    get_method_class.__doc__ = host_get_method_class.__doc__
    return get_method_class


def activate(registry: MethodRegistry | None = None) -> bool:
    """Make plugin methods resolvable wherever the host calls ``get_method_class``.

    Idempotent. Returns False when nothing had to change (already active, or the host has the upstream patch).
    """
    import diffing.pipeline.diffing_pipeline as diffing_pipeline

    if host_has_entry_point_lookup(diffing_pipeline) or hasattr(diffing_pipeline.get_method_class, "__wrapped__"):
        return False
    original = diffing_pipeline.get_method_class
    patched = make_get_method_class(original, registry or MethodRegistry())
    for module in list(sys.modules.values()):
        # vars(), not getattr(): a module-level __getattr__ must not run here.
        if module is not None and vars(module).get("get_method_class") is original:
            module.get_method_class = patched
    return True
