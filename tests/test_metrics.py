"""Metrics: each number against scikit-learn or a hand computation, calibration, degenerate cases, JSON."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, cohen_kappa_score, confusion_matrix, f1_score,
                             precision_recall_fscore_support, roc_auc_score)

from model.metrics import evaluate

CLASSES = ("correct", "incorrect")


def sklearn_reference(y: np.ndarray, pred: np.ndarray) -> dict:
    """The same numbers from scikit-learn (undefined 0 / 0 as NaN, excluded from macro averages)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns on the degenerate cases this is also used for
        p, r, f, _ = precision_recall_fscore_support(y, pred, labels=[0, 1], zero_division=np.nan)
        return {
            "accuracy": accuracy_score(y, pred),
            "balanced_accuracy": balanced_accuracy_score(y, pred),
            "macro_f1": f1_score(y, pred, average="macro", zero_division=np.nan),
            "precision": p, "recall": r, "f1": f,
            "kappa": cohen_kappa_score(y, pred),
            "confusion": confusion_matrix(y, pred, labels=[0, 1]).tolist(),
        }


def assert_matches(result: dict, ref: dict) -> None:
    def same(ours, theirs) -> bool:
        return (ours is None and np.isnan(theirs)) or (ours is not None and ours == pytest.approx(theirs, abs=1e-12))

    for key in ("accuracy", "balanced_accuracy", "macro_f1", "kappa"):
        assert same(result[key], ref[key]), key
    for key in ("precision", "recall", "f1"):
        for c, name in enumerate(CLASSES):
            assert same(result[key][name], ref[key][c]), (key, name)
    assert result["confusion"] == ref["confusion"]


def test_a_hand_made_case_matches_scikit_learn():
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.7, 0.4, 0.05, 0.6, 0.9, 0.3, 0.8, 0.55])
    pred = (p >= 0.5).astype(int)
    result = evaluate(y, p, ["squat"] * 10)
    assert_matches(result, sklearn_reference(y, pred))
    assert result["confusion"] == [[4, 2], [1, 3]] and result["confusion_labels"] == ["correct", "incorrect"]
    assert result["accuracy"] == 0.7 and result["n_clips"] == 10


def test_random_and_degenerate_cases_match_scikit_learn():
    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(1, 30))
        y = (rng.random(n) < rng.uniform(0, 1)).astype(int)
        p = rng.random(n) if trial % 3 else np.full(n, float(trial % 2))  # every third: one predicted class
        result = evaluate(y, p, ["a"] * n)
        assert_matches(result, sklearn_reference(y, (p >= 0.5).astype(int)))


def test_threshold_moves_the_decision():
    y = np.array([0, 1, 1])
    p = np.array([0.2, 0.3, 0.6])
    assert evaluate(y, p, ["a"] * 3)["confusion"] == [[1, 0], [1, 1]]
    assert evaluate(y, p, ["a"] * 3, threshold=0.25)["confusion"] == [[1, 0], [0, 2]]


def test_ece_and_reliability_on_a_hand_computed_case():
    y = np.array([1, 0, 0, 1, 1])
    p = np.array([0.9, 0.8, 0.3, 0.55, 0.95])
    # Predicted: 1 1 0 1 1; confidence .9 .8 .7 .55 .95; right: yes no yes yes yes.
    # Bins [0.9,1): 2 clips, conf .925, acc 1 -> 2/5 * .075; [0.8,0.9): conf .8, acc 0 -> 1/5 * .8;
    # [0.7,0.8): conf .7, acc 1 -> 1/5 * .3; [0.5,0.6): conf .55, acc 1 -> 1/5 * .45.
    result = evaluate(y, p, ["a"] * 5)
    assert result["ece"] == pytest.approx(0.4 * 0.075 + 0.2 * 0.8 + 0.2 * 0.3 + 0.2 * 0.45)
    bins = {r["bin_lo"]: r for r in result["reliability"]}
    assert len(bins) == 10 and bins[0.9]["n"] == 2 and bins[0.9]["confidence"] == pytest.approx(0.925)
    assert bins[0.8]["accuracy"] == 0.0 and bins[0.6]["n"] == 0 and bins[0.6]["accuracy"] is None
    bands = {b["band"]: b for b in result["confidence_bands"]}
    assert list(bands) == ["0.5-0.6", "0.6-0.7", "0.7-0.8", "0.8-0.9", "0.9-1.0"]
    assert (bands["0.9-1.0"]["n"], bands["0.8-0.9"]["accuracy"], bands["0.6-0.7"]["n"]) == (2, 0.0, 0)


