"""The two floors of DESIGN.md, checked: the host-free core never imports the host glue.

Core = every module of ``cbd_plugin`` outside ``cbd_plugin.host`` and ``cbd_plugin.methods``. It may not import
those two packages anywhere (not even lazily), nor ``diffing`` / ``dictionary_learning`` at import time (module
level). Checked twice: statically over every import statement, and by importing every core module in a fresh
interpreter and looking at ``sys.modules``.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import cbd_plugin

PACKAGE = Path(cbd_plugin.__file__).resolve().parent
GLUE = ("cbd_plugin.host", "cbd_plugin.methods")
HOST_PACKAGES = ("diffing", "dictionary_learning")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def core_modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        if name != "cbd_plugin.__main__" and not name.startswith(GLUE) and "method_configs" not in name:
            out[name] = path
    return out


def imports(path: Path, name: str) -> list[tuple[str, int, bool]]:
    """(imported module, line, at module level) for every import statement of the file."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found += [(f"{base}.{alias.name}", node.lineno, id(node) in top_level) for alias in node.names]
    return found


def under(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_the_core_is_most_of_the_package():
    assert len(core_modules()) >= 60  # a rule over an empty set would pass


def test_no_core_module_imports_the_glue_or_the_host_statically():
    offences = []
    for name, path in core_modules().items():
        for module, line, at_top in imports(path, name):
            if under(module, GLUE) or (at_top and under(module, HOST_PACKAGES)):
                offences.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports {module}")
    assert not offences, "\n".join(offences)


def test_importing_every_core_module_loads_neither_the_glue_nor_the_host():
    code = (
        "import importlib, json, sys\n"
        f"for name in {sorted(core_modules())!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {HOST_PACKAGES!r} "
        f"or m.startswith({GLUE!r}))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_the_checker_sees_an_offence(tmp_path):
    """The static check is no rule that cannot fail: planted imports of the glue and the host are found."""
    path = tmp_path / "planted.py"
    path.write_text("import diffing.utils\ndef f():\n    from ..host import cli\n")
    found = imports(path, "cbd_plugin.refusal.planted")
    assert ("cbd_plugin.host.cli", 3, False) in found and ("diffing.utils", 1, True) in found
