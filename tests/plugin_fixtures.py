"""Throwaway distributions on sys.path: real ``*.dist-info`` folders with their own ``entry_points.txt``."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path


def make_distribution(root: Path, dist: str, methods: dict[str, str], modules: dict[str, str] | None = None) -> None:
    """Write ``<dist>-1.0.dist-info`` declaring ``methods`` (name -> "module:attr") and the given module sources."""
    info = root / f"{dist.replace('-', '_')}-1.0.dist-info"  # wheel naming: the stem is <name>-<version>
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = {target}" for name, target in methods.items())
    (info / "entry_points.txt").write_text(f"[diffing_toolkit.methods]\n{lines}\n")
    for module, source in (modules or {}).items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))


def activate_path(monkeypatch, root: Path) -> None:
    monkeypatch.syspath_prepend(str(root))
    for name in [m for m in sys.modules if m.startswith("thirdparty_")]:
        monkeypatch.delitem(sys.modules, name)
