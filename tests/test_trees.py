"""Tree ensembles and MiniRocket: plain-array states that score exactly as the fitted library objects."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

from model.registry import MODELS, make_model
from model.trees import pack_trees, tree_p
from tests.test_registry import N_FEATURES, sinusoids


@pytest.mark.parametrize("estimator", [RandomForestClassifier, ExtraTreesClassifier])
def test_packed_trees_give_sklearns_probabilities(estimator):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 9))
    y = (X[:, 0] + 0.5 * X[:, 3] + rng.normal(size=300) > 0).astype(int)
    fitted = estimator(n_estimators=30, min_samples_leaf=2, class_weight="balanced", random_state=0).fit(X, y)
    new = rng.normal(size=(200, 9))
    np.testing.assert_allclose(tree_p(pack_trees(fitted.estimators_), new), fitted.predict_proba(new)[:, 1],
                               atol=1e-12)
    assert tree_p(pack_trees(fitted.estimators_), np.zeros((0, 9))).shape == (0,)


@pytest.mark.parametrize("name", ["forest", "extra_trees", "minirocket"])
def test_new_families_are_in_the_registry_and_repeat_for_a_seed(name):
    assert name in MODELS
    X, y = sinusoids(24, seed=4)
    runs = []
    for _ in range(2):
        model = make_model(name, N_FEATURES)
        model.fit(X, y)
        runs.append(model.predict_proba(X))
    np.testing.assert_array_equal(runs[0], runs[1])


def test_minirocket_leaves_numpys_global_random_state_alone():
    X, y = sinusoids(24, seed=5)
    np.random.seed(123)
    expected = np.random.random(3)
    np.random.seed(123)
    make_model("minirocket", N_FEATURES).fit(X, y)
    np.testing.assert_array_equal(np.random.random(3), expected)


def test_minirocket_sees_the_order_of_frames_that_clip_statistics_cannot():
    # Incorrect clips rise then fall, correct clips fall then rise: mean, sd, min, max and range are the same.
    rng = np.random.default_rng(6)
    X, y = [], np.arange(40) % 2
    for label in y:
        t = np.linspace(0, 1, int(rng.integers(30, 50)))
        wave = np.sin(2 * np.pi * t) * (1 if label else -1)
        X.append((wave[:, None] + 0.05 * rng.standard_normal((len(t), N_FEATURES))).astype(np.float32))
    train, test = list(range(24)), list(range(24, 40))
    model = make_model("minirocket", N_FEATURES)
    model.fit([X[i] for i in train], y[train])
    assert ((model.predict_proba([X[i] for i in test]) >= 0.5) == y[test]).mean() >= 0.9
