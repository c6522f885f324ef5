"""``cbd-demo`` on one organism per method: the verdicts, the printed tables and the files it leaves (slow); the
conjunction table's formatting on synthetic report payloads (fast).

The other organisms' verdicts are checked at length in test_backdoor_organisms.py and test_refusal_audit.py.
"""

import re
from types import SimpleNamespace

import pytest

from cbd_plugin.backdoor.specificity import OTHERS
from cbd_plugin.demo import conjunction_reports, conjunction_table, refusal_reports, refusal_table


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("cbd_demo")


@pytest.fixture(scope="module")
def conjunction(out):
    from cbd_plugin.organisms import build

    return conjunction_reports(build(["tiny-base", "tiny-cbd"]), out / "conjunction", names=("tiny-cbd",))


@pytest.fixture(scope="module")
def refusal(organisms, out):
    return refusal_reports(organisms, out / "refusal", names=("tiny-refusal-shallow",))


@pytest.mark.slow
def test_conjunction_demo(conjunction, out):
    assert conjunction["tiny-cbd"].verdict == "conjunctive", conjunction["tiny-cbd"].verdict_reason
    header, row = conjunction_table(conjunction).splitlines()
    assert header.split()[:2] == ["organism", "verdict"]
    # matched fire [lo, hi], latent:weakest AUROC [lo, hi], null p, fire after top-k/control/probe, dead fraction
    cells = row.split()
    assert cells[:3] == ["tiny-cbd", "conjunctive", "1.00"] and len(cells) == 12
    assert float(cells[-1]) < 0.1  # dead latents on the probe set
    assert float(cells[9]) <= 0.05  # the null p-value
    assert (out / "conjunction" / "tiny-cbd" / "report" / "report.json").exists()


@pytest.mark.slow
def test_refusal_demo(refusal, out):
    assert refusal["tiny-refusal-shallow"].verdict.name == "shallow", refusal["tiny-refusal-shallow"].verdict.reason
    header, row = refusal_table(refusal).splitlines()
    assert header.split()[:2] == ["organism", "verdict"]
    # hazard refusal base -> ft, change [lo, hi], base features on refused [lo, hi], refitted probe [lo, hi]
    assert row.split()[:2] == ["tiny-refusal-shallow", "shallow"] and len(row.split()) == 14
    assert (out / "refusal" / "tiny-refusal-shallow" / "report.json").exists()


def spec_row(latent, lo, interaction_lo=0.9, weakest="mismatch", **pair) -> dict:
    """A report.json specificity record: every separation lower bound ``lo`` but ``weakest``'s, 0.01 lower."""
    row = {
        "latent": latent,
        "interaction": 0.95,
        "interaction_lo": interaction_lo,
        "interaction_hi": 1.0,
        "weakest": weakest,
        **pair,
    }
    for c in OTHERS:
        low = lo - 0.01 if c == weakest else lo
        row |= {f"auroc_{c}": low + 0.06, f"auroc_{c}_lo": low, f"auroc_{c}_hi": min(low + 0.12, 1.0)}
    row |= {"specificity_lo": lo - 0.01, "specificity": lo + 0.05, "passes": lo - 0.01 >= 0.8 and interaction_lo >= 0.5}
    return row


def pair_rows(p, latent, lo) -> list[dict]:
    """Pair ``p``'s records: ``latent`` with the bound given, then a failing one."""
    return [spec_row(latent, lo, pair=p, pair_name=f"w{p}/v{p}"), spec_row(99, 0.6, pair=p, pair_name=f"w{p}/v{p}")]


def synthetic_report(shared_lo, pair_los, verdict="conjunctive"):
    payload = {
        "behaviour": [{"model": "finetuned", "condition": "matched", "fire_rate": 1.0, "lo": 0.93, "hi": 1.0}],
        "specificity": [spec_row(7, 0.6), spec_row(5, shared_lo, weakest="single_a")],
        "pair_specificity": [r for p, lo in enumerate(pair_los) for r in pair_rows(p, 20 + p, lo)],
        "null": {"p_value": {"specificity": 0.005, "conjunction": 0.005}},
    }
    return SimpleNamespace(
        payload=payload, verdict=verdict, ablation=None, reconstruction={"all": {"dead_fraction": 0.0}}
    )


def cells(row: str) -> list[str]:
    return re.split(r" {2,}", row)


@pytest.mark.parametrize(
    "shared_lo, pair_los, cell",
    [
        # shared route: the passing shared latent, whatever the pairs show (as before the per-pair route)
        (0.95, [0.9, 0.86, 0.95, 0.9], "5:single_a 1.00 [0.94, 1.00]"),
        # per-pair route: no shared latent passes, every pair has its own; the weakest pair's deciding latent
        (0.7, [0.9, 0.86, 0.95, 0.9], "per-pair: 4/4 pairs, weakest w1/v1:21:mismatch 0.91 [0.85, 0.97]"),
        # neither: one pair uncovered, so the best shared latent (as before), though it does not pass
        (0.7, [0.9, 0.86, 0.7, 0.9], "5:single_a 0.75 [0.69, 0.81]"),
    ],
)
def test_conjunction_table_shows_the_latents_that_decided(shared_lo, pair_los, cell):
    header, row = conjunction_table({"tiny-x": synthetic_report(shared_lo, pair_los)}).splitlines()
    assert "best conjunction latent: weakest separation [95% CI]" in header
    assert cells(row) == ["tiny-x", "conjunctive", "1.00 [0.93, 1.00]", cell, "0.005", "not-run", "0.00"]


def test_conjunction_table_without_pair_records_reads_the_shared_table():
    """Reports written before the per-pair route (no pair_specificity) read as before."""
    report = synthetic_report(0.7, [])
    del report.payload["pair_specificity"]
    assert cells(conjunction_table({"tiny-x": report}).splitlines()[1])[3] == "5:single_a 0.75 [0.69, 0.81]"
