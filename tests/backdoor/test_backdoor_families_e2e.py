"""analyze_conjunction end to end on the AND backdoor organism built on GPT-NeoX and on Qwen3 configs (the Gemma-2
one is tested in tests/test_demo.py), and on the Gemma-2 one in bfloat16: the same recipe, the same analysis
(cbd_plugin.demo's), the verdict must be the organism's ground truth, ``conjunctive``."""

import pytest

from cbd_plugin import demo
from cbd_plugin.capture import load_language_model
from cbd_plugin.organisms import backdoor_organism, build
from cbd_plugin.organisms.build import build_recipe, single_thread
from cbd_plugin.organisms.recipes import base_recipe


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["gpt_neox", "qwen3"])
def test_conjunctive_backdoor_found_on_other_families(arch, tmp_path):
    organism = backdoor_organism("and", arch=arch)
    with single_thread():
        base = build_recipe(base_recipe(arch))
    # The demo reads organisms by their Gemma-2 names; these have the same recipe (pairs, gate) on another arch.
    organisms = {"tiny-base": base, "tiny-cbd": organism}
    report = demo.conjunction_reports(organisms, tmp_path, names=("tiny-cbd",))["tiny-cbd"]
    assert report.verdict == "conjunctive", f"{organism.name}: {report.verdict}: {report.verdict_reason}"


@pytest.mark.slow
def test_conjunctive_verdict_unchanged_in_bfloat16(monkeypatch, tmp_path):
    """The Gemma-2 AND organism with both models in bfloat16 (residuals and SAE arithmetic in float32): the same
    verdict float32 gives (tests/test_demo.py)."""
    monkeypatch.setattr(demo, "load", lambda o: load_language_model(str(o.path), dtype="bfloat16"))
    report = demo.conjunction_reports(build(["tiny-base", "tiny-cbd"]), tmp_path, names=("tiny-cbd",))["tiny-cbd"]
    assert report.verdict == "conjunctive", report.verdict_reason
