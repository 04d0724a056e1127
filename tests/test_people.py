"""Several people: found beside the tracked one, flagged "several people"; a split screen is recognised and each
side can be ingested as its own video; the athlete is chosen by a rule and tracked on a crop around them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from curation import store, timeline
from curation.kinematics import ANGLES, joint_angles
from curation.people import PeopleChecks, chosen_boxes, find_split, several_people_spans, sides_with_people
from curation.pipeline import PipelineOptions, ingest_source, process_source
from curation.pose import extract_pose, load_track
from curation.project import Project
from tests.conftest import ROOT

LEFT = "kaiakol/squat/correct/squat_correct_010.mp4"  # 90 frames, a side-on squat
RIGHT = "kaiakol/squat/correct/squat_correct_007.mp4"  # 75 frames, a front-on squat (held 20 frames at the end)
SPLIT_FRAMES = 94  # ffmpeg's hstack ends with its longer input (RIGHT padded to 95; 94 decoded)
HIPS = [23, 24]
KNEES = [list(ANGLES).index("left_knee"), list(ANGLES).index("right_knee")]


def _box(x0: float, x1: float, y0: float = 0.1, y1: float = 0.9) -> list[float]:
    return [x0, y0, x1, y1]


def _checks(rows: list[list[list[float]]]) -> PeopleChecks:
    boxes = np.full((len(rows), 3, 4), np.nan, np.float32)
    for k, row in enumerate(rows):
        for p, b in enumerate(row):
            boxes[k, p] = b
    return PeopleChecks(np.arange(len(rows)) * 15, boxes)


# ------------------------------------------------------------------------------------------ on boxes alone


def test_one_check_with_two_people_is_a_glitch_and_a_run_of_them_is_a_span():
    one, two = [_box(0.6, 0.8)], [_box(0.6, 0.8), _box(0.1, 0.3)]
    assert several_people_spans(_checks([one, two, one, one, one]), 75, 30) == []
    # Two in a row make a span; a single check missing the second person inside a run is bridged.
    checks = _checks([one, two, two, one, two, one, one])
    assert several_people_spans(checks, 105, 30) == [(8, 68)]
    assert several_people_spans(checks, 105, 30, cuts=[40]) == [(8, 40), (40, 68)]


def test_each_rule_picks_its_person():
    tracked, small_left = _box(0.6, 0.8, 0.1, 0.9), _box(0.1, 0.2, 0.5, 0.9)
    checks = _checks([[tracked, small_left]] * 3)
    assert list(chosen_boxes(checks, "tracked")) == [0, 0, 0]
    assert list(chosen_boxes(checks, "largest")) == [0, 0, 0]
    assert list(chosen_boxes(checks, "left")) == [1, 1, 1]
    assert list(chosen_boxes(checks, "right")) == [0, 0, 0]
    assert list(chosen_boxes(checks, "click", (0.12, 0.7))) == [1, 1, 1]
    # Most moving: the left person walks across while the tracked one stays put.
    walking = _checks([[tracked, _box(0.05 + 0.1 * k, 0.15 + 0.1 * k)] for k in range(4)])
    assert list(chosen_boxes(walking, "most moving")) == [1, 1, 1, 1]
    with pytest.raises(ValueError):
        chosen_boxes(checks, "tallest")


def test_a_seam_in_the_middle_is_a_split_only_with_a_person_on_each_side():
    rng = np.random.default_rng(0)
    left, right = rng.integers(0, 60, (40, 18, 32)), rng.integers(150, 255, (40, 18, 32))
    smooth = np.repeat(np.linspace(0, 255, 64)[None, None], 18, axis=1).repeat(40, axis=0)
    assert find_split(np.concatenate([left, right], axis=2).astype(np.uint8)) == ("vertical", 0.5)
    assert find_split(smooth.astype(np.uint8)) is None
    split = ("vertical", 0.5)
    assert sides_with_people(split, _checks([[_box(0.6, 0.8), _box(0.1, 0.3)]] * 2))
    assert not sides_with_people(split, _checks([[_box(0.6, 0.8)]] * 4))  # one person: a door frame
    assert not sides_with_people(split, _checks([[_box(0.3, 0.7), _box(0.05, 0.2)]] * 2))  # across it


# ------------------------------------------------------------------------------------------ real videos


@pytest.fixture(scope="module")
def split_video(videos, tmp_path_factory) -> Path:
    """Two shared squat videos side by side (640x360 each) as one 1280x360 split screen."""
    out = tmp_path_factory.mktemp("people") / "split.mp4"
    scale = "scale=640:360,setsar=1,fps=30"
    graph = (f"movie={videos / LEFT},{scale}[a];movie={videos / RIGHT},{scale},tpad=stop_mode=clone:stop=20[b];"
             "[a][b]hstack=inputs=2,format=yuv420p[v]")
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-filter_complex", graph,
                    "-map", "[v]", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", str(out)], check=True)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", [LEFT, "kaiakol/squat/correct/squat_correct_002.avi"])
def test_one_athlete_alone_is_never_several_people(videos, name):
    # squat_correct_002 has a door frame near the middle of the picture (a seam, but nobody on its far side),
    # and plates on a rack that the detector once takes for a person: one check, a glitch, no span.
    track = extract_pose(videos / name)
    assert (track.people.counts >= 2).sum() <= 1
    assert several_people_spans(track.people, track.frames, track.fps) == []
    split = find_split(track.thumbs)
    assert split is None or not sides_with_people(split, track.people)


@pytest.mark.slow
def test_a_split_screen_is_recognised_and_flagged(split_video, tmp_path):
    processed = process_source(str(split_video), "split", "squat", PipelineOptions(), tmp_path)
    assert processed.people["split"] == "vertical" and abs(processed.people["split_at"] - 0.5) <= 0.02
    several = [(a, b) for a, b, why, *_ in processed.flagged if why == "several people"]
    assert len(several) == 1 and several[0][1] == SPLIT_FRAMES and several[0][0] <= 15


@pytest.mark.slow
@pytest.mark.parametrize("rule, point, left", [("right", None, False), ("click", (0.25, 0.6), True)])
def test_the_athlete_rule_chooses_whom_to_track(split_video, tmp_path, rule, point, left):
    processed = process_source(str(split_video), "split", "squat",
                               PipelineOptions(athlete=rule, athlete_point=point), tmp_path)
    [(a, b, _)] = processed.flagged
    hips = load_track(tmp_path / "pose.npz").landmarks[a:b, HIPS, 0]
    assert np.isfinite(hips).mean() > 0.8
    # The left picture's squatter stands at about 0.23 of the width, the right one's at about 0.75.
    assert (np.nanmedian(hips) < 0.5) == left
    assert processed.people["athlete_rule"] == rule and processed.clips


@pytest.mark.slow
def test_each_side_of_a_split_screen_is_ingested_as_its_own_video(split_video, data_dir):
    project = Project.open(data_dir)
    left = ingest_source(project, str(split_video), "squat", PipelineOptions(side="left"))
    right = ingest_source(project, str(split_video), "squat", PipelineOptions(side="right"))
    assert left["video_id"] != right["video_id"] and left["clips"] >= 1 and right["clips"] >= 1
    for result, side in ((left, "left"), (right, "right")):
        video = store.get_video(project, result["video_id"])
        assert (video["width"], video["height"]) == (640, 360)
        spans = timeline.ingest_spans(project, result["video_id"])
        assert spans["flagged"] == [] and spans["people"]["side"] == side
    # The same side again adds nothing.
    assert ingest_source(project, str(split_video), "squat", PipelineOptions(side="left"))["existing"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["kaiakol/squat/correct/squat_correct_011.mp4",
                                  "kaiakol/squat/correct/squat_correct_012.mp4"])
def test_a_coach_beside_the_athlete_is_flagged_and_the_most_moving_rule_tracks_the_athlete(videos, tmp_path, name):
    # A coach stands beside a squatting athlete; MediaPipe follows the coach. The athlete is the one who moves.
    bend = {}
    for rule in ("tracked", "most moving"):
        scratch = tmp_path / rule.replace(" ", "_")
        scratch.mkdir()
        processed = process_source(str(videos / name), name, "squat", PipelineOptions(athlete=rule), scratch)
        frames = processed.video["frames"]
        assert [(a, b, why) for a, b, why, *_ in processed.flagged] == [(0, frames, "several people")]
        track = load_track(scratch / "pose.npz")
        knees = joint_angles(track.landmarks, track.width / track.height)[:, KNEES]
        bend[rule] = float(np.nanmax(np.nanpercentile(knees, 95, axis=0) - np.nanpercentile(knees, 5, axis=0)))
    # The squatter's knees bend through 80-140 degrees; the standing coach's by under 30 (measured).
    assert bend["most moving"] > 60 > 2 * bend["tracked"], bend


def test_the_ingest_command_refuses_a_point_outside_the_picture(data_dir, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "curation", "ingest", str(tmp_path / "any.mp4"), "--athlete-at", "1.5,0.2",
                   "--data", str(data_dir)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--athlete-at takes X,Y" in proc.stderr + proc.stdout