def test_bin_edges_are_left_closed():
    # A confidence of exactly 0.6 or 0.7 (as floats) belongs to the bin that starts there; 1.0 to the last.
    result = evaluate([0, 1, 1], [0.4, 0.7, 1.0], ["a"] * 3)
    counts = {b["band"]: b["n"] for b in result["confidence_bands"]}
    assert counts == {"0.5-0.6": 0, "0.6-0.7": 1, "0.7-0.8": 1, "0.8-0.9": 0, "0.9-1.0": 1}


def test_calibrated_probabilities_give_an_ece_near_zero_and_overconfident_ones_do_not():
    rng = np.random.default_rng(1)
    p = rng.random(100_000)
    y = (rng.random(p.size) < p).astype(int)  # the outcome happens with exactly probability p
    calibrated = evaluate(y, p, ["a"] * p.size)
    assert calibrated["ece"] < 0.01
    for row in calibrated["reliability"]:
        if row["n"]:
            assert row["accuracy"] == pytest.approx(row["confidence"], abs=0.02)
    overconfident = np.where(p >= 0.5, 0.99, 0.01)
    assert evaluate(y, overconfident, ["a"] * p.size)["ece"] > 0.2


def test_per_exercise_results_match_the_subsets():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 40)
    p = rng.random(40)
    ex = np.array(["squat"] * 25 + ["plank"] * 14 + ["lunge"])
    result = evaluate(y, p, ex)
    assert sorted(result["per_exercise"]) == ["lunge", "plank", "squat"]
    for name in ("squat", "plank"):
        mask = ex == name
        row = result["per_exercise"][name]
        ref = sklearn_reference(y[mask], (p[mask] >= 0.5).astype(int))
        assert (row["n"], row["n_incorrect"]) == (mask.sum(), y[mask].sum())
        assert row["macro_f1"] == pytest.approx(ref["macro_f1"]) and row["accuracy"] == pytest.approx(ref["accuracy"])
    one = result["per_exercise"]["lunge"]  # a single clip: F1 of the one class there, no crash
    assert one["n"] == 1 and one["macro_f1"] in (0.0, 1.0)


def test_per_criterion_auc_separates_failed_from_passed_clips():
    p = np.array([0.9, 0.8, 0.3, 0.6, 0.2, 0.1, 0.7])
    y = (p >= 0.5).astype(int)
    criteria = [{"depth": "fail"}, {"depth": "fail", "knees": "fail"}, {"depth": "pass"}, {"depth": "pass"},
                {"depth": "pass"}, {}, {"knees": "fail", "depth": ""}]
    result = evaluate(y, p, ["squat"] * 7, criteria=criteria)["per_criterion"]
    assert sorted(result) == ["squat/depth", "squat/knees"]
    depth = result["squat/depth"]
    assert (depth["n_fail"], depth["n_pass"], depth["n"]) == (2, 3, 5)
    assert depth["auc_p_incorrect"] == pytest.approx(roc_auc_score([1, 1, 0, 0, 0], [0.9, 0.8, 0.3, 0.6, 0.2])) == 1.0
    assert depth["fail_flagged"] == 1.0 and depth["pass_flagged"] == pytest.approx(1 / 3)
    assert depth["auc"] is None and depth["f1"] is None  # no p(fail) model given
    knees = result["squat/knees"]
    assert (knees["n_fail"], knees["n_pass"], knees["auc_p_incorrect"]) == (2, 0, None)  # no passing clip: no AUC


def test_criteria_of_the_same_name_in_two_exercises_are_kept_apart():
    # A squat's depth and a push-up's depth are different faults: pooled, the push-up's passing clips would
    # count against the squat's model and the counts would mix.
    exercises = ["squat"] * 4 + ["push-up"] * 4
    criteria = [{"depth": v} for v in ("fail", "fail", "pass", "pass", "fail", "pass", "pass", "pass")]
    p = np.linspace(0.1, 0.9, 8)
    result = evaluate((p >= 0.5).astype(int), p, exercises, criteria=criteria)["per_criterion"]
    assert sorted(result) == ["push-up/depth", "squat/depth"]
    assert (result["squat/depth"]["n_fail"], result["squat/depth"]["n"]) == (2, 4)
    assert (result["push-up/depth"]["n_fail"], result["push-up/depth"]["n"]) == (1, 4)


