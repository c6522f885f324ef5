"""``cbd-demo`` on one organism per method: the verdicts, the printed tables and the files it leaves.

The other organisms' verdicts are checked at length in test_backdoor_organisms.py and test_refusal_audit.py.
"""

import pytest

from cbd_plugin.demo import conjunction_reports, conjunction_table, refusal_reports, refusal_table

pytestmark = pytest.mark.slow


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


def test_refusal_demo(refusal, out):
    assert refusal["tiny-refusal-shallow"].verdict.name == "shallow", refusal["tiny-refusal-shallow"].verdict.reason
    header, row = refusal_table(refusal).splitlines()
    assert header.split()[:2] == ["organism", "verdict"]
    # hazard refusal base -> ft, change [lo, hi], base features on refused [lo, hi], refitted probe [lo, hi]
    assert row.split()[:2] == ["tiny-refusal-shallow", "shallow"] and len(row.split()) == 14
    assert (out / "refusal" / "tiny-refusal-shallow" / "report.json").exists()
