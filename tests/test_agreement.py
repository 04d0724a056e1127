"""Agreement: kappas and percent agreement against hand-worked and scikit-learn answers, the per-exercise
table and the adjudication queue, on plain rows and on rows read back from a real project."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from curation import store
from curation.agreement import agreement_table, cohen_kappa, disagreements, fleiss_kappa, percent_agreement
from curation.project import Project

# The worked example of Fleiss' kappa (Wikipedia "Fleiss' kappa", after Fleiss 1971): 10 items, 14 raters
# each, 5 categories; n_ij = how many raters put item i in category j.
FLEISS_TABLE = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def ratings_from_counts(table: list[list[int]]) -> list[list[str]]:
    """Items x raters of category names from a table of counts per category."""
    return [[f"c{j}" for j, n in enumerate(row) for _ in range(n)] for row in table]


def label(clip: str, annotator: str, verdict: str, **criteria: str) -> dict:
    """A row shaped like store.current_labels'."""
    return {"clip_id": clip, "annotator": annotator, "verdict": verdict, "criteria": criteria}


def test_fleiss_kappa_matches_the_worked_example():
    # By hand: sum_j n_ij (n_ij - 1) per item = 182, 46, 56, 80, 60, 84, 44, 32, 52, 52 (sum 688), each over
    # 14 * 13 = 182 pairs, so P = 688 / 1820 = 0.3780. Column totals 20, 28, 39, 21, 32 of 140 ratings:
    # P_e = (20^2 + 28^2 + 39^2 + 21^2 + 32^2) / 140^2 = 4170 / 19600 = 0.2128. kappa = (P - P_e) / (1 - P_e).
    p, pe = Fraction(688, 1820), Fraction(4170, 19600)
    ratings = ratings_from_counts(FLEISS_TABLE)
    assert fleiss_kappa(ratings) == pytest.approx(float((p - pe) / (1 - pe)), abs=1e-12)
    assert fleiss_kappa(ratings) == pytest.approx(0.210, abs=5e-4)  # the published figure
    assert percent_agreement(ratings) == pytest.approx(float(p), abs=1e-12)


def test_fleiss_kappa_with_different_numbers_of_raters_per_item():
    ratings = [
        ["a", "a", None],  # 2 ratings, agree: P = 1
        ["a", "b", "b"],  # 3 ratings: 1 agreeing pair (b, b) of 3, P = 1/3
        ["b", None, None],  # one rating: left out
        ["a", "a", "a"],  # P = 1
    ]
    # By hand: P = (1 + 1/3 + 1) / 3 = 7/9; the 8 ratings of the kept items are 6 a and 2 b, so
    # P_e = (6/8)^2 + (2/8)^2 = 5/8; kappa = (7/9 - 5/8) / (1 - 5/8) = 11/27.
    assert fleiss_kappa(ratings) == pytest.approx(11 / 27, abs=1e-12)
    assert percent_agreement(ratings) == pytest.approx(7 / 9, abs=1e-12)


def test_cohen_kappa_equals_scikit_learn_with_unrated_items_dropped():
    rng = np.random.default_rng(3)
    a = list(rng.choice(["correct", "incorrect"], 200, p=[0.7, 0.3]))
    # b agrees with a 75 % of the time and otherwise guesses with its own bias.
    b = [x if rng.random() < 0.75 else rng.choice(["correct", "incorrect"], p=[0.4, 0.6]) for x in a]
    a_gaps = [None if i % 7 == 0 else x for i, x in enumerate(a)]
    b_gaps = [None if i % 11 == 0 else x for i, x in enumerate(b)]
    both = [i for i in range(200) if i % 7 and i % 11]
    expected = cohen_kappa_score([a[i] for i in both], [b[i] for i in both])
    assert 0.2 < expected < 0.8  # a case that tells a wrong chance term apart
    assert cohen_kappa(a_gaps, b_gaps) == pytest.approx(expected, abs=1e-12)


def test_cohen_kappa_with_three_categories_equals_scikit_learn():
    a = ["x", "y", "z", "x", "x", "y", "z", "z", "y", "x"]
    b = ["x", "y", "y", "x", "z", "y", "z", "x", "y", "x"]
    assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)


def test_perfect_agreement_gives_one():
    a = ["correct", "incorrect", "correct", "incorrect", "correct"]
    assert cohen_kappa(a, a) == 1.0
    assert fleiss_kappa([[x, x, x] for x in a]) == pytest.approx(1.0)
    assert percent_agreement([[x, x, x] for x in a]) == 1.0


def test_independent_raters_give_kappa_near_zero():
    rng = np.random.default_rng(0)
    ratings = rng.choice(["correct", "incorrect"], size=(4000, 4), p=[0.6, 0.4]).tolist()
    assert abs(fleiss_kappa(ratings)) < 0.03
    assert abs(cohen_kappa([r[0] for r in ratings], [r[1] for r in ratings])) < 0.05
    # Raw agreement is far from zero by chance alone (0.6^2 + 0.4^2 = 0.52): why kappa is reported.
    assert percent_agreement(ratings) == pytest.approx(0.52, abs=0.02)


