"""Reviewable trimming on a real ingested video: removed spans kept with their reasons, restored as clips,
kept parts removed, every change an undoable event; provenance of a local file."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest

from curation import store, timeline
from curation.pipeline import ingest_source
from curation.pose import load_track
from curation.project import Project
from curation.trim import STILL, find_movement

pytestmark = pytest.mark.slow
VIDEO = "twix/correct-squat.mp4"  # 382 frames at 25 fps: he stands still before the first of four squats


@pytest.fixture(scope="session")
def ingested_squat(videos, tmp_path_factory) -> Path:
    """A project folder holding twix/correct-squat.mp4 ingested once (copy it before changing it)."""
    folder = tmp_path_factory.mktemp("ingested") / "project"
    ingest_source(Project.open(folder), str(videos / VIDEO), "squat")
    return folder


@pytest.fixture
def project(ingested_squat, tmp_path) -> Project:
    return Project.open(shutil.copytree(ingested_squat, tmp_path / "project"))


def only_video(project: Project) -> dict:
    [video] = store.list_videos(project)
    return video


def test_the_spans_the_trim_removed_are_kept_with_their_reasons(project):
    video = only_video(project)
    track = load_track(project.path(video["pose_path"]))
    trim = find_movement(track.landmarks, track.fps, motion=track.motion, aspect=video["width"] / video["height"])
    spans = store.removed_spans(project, video["id"])
    assert [(s["start_frame"], s["end_frame"], s["reason"]) for s in spans] == trim.removed
    assert spans and spans[0]["start_frame"] == 0 and spans[0]["reason"] == STILL
    removed = sum(s["end_frame"] - s["start_frame"] for s in spans)
    assert removed / video["frames"] == pytest.approx(video["trimmed_share"])


def test_the_timeline_shows_kept_clips_and_removed_spans_in_order(project):
    video = only_video(project)
    parts = timeline.video_timeline(project, video["id"])
    clips = [p for p in parts if p["kind"] == "clip"]
    assert [p["clip_id"] for p in clips] == [c["id"] for c in store.list_clips(project)]
    assert {p["reason"] for p in clips} == {timeline.KEPT}
    removed = [(p["start_frame"], p["end_frame"], p["reason"]) for p in parts if p["kind"] == "removed"]
    assert removed == [(s["start_frame"], s["end_frame"], s["reason"])
                       for s in store.removed_spans(project, video["id"])]
    assert [p["start_frame"] for p in parts] == sorted(p["start_frame"] for p in parts)


def test_a_removed_span_is_restored_as_clips_and_the_restore_can_be_undone(project):
    video = only_video(project)
    span = store.removed_spans(project, video["id"])[0]
    before = {c["id"] for c in store.list_clips(project)}
    made = timeline.restore_span(project, video["id"], span["start_frame"], span["end_frame"], "lead")
    new = [c for c in store.list_clips(project) if c["id"] not in before]
    assert [c["id"] for c in new] == made["clips"] and new
    assert all(span["start_frame"] <= c["start_frame"] < c["end_frame"] <= span["end_frame"] for c in new)
    assert all(c["exercise"] == "squat" and c["complexity"] is not None for c in new)
    parts = timeline.video_timeline(project, video["id"])
    assert {p["reason"] for p in parts if p["clip_id"] in made["clips"]} == {timeline.RESTORED}
    assert not any(p["kind"] == "removed" and p["start_frame"] == span["start_frame"] for p in parts)
    summary = store.trim_summary(project)
    assert summary["current"] < summary["automatic"] == pytest.approx(video["trimmed_share"])

    store.undo_trim_event(project, made["id"], "lead")
    assert {c["id"] for c in store.list_clips(project)} == before
    assert store.trim_summary(project)["current"] == pytest.approx(video["trimmed_share"])
    assert [e["action"] for e in store.trim_events(project, video["id"])] == ["restore", "undo"]


def test_removing_a_kept_part_excludes_its_clips_until_undone(project):
    video = only_video(project)
    first = store.list_clips(project)[0]
    labelled = store.add_label_event(project, {"clip_id": first["id"], "annotator": "ann", "verdict": "correct"})
    gone = timeline.remove_span(project, video["id"], first["start_frame"], first["end_frame"], "lead")
    assert gone["clips"] == [first["id"]]
    assert first["id"] not in {c["id"] for c in store.list_clips(project)}
    assert first["id"] in store.excluded_clip_ids(project)  # an exclusion like any other, with its reason
    removed = [p for p in timeline.video_timeline(project, video["id"]) if p["reason"] == timeline.REMOVED_BY_COACH]
    assert [(p["start_frame"], p["end_frame"]) for p in removed] == [(first["start_frame"], first["end_frame"])]
    assert store.trim_summary(project)["current"] > video["trimmed_share"]
    assert store.label_history(project, first["id"])[0]["id"] == labelled  # the label stays in the history
    store.undo_trim_event(project, gone["id"], "lead")
    assert first["id"] in {c["id"] for c in store.list_clips(project)}
    assert first["id"] not in store.excluded_clip_ids(project)
    with pytest.raises(store.StoreError, match="undone already"):
        store.undo_trim_event(project, gone["id"], "lead")


def test_spans_outside_the_video_are_refused(project):
    video = only_video(project)
    with pytest.raises(store.StoreError, match="within the video's frames"):
        store.remove_span(project, video["id"], 10, video["frames"] + 5, "lead")
    with pytest.raises(store.StoreError, match="holds no frame"):
        timeline.restore_span(project, video["id"], 50, 50, "lead")


def test_a_local_file_keeps_its_name_hash_and_duration_as_provenance(project, videos):
    video = only_video(project)
    digest = hashlib.sha256((videos / VIDEO).read_bytes()).hexdigest()
    assert video["source_key"] == f"sha256:{digest}"
    assert Path(video["source"]).name == "correct-squat.mp4"
    assert video["duration"] == pytest.approx(382 / 25, abs=0.1)
    assert (video["channel"], video["upload_date"], video["webpage_url"], video["athlete"]) == ("", "", "", "")
    assert np.isclose(store.stats(project)["video_seconds"]["total"], 382 / 25)
