"""Sample project: the synthetic folder imports, its counts, its faults seen by the kinematics, determinism
and a grouped classifier that learns it."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from curation import catalogue, store
from curation.dataset import import_folder, load_clip_landmarks
from curation.kinematics import ANGLES, joint_angles
from curation.project import Project
from curation.sample import SOURCE, SampleError, make_sample, sample_project

EXERCISES = ("squat", "bicep curl", "push-up")
COLUMNS = list(ANGLES)


def read_rows(folder: Path) -> list[dict]:
    with (folder / "clips.csv").open(newline="") as fh:
        return list(csv.DictReader(fh))


def angle(landmarks: np.ndarray, name: str) -> np.ndarray:
    """(T,) one angle of curation.kinematics, averaged over left and right when name has no side."""
    angles = joint_angles(landmarks)
    names = [name] if name in ANGLES else [f"left_{name}", f"right_{name}"]
    return angles[:, [COLUMNS.index(n) for n in names]].mean(axis=1)


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    return make_sample(tmp_path_factory.mktemp("sample") / "folder")


@pytest.fixture(scope="module")
def rows(sample: Path) -> list[dict]:
    return read_rows(sample)


def test_folder_imports_into_a_fresh_project(sample: Path, data_dir: Path):
    project = Project.open(data_dir)
    result = import_folder(project, sample)
    assert (result.clips, result.added, result.skipped, result.labelled) == (72, 72, 0, 48)
    stats = store.stats(project)
    assert stats["per_exercise"] == {e: {"clips": 24, "labelled": 16} for e in EXERCISES}


def test_counts_per_exercise_and_label(rows: list[dict]):
    counts = Counter((r["exercise"], r["label"]) for r in rows)
    assert counts == {(e, lab): 8 for e in EXERCISES for lab in ("correct", "incorrect", "")}
    assert {r["source"] for r in rows} == {SOURCE}
    assert {r["fps"] for r in rows} == {"30.0"}
    for exercise in EXERCISES:
        athletes = {r["group"] for r in rows if r["exercise"] == exercise}
        assert len(athletes) == 4
        for athlete in athletes:  # every athlete shows both classes, so a grouped split can stratify
            assert {r["label"] for r in rows if r["group"] == athlete} >= {"correct", "incorrect"}


def test_a_smaller_sample_keeps_a_third_unlabelled(tmp_path: Path):
    rows = read_rows(make_sample(tmp_path / "small", clips_per_class=3, seed=5))
    counts = Counter((r["exercise"], r["label"]) for r in rows)
    assert counts == {(e, lab): n for e in EXERCISES for lab, n in (("correct", 2), ("incorrect", 2), ("", 2))}


def test_criteria_come_from_the_catalogue_and_explain_the_label(rows: list[dict]):
    known = {e.name: {c.name for c in e.criteria} for e in catalogue.EXERCISES}
    for r in rows:
        marks = {k.removeprefix("criterion:"): v for k, v in r.items() if k.startswith("criterion:") and v}
        assert set(marks) <= known[r["exercise"]]
        if r["label"] == "":
            assert marks == {}
        elif r["label"] == "correct":
            assert marks and set(marks.values()) == {"pass"}
        else:  # exactly one fault per incorrect clip
            assert list(marks.values()).count("fail") == 1


def test_arrays_are_blazepose_side_views_without_depth(sample: Path, rows: list[dict]):
    for r in rows:
        a = np.load(sample / "poses" / f"{r['clip_id']}.npy")
        assert a.dtype == np.float32 and a.shape[1:] == (33, 4)
        assert 45 <= a.shape[0] <= 90  # one repetition of 1.5-3 s at 30 fps
        assert np.isnan(a[..., 2]).all()
        assert np.isfinite(a[..., [0, 1, 3]]).all()
        assert 0.8 <= a[..., 3].min() and a[..., 3].max() <= 1 and 0.85 < a[..., 3].mean() < 0.95
        assert -0.05 < a[..., :2].min() and a[..., :2].max() < 1.05


# exercise, failed criterion, angle, statistic over the clip, whether the fault makes it larger
FAULTS = [
    ("squat", "depth", "knee", "min", True),
    ("squat", "trunk_lean", "trunk_lean", "max", True),
    ("bicep curl", "elbow_fixed", "shoulder", "max", True),
    ("bicep curl", "no_swing", "trunk_lean", "max", True),
    ("push-up", "body_line", "hip", "min", False),
    ("push-up", "depth", "elbow", "min", True),
]


@pytest.mark.parametrize("exercise, criterion, name, stat, larger", FAULTS)
def test_fault_separates_from_correct_clips_in_the_kinematics(sample, rows, exercise, criterion, name, stat, larger):
    reduce = np.nanmin if stat == "min" else np.nanmax
    values = {"correct": [], "fault": []}
    for r in rows:
        if r["exercise"] == exercise and r["label"]:
            kind = "fault" if r[f"criterion:{criterion}"] == "fail" else "correct" if r["label"] == "correct" else None
            if kind:
                values[kind].append(reduce(angle(np.load(sample / "poses" / f"{r['clip_id']}.npy"), name)))
    assert len(values["correct"]) == 8 and len(values["fault"]) >= 2
    if larger:
        assert min(values["fault"]) > max(values["correct"]) + 5
    else:
        assert max(values["fault"]) < min(values["correct"]) - 5


def test_shallow_squats_stay_above_110_degrees_and_full_ones_go_below_95(sample, rows):
    for r in rows:
        if r["exercise"] == "squat" and r["label"]:
            knee = np.nanmin(angle(np.load(sample / "poses" / f"{r['clip_id']}.npy"), "knee"))
            if r["criterion:depth"] == "fail":
                assert knee > 110, r["clip_id"]
            else:
                assert knee < 95, r["clip_id"]


def test_same_seed_gives_the_same_folder_and_another_seed_does_not(tmp_path: Path):
    one, two, other = (make_sample(tmp_path / name, clips_per_class=2, seed=seed)
                       for name, seed in (("one", 7), ("two", 7), ("other", 8)))
    assert (one / "clips.csv").read_bytes() == (two / "clips.csv").read_bytes()
    for r in read_rows(one):
        name = f"{r['clip_id']}.npy"
        np.testing.assert_array_equal(np.load(one / "poses" / name), np.load(two / "poses" / name))
    assert (one / "clips.csv").read_bytes() != (other / "clips.csv").read_bytes()


def test_refuses_a_folder_in_use_and_an_empty_sample(tmp_path: Path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    with pytest.raises(SampleError, match="not empty"):
        make_sample(tmp_path / "used")
    assert sorted(p.name for p in (tmp_path / "used").iterdir()) == ["notes.txt"]
    with pytest.raises(SampleError, match="at least 1"):
        make_sample(tmp_path / "none", clips_per_class=0)


def test_sample_project_imports_the_sample_once(data_dir: Path):
    project = Project.open(data_dir)
    first = sample_project(project, clips_per_class=3)
    assert (first.added, first.labelled) == (18, 12)
    assert sample_project(project, clips_per_class=3).added == 0
    assert list(project.work.iterdir()) == []  # the temporary folder is gone
    clips = store.list_clips(project)
    assert len(clips) == 18 and {c["source"] for c in clips} == {SOURCE}
    assert load_clip_landmarks(project, clips[0]).shape[1:] == (33, 4)
    consensus = store.consensus_labels(project)
    assert Counter(v["label"] for v in consensus.values()) == {"correct": 6, "incorrect": 6}


def test_a_grouped_classifier_learns_the_sample(data_dir: Path):
    """Per-clip min and max of the exercise's fault angles, logistic regression, folds by athlete: the
    balanced accuracy is well above chance (0.5)."""
    project = Project.open(data_dir)
    sample_project(project)
    consensus = store.consensus_labels(project)
    for exercise in EXERCISES:
        names = sorted({name for ex, _, name, _, _ in FAULTS if ex == exercise})
        clips = [c for c in store.list_clips(project, exercise=exercise) if c["id"] in consensus]
        features, labels, groups = [], [], []
        for clip in clips:
            lm = load_clip_landmarks(project, clip)
            features.append([f(angle(lm, n)) for n in names for f in (np.nanmin, np.nanmax)])
            labels.append(consensus[clip["id"]]["label"])
            groups.append(clip["group_name"])
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        predicted = cross_val_predict(model, np.array(features), labels, groups=groups, cv=GroupKFold(4))
        assert balanced_accuracy_score(labels, predicted) >= 0.8, exercise
