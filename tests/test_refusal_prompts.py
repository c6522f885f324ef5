"""Prompt sets: loading, tier/split validation, seeded stratified split, tier-format confound check."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from cbd_plugin.refusal.prompts import (FormatConfoundError, PromptSource, check_format, load_prompts,
                                        validate_prompts)


def matched_set(n=30, seed=0):
    """Tiers with the same template and length distribution: only the topic word differs."""
    rng = np.random.default_rng(seed)
    topic = {"benign": "garden", "dual_use": "culture", "hazard": "toxin"}
    rows = []
    for tier, word in topic.items():
        for i in range(n):
            filler = " ".join(["please"] * int(rng.integers(2, 12)))
            rows.append({"id": f"{tier}{i}", "text": f"Tell me about the {word} {filler}.", "tier": tier,
                         "split": "select" if i % 2 else "eval"})
    return pd.DataFrame(rows)


def test_jsonl_source_with_column_and_tier_mapping(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [{"prompt": f"q{i}", "kind": k} for i, k in enumerate(["forget", "retain", "mixed"] * 4)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    frame = load_prompts(PromptSource(path=str(path), columns={"text": "prompt", "tier": "kind"},
                                      tier_map={"forget": "hazard", "retain": "benign", "mixed": "dual_use"}))
    assert list(frame.columns) == ["id", "text", "tier"]
    frame, notes = validate_prompts(frame, seed=3)
    assert "seeded" in notes[0]
    counts = frame.groupby(["tier", "split"]).size().unstack()
    assert (counts["select"] == 2).all() and (counts["eval"] == 2).all()  # stratified, half each
    again, _ = validate_prompts(load_prompts(PromptSource(path=str(path), columns={"text": "prompt", "tier": "kind"},
                                tier_map={"forget": "hazard", "retain": "benign", "mixed": "dual_use"})), seed=3)
    assert (again["split"] == frame["split"]).all()  # seeded


def test_missing_tier_or_split_content_is_an_error():
    frame = matched_set()
    with pytest.raises(ValueError, match="dual_use"):
        validate_prompts(frame[frame["tier"] != "dual_use"])
    no_eval_hazard = frame[~((frame["tier"] == "hazard") & (frame["split"] == "eval"))]
    with pytest.raises(ValueError, match="eval.*hazard"):
        validate_prompts(no_eval_hazard)
    with pytest.raises(ValueError, match="unknown tiers"):
        validate_prompts(frame.assign(tier=frame["tier"].replace("hazard", "danger")))


def test_format_matched_set_passes():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check = check_format(matched_set(), on_confound="error")
    assert not check.confounded
    assert check.separation < 0.75
    assert set(check.per_tier) == {"benign", "dual_use", "hazard"}


def test_format_check_fires_on_length_confound():
    # The seed's set: short hazard descriptors against long benign documents.
    frame = matched_set()
    long_benign = frame["tier"] == "benign"
    frame.loc[long_benign, "text"] = frame.loc[long_benign, "text"] + " Some long background paragraph." * 20
    with pytest.raises(FormatConfoundError, match="length alone separates"):
        check_format(frame, on_confound="error")
    with pytest.warns(UserWarning, match="tier-format confound"):
        check = check_format(frame, on_confound="warn")
    assert check.confounded and check.length_auroc == 0.0 and check.separation == 1.0
    assert check.per_tier["benign"]["words_mean"] > 5 * check.per_tier["hazard"]["words_mean"]
