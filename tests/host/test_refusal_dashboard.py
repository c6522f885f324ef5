"""The refusal dashboard's plotly figures, built from the files an audit writes (no Streamlit session needed)."""

import pandas as pd
import pytest

pytest.importorskip("plotly")

from cbd_plugin.refusal.depth_profile import LayerProfile
from cbd_plugin.refusal.report import profile_frame
from cbd_plugin.stats import Estimate


def test_depth_profile_figure_has_one_trace_per_series_with_intervals():
    pytest.importorskip("streamlit")
    from cbd_plugin.methods.contrastive_bio_sae.dashboard import profile_figure

    e = Estimate(0.9, 0.8, 0.95)
    profile = [
        LayerProfile(0, e, e, e, None, None),
        LayerProfile(1, e, Estimate(0.5, 0.42, 0.58), e, e, e),
        LayerProfile(2, e, e, e, None, None),
    ]
    frame = profile_frame(profile)
    assert len(frame) == 3 * 3 + 2 and set(frame["series"]) == {
        "base_probe",
        "base_fitted_probe",
        "refit_probe",
        "base_signal",
        "finetuned_signal",
    }
    fig = profile_figure(pd.read_csv(pd.io.common.StringIO(frame.to_csv(index=False))), audit_layer=1, threshold=0.7)
    assert {t.name for t in fig.data} == set(frame["label"])
    fitted = next(t for t in fig.data if t.name == "fine-tuned: base-fitted probe")
    assert list(fitted.y) == [0.9, 0.5, 0.9]
    assert list(fitted.error_y.arrayminus) == pytest.approx([0.1, 0.08, 0.1])
