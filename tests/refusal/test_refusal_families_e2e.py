"""audit_refusal_depth end to end on the shallow refusal organism built on GPT-NeoX and on Qwen3 configs (the
Gemma-2 one is tested in tests/test_demo.py), and on the Gemma-2 one loaded in bfloat16 and offloaded to CPU and disk
by device_map="auto": the verdict must be the organism's ground truth, ``shallow``, as float32 gives (Qwen3: or an
inconclusive that names the instrument, see its test)."""

import pytest

from cbd_plugin import demo
from cbd_plugin.capture import ModelSettings, load_language_model, model_record
from cbd_plugin.organisms import refusal_organism
from cbd_plugin.organisms.build import build_recipe, single_thread
from cbd_plugin.organisms.recipes import base_recipe


def organism_and_base(arch: str):
    organism = refusal_organism("shallow", arch=arch)
    assert organism.behaviour["refusal"]["ground_truth"] == "shallow"
    with single_thread():
        return build_recipe(base_recipe(arch)), organism


def shallow_verdict(base, organism, out) -> tuple[str, str]:
    report = demo.refusal_reports(
        {"tiny-base": base, "tiny-refusal-shallow": organism}, out, names=("tiny-refusal-shallow",)
    )["tiny-refusal-shallow"]
    return report.verdict.name, report.verdict.reason


@pytest.mark.slow
def test_shallow_refusal_found_on_gpt_neox(tmp_path):
    name, reason = shallow_verdict(*organism_and_base("gpt_neox"), tmp_path)
    assert name == "shallow", f"tiny-refusal-shallow-gpt_neox: {name}: {reason}"


@pytest.mark.slow
def test_shallow_refusal_on_qwen3_is_never_a_wrong_verdict(tmp_path):
    """On the Qwen3 organism the demo's tiny SAE does not separate the tiers on the base (the audit's instrument
    check), so the audit is inconclusive and says why; it must never be a confident verdict other than ``shallow``.
    (Its base's residual stream has larger outlier tokens and dimensions than the Gemma-2 and GPT-NeoX bases'; a
    linear probe still reads the tier there, as the organism's contract checks.)"""
    name, reason = shallow_verdict(*organism_and_base("qwen3"), tmp_path)
    assert name == "shallow" or (name == "inconclusive" and "instrument_separates" in reason), f"{name}: {reason}"


def offloaded(tmp_path):
    """float32, device_map="auto" with a CPU budget of half the weights: the rest goes to disk."""

    def load(organism):
        budget = (organism.path / "model.safetensors").stat().st_size // 2
        model = load_language_model(
            str(organism.path),
            ModelSettings(device_map="auto", max_memory={"cpu": budget}, offload_folder=str(tmp_path / organism.name)),
        )
        assert "disk" in model_record(model)["device_map"].values()
        return model

    return load


@pytest.mark.slow
@pytest.mark.parametrize("how", ["bfloat16", "offloaded"])
def test_shallow_verdict_unchanged_in_bfloat16_and_offloaded(how, monkeypatch, tmp_path):
    base, organism = build_recipe(base_recipe()), refusal_organism("shallow")
    if how == "bfloat16":
        monkeypatch.setattr(demo, "load", lambda o: load_language_model(str(o.path), ModelSettings(dtype="bfloat16")))
    else:
        monkeypatch.setattr(demo, "load", offloaded(tmp_path))
    name, reason = shallow_verdict(base, organism, tmp_path / "audit")
    assert name == "shallow", f"{how}: {name}: {reason}"
