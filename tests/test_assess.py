"""Assess: a new real video judged repetition by repetition by a trained run, without entering the dataset."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from curation import store
from curation.landmarks import NAMES
from curation.pose import load_track
from curation.project import Project
from curation.sample import sample_project
from model import assess, runs
from model.train import RunConfig, train_run
from tests.conftest import ROOT

# twix/knee_squat.mp4: 4 squats, deepest at about frames 20, 84, 140, 196 (counted by eye, tests/test_segment.py).
KNEE_SQUAT = "twix/knee_squat.mp4"
DEEPEST = [20, 84, 140, 196]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Project, str]:
    """The sample project (squat, bicep curl, push-up with known faults, enough criterion verdicts for
    per-criterion models) and one baseline run."""
    project = Project.open(tmp_path_factory.mktemp("assess") / "project")
    sample_project(project, clips_per_class=15)
    return project, train_run(project, RunConfig(model="baseline", folds=3))["run_id"]


@pytest.fixture(scope="module")
def assessed(trained, videos) -> tuple[Project, assess.Assessment]:
    project, _ = trained
    folder = assess.new_assessment_dir(project)
    return project, assess.assess_source(project, str(videos / KNEE_SQUAT), "squat", save_to=folder)


def _leftovers(project: Project) -> list[str]:
    return sorted(p.name for p in project.work.glob("ingest-*"))


@pytest.mark.slow
def test_a_multi_repetition_squat_video_gives_one_assessed_repetition_per_squat(assessed):
    project, a = assessed
    assert len(a.reps) == len(DEEPEST) == a.summary["count"]
    for rep, deepest in zip(a.reps, DEEPEST):
        assert rep["start_frame"] <= deepest < rep["end_frame"]
    assert all(a["end_frame"] <= b["start_frame"] for a, b in zip(a.reps, a.reps[1:]))  # in order, no overlap
    # Nothing entered the dataset, and no scratch folder stays behind.
    assert store.list_videos(project) == [] and _leftovers(project) == []
    assert a.run_id == runs.latest_run_id(project)  # the chosen run by default


@pytest.mark.slow
def test_each_repetition_has_verdict_criteria_cues_and_explanation(assessed):
    project, a = assessed
    criteria = store.criteria_of(project, "squat")
    fitted = runs.load_fitted(project, a.run_id)
    track = load_track(a.folder / "pose.npz")
    aspect = a.video["width"] / a.video["height"]
    from model.features import clip_features

    for rep in a.reps:
        # p is the run's own p for these frames (the explanation's batch starts with the clip as it is).
        pose = track.landmarks[rep["start_frame"]:rep["end_frame"]]
        p = fitted.predict([clip_features(pose, a.video["fps"], aspect)], ["squat"])[0]
        assert rep["p_incorrect"] == pytest.approx(p, abs=1e-4)
        assert rep["verdict"] == ("incorrect" if p >= 0.5 else "correct")
        assert rep["seconds"] == pytest.approx((rep["end_frame"] - rep["start_frame"]) / a.video["fps"], abs=1e-3)
        assert list(rep["criteria"]) == [c["name"] for c in criteria]
        # The run has criterion models for squat depth and trunk lean (the sample's faults), none for the rest.
        assert all(rep["criteria"][k] is not None for k in ("depth", "trunk_lean"))
        assert rep["criteria"]["heel_lift"] is None
        failed = [c for c in criteria if (rep["criteria"][c["name"]] or 0) >= 0.5]
        assert rep["cues"] == [c["cue"] for c in failed]
        assert len(rep["frame_weights"]) == rep["end_frame"] - rep["start_frame"]
        assert sum(rep["frame_weights"]) == pytest.approx(1.0, abs=1e-3)
        assert set(rep["joint_weights"]) == set(NAMES)
        assert set(rep["asymmetry"]) == {"knee", "hip", "ankle"}  # the squat's paired joints of interest
    assert a.summary["seconds_per_rep"] == pytest.approx(np.mean([r["seconds"] for r in a.reps]), abs=0.01)


@pytest.mark.slow
def test_cues_follow_the_rubric_editor(assessed):
    project, a = assessed
    store.set_cue(project, "squat", "depth", "Lower! <b>now</b>", "lead")
    try:
        track = load_track(a.folder / "pose.npz")
        fitted = runs.load_fitted(project, a.run_id)
        options = assess.AssessOptions(fail_at=0.0)  # every criterion with a model counts as failed
        reps = assess.judge(project, a.run_id, fitted, "squat", track.landmarks, a.video["fps"],
                            a.video["width"] / a.video["height"], a.reps[:1], [], options)
        assert "Lower! <b>now</b>" in reps[0]["cues"]
        report = assess.report_html({**a.as_dict(), "reps": reps}, track.landmarks)
        assert "Lower! &lt;b&gt;now&lt;/b&gt;" in report and "<b>now</b>" not in report
    finally:
        store.undo_rubric_event(project, store.rubric_events(project, "squat")[0]["id"], "lead")
    assert store.cues_of(project, "squat")["depth"].startswith("Sit down")


@pytest.mark.slow
def test_keeping_an_assessment_stores_the_same_processing_once(assessed):
    project, a = assessed
    kept = assess.keep_assessment(project, a.folder.name)
    assert kept["existing"] is False and kept["clips"] >= len(a.reps)
    [video] = store.list_videos(project)
    clips = [c for c in store.list_clips(project) if c["video_id"] == video["id"]]
    assert {(r["start_frame"], r["end_frame"]) for r in a.reps} <= {(c["start_frame"], c["end_frame"]) for c in clips}
    assert (a.folder / "video.mp4").is_file()  # the assessment stays viewable
    again = assess.keep_assessment(project, a.folder.name)
    assert again["existing"] is True and len(store.list_videos(project)) == 1


def error_line(done: subprocess.CompletedProcess) -> str:
    """The one line a refusal prints (after any progress lines, which end in a newline of their own)."""
    lines = [line for line in done.stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), done.stderr[-2000:]
    assert sum(line.startswith("error") for line in lines) == 1 and not any("Traceback" in x for x in lines)
    return lines[-1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "model", "assess", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_the_command_writes_the_list_of_repetitions_and_keep_adds_the_video(tmp_path, videos):
    project = Project.open(tmp_path / "p")
    sample_project(project, clips_per_class=15)
    train_run(project, RunConfig(model="baseline", folds=3))
    out = tmp_path / "out.json"
    done = run_cli(str(videos / KNEE_SQUAT), "--exercise", "squat", "--keep", "--data", str(project.root),
                   "--json", str(out))
    assert done.returncode == 0, done.stderr
    reps = json.loads(out.read_text())
    assert isinstance(reps, list) and len(reps) == len(DEEPEST)
    for key in ("start_frame", "end_frame", "seconds", "p_incorrect", "verdict", "criteria", "cues",
                "frame_weights", "joint_weights"):
        assert all(key in r for r in reps), key
    assert "4 repetitions of squat" in done.stdout
    [video] = store.list_videos(project)  # --keep: in the dataset, as an ingest would have added it
    assert video["clips"] >= len(DEEPEST)


@pytest.mark.slow
def test_a_video_without_a_repetition_of_the_exercise_is_refused_in_one_line(trained, videos):
    project, _ = trained
    before = len(store.list_videos(project))
    done = run_cli(str(videos / "pose_trainer" / "sample_bicep_curl.mp4"), "--exercise", "squat",
                   "--data", str(project.root))
    assert done.returncode == 2
    assert "no repetition of a squat" in error_line(done)
    assert len(store.list_videos(project)) == before and _leftovers(project) == []


def test_the_repetition_filter_drops_movement_of_another_exercise():
    # A squat's knees swing through 80 degrees; a curl's knees stay still. Only the squat passes.
    from curation.pipeline import Processed

    t = np.arange(60)
    lm = np.full((120, 33, 4), np.nan, np.float32)
    hip, knee, ankle = (NAMES.index(n) for n in ("left_hip", "left_knee", "left_ankle"))
    bend = np.deg2rad(40) * (1 - np.cos(2 * np.pi * t / 60))  # 0 .. 80 degrees of knee flexion
    lm[:, hip, :2], lm[:, knee, :2] = [0.5, 0.4], [0.5, 0.6]
    lm[:60, ankle, 0], lm[:60, ankle, 1] = 0.5 - 0.2 * np.sin(bend), 0.6 + 0.2 * np.cos(bend)
    lm[60:, ankle, :2] = [0.5, 0.8]
    lm[..., 3] = 1.0
    clips = [{"start_frame": 0, "end_frame": 60, "method": "repetition"},
             {"start_frame": 60, "end_frame": 120, "method": "repetition"}]
    processed = Processed("s", "k", {"exercise": "squat"}, clips, [], None, None)
    kept = assess.repetitions(processed, lm, 1.0, ["left_knee"], assess.AssessOptions())
    assert kept == clips[:1]
    with pytest.raises(assess.NoRepetition, match="no repetition of a squat"):
        assess.repetitions(Processed("s", "k", {"exercise": "squat"}, clips[1:], [], None, None), lm, 1.0,
                           ["left_knee"], assess.AssessOptions())
    windows = [{**clips[0], "method": "window"}]
    with pytest.raises(assess.NoRepetition, match="no repetition found"):
        assess.repetitions(Processed("s", "k", {"exercise": "squat"}, windows, [], None, None), lm, 1.0,
                           ["left_knee"], assess.AssessOptions())


def test_a_run_that_never_saw_the_exercise_is_refused_before_any_video_work(trained, tmp_path):
    project, run_id = trained
    missing = tmp_path / "never-read.mp4"  # not even looked at: the run is checked first
    with pytest.raises(runs.UnknownExercise, match="not trained on 'plank'"):
        assess.assess_source(project, str(missing), "plank", run_id)
    with pytest.raises(assess.UnknownExerciseName, match="no exercise 'yoga'"):
        assess.assess_source(project, str(missing), "yoga")
    with pytest.raises(runs.RunNotFound):
        assess.assess_source(project, str(missing), "squat", "20990101-000000-abcdef")


@pytest.mark.slow  # a fresh interpreter importing torch and MediaPipe: seconds under load
@pytest.mark.parametrize("args, message", [
    (["--exercise", "squat"], "no finished run"),
])
def test_bad_input_gets_one_line_and_changes_nothing(tmp_path, args, message):
    project = Project.open(tmp_path / "empty")
    done = run_cli(str(tmp_path / "x.mp4"), *args, "--data", str(project.root))
    assert done.returncode == 2 and message in error_line(done)
    assert store.list_videos(project) == []


def test_a_bad_source_is_refused_by_the_ingest_checks_and_leaves_nothing(trained, tmp_path):
    from curation.pipeline import USER_ERRORS

    project, _ = trained
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    for source, message in ((str(tmp_path / "gone.mp4"), "not found"), (str(text), "video"),
                            ("file:///etc/passwd", "only http"), ("https://example.com/v.mp4", "allowed")):
        with pytest.raises(USER_ERRORS, match=message):
            assess.assess_source(project, source, "squat")
    assert _leftovers(project) == []


@pytest.mark.slow
@pytest.mark.browser
def test_the_html_report_opens_in_a_browser_without_network_and_escapes_text(assessed, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    project, a = assessed
    track = load_track(a.folder / "pose.npz")
    hostile = {**a.as_dict(), "source": "<img src=x onerror=alert(1)>",
               "video": {**a.video, "title": "<script>alert('t')</script>"}}
    path = tmp_path / "report.html"
    path.write_text(assess.report_html(hostile, track.landmarks, a.video["width"] / a.video["height"]))
    requests = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.on("request", lambda r: requests.append(r.url))
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.goto(path.as_uri())
        assert page.locator("tr.rep").count() == len(a.reps)
        assert page.locator("svg.pose").count() == len(a.reps)  # the skeleton at each deciding frame
        assert f"{len(a.reps)} repetitions" in page.locator("#summary").inner_text()
        assert "<script>alert('t')</script>" in page.locator("#source").inner_text()  # shown as text
        assert page.locator("img").count() == 0 and page.locator("script").count() == 0
        browser.close()
    assert dialogs == [] and requests == [path.as_uri()]
