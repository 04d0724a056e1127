"""Metrics: evaluation as a dict of numbers."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from model.features import LABELS

N_BINS = 10  # equal-width confidence bins of the ECE and the reliability diagram
BANDS_FROM = 0.5  # confidence bands are listed from here up (a two-class prediction is at least 0.5 sure)


def _ratio(num: float, den: float) -> float:
    return num / den if den else math.nan


def _per_class(y: np.ndarray, pred: np.ndarray) -> dict[str, dict[str, float]]:
    """Precision, recall and F1 of each class; NaN where undefined (0 / 0), as scikit-learn's
    zero_division=np.nan. F1 = 2 tp / (2 tp + fp + fn) is defined whenever the class is true or predicted."""
    out: dict[str, dict[str, float]] = {"precision": {}, "recall": {}, "f1": {}}
    for c, name in enumerate(LABELS):
        tp = float(np.sum((pred == c) & (y == c)))
        fp = float(np.sum((pred == c) & (y != c)))
        fn = float(np.sum((pred != c) & (y == c)))
        out["precision"][name] = _ratio(tp, tp + fp)
        out["recall"][name] = _ratio(tp, tp + fn)
        out["f1"][name] = _ratio(2 * tp, 2 * tp + fp + fn)
    return out


def _nanmean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def _macro_f1(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean F1 over the classes that are true or predicted (a class absent from both has no F1)."""
    return _nanmean(list(_per_class(y, pred)["f1"].values()))


def _kappa(y: np.ndarray, pred: np.ndarray) -> float:
    """Cohen's kappa between labels and predictions; NaN when chance agreement is 1 (one class everywhere)."""
    n = len(y)
    observed = float(np.mean(y == pred))
    expected = sum(float(np.sum(y == c)) * float(np.sum(pred == c)) for c in range(len(LABELS))) / (n * n)
    return _ratio(observed - expected, 1 - expected) if expected < 1 else math.nan


def _bin_of(confidence: np.ndarray) -> np.ndarray:
    # Left-closed bins [i/10, (i+1)/10), 1.0 in the last; the epsilon keeps 0.6 (= 6 * 0.1 in floats, maybe
    # 5.999...) in the bin that starts at 0.6.
    return np.clip(np.floor(confidence * N_BINS + 1e-9), 0, N_BINS - 1).astype(int)


def _reliability(correct: np.ndarray, confidence: np.ndarray) -> tuple[list[dict], float]:
    """Reliability bins and the expected calibration error sum_b n_b / N * |accuracy_b - confidence_b|."""
    bins = _bin_of(confidence)
    rows, ece = [], 0.0
    for b in range(N_BINS):
        inside = bins == b
        n = int(inside.sum())
        conf = float(confidence[inside].mean()) if n else math.nan
        acc = float(correct[inside].mean()) if n else math.nan
        if n:
            ece += n / len(correct) * abs(acc - conf)
        rows.append({"bin_lo": b / N_BINS, "bin_hi": (b + 1) / N_BINS, "n": n, "confidence": conf, "accuracy": acc})
    return rows, ece


def _bands(correct: np.ndarray, confidence: np.ndarray) -> list[dict]:
    """Accuracy by confidence band "0.5-0.6" .. "0.9-1.0" (plus "0.0-0.5" when a threshold other than 0.5
    leaves predictions less than even sure)."""
    bins = _bin_of(confidence)
    first = int(round(BANDS_FROM * N_BINS))
    out = []
    below = bins < first
    if below.any():
        out.append({"band": f"0.0-{BANDS_FROM:.1f}", "n": int(below.sum()), "accuracy": float(correct[below].mean())})
    for b in range(first, N_BINS):
        inside = bins == b
        n = int(inside.sum())
        out.append({"band": f"{b / N_BINS:.1f}-{(b + 1) / N_BINS:.1f}", "n": n,
                    "accuracy": float(correct[inside].mean()) if n else math.nan})
    return out


