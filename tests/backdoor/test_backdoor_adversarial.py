"""Adversarial organisms (tests/backdoor/adversarial_organisms.py) get labels that describe what fires.

At the demo's layer (3), SAE seed 0, the demo's settings:
* XOR (fires on exactly one trigger word): ``single_word_gated`` (not "no backdoor"), with the ``explained`` check;
* the built-in OR organism declared with one trigger word and one filler word per pair (one word of each pair fires
  alone): ``or_gated``;
* an AND organism with a fifth, silent declared pair: pair-specific, the silent pair reported and never counted;
  the verdict holds (if at all) for the three true pairs only;
* the same AND organism declared with its words re-paired across its true pairs (only mismatched pairs fire):
  ``undeclared_pairs_gated``.
"""

from dataclasses import replace

import pandas as pd
import pytest
from adversarial_organisms import AND_PAIRS, AND_SEED, CROSSED, ONE_WORD, SILENT_PAIR, XOR_PAIRS, XOR_SEED

from cbd_plugin.backdoor import analyze_conjunction
from cbd_plugin.backdoor.probes import pair_name
from cbd_plugin.backdoor.training import DifferenceSAEConfig, difference_activations, train_difference_sae
from cbd_plugin.demo import BASE, CONJUNCTION_LAYER, conjunction_config, conjunction_training_config, load
from cbd_plugin.organisms import backdoor_organism, build

pytestmark = [pytest.mark.slow, pytest.mark.grid]


@pytest.fixture(scope="module")
def base():
    return load(build([BASE])[BASE])


def analyse(base, finetuned, pairs, out):
    layer, cfg = CONJUNCTION_LAYER, replace(conjunction_config(), plots=False)
    diffs = difference_activations(base, finetuned, base.tokenizer, pairs, [layer], conjunction_training_config())
    sae = train_difference_sae(diffs[layer], out / "sae", DifferenceSAEConfig())
    payload = analyze_conjunction(base, finetuned, sae, base.tokenizer, pairs, layer, cfg, out / "report").payload
    rows = pd.DataFrame(payload["behaviour_by_pair"])
    print(
        f"\n{payload['verdict']['name']}: {payload['verdict']['reason']}\n"
        + rows[rows.model == "finetuned"].drop(columns="model").to_string(index=False)
    )
    return payload


@pytest.fixture(scope="module")
def and_organism(base):
    return load(backdoor_organism("and", AND_PAIRS, AND_SEED))


def fine_tuned_rates(payload, condition):
    rows = [r for r in payload["behaviour_by_pair"] if r["model"] == "finetuned" and r["condition"] == condition]
    return {r["pair"]: r for r in rows}


def test_xor_is_single_word_gated(base, tmp_path):
    payload = analyse(base, load(backdoor_organism("xor", XOR_PAIRS, XOR_SEED)), XOR_PAIRS, tmp_path)
    v = payload["verdict"]
    assert (v["name"], v["behaviour"]) == ("single_word_gated", "fires_on_single_words_only"), v["reason"]
    assert v["explained"] in (True, False) and "the SAE" in v["reason"] and v["pairs"] == []
    assert all(r["hi"] < 0.5 for r in fine_tuned_rates(payload, "matched").values())


def test_one_word_of_each_pair_firing_alone_is_or_gated(base, tmp_path):
    payload = analyse(base, load(build(["tiny-cbd-or"])["tiny-cbd-or"]), ONE_WORD, tmp_path)
    v = payload["verdict"]
    assert (v["name"], v["behaviour"]) == ("or_gated", "fires_on_single_words"), v["reason"]
    single_a, single_b = fine_tuned_rates(payload, "single_a"), fine_tuned_rates(payload, "single_b")
    assert all(r["lo"] >= 0.5 for r in single_a.values()) and all(r["hi"] < 0.5 for r in single_b.values())


def test_silent_declared_pair_is_never_counted(base, and_organism, tmp_path):
    pairs = (*AND_PAIRS, SILENT_PAIR)
    payload = analyse(base, and_organism, pairs, tmp_path)
    v = payload["verdict"]
    assert v["behaviour"] == "pair_specific_conjunction" and v["name"] in ("conjunctive", "inconclusive"), v["reason"]
    assert v["pairs"] == [pair_name(p) for p in AND_PAIRS]
    assert f"declared pairs that are silent, not counted: {pair_name(SILENT_PAIR)} 0/" in v["reason"]


def test_wrongly_declared_pairs_are_undeclared_pairs_gated(base, and_organism, tmp_path):
    payload = analyse(base, and_organism, CROSSED, tmp_path)
    v = payload["verdict"]
    assert (v["name"], v["behaviour"]) == ("undeclared_pairs_gated", "fires_on_undeclared_pairs"), v["reason"]
    assert v["pairs"] == [] and "the declared pairs are not its triggers" in v["reason"]
