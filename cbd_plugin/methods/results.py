"""Where the plugin's methods keep results, in the host's layout (no host import).

``{diffing.results_base_dir}/{model}/{organism}/{method folder}/layer_{L}/{run name}/...``: the host's
dashboard finds runs through ``has_results``, which returns ``{model: {organism: path}}``.
"""

from __future__ import annotations

from pathlib import Path


def scan_results(results_base_dir: str | Path, method_folder: str) -> dict[str, dict[str, str]]:
    """``{model: {organism: method folder}}`` for every organism folder holding a non-empty method folder."""
    results: dict[str, dict[str, str]] = {}
    base = Path(results_base_dir)
    if not base.is_dir():
        return results
    for method_dir in sorted(base.glob(f"*/*/{method_folder}")):
        if method_dir.is_dir() and any(method_dir.iterdir()):
            model, organism = method_dir.parent.parent.name, method_dir.parent.name
            results.setdefault(model, {})[organism] = str(method_dir)
    return results


def layer_runs(method_dir: str | Path) -> list[tuple[int, Path]]:
    """``(layer, run folder)`` pairs under ``layer_{L}/{run}``, sorted by layer then name."""
    runs = []
    for layer_dir in Path(method_dir).glob("layer_*"):
        suffix = layer_dir.name.removeprefix("layer_")
        if suffix.isdigit():
            runs.extend((int(suffix), run) for run in sorted(layer_dir.iterdir()) if run.is_dir())
    return sorted(runs)