def _per_criterion(y_score: np.ndarray, pred: np.ndarray, exercises: np.ndarray, criteria: Sequence[dict],
                   criterion_p: dict[str, np.ndarray], threshold: float) -> dict[str, dict]:
    """Per "exercise/criterion" rated on some clip: n (clips rated pass or fail), n_fail, n_pass; auc and f1
    (macro over fail/pass) of its own p(fail) from criterion_p over the rated clips that have one (None
    without a p(fail) model; n_scored says how many); auc_p_incorrect, fail_flagged and pass_flagged: how
    the clip verdict p(incorrect) relates to the criterion (AUC of p(incorrect) for fail against pass, share
    of failing / passing clips predicted incorrect)."""
    keys = sorted({(str(e), name) for e, verdicts in zip(exercises, criteria)
                   for name, v in (verdicts or {}).items() if v in ("pass", "fail")})
    out = {}
    for exercise, name in keys:
        key = f"{exercise}/{name}"
        verdicts = [(verdicts or {}).get(name) if e == exercise else None for e, verdicts in zip(exercises, criteria)]
        fail = np.array([v == "fail" for v in verdicts])
        passed = np.array([v == "pass" for v in verdicts])
        rated = fail | passed
        both = fail.any() and passed.any()
        entry = {
            "n": int(rated.sum()),
            "n_fail": int(fail.sum()),
            "n_pass": int(passed.sum()),
            "auc": math.nan, "f1": math.nan, "n_scored": 0,
            # AUC: chance that a failing clip gets a higher p(incorrect) than a passing one.
            "auc_p_incorrect": float(roc_auc_score(fail[rated], y_score[rated])) if both else math.nan,
            "fail_flagged": float(np.mean(pred[fail] == 1)) if fail.any() else math.nan,
            "pass_flagged": float(np.mean(pred[passed] == 1)) if passed.any() else math.nan,
        }
        if key in criterion_p:
            p_fail = np.asarray(criterion_p[key], dtype=np.float64)
            scored = rated & np.isfinite(p_fail)
            entry["n_scored"] = int(scored.sum())
            if scored.any():
                truth = fail[scored].astype(np.int64)
                entry["f1"] = _macro_f1(truth, (p_fail[scored] >= threshold).astype(np.int64))
                if 0 < truth.sum() < len(truth):
                    entry["auc"] = float(roc_auc_score(truth, p_fail[scored]))
        out[key] = entry
    return out


def _f1_vs_complexity(y: np.ndarray, pred: np.ndarray, exercises: np.ndarray,
                      complexity: Sequence[float | None]) -> tuple[list[dict], float]:
    """Per exercise its mean complexity index and macro F1, sorted by complexity; and their Spearman rank
    correlation across exercises (NaN with fewer than 3 exercises or no spread)."""
    values = np.array([math.nan if c is None else float(c) for c in complexity])
    rows = []
    for ex in sorted(set(exercises.tolist())):
        inside = exercises == ex
        known = values[inside][np.isfinite(values[inside])]
        if known.size == 0:
            continue
        rows.append({"exercise": ex, "complexity": float(known.mean()), "macro_f1": _macro_f1(y[inside], pred[inside]),
                     "n": int(inside.sum())})
    rows.sort(key=lambda r: (r["complexity"], r["exercise"]))
    xs = [r["complexity"] for r in rows]
    ys = [r["macro_f1"] for r in rows]
    rho = math.nan
    if len(rows) >= 3 and len(set(xs)) > 1 and len(set(ys)) > 1:
        rho = float(spearmanr(xs, ys).statistic)
    return rows, rho