def test_undefined_agreement_is_nan():
    assert math.isnan(cohen_kappa([], []))
    assert math.isnan(cohen_kappa(["correct", None], [None, "correct"]))  # no item rated by both
    assert math.isnan(cohen_kappa(["correct"] * 3, ["correct"] * 3))  # one category: chance agreement is 1
    assert math.isnan(fleiss_kappa([["correct"], ["incorrect", None]]))  # no item with two ratings
    assert math.isnan(percent_agreement([["correct"], ["incorrect", None]]))


def test_cohen_kappa_refuses_lists_of_different_length():
    with pytest.raises(ValueError, match="differ in length"):
        cohen_kappa(["correct"], ["correct", "incorrect"])


def test_table_uses_cohen_for_two_coaches_and_scores_criteria_separately():
    verdicts_a = ["correct", "incorrect", "correct", "incorrect", "correct", "incorrect"]
    verdicts_b = verdicts_a  # the coaches agree on every verdict ...
    depth_a = ["pass", "fail", "pass", "fail", "pass", "pass"]
    depth_b = ["pass", "fail", "fail", "pass", "pass", "pass"]  # ... but not on the depth criterion
    labels = []
    for i in range(6):
        labels.append(label(f"s{i}", "ana", verdicts_a[i], depth=depth_a[i]))
        labels.append(label(f"s{i}", "ben", verdicts_b[i], depth=depth_b[i]))
    labels.append(label("s6", "ana", "incorrect", depth="fail"))  # rated once: not an item
    rows = agreement_table(labels, {f"s{i}": "squat" for i in range(7)})
    assert [(r["exercise"], r["criterion"]) for r in rows] == [("squat", None), ("squat", "depth")]
    verdict, depth = rows
    assert verdict["method"] == depth["method"] == "cohen"
    assert verdict["n_items"] == depth["n_items"] == 6 and verdict["n_raters"] == 2
    assert verdict["kappa"] == 1.0 and verdict["percent_agreement"] == 1.0
    assert depth["kappa"] == pytest.approx(cohen_kappa_score(depth_a, depth_b), abs=1e-12)
    assert depth["percent_agreement"] == pytest.approx(4 / 6)


def test_table_uses_fleiss_for_three_coaches_and_splits_by_exercise():
    labels = [
        label("c1", "ana", "correct"), label("c1", "ben", "correct"), label("c1", "cy", "incorrect"),
        label("c2", "ana", "incorrect"), label("c2", "ben", "incorrect"),
        label("c3", "ana", "correct"), label("c3", "cy", "correct"),
        label("q1", "ana", "correct"), label("q1", "ben", "incorrect"),
        label("gone", "ana", "correct"), label("gone", "ben", "incorrect"),  # not an active clip
    ]
    rows = agreement_table(labels, {"c1": "bicep curl", "c2": "bicep curl", "c3": "bicep curl", "q1": "squat"})
    curl, squat = rows
    assert (curl["exercise"], curl["method"], curl["n_items"], curl["n_raters"]) == ("bicep curl", "fleiss", 3, 3)
    # By hand: P_i = 1/3, 1, 1 -> P = 7/9; ratings 4 correct, 3 incorrect of 7 -> P_e = (16 + 9) / 49 = 25/49;
    # kappa = (7/9 - 25/49) / (24/49) = (343 - 225) / (24 * 9) = 118/216.
    assert curl["kappa"] == pytest.approx(118 / 216, abs=1e-12)
    assert curl["percent_agreement"] == pytest.approx(7 / 9)
    assert (squat["exercise"], squat["method"], squat["n_items"]) == ("squat", "cohen", 1)
    assert squat["percent_agreement"] == 0.0


def test_single_coach_has_no_items_and_nan_kappa():
    labels = [label(f"p{i}", "ana", "correct" if i % 2 else "incorrect", body_line="pass") for i in range(5)]
    rows = agreement_table(labels, {f"p{i}": "push-up" for i in range(5)})
    assert [r["criterion"] for r in rows] == [None, "body_line"]
    for row in rows:
        assert row["n_items"] == 0 and row["n_raters"] == 0 and row["method"] is None
        assert math.isnan(row["kappa"]) and math.isnan(row["percent_agreement"])


def test_a_criterion_left_blank_is_not_rated():
    labels = [
        label("s1", "ana", "incorrect", depth="fail"), label("s1", "ben", "incorrect"),
        label("s2", "ana", "correct", depth="pass"), label("s2", "ben", "correct", depth="pass"),
    ]
    _, depth = agreement_table(labels, {"s1": "squat", "s2": "squat"})
    assert depth["n_items"] == 1


