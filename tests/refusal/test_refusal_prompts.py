"""Prompt sets: loading, tier/split validation, seeded stratified split, tier-format confound check."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from cbd_plugin.refusal.prompts import FormatConfoundError, PromptSource, check_format, load_prompts, validate_prompts


def matched_set(n=30, seed=0):
    """Tiers with the same template and length distribution: only the topic word differs."""
    rng = np.random.default_rng(seed)
    topic = {"benign": "garden", "dual_use": "culture", "hazard": "toxin"}
    rows = []
    for tier, word in topic.items():
        for i in range(n):
            filler = " ".join(["please"] * int(rng.integers(2, 12)))
            rows.append(
                {
                    "id": f"{tier}{i}",
                    "text": f"Tell me about the {word} {filler}.",
                    "tier": tier,
                    "split": "select" if i % 2 else "eval",
                }
            )
    return pd.DataFrame(rows)


def test_jsonl_source_with_column_and_tier_mapping(tmp_path):
    path = tmp_path / "p.jsonl"
    rows = [{"prompt": f"q{i}", "kind": k} for i, k in enumerate(["forget", "retain", "mixed"] * 4)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    frame = load_prompts(
        PromptSource(
            path=str(path),
            columns={"text": "prompt", "tier": "kind"},
            tier_map={"forget": "hazard", "retain": "benign", "mixed": "dual_use"},
        )
    )
    assert list(frame.columns) == ["id", "text", "tier"]
    frame, notes = validate_prompts(frame, seed=3)
    assert "seeded" in notes[0]
    counts = frame.groupby(["tier", "split"]).size().unstack()
    assert (counts["select"] == 2).all() and (counts["eval"] == 2).all()  # stratified, half each
    again, _ = validate_prompts(
        load_prompts(
            PromptSource(
                path=str(path),
                columns={"text": "prompt", "tier": "kind"},
                tier_map={"forget": "hazard", "retain": "benign", "mixed": "dual_use"},
            )
        ),
        seed=3,
    )
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


# --- multi-source prompt sets read with `datasets` from local copies laid out like the hub repos -------------------

from cbd_plugin.refusal.prompt_sources import DatasetSource, PromptSetSpec, load_prompt_set, preset, read_source, render  # noqa: E402

MMLU_BENIGN = ("college_biology", "high_school_biology", "anatomy")
MMLU_DUAL_USE = ("virology", "medical_genetics")
TOPIC = {"hazard": "agent", "benign": "cell", "dual_use": "virus"}


def questions(tier, n, seed, mean_words):
    """Four-choice rows with the real datasets' columns; word counts vary around ``mean_words``."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        filler = " ".join(["about"] * int(max(1, rng.normal(mean_words, 3))))
        rows.append(
            {
                "question": f"Which statement about the {TOPIC[tier]} {i} {filler} is correct?",
                "choices": [f"option {c} for {TOPIC[tier]} {i}" for c in "wxyz"],
                "answer": int(i % 4),
            }
        )
    return rows


def write_hub_dataset(root, repo, configs):
    """``root/repo`` as on the hub: ``<config>/<split>-00000-of-00001.parquet`` and a README listing the configs."""
    folder = root / repo
    lines = ["---", "configs:"]
    for config, splits in configs.items():
        lines += [f"- config_name: {config}", "  data_files:"]
        for split, rows in splits.items():
            (folder / config).mkdir(parents=True, exist_ok=True)
            pd.DataFrame(rows).to_parquet(folder / config / f"{split}-00000-of-00001.parquet")
            lines += [f"  - split: {split}", f"    path: {config}/{split}-*"]
    (folder / "README.md").write_text("\n".join([*lines, "---", ""]))


