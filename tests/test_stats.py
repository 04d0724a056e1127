"""Dataset statistics (store.stats, `python -m curation stats --json`): the old counts unchanged, the tables of
published exercise-video datasets added."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from curation import store
from curation.dataset import import_folder
from curation.project import Project
from tests.conftest import ROOT
from tests.test_dataset import write_folder

# Three squat clips (8, 10, 12 frames) and one plank clip (6 frames), at 30 fps.
ROWS = [
    {"clip_id": "s8", "exercise": "squat", "label": "correct", "fps": "30"},
    {"clip_id": "s10", "exercise": "squat", "label": "incorrect", "fps": "30"},
    {"clip_id": "s12", "exercise": "squat", "label": "", "fps": "30"},
    {"clip_id": "p6", "exercise": "plank", "label": "correct", "fps": "30"},
]
FRAMES = {"s8": 8, "s10": 10, "s12": 12, "p6": 6}


@pytest.fixture
def project(data_dir, tmp_path) -> Project:
    project = Project.open(data_dir)
    rng = np.random.default_rng(0)
    import_folder(project, write_folder(tmp_path / "ds", ROWS, {
        c: rng.random((n, 33, 4)).astype(np.float32) for c, n in FRAMES.items()}))
    for clip, verdict, seconds in (("s8", "correct", 4.0), ("s10", "incorrect", 10.0), ("s12", "skip", 1.0)):
        store.add_label_event(project, {"clip_id": clip, "annotator": "ann", "verdict": verdict, "seconds": seconds,
                                        "joints_engaged": 0.2, "angular_sensitivity": 0.4, "range_of_motion": 0.6,
                                        "balance_demand": 0.8})
    return project


def test_the_old_counts_keep_their_meaning(project):
    s = store.stats(project)
    assert (s["videos"], s["clips"], s["labelled"]) == (0, 4, 3)
    assert s["per_exercise"] == {"plank": {"clips": 1, "labelled": 1}, "squat": {"clips": 3, "labelled": 2}}


def test_clips_and_frames_per_exercise_and_class(project):
    s = store.stats(project)
    squat = s["exercises"]["squat"]
    assert (squat["clips"], squat["frames"], squat["labelled"], squat["labelled_frames"]) == (3, 30, 2, 18)
    assert squat["per_class"] == {"correct": {"clips": 1, "frames": 8}, "incorrect": {"clips": 1, "frames": 10}}
    assert squat["seconds"] == pytest.approx(1.0)
    assert s["per_class"]["correct"] == {"clips": 2, "frames": 14}
    assert s["labelled_frames"] == 24
    assert s["clip_seconds"]["median"] == pytest.approx(9 / 30)


def test_coaches_complexity_and_seconds_per_verdict(project):
    s = store.stats(project)
    assert s["exercises"]["squat"]["complexity_coach"] == pytest.approx(0.5)  # the mean of the four components
    assert s["exercises"]["plank"]["complexity_coach"] is None  # only the import's label, without components
    assert s["seconds_per_verdict"]["correct"]["median"] == 4.0
    assert (s["seconds_per_verdict"]["incorrect"]["n"], s["seconds_per_verdict"]["skip"]["n"]) == (1, 1)


def test_without_videos_the_shares_are_unknown_not_zero(project):
    s = store.stats(project)
    assert s["person_share"]["overall"] is None and s["trimmed_share"]["overall"] is None
    assert (s["resolutions"], s["fps"]) == ({}, {})


def test_the_cli_writes_old_and_new_keys(project, tmp_path):
    out = tmp_path / "stats.json"
    proc = subprocess.run([sys.executable, "-m", "curation", "stats", "--data", str(project.root), "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert {"videos", "clips", "labelled", "per_exercise"} <= result.keys()
    assert {"exercises", "per_class", "video_seconds", "clip_seconds", "resolutions", "fps", "person_share",
            "trimmed_share", "seconds_per_verdict", "labelled_frames"} <= result.keys()
    assert "24 in labelled clips" in proc.stdout


def test_the_trimmed_share_follows_the_coaches_removals_and_their_undo(data_dir):
    from tests.test_provenance import fake_video

    project = Project.open(data_dir)
    fake_video(project, "va")  # 100 frames, 10 % trimmed (spans unknown: ingested before they were kept)
    fake_video(project, "vb", frames=300, trimmed_share=0.0)
    first = store.remove_span(project, "va", 50, 60, "lead")
    store.remove_span(project, "va", 55, 70, "lead")  # overlapping: counted once
    summary = store.trim_summary(project)
    assert summary["per_video"]["va"] == {"automatic": 0.1, "current": 0.3, "frames": 100}
    assert (summary["automatic"], summary["current"]) == (10 / 400, 30 / 400)
    store.undo_trim_event(project, first["id"], "lead")
    assert store.trim_summary(project)["per_video"]["va"]["current"] == 0.25
    assert store.stats(project)["trimmed_share"]["overall"] == 25 / 400
