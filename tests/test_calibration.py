"""Calibration: each map is fitted on out-of-fold p, chosen by held-out log-loss, and lowers ECE when p lies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import expit

from model.calibration import METHODS, Calibration, UnknownCalibration, choose_calibration, fit_calibration, log_loss
from model.metrics import evaluate


def overconfident(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from a true probability, and a model's p that says the same thing four times as loud."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, n)
    y = (rng.random(n) < expit(z)).astype(int)
    return expit(4.0 * z), y


def ece(y: np.ndarray, p: np.ndarray) -> float:
    return evaluate(y, p, ["squat"] * len(y))["ece"]


def test_calibration_chosen_on_inner_folds_lowers_the_ece_of_an_overconfident_model():
    p, y = overconfident(600, seed=0)
    fold = np.arange(len(p)) % 3
    calibration, scores = choose_calibration(p, y, fold)
    assert set(scores) == set(METHODS) and calibration.method != "none"
    assert scores[calibration.method]["log_loss"] < scores["none"]["log_loss"]
    # Tested on fresh clips from the same source: the map learnt on the first set still helps.
    p_new, y_new = overconfident(600, seed=1)
    assert ece(y_new, calibration.apply(p_new)) < 0.5 * ece(y_new, p_new)
    assert log_loss(y_new, calibration.apply(p_new)) < log_loss(y_new, p_new)


def test_an_honest_model_keeps_its_probabilities():
    rng = np.random.default_rng(2)
    p = rng.uniform(0.02, 0.98, 900)
    y = (rng.random(900) < p).astype(int)
    calibration, _ = choose_calibration(p, y, np.arange(900) % 3, ("none", "temperature"))
    # Either the identity or a temperature of about 1.
    assert calibration.method == "none" or calibration.a == pytest.approx(1.0, abs=0.15)


def test_a_map_that_would_cost_verdicts_is_not_chosen_however_low_its_log_loss():
    # A balanced-weight model on a 4:1 set: its p = 0.5 serves both classes. Maps to the true frequencies
    # (platt, isotonic) lower the log-loss by pushing every p toward "correct" and lose minority verdicts.
    rng = np.random.default_rng(4)
    y = (rng.random(1000) < 0.2).astype(int)
    p = expit(rng.normal(0, 1, 1000) + np.where(y == 1, 0.5, -0.5))
    calibration, scores = choose_calibration(p, y, np.arange(1000) % 3)
    assert scores["platt"]["log_loss"] < scores["temperature"]["log_loss"]
    assert scores["platt"]["macro_f1"] < scores["none"]["macro_f1"]
    assert calibration.method in ("none", "temperature")
    assert scores[calibration.method]["macro_f1"] >= scores["none"]["macro_f1"]


@pytest.mark.parametrize("method", METHODS)
def test_every_map_is_monotone_keeps_nan_and_round_trips_through_weights_only_torch(method, tmp_path):
    p, y = overconfident(300, seed=3)
    calibration = fit_calibration(method, p, y)
    grid = np.linspace(0, 1, 101)
    out = calibration.apply(grid)
    assert np.all(np.diff(out) >= -1e-12) and np.all((out >= 0) & (out <= 1))
    assert np.isnan(calibration.apply(np.array([np.nan]))[0])
    torch.save(calibration.state(), tmp_path / "c.pt")
    loaded = Calibration.from_state(torch.load(tmp_path / "c.pt", weights_only=True))
    np.testing.assert_array_equal(loaded.apply(grid), out)


def test_one_class_gives_the_identity_and_an_unknown_method_is_refused():
    assert fit_calibration("platt", [0.2, 0.7], [1, 1]).method == "none"
    with pytest.raises(UnknownCalibration, match="unknown calibration 'sigmoid'"):
        fit_calibration("sigmoid", [0.2, 0.7], [0, 1])


def test_a_models_calibration_applies_to_every_p_it_gives_and_is_saved_with_it(tmp_path):
    from model.registry import Model, make_model
    from tests.test_registry import N_FEATURES, sinusoids

    X, y = sinusoids(32, seed=0)
    model = make_model("baseline", N_FEATURES)
    model.fit(X, y)
    raw = model.predict_proba(X)
    model.calibration = Calibration("temperature", a=0.5)
    np.testing.assert_allclose(model.predict_proba(X), model.calibration.apply(raw))
    torch.save(model.state(), tmp_path / "w.pt")
    loaded = Model.load(torch.load(tmp_path / "w.pt", weights_only=True))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
