"""Bad prompt files: every case is an error naming the file, the line (or row) and the column, raised at load."""

import json

import numpy as np
import pandas as pd
import pytest

from cbd_plugin.refusal.prompts import PromptSource, check_source, load_prompts, validate_prompts

GOOD = [
    {"id": f"p{i}", "text": f"Tell me about topic {i}.", "tier": t}
    for i, t in enumerate(["benign", "dual_use", "hazard"] * 2)
]


def lines(*rows) -> bytes:
    return b"\n".join(r if isinstance(r, bytes) else json.dumps(r).encode() for r in rows) + b"\n"


# (case, file bytes, PromptSource keyword arguments, exception, message regex; {file} is the file's path)
CASES = [
    (
        "malformed JSON line",
        lines(GOOD[0], GOOD[1], b'{"text": "x", "tier": "hazard"'),
        {},
        ValueError,
        r"{file}:3: not valid JSON",
    ),
    (
        "line numbers count blank lines",
        lines(GOOD[0], b"", b"", b"{oops}"),
        {},
        ValueError,
        r"{file}:4: not valid JSON",
    ),
    (
        "non-UTF-8 line",
        lines(GOOD[0], b'{"text": "caf\xe9", "tier": "benign"}'),
        {},
        ValueError,
        r"{file}:2: not UTF-8",
    ),
    (
        "JSON list line",
        lines(GOOD[0], [GOOD[1]["text"], "benign"]),
        {},
        ValueError,
        r"{file}:2: expected a JSON object per line, got a list",
    ),
    (
        "JSON string line",
        lines(GOOD[0], "just text"),
        {},
        ValueError,
        r"{file}:2: expected a JSON object per line, got a str",
    ),
    (
        "row without tier",
        lines(*GOOD[:3], {"id": "x", "text": "no tier here"}),
        {},
        ValueError,
        r"{file}:4: column 'tier' is null or absent",
    ),
    (
        "null text",
        lines(GOOD[0], {"id": "x", "text": None, "tier": "hazard"}),
        {},
        ValueError,
        r"{file}:2: column 'text' is null or absent",
    ),
    (
        "empty text",
        lines(GOOD[0], {"id": "x", "text": "   ", "tier": "hazard"}),
        {},
        ValueError,
        r"{file}:2: column 'text' is empty or not text",
    ),
    (
        "number as text",
        lines(GOOD[0], GOOD[1], {"id": "x", "text": 42, "tier": "hazard"}),
        {},
        ValueError,
        r"{file}:3: column 'text' is empty or not text \(got 42\)",
    ),
    (
        "null in a mapped column names the source column",
        lines({"prompt": "a", "kind": "benign"}, {"prompt": None, "kind": "hazard"}),
        {"columns": {"text": "prompt", "tier": "kind"}},
        ValueError,
        r"{file}:2: column 'prompt' is null or absent",
    ),
    ("no tier key in any row", lines({"text": "a"}, {"text": "b"}), {}, KeyError, r"{file}: no row has column 'tier'"),
    (
        "mapped column absent",
        lines(GOOD[0]),
        {"columns": {"text": "prompt"}},
        KeyError,
        r"{file}: columns \['prompt'\] not found",
    ),
    ("empty file", b"\n\n", {}, ValueError, r"{file}: no prompts"),
    (
        "unknown tier value",
        lines(*GOOD, {"id": "x", "text": "t", "tier": "danger"}),
        {},
        ValueError,
        r"unknown tiers \['danger'\]",
    ),
    (
        "tier missing from the set",
        lines(*[r for r in GOOD if r["tier"] != "dual_use"]),
        {},
        ValueError,
        r"tiers \['dual_use'\] have no prompts",
    ),
    ("duplicate ids", lines(*GOOD, dict(GOOD[0], text="again")), {}, ValueError, r"duplicate ids \['p0'\]"),
    (
        "same text hazard in one split, benign in the other",
        lines(
            *[dict(r, split=("select", "eval")[i % 2]) for i, r in enumerate(GOOD)],
            {"id": "x", "text": GOOD[2]["text"], "tier": "benign", "split": "eval"},
        ),
        {},
        ValueError,
        r"prompts: 1 prompt text\(s\) carry two tiers, first 'Tell me about topic 2\.' \(id p2 tier "
        r"'hazard' split 'select', id x tier 'benign' split 'eval'\); give each text one tier",
    ),
    (
        "same text, two tiers, up to surrounding spaces",
        lines(*GOOD, {"id": "x", "text": " Tell me about topic 0. ", "tier": "hazard"}),
        {},
        ValueError,
        r"carry two tiers, first 'Tell me about topic 0\.' \(id p0 tier 'benign', id x tier 'hazard'\)",
    ),
    ("missing file", None, {}, FileNotFoundError, r"{file}"),
]


@pytest.mark.parametrize("case, content, kwargs, error, message", CASES, ids=[c[0] for c in CASES])
def test_bad_prompt_file(tmp_path, case, content, kwargs, error, message):
    path = tmp_path / "prompts.jsonl"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(error, match=message.format(file=str(path).replace(".", r"\."))):
        validate_prompts(load_prompts(PromptSource(path=str(path), **kwargs)))


def test_bom_and_crlf_are_read(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + lines(*GOOD).replace(b"\n", b"\r\n"))
    frame, _ = validate_prompts(load_prompts(PromptSource(path=str(path))))
    assert len(frame) == len(GOOD) and frame["text"].iloc[0] == GOOD[0]["text"]


@pytest.mark.parametrize("column", ["text", "tier"])
def test_frame_with_missing_values_names_rows_and_column(column):
    frame = pd.DataFrame(GOOD)
    frame.loc[2, column] = np.nan
    with pytest.raises(ValueError, match=rf"rows \[2\] have no value in column '{column}'"):
        validate_prompts(frame)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({}, ValueError, r"exactly one of path, dataset, preset or sources \(got none\)"),
        ({"path": "nowhere.jsonl"}, FileNotFoundError, "nowhere.jsonl does not exist"),
        ({"preset": "wmdp_mmlu_chem"}, KeyError, r"shipped presets: \['wmdp_mmlu_bio'\]"),
        ({"preset": "wmdp_mmlu_bio", "select_fraction": 1.5}, ValueError, r"select_fraction 1\.5"),
        (
            {"sources": [{"id": "a", "tier": "hazard", "splits": ["test"], "columns": ["q"]}]},
            KeyError,
            r"sources\[0\]: unknown keys \['columns'\]",
        ),
    ],
)
def test_config_errors_raise_before_any_data_is_read(kwargs, error, message):
    with pytest.raises(error, match=message):
        check_source(PromptSource(**kwargs))