def test_disagreements_lists_split_clips_most_split_first():
    labels = [
        label("even", "ana", "correct"), label("even", "ben", "incorrect"),
        label("three_one", "ana", "correct"), label("three_one", "ben", "correct"),
        label("three_one", "cy", "correct"), label("three_one", "dee", "incorrect", depth="fail"),
        label("three_one", "ana", "correct", depth="pass") | {"annotator": "eve"},
        label("even4", "ana", "correct"), label("even4", "ben", "incorrect"),
        label("even4", "cy", "correct"), label("even4", "dee", "incorrect"),
        label("agreed", "ana", "incorrect"), label("agreed", "ben", "incorrect"),
        label("alone", "ana", "correct"),
    ]
    queue = disagreements(labels)
    assert [q["clip_id"] for q in queue] == ["even4", "even", "three_one"]
    assert queue[1]["votes"] == {"ana": "correct", "ben": "incorrect"}
    assert queue[0]["counts"] == {"correct": 2, "incorrect": 2} and queue[0]["split"] == 0.5
    assert queue[2]["split"] == pytest.approx(1 / 5)
    assert queue[2]["criteria"] == ["depth"]  # dee failed it, eve passed it
    assert queue[1]["criteria"] == []


def test_labels_read_back_from_a_project(data_dir: Path):
    """Rows from store.current_labels feed the table; an undo takes a clip off the adjudication queue."""
    project = Project.open(data_dir)
    clips = [{"id": f"k{i}", "video_id": None, "exercise": "squat", "start_frame": 0, "end_frame": 10, "fps": 30.0,
              "method": "imported", "pose_path": None, "group_name": None, "source": None} for i in range(4)]
    store.add_clips(project, clips, [])
    votes = {"k0": ("correct", "correct"), "k1": ("incorrect", "incorrect"), "k2": ("correct", "incorrect"),
             "k3": ("incorrect", "incorrect")}
    last = None
    for clip, (a, b) in votes.items():
        store.add_label_event(project, {"clip_id": clip, "annotator": "ana", "verdict": a,
                                        "criteria": {"depth": "pass"}})
        last = store.add_label_event(project, {"clip_id": clip, "annotator": "ben", "verdict": b,
                                               "criteria": {"depth": "pass" if a == b else "fail"}})
    exercise_of = {c["id"]: c["exercise"] for c in store.list_clips(project)}
    labels = store.current_labels(project)
    verdict, depth = agreement_table(labels, exercise_of)
    assert verdict["n_items"] == 4 and verdict["method"] == "cohen"
    assert verdict["kappa"] == pytest.approx(
        cohen_kappa_score([v[0] for v in votes.values()], [v[1] for v in votes.values()]), abs=1e-12)
    assert depth["criterion"] == "depth" and depth["percent_agreement"] == pytest.approx(3 / 4)
    assert [q["clip_id"] for q in disagreements(labels)] == ["k2"]

    # ben changes his mind on k2 (a new verdict event), then undoes his k3 verdict: k3 now has one rating.
    store.add_label_event(project, {"clip_id": "k2", "annotator": "ben", "verdict": "correct"})
    store.add_label_event(project, {"clip_id": "k3", "annotator": "ben", "kind": "undo", "undoes": last})
    labels = store.current_labels(project)
    assert disagreements(labels) == []
    assert agreement_table(labels, exercise_of)[0]["n_items"] == 3


def test_criteria_sharing_a_name_are_keyed_by_exercise_and_old_rubric_labels_leave_the_table(data_dir: Path):
    """Squat "depth" and push-up "depth" are two rows; a clip moved to another exercise drops the labels made
    under the old one (their criteria judged the old rubric) until coaches judge it again."""
    project = Project.open(data_dir)
    clips = [{"id": f"{ex[0]}{i}", "video_id": None, "exercise": ex, "start_frame": 0, "end_frame": 10,
              "fps": 30.0, "method": "imported", "pose_path": None} for ex in ("squat", "push-up") for i in range(3)]
    store.add_clips(project, clips, [])
    for clip in clips:
        agree = clip["exercise"] == "squat"  # coaches agree on squat depth, disagree on push-up depth
        for who, mark in (("ana", "fail"), ("ben", "fail" if agree else "pass")):
            store.add_label_event(project, {"clip_id": clip["id"], "annotator": who, "verdict": "incorrect",
                                            "criteria": {"depth": mark}})
    store.change_exercise(project, "lunge", "ana", clip_id="s0")
    exercise_of = {c["id"]: c["exercise"] for c in store.list_clips(project)}
    rows = {(r["exercise"], r["criterion"]): r for r in agreement_table(store.current_labels(project), exercise_of)}
    assert set(rows) == {("push-up", None), ("push-up", "depth"), ("squat", None), ("squat", "depth")}
    assert rows["squat", "depth"]["percent_agreement"] == 1.0 and rows["squat", "depth"]["n_items"] == 2
    assert rows["push-up", "depth"]["percent_agreement"] == 0.0 and rows["push-up", "depth"]["n_items"] == 3
