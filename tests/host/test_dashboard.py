"""Every dashboard page, run by Streamlit's own test harness (AppTest) on fixture result folders."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
pytest.importorskip("plotly")
from dashboard_fixtures import BIO_VERDICT, CBD_VERDICT, make_results, specificity_record
from streamlit.testing.v1 import AppTest

TESTS = str(Path(__file__).resolve().parents[1])  # the shared fixtures live in tests/


@pytest.fixture
def clean_modules():
    """AppTest runs scripts in this process: drop the host stand-ins and the pages imported under them."""
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        if name == "diffing" or name.startswith(("diffing.", "cbd_plugin.methods.")):
            del sys.modules[name]


def run_app(script, **kwargs) -> AppTest:
    at = AppTest.from_function(script, kwargs=kwargs, default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def verdict_page(verdict):
    from cbd_plugin.methods.report_page import verdict_box

    verdict_box(verdict)


def test_verdict_box_states_the_verdict_and_its_reason_in_words_with_every_check():
    at = run_app(verdict_page, verdict=BIO_VERDICT)
    assert at.info[0].value == f"**Verdict: shallow.** {BIO_VERDICT['reason']}"
    table = at.dataframe[0].value
    assert list(table["check"]) == [c["name"] for c in BIO_VERDICT["checks"]]
    assert list(table["result"]) == ["passed"] * 4
    assert table["interval"][1] == "[0.51, 0.72]" and table["value"][2] == "0.001"


def test_check_not_run_reads_not_run_and_inconclusive_is_a_warning():
    verdict = {**CBD_VERDICT, "name": "inconclusive", "reason": "The instrument failed on the base model."}
    at = run_app(verdict_page, verdict=verdict)
    assert at.warning[0].value.startswith("**Verdict: inconclusive.** The instrument failed")
    assert list(at.dataframe[0].value["result"])[-1] == "not run"


@pytest.mark.parametrize("verdict", ["shallow", {"reasons": ["hazard r..."]}, None])
def test_verdict_not_in_the_agreed_form_is_an_error_not_a_raw_dict(verdict):
    at = run_app(verdict_page, verdict=verdict)
    assert "not in the expected form" in at.error[0].value and not at.info


def plot_page(caption):
    import plotly.graph_objects as go

    from cbd_plugin.methods.report_page import plot

    plot(go.Figure(go.Bar(x=["a", "b"], y=[1, 2])), caption)


def test_plot_is_interactive_plotly_with_its_caption():
    at = run_app(plot_page, caption="Fire rate per condition; bars are 95% bootstrap intervals.")
    assert len(at.get("plotly_chart")) == 1
    assert at.caption[0].value == "Fire rate per condition; bars are 95% bootstrap intervals."


def test_plot_without_caption_is_refused():
    at = AppTest.from_function(plot_page, kwargs={"caption": " "}).run()
    assert "needs a caption" in at.exception[0].value


def report_page(folder):
    from pathlib import Path

    from cbd_plugin.methods.report_page import show_report

    show_report(Path(folder), headline_keys=("verdict", "layer"))


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "holds a JSON list, not an object"),
    ],
)
def test_corrupt_report_json_is_named(tmp_path, content, message):
    (tmp_path / "report.json").write_text(content)
    at = run_app(report_page, folder=str(tmp_path))
    assert message in at.error[0].value and str(tmp_path / "report.json") in at.error[0].value


def test_missing_report_json_says_the_analysis_has_not_finished(tmp_path):
    at = run_app(report_page, folder=str(tmp_path))
    assert "No report.json" in at.warning[0].value


def test_report_page_shows_verdict_then_headline_figures(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps({"verdict": CBD_VERDICT, "layer": 13}))
    at = run_app(report_page, folder=str(tmp_path))
    assert at.info[0].value.startswith("**Verdict: conjunctive.**")
    assert [m.value for m in at.metric] == ["13"]


def method_page(method, results_dir, tests_dir):
    import importlib
    import sys
    from pathlib import Path

    sys.path.insert(0, tests_dir)
    from dashboard_fixtures import install_host_stub

    install_host_stub()
    dashboard = importlib.import_module(f"cbd_plugin.methods.{method}.dashboard")

    class Method:  # what a page reads of the host's method object
        pass

    page_method = Method()
    page_method.results_dir = Path(results_dir)
    dashboard.visualize(page_method)


@pytest.mark.parametrize("method, verdict", [("cbd_sae_difference", CBD_VERDICT), ("contrastive_bio_sae", BIO_VERDICT)])
def test_each_method_page_renders_its_fixture_results(tmp_path, clean_modules, method, verdict):
    make_results(tmp_path)
    at = run_app(method_page, method=method, results_dir=str(tmp_path), tests_dir=TESTS)
    shown = " ".join(str(e.value) for e in [*at.info, *at.warning, *at.markdown])
    assert f"Verdict: {verdict['name']}" in shown and verdict["reason"] in shown
    if method == "cbd_sae_difference":  # the per-pair table: each pair's deciding latent
        pairs = at.dataframe[1].value
        assert list(pairs.columns) == [
            "pair",
            "deciding latent",
            "weakest separation [95% CI]",
            "interaction share [95% CI]",
            "passes",
        ]
        assert list(pairs["pair"]) == ["apple/river", "candle/forest"] and list(pairs["deciding latent"]) == [12, 30]
        assert pairs["weakest separation [95% CI]"][1] == "matched vs mismatch: 0.90 [0.85, 0.95]"
        assert pairs["interaction share [95% CI]"][0] == "0.95 [0.90, 1.00]" and pairs["passes"].all()
        caption = " ".join(c.value for c in at.caption)
        assert "Per-pair route:" in caption and "the shared route decided (2 of 2 pairs covered)" in caption


@pytest.mark.parametrize(
    "pair_los, route",
    [
        ((0.9, 0.86), "all 2 pairs are covered: the per-pair route decided"),
        ((0.9, 0.7), "only 1 of 2 pairs are covered: neither route passes"),
    ],
)
def test_conjunction_tab_says_which_route_decided(tmp_path, clean_modules, pair_los, route):
    folder = make_results(tmp_path)["cbd_sae_difference"]
    report = json.loads((folder / "report.json").read_text())
    report["specificity"] = [specificity_record(41, 0.7)]  # no shared latent passes
    report["pair_specificity"] = [
        specificity_record(20 + p, lo, pair=p, pair_name=f"w{p}/v{p}") for p, lo in enumerate(pair_los)
    ]
    (folder / "report.json").write_text(json.dumps(report))
    at = run_app(method_page, method="cbd_sae_difference", results_dir=str(tmp_path), tests_dir=TESTS)
    assert list(at.dataframe[1].value["passes"]) == [lo >= 0.81 for lo in pair_los]
    assert route in " ".join(c.value for c in at.caption)


def test_conjunction_tab_without_pair_records_shows_no_pair_table(tmp_path, clean_modules):
    folder = make_results(tmp_path)["cbd_sae_difference"]
    (folder / "report.json").write_text(json.dumps({"verdict": CBD_VERDICT, "layer": 13}))
    at = run_app(method_page, method="cbd_sae_difference", results_dir=str(tmp_path), tests_dir=TESTS)
    assert len(at.dataframe) == 1 and not any("Per-pair route" in c.value for c in at.caption)


@pytest.mark.parametrize("method", ["cbd_sae_difference", "contrastive_bio_sae"])
def test_method_page_without_results_says_so(tmp_path, clean_modules, method):
    at = run_app(method_page, method=method, results_dir=str(tmp_path), tests_dir=TESTS)
    assert any("No results under" in e.value for e in at.info)


FAKE_DASHBOARD = """
import src  # the host's own dashboard does this
def discover_methods():
    return ["kl"]
def discover_organisms():
    return []
def get_organism_config(name):
    raise KeyError(name)
def main():
    print("host dashboard main ran;", sorted(discover_methods())[:3])
"""


def test_dashboard_app_runs_the_host_dashboard_from_any_folder(tmp_path):
    from test_host_activation import make_fake_host

    src = make_fake_host(tmp_path / "host")
    (tmp_path / "host" / "dashboard.py").write_text(FAKE_DASHBOARD)
    (tmp_path / "host" / "configs" / "diffing" / "method").mkdir(parents=True)
    (tmp_path / "host" / "configs" / "diffing" / "method" / "kl.yaml").write_text("name: kl\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = "from cbd_plugin.host.dashboard_app import main; main()"
    env = {**os.environ, "PYTHONPATH": str(src)}  # an editable host install puts only src/ on the path
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "host dashboard main ran; ['cbd_sae_difference', 'contrastive_bio_sae', 'kl']" in result.stdout
