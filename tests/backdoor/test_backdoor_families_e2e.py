"""analyze_conjunction end to end on the AND backdoor organism built on GPT-NeoX and on Qwen3 configs (the Gemma-2
one is tested in tests/test_demo.py): the same recipe, the same analysis (cbd_plugin.demo's), the verdict must be
the organism's ground truth, ``conjunctive``."""

import pytest

from cbd_plugin.demo import conjunction_reports
from cbd_plugin.organisms import backdoor_organism
from cbd_plugin.organisms.build import build_recipe, single_thread
from cbd_plugin.organisms.recipes import base_recipe


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["gpt_neox", "qwen3"])
def test_conjunctive_backdoor_found_on_other_families(arch, tmp_path):
    organism = backdoor_organism("and", arch=arch)
    with single_thread():
        base = build_recipe(base_recipe(arch))
    # The demo reads organisms by their Gemma-2 names; these have the same recipe (pairs, gate) on another arch.
    report = conjunction_reports({"tiny-base": base, "tiny-cbd": organism}, tmp_path, names=("tiny-cbd",))["tiny-cbd"]
    assert report.verdict == "conjunctive", f"{organism.name}: {report.verdict}: {report.verdict_reason}"