@pytest.fixture(scope="module")
def hub_copies(tmp_path_factory):
    """cais/wmdp (wmdp-bio/test) and cais/mmlu (subjects, test+validation), hazard questions longer on average."""
    root = tmp_path_factory.mktemp("hub")
    write_hub_dataset(root, "cais/wmdp", {"wmdp-bio": {"test": questions("hazard", 90, 0, 12)}})
    mmlu = {}
    for k, subject in enumerate(MMLU_BENIGN + MMLU_DUAL_USE):
        tier = "benign" if subject in MMLU_BENIGN else "dual_use"
        splits = {"test": questions(tier, 30, k + 1, 8), "validation": questions(tier, 6, k + 11, 8)}
        for rows in splits.values():
            for row in rows:
                row["subject"] = subject
        mmlu[subject] = splits
    write_hub_dataset(root, "cais/mmlu", mmlu)
    return root


def test_shipped_preset_reads_wmdp_and_mmlu(hub_copies):
    spec = preset("wmdp_mmlu_bio")
    assert {s["tier"]: s["id"] for s in spec["sources"]} == {
        "hazard": "cais/wmdp",
        "benign": "cais/mmlu",
        "dual_use": "cais/mmlu",
    }
    frame = load_prompts(PromptSource(preset="wmdp_mmlu_bio", data_dir=str(hub_copies)))
    counts = frame.groupby(["tier", "split"]).size().unstack()
    assert counts.shape == (3, 2) and counts.to_numpy().min() >= 10
    assert counts.sum(axis=1).nunique() == 1  # balanced
    assert (counts["select"] - counts["eval"]).abs().max() <= 1
    assert frame["text"].str.contains("\nA. option w").all() and frame["id"].is_unique
    assert frame.loc[frame["tier"] == "hazard", "id"].str.startswith("cais/wmdp/wmdp-bio/test/").all()
    dual = frame.loc[frame["tier"] == "dual_use", "id"]
    assert dual.str.contains("/virology/").any() and dual.str.contains("/medical_genetics/").any()
    validated, notes = validate_prompts(frame)
    assert notes == [] and len(validated) == len(frame)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check = check_format(validated, on_confound="error")
    assert check.separation < 0.65


def test_length_matching_removes_the_format_confound(hub_copies):
    frame = load_prompts(PromptSource(preset="wmdp_mmlu_bio", data_dir=str(hub_copies), match_length=False))
    with pytest.raises(FormatConfoundError):  # hazard questions are longer: length alone would separate them
        check_format(frame, on_confound="error")
    matched = load_prompts(PromptSource(preset="wmdp_mmlu_bio", data_dir=str(hub_copies)))
    check = check_format(matched, on_confound="warn")
    means = {t: s["words_mean"] for t, s in check.per_tier.items()}
    assert max(means.values()) - min(means.values()) < 2.0, means


def test_prompt_set_is_seeded_and_sized(hub_copies):
    def load(**kw):
        return load_prompts(PromptSource(preset="wmdp_mmlu_bio", data_dir=str(hub_copies), match_length=False, **kw))

    a, b, c = load(n_per_tier=20, seed=1), load(n_per_tier=20, seed=1), load(n_per_tier=20, seed=2)
    assert a.equals(b) and not a.equals(c)
    assert (a["tier"].value_counts() == 20).all()
    with pytest.raises(ValueError, match=r"n_per_tier=500 but only \d+ rows per tier"):
        load(n_per_tier=500)


def test_sources_from_local_files_with_their_own_columns(tmp_path):
    for tier in TOPIC:
        pd.DataFrame(questions(tier, 12, 3, 6)).to_json(tmp_path / f"{tier}.jsonl", orient="records", lines=True)
    sources = [
        {"id": str(tmp_path / f"{tier}.jsonl"), "splits": ["train"], "tier": tier, "template": "Q: {question}"}
        for tier in TOPIC
    ]
    frame = load_prompts(PromptSource(sources=sources, n_per_tier=8, select_fraction=0.25))
    assert (frame["tier"].value_counts() == 8).all()
    assert (frame.groupby("tier")["split"].apply(lambda s: (s == "select").sum()) == 2).all()
    assert frame["text"].str.startswith("Q: Which statement").all() and not frame["text"].str.contains("A. ").any()


