"""Label quality: confident learning on out-of-fold predictions and the "check again" queue."""

from __future__ import annotations

import numpy as np
import pytest

from curation import store
from curation.dataset import import_folder
from curation.project import Project
from curation.sample import sample_project
from model import quality
from model.train import RunConfig, train_run
from tests.test_dataset import pose_trainer_clips, write_folder
from tests.conftest import flip_labels


def test_a_clip_whose_other_class_passes_its_confident_threshold_is_flagged_most_doubtful_first():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.9, 0.8, 0.9, 0.15])
    # thresholds: correct = mean(0.9, 0.8, 0.1) = 0.60, incorrect = mean(0.8, 0.9, 0.15) = 0.617
    np.testing.assert_allclose(quality.confident_thresholds(y, p), [0.6, 0.6166667], atol=1e-6)
    assert quality.label_issues(y, p).tolist() == [2, 5]  # margins 0.9-0.1 = 0.8 and 0.85-0.15 = 0.7


def test_leaning_the_other_way_is_not_enough_below_the_threshold():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.55, 0.1, 0.1, 0.95, 0.95, 0.9])  # clip 0 leans incorrect, but far below 0.93
    assert quality.label_issues(y, p).tolist() == []


def test_a_clip_without_a_prediction_is_never_flagged():
    y = np.array([0, 1, 0, 1])
    p = np.array([np.nan, 0.1, 0.2, 0.9])
    assert 0 not in quality.label_issues(y, p).tolist()
    assert quality.label_issues(y, np.full(4, np.nan)).tolist() == []


def test_without_a_run_the_queue_says_to_train_first(data_dir):
    project = Project.open(data_dir)
    with pytest.raises(quality.NoOutOfFoldPredictions, match="train a model"):
        quality.check_again(project)


def test_flipped_labels_of_a_real_dataset_come_to_the_top_of_the_check_again_queue(shared_data, data_dir, tmp_path):
    """pose_trainer's 112 real clips with 10 % of the labels flipped on purpose: at least half of the flipped
    clips are in the first 2 x (number flipped) of the queue, a coach's short list, not the whole dataset."""
    rows, arrays = pose_trainer_clips(shared_data)
    rng = np.random.default_rng(0)
    flip = set(rng.choice(len(rows), len(rows) // 10, replace=False).tolist())
    for i in flip:
        rows[i]["label"] = "incorrect" if rows[i]["label"] == "correct" else "correct"
    flipped = {rows[i]["clip_id"] for i in flip}
    project = Project.open(data_dir)
    import_folder(project, write_folder(tmp_path / "flipped", rows, arrays), "openpose18")
    train_run(project, RunConfig(model="baseline"))
    queue = [d.clip_id for d in quality.check_again(project)]
    top = queue[: 2 * len(flipped)]
    assert len(set(top) & flipped) >= len(flipped) / 2, (len(flipped), queue)
    assert all(d.reason.startswith("labelled ") for d in quality.check_again(project))


def _sample_with_wrong_labels_and_a_run(data_dir) -> Project:
    """The sample project with 8 labels made clearly wrong (so the queue is not empty) and a baseline run."""
    project = Project.open(data_dir)
    sample_project(project)
    flip_labels(project, 8)
    train_run(project, RunConfig(model="baseline"))
    return project


def test_a_second_look_is_a_new_event_and_leaves_the_queue_until_the_next_run(data_dir):
    project = _sample_with_wrong_labels_and_a_run(data_dir)
    queue = quality.check_again(project)
    assert queue, "flipped sample labels should be doubted"
    first = queue[0]
    before = len(store.label_history(project, first.clip_id))
    event = store.add_label_event(project, {"clip_id": first.clip_id, "annotator": "kim", "verdict": first.label})
    assert len(store.label_history(project, first.clip_id)) == before + 1  # appended, nothing overwritten
    assert first.clip_id not in {d.clip_id for d in quality.check_again(project)}
    store.add_label_event(project, {"clip_id": first.clip_id, "annotator": "kim", "kind": "undo", "undoes": event})
    assert first.clip_id in {d.clip_id for d in quality.check_again(project)}  # undone: back in the queue
    only = quality.check_again(project, exercise=first.exercise)
    assert only and {d.exercise for d in only} == {first.exercise}


def test_an_excluded_clip_leaves_the_check_again_queue_and_comes_back_when_restored(data_dir):
    project = _sample_with_wrong_labels_and_a_run(data_dir)
    first = quality.check_again(project)[0]
    store.set_excluded(project, "lead", True, "camera fell over", clip_id=first.clip_id)
    assert first.clip_id not in {d.clip_id for d in quality.check_again(project)}
    store.set_excluded(project, "lead", False, clip_id=first.clip_id)
    assert first.clip_id in {d.clip_id for d in quality.check_again(project)}