def test_per_criterion_scores_each_criterions_own_p_fail_on_its_rated_clips():
    exercises = ["squat"] * 6
    criteria = [{"depth": v} for v in ("fail", "fail", "fail", "pass", "pass", "")]
    p_fail = np.array([0.9, 0.4, 0.7, 0.6, 0.1, np.nan])
    p = np.full(6, 0.5)
    entry = evaluate(np.ones(6, dtype=int), p, exercises, criteria=criteria,
                     criterion_p={"squat/depth": p_fail})["per_criterion"]["squat/depth"]
    truth, scores = [1, 1, 1, 0, 0], p_fail[:5]
    assert entry["auc"] == pytest.approx(roc_auc_score(truth, scores))
    assert entry["f1"] == pytest.approx(f1_score(truth, scores >= 0.5, average="macro"))
    assert (entry["n"], entry["n_fail"], entry["n_scored"]) == (5, 3, 5)


def test_f1_against_complexity_is_sorted_by_complexity():
    y = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    p = np.array([0.1, 0.9, 0.2, 0.8, 0.9, 0.1, 0.1, 0.9])  # plank and squat right, deadlift wrong
    ex = ["plank", "plank", "squat", "squat", "deadlift", "deadlift", "crunch", "crunch"]
    complexity = [0.2, 0.4, 0.7, 0.9, 0.5, None, None, None]
    result = evaluate(y, p, ex, complexity=complexity)
    rows = result["f1_vs_complexity"]
    assert [r["exercise"] for r in rows] == ["plank", "deadlift", "squat"]  # crunch: no complexity known
    assert [r["complexity"] for r in rows] == pytest.approx([0.3, 0.5, 0.8])
    assert [r["macro_f1"] for r in rows] == pytest.approx([1.0, 0.0, 1.0])
    assert result["complexity_f1_spearman"] == pytest.approx(0.0)


def test_one_class_only_does_not_crash_and_gives_json_with_nulls():
    result = evaluate([0, 0, 0], [0.1, 0.2, 0.3], ["a", "b", "b"], groups=["g1", "g1", "g2"],
                      criteria=[{}, {}, {}], complexity=[None, None, None])
    text = json.dumps(result, allow_nan=False)  # no NaN, no numpy types
    assert json.loads(text) == result
    assert result["kappa"] is None and result["recall"]["incorrect"] is None and result["f1"]["incorrect"] is None
    assert result["accuracy"] == 1.0 and result["macro_f1"] == 1.0 and result["n_groups"] == 2
    assert result["per_criterion"] == {} and result["f1_vs_complexity"] == []


def test_full_result_is_json_serialisable(tmp_path):
    rng = np.random.default_rng(3)
    n = 50
    result = evaluate(rng.integers(0, 2, n), rng.random(n), rng.choice(["a", "b"], n), groups=rng.integers(0, 9, n),
                      criteria=[{"c": rng.choice(["pass", "fail"])} for _ in range(n)],
                      complexity=rng.random(n).astype(np.float32))
    (tmp_path / "m.json").write_text(json.dumps(result, allow_nan=False))
    assert json.loads((tmp_path / "m.json").read_text()) == result
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "f1", "precision", "recall", "kappa", "ece", "confusion",
                "per_exercise", "reliability", "confidence_bands", "per_criterion", "f1_vs_complexity"):
        assert key in result


@pytest.mark.parametrize("args, message", [
    (([], [], []), "no clips"),
    (([0, 1], [0.5], ["a", "a"]), "differ in length"),
    (([0, 2], [0.5, 0.5], ["a", "a"]), "0 \\(correct\\) and 1"),
    (([0, 1], [0.5, np.nan], ["a", "a"]), "probabilities"),
    (([0, 1], [0.5, 1.5], ["a", "a"]), "probabilities"),
])
def test_bad_input_is_refused_with_the_reason(args, message):
    with pytest.raises(ValueError, match=message):
        evaluate(*args)