def test_render_letters_list_columns():
    assert render({"question": " Why? ", "choices": ["x", "y"]}, "{question}\n{choices}") == "Why?\nA. x\nB. y"


@pytest.mark.parametrize(
    "values, error, message",
    [
        ({"sources": [{"id": "x", "tier": "danger"}]}, ValueError, "tier 'danger'"),
        (
            {"sources": [{"id": "x", "tier": "hazard", "split": "test"}]},
            KeyError,
            r"sources\[0\]: unknown keys \['split'\]",
        ),
        ({"sources": [{"id": "x"}]}, KeyError, "missing"),
        (
            {"sources": [{"id": "x", "tier": "hazard"}]},
            ValueError,
            r"no source gives tier\(s\) \['benign', 'dual_use'\]",
        ),
        ({"sources": [{"id": "x", "tier": "hazard", "template": "plain"}]}, ValueError, "uses no column"),
    ],
)
def test_bad_prompt_set_config_is_named(values, error, message):
    with pytest.raises(error, match=message):
        PromptSetSpec(**values)


def test_unknown_preset_and_missing_columns_are_named(hub_copies, tmp_path):
    with pytest.raises(KeyError, match=r"preset 'wmdp'.*wmdp_mmlu_bio"):
        load_prompts(PromptSource(preset="wmdp"))
    with pytest.raises(ValueError, match="exactly one of"):
        load_prompts(PromptSource(preset="wmdp_mmlu_bio", path="x.jsonl"))
    spec = PromptSetSpec(
        sources=[DatasetSource(id="cais/wmdp", subset="wmdp-bio", tier=t, template="{prompt}") for t in TOPIC],
        data_dir=str(hub_copies),
    )
    with pytest.raises(KeyError, match=r"cais/wmdp \(subset wmdp-bio\) split test: .*\['prompt'\].*'question'"):
        load_prompt_set(spec)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_prompt_set(
            PromptSetSpec(sources=[DatasetSource(id="cais/nothing", tier=t) for t in TOPIC], data_dir=str(tmp_path))
        )


def test_two_local_copies_with_the_same_name_are_not_confused(tmp_path):
    """`datasets` caches a local folder by its name: each local read must see its own files."""
    for n, folder in ((5, tmp_path / "one"), (9, tmp_path / "two")):
        write_hub_dataset(folder, "cais/wmdp", {"wmdp-bio": {"test": questions("hazard", n, n, 5)}})
    spec = {"id": "cais/wmdp", "subset": "wmdp-bio", "tier": "hazard"}
    for n, folder in ((5, tmp_path / "one"), (9, tmp_path / "two")):
        assert len(read_source(DatasetSource(**spec), str(folder))) == n


def test_yaml_forms_compose_into_a_prompt_source(hub_copies):
    """The forms a method config uses (``prompts: {preset: ...}`` / ``{sources: [...]}``) after OmegaConf."""
    from omegaconf import OmegaConf

    from cbd_plugin.refusal.prompts import check_source

    node = OmegaConf.create(f"""
    by_preset: {{preset: wmdp_mmlu_bio, n_per_tier: 12, seed: 3, data_dir: {hub_copies}}}
    by_sources:
      sources:
        - {{id: cais/wmdp, subset: wmdp-bio, splits: [test], tier: hazard, template: "{{question}}"}}
        - {{id: cais/mmlu, subset: [anatomy], tier: benign, template: "{{question}}"}}
        - {{id: cais/mmlu, subset: virology, splits: [test, validation], tier: dual_use, template: "{{question}}"}}
      n_per_tier: 12
      match_length: false
      data_dir: {hub_copies}
    """)
    for key in ("by_preset", "by_sources"):
        source = PromptSource(**OmegaConf.to_container(node[key], resolve=True))
        check_source(source)
        frame = load_prompts(source)
        assert (frame["tier"].value_counts() == 12).all(), key