def plain(value):
    """JSON-ready copy: numpy arrays and scalars to Python, NaN and infinities to None."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    return value


def _per_value(y: np.ndarray, pred: np.ndarray, keys: np.ndarray) -> dict[str, dict]:
    """{key: {macro_f1, accuracy, n, n_incorrect}} over the clips of each value of keys (an exercise, a view)."""
    return {k: {"macro_f1": _macro_f1(y[keys == k], pred[keys == k]),
                "accuracy": float((pred[keys == k] == y[keys == k]).mean()),
                "n": int(np.sum(keys == k)), "n_incorrect": int(np.sum(y[keys == k]))}
            for k in sorted(set(keys.tolist()))}


def evaluate(y_true: Sequence[int], p_incorrect: Sequence[float], exercises: Sequence[str],
             groups: Sequence | None = None, criteria: Sequence[dict] | None = None,
             complexity: Sequence[float | None] | None = None, threshold: float = 0.5,
             criterion_p: dict[str, Sequence[float]] | None = None,
             views: Sequence[str | None] | None = None) -> dict:
    """Evaluation of clip-level predictions as a JSON-ready dict of numbers (NaN -> None).

    y_true: 0 = correct, 1 = incorrect. p_incorrect: the model's probability of "incorrect"; a clip is
    predicted incorrect when p >= threshold. exercises: one per clip. groups (optional): only counted.
    criteria (optional): per clip {criterion: "pass" | "fail"}. complexity (optional): per clip the
    complexity index or None. criterion_p (optional): "exercise/criterion" -> per clip p(fail) of that
    criterion's own model (NaN where it has none).

    Keys: n_clips, n_groups, threshold, accuracy, balanced_accuracy (mean recall over the classes present),
    macro_f1 (over the classes true or predicted), f1 / precision / recall per class (None when 0 / 0),
    kappa (Cohen), ece (10 equal-width bins on the confidence of the predicted class), confusion
    [[tn, fp], [fn, tp]] with confusion_labels, per_exercise {exercise: {macro_f1, accuracy, n, n_incorrect}},
    reliability (per bin: bin_lo, bin_hi, n, confidence, accuracy), confidence_bands (band, n, accuracy);
    with criteria, per_criterion {"exercise/criterion": {n, n_fail, n_pass, auc, f1, n_scored, auc_p_incorrect,
    fail_flagged, pass_flagged}} (see _per_criterion); with complexity,
    f1_vs_complexity [{exercise, complexity, macro_f1, n}] sorted by complexity and complexity_f1_spearman;
    with views (per clip the camera view or None), per_view {view: {macro_f1, accuracy, n, n_incorrect}} as
    per_exercise ("unknown" for None).
    """
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(p_incorrect, dtype=np.float64)
    ex = np.asarray([str(e) for e in exercises])
    n = len(y)
    if n == 0:
        raise ValueError("nothing to evaluate: no clips")
    if p.shape != y.shape or ex.shape != y.shape:
        raise ValueError(f"y_true ({y.shape}), p_incorrect ({p.shape}) and exercises ({ex.shape}) differ in length")
    if not np.isin(y, [0, 1]).all():
        raise ValueError("y_true must hold 0 (correct) and 1 (incorrect) only")
    if not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
        raise ValueError("p_incorrect must be probabilities in [0, 1] (no NaN)")
    for name, extra in (("groups", groups), ("criteria", criteria), ("complexity", complexity), ("views", views),
                        *((f"criterion_p[{k!r}]", v) for k, v in (criterion_p or {}).items())):
        if extra is not None and len(extra) != n:
            raise ValueError(f"{name} has {len(extra)} entries for {n} clips")

    pred = (p >= threshold).astype(np.int64)
    correct = pred == y
    confidence = np.where(pred == 1, p, 1 - p)
    per_class = _per_class(y, pred)
    recalls = [per_class["recall"][LABELS[c]] for c in np.unique(y)]
    reliability, ece = _reliability(correct, confidence)
    result = {
        "n_clips": n,
        "n_groups": len(set(map(str, groups))) if groups is not None else None,
        "threshold": float(threshold),
        "accuracy": float(correct.mean()),
        "balanced_accuracy": _nanmean(recalls),
        "macro_f1": _macro_f1(y, pred),
        **per_class,
        "kappa": _kappa(y, pred),
        "ece": ece,
        "confusion": [[int(np.sum((y == t) & (pred == q))) for q in (0, 1)] for t in (0, 1)],
        "confusion_labels": list(LABELS),
        "per_exercise": _per_value(y, pred, ex),
        "reliability": reliability,
        "confidence_bands": _bands(correct, confidence),
    }
    if criteria is not None:
        result["per_criterion"] = _per_criterion(p, pred, ex, criteria, dict(criterion_p or {}), threshold)
    if views is not None:
        result["per_view"] = _per_value(y, pred, np.asarray([str(v) if v else "unknown" for v in views]))
    if complexity is not None:
        result["f1_vs_complexity"], result["complexity_f1_spearman"] = _f1_vs_complexity(y, pred, ex, complexity)
    return plain(result)
