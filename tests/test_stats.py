"""The shared detection statistics."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cbd_plugin.stats import auroc, auroc_ci, bootstrap, linear_probe_auroc, permutation_null


def test_auroc_equals_sklearn_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.random(60) < 0.4
        scores = rng.integers(0, 5, 60).astype(float)  # many ties
        assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auroc_rejects_one_class_and_non_finite_scores():
    with pytest.raises(ValueError, match="needs both classes"):
        auroc([0.1, 0.2], [True, True])
    with pytest.raises(ValueError, match="finite"):
        auroc([0.1, np.nan], [True, False])


def test_bootstrap_interval_covers_the_point_and_shrinks_with_data():
    rng = np.random.default_rng(1)
    small = rng.normal(size=40) + np.r_[np.ones(20), np.zeros(20)]
    large = rng.normal(size=400) + np.r_[np.ones(200), np.zeros(200)]
    e_small = auroc_ci(small, np.r_[np.ones(20), np.zeros(20)].astype(bool), n_boot=300)
    e_large = auroc_ci(large, np.r_[np.ones(200), np.zeros(200)].astype(bool), n_boot=300)
    assert e_small.lo <= e_small.value <= e_small.hi
    assert (e_large.hi - e_large.lo) < (e_small.hi - e_small.lo)


def test_bootstrap_checks_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        bootstrap(np.mean, np.zeros(3), np.zeros(4))


def test_linear_probe_separates_a_planted_direction_and_the_null_does_not():
    rng = np.random.default_rng(2)
    y = rng.random(400) < 0.5
    x = rng.normal(size=(400, 8))
    x[:, 3] += 2.0 * y
    est = linear_probe_auroc(x[:200], y[:200], x[200:], y[200:], n_boot=100)
    assert est.value > 0.9
    null = permutation_null(auroc, x[200:, 3], y[200:], n_perm=100)
    assert abs(null.mean() - 0.5) < 0.05 and auroc(x[200:, 3], y[200:]) > np.quantile(null, 0.99)
