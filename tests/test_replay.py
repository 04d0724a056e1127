"""Replays: footage shown again (at 1x or slowed down) is flagged "replay" of the earlier span, never cut into
clips; genuine next repetitions of the same athlete are not replays."""

from __future__ import annotations

import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from curation import store, timeline
from curation.pose import _motion_image, iter_frames
from curation.project import Project
from curation.replay import Replay, find_replays, without
from tests.conftest import ingest_cli

SQUATS = "twix/correct-squat.mp4"  # 382 frames at 25 fps, four squats in one hand-held shot
FRAMES, FPS = 382, 25
REP = (85, 158)  # the second squat (frames of the source), replayed at 1x then at 0.5x
TOLERANCE = 3  # frames


def thumbs_of(path: Path) -> np.ndarray:
    """The pose pass's small grey frames (PoseTrack.thumbs), without running pose."""
    return np.stack([_motion_image(f) for f in iter_frames(path)])


def replayed_video(videos: Path, out: Path) -> Path:
    """The four squats, then the second squat again at normal speed, then again at half speed (setpts: each
    frame shown twice), as one 25 fps H.264 video."""
    a, b = REP
    graph = (f"movie={videos / SQUATS},fps={FPS},format=yuv420p,split=3[all][r1][r2];"
             f"[r1]trim=start_frame={a}:end_frame={b},setpts=PTS-STARTPTS[once];"
             f"[r2]trim=start_frame={a}:end_frame={b},setpts=2*(PTS-STARTPTS),fps={FPS}[slow];"
             "[all][once][slow]concat=n=3:v=1[v]")
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-filter_complex", graph,
                    "-map", "[v]", "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", str(out)], check=True)
    return out


# ------------------------------------------------------------------------------------------ on pixels alone


def _scene(n: int, seed: int, shift: int = 0) -> np.ndarray:
    """n frames of a bright bar sweeping across a textured background (64x36), optionally shifted."""
    rng = np.random.default_rng(seed)
    background = rng.integers(40, 90, (36, 64)).astype(np.uint8)
    frames = np.repeat(background[None], n, axis=0)
    for t in range(n):  # never the same picture twice within the shot
        x = int(2 + 0.8 * t) + shift
        frames[t, 8 + t % 7:28, x:x + 6] = 220
    return frames


def test_the_same_frames_again_at_1x_and_half_speed_are_replays_of_the_first_showing():
    shot = _scene(60, 0)
    slow = np.repeat(shot[10:40], 2, axis=0)  # each frame twice
    video = np.concatenate([shot, shot[10:40], slow])
    replays = find_replays(video, 30)
    assert [(r.start, r.end) for r in replays] == [(60, 90), (90, 150)]
    assert all(abs(r.source_start - 10) <= 1 and abs(r.source_end - 40) <= 1 for r in replays)
    assert [round(r.speed, 1) for r in replays] == [1.0, 0.5]


def test_a_blended_slow_motion_is_a_replay():
    shot = _scene(60, 1).astype(np.uint16)
    blended = []
    for t in range(10, 40):
        blended += [shot[t], (shot[t] + shot[t + 1]) // 2]
    video = np.concatenate([shot, np.stack(blended)]).astype(np.uint8)
    [replay] = find_replays(video, 30)
    assert (replay.start, replay.end) == (60, 120) and abs(replay.speed - 0.5) < 0.05


def test_the_same_movement_a_little_elsewhere_is_not_a_replay():
    # Another repetition: the same motion on the same background, the bar one pixel to the side.
    video = np.concatenate([_scene(60, 2), _scene(60, 2, shift=1)])
    assert find_replays(video, 30) == []


def test_a_still_picture_shown_twice_is_not_a_replay():
    video = np.repeat(_scene(1, 3), 200, axis=0)
    assert find_replays(video, 30) == []


def test_spans_lose_the_replayed_frames():
    assert without([(0, 100), (120, 200)], [(50, 130)]) == [(0, 50), (130, 200)]
    assert without([(0, 100)], [(20, 30), (60, 70)]) == [(0, 20), (30, 60), (70, 100)]
    assert Replay(10, 30, 0, 10).speed == 0.5


# ------------------------------------------------------------------------------------------ real videos


@pytest.mark.parametrize("name", [SQUATS, "twix/knee_squat.mp4"])
def test_several_real_repetitions_in_one_shot_are_no_replay(videos, name):
    # Four squats by one athlete in one shot: alike in pose, never the same footage.
    assert find_replays(thumbs_of(videos / name), FPS) == []


def test_a_shared_video_that_loops_its_footage_is_one_replay(videos):
    # kaiakol's pushup_incorrect_001 (290 frames) shows its first 145 frames twice: the same pixels.
    [replay] = find_replays(thumbs_of(videos / "kaiakol/pushup/pushup_incorrect_001.mp4"), 29.97)
    assert abs(replay.start - 145) <= TOLERANCE and replay.end == 290
    assert replay.source_start <= TOLERANCE and abs(replay.source_end - 145) <= TOLERANCE


@pytest.mark.slow
def test_ingest_flags_replays_and_cuts_no_clip_from_them(videos, data_dir, tmp_path):
    source = replayed_video(videos, tmp_path / "coach.mp4")
    status, [result] = ingest_cli(data_dir, str(source))
    assert status == 0, result["error"]
    length = REP[1] - REP[0]
    once, slow = (FRAMES, FRAMES + length), (FRAMES + length, FRAMES + 3 * length)
    replays = [f for f in result["flagged"] if f["reason"] == "replay"]
    assert len(replays) == 2, result["flagged"]
    for flag, (a, b) in zip(replays, (once, slow)):
        assert abs(flag["start_frame"] - a) <= TOLERANCE and abs(flag["end_frame"] - b) <= TOLERANCE
        assert abs(flag["source_start"] - REP[0]) <= TOLERANCE and abs(flag["source_end"] - REP[1]) <= TOLERANCE
    # The four squats are clips; nothing of the replays is (no clip, so no velocity, from slowed frames).
    bounds = [(c["start_frame"], c["end_frame"]) for c in result["clip_bounds"]]
    assert len(bounds) == 4 and all(b <= FRAMES + TOLERANCE for _, b in bounds)
    assert not [f for f in result["flagged"] if f["reason"] != "replay"]
    project = Project.open(data_dir)
    assert [f["reason"] for f in store.flagged_spans(project, result["video_id"])] == ["replay", "replay"]
    # The Dataset page's timeline draws them.
    flagged = [p for p in timeline.video_timeline(project, result["video_id"]) if p["kind"] == "flagged"]
    assert [(p["start_frame"], p["reason"]) for p in flagged] == [(r["start_frame"], "replay") for r in replays]
