"""Calibration: maps from a model's p(incorrect) to calibrated probabilities, and the choice among them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import minimize, minimize_scalar
from scipy.special import expit, logit
from sklearn.isotonic import IsotonicRegression

# "none" first: on equal held-out log-loss the simplest map is kept.
METHODS = ("none", "temperature", "platt", "isotonic")
EPS = 1e-6  # p is clipped to [EPS, 1 - EPS] before logit, so a model's 0 or 1 stays finite
# Isotonic outputs are kept this far from 0 and 1: a step fitted to a few clips would otherwise say "certain"
# and a single held-out clip on the wrong side makes its log-loss infinite.
ISOTONIC_FLOOR = 0.01


class UnknownCalibration(ValueError):
    """A calibration method that is not one of METHODS (or "auto")."""


def _logit(p: np.ndarray) -> np.ndarray:
    return logit(np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    """Mean cross-entropy of labels y (0/1) under p(incorrect), the proper score calibration is chosen by."""
    q = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    y = np.asarray(y)
    return float(-np.mean(np.where(y == 1, np.log(q), np.log(1 - q))))


@dataclass
class Calibration:
    """A fitted monotone map of p(incorrect).

    temperature: p -> sigmoid(a * logit p) (one slope: sharpens or softens, never moves 0.5); platt:
    p -> sigmoid(a * logit p + b) (also moves the point where the verdict flips); isotonic: a non-decreasing
    step function (x -> y, linearly interpolated, flat beyond the ends); none: the identity.
    """

    method: str = "none"
    a: float = 1.0
    b: float = 0.0
    x: np.ndarray = field(default_factory=lambda: np.zeros(0))
    y: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def apply(self, p: np.ndarray) -> np.ndarray:
        """Calibrated p, same shape; NaN stays NaN (clips the model has nothing to say about)."""
        p = np.asarray(p, dtype=np.float64)
        if self.method == "none":
            return p
        if self.method == "isotonic":
            out = np.interp(p, self.x, self.y)
        else:
            out = expit(self.a * _logit(p) + self.b)
        return np.where(np.isnan(p), np.nan, out)

    def state(self) -> dict:
        """Plain form for a model's state (strings and tensors: torch.load(weights_only=True) reads it)."""
        return {"method": self.method, "a": torch.tensor(self.a, dtype=torch.float64),
                "b": torch.tensor(self.b, dtype=torch.float64), "x": torch.as_tensor(self.x, dtype=torch.float64),
                "y": torch.as_tensor(self.y, dtype=torch.float64)}

    @classmethod
    def from_state(cls, state: dict) -> "Calibration":
        return cls(state["method"], float(state["a"]), float(state["b"]), state["x"].numpy().copy(),
                   state["y"].numpy().copy())


def fit_calibration(method: str, p: Sequence[float], y: Sequence[int]) -> Calibration:
    """Fit `method` (one of METHODS) mapping the predictions p to the labels y (0 correct, 1 incorrect).

    p must come from models that did not see the clips (out-of-fold), else the map learns the training fit.
    """
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if method not in METHODS:
        raise UnknownCalibration(f"unknown calibration {method!r}; known: auto, {', '.join(METHODS)}")
    if method == "none" or len(np.unique(y)) < 2:
        return Calibration()
    z = _logit(p)

    def loss(a: float, b: float) -> float:
        q = np.clip(expit(a * z + b), EPS, 1 - EPS)
        return float(-np.mean(y * np.log(q) + (1 - y) * np.log(1 - q)))

    if method == "temperature":
        # The slope a = 1 / T is searched on a log scale; T between 0.02 and 50 covers any sane model.
        best = minimize_scalar(lambda s: loss(np.exp(s), 0.0), bounds=(-4.0, 4.0), method="bounded")
        return Calibration("temperature", a=float(np.exp(best.x)))
    if method == "platt":
        best = minimize(lambda ab: loss(ab[0], ab[1]), x0=np.array([1.0, 0.0]), method="L-BFGS-B",
                        bounds=[(1e-3, 50.0), (-20.0, 20.0)])
        return Calibration("platt", a=float(best.x[0]), b=float(best.x[1]))
    iso = IsotonicRegression(y_min=ISOTONIC_FLOOR, y_max=1 - ISOTONIC_FLOOR, out_of_bounds="clip").fit(p, y)
    return Calibration("isotonic", x=np.asarray(iso.X_thresholds_, dtype=np.float64),
                       y=np.asarray(iso.y_thresholds_, dtype=np.float64))


def _macro_f1(y: np.ndarray, p: np.ndarray) -> float:
    pred = (p >= 0.5).astype(int)
    f1 = [2 * np.sum((pred == c) & (y == c)) / max(1, np.sum(pred == c) + np.sum(y == c)) for c in (0, 1)]
    return float(np.mean(f1))


def choose_calibration(p: np.ndarray, y: np.ndarray, fold: np.ndarray, methods: Sequence[str] = METHODS
                       ) -> tuple[Calibration, dict[str, dict[str, float]]]:
    """The method whose map, fitted on the other folds' out-of-fold p and applied to each fold in turn, gives
    the lowest log-loss without lowering macro-F1; returns it fitted on all of p, and each method's held-out
    {"log_loss", "macro_f1"}.

    Why the F1 condition: the models are fitted with balanced class weights, so their p = 0.5 is the verdict
    threshold that serves both classes; a map to the true class frequencies (platt, isotonic) moves it toward
    the majority class. On ngoquocbao (bench_quality) a Platt map chosen by log-loss alone turned macro-F1
    0.934 into 0.894. Temperature never moves 0.5 and so always qualifies.
    p: out-of-fold p(incorrect) of the training part's clips; fold: the inner fold of each (the map is
    itself tested on clips it was not fitted on). Ties keep the earlier method ("none" first).
    """
    p, y, fold = np.asarray(p, dtype=np.float64), np.asarray(y), np.asarray(fold)
    scores = {}
    for method in methods:
        q = np.zeros(len(p))
        for k in np.unique(fold):
            inside = fold == k
            q[inside] = fit_calibration(method, p[~inside], y[~inside]).apply(p[inside])
        scores[method] = {"log_loss": log_loss(y, q), "macro_f1": _macro_f1(y, q)}
    floor = _macro_f1(y, p) - 1e-9  # the verdicts of the uncalibrated p
    eligible = [m for m in methods if scores[m]["macro_f1"] >= floor] or ["none"]
    best = min(eligible, key=lambda m: (round(scores[m]["log_loss"], 9), list(methods).index(m)))
    return fit_calibration(best if best in methods else "none", p, y), scores
