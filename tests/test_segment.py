"""Segment: repetition counts on real squat videos checked by eye, single-rep clips, holds and fallbacks."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from curation.segment import REPETITION, WINDOW, ClipBounds, SegmentOptions, segment_repetitions
from curation.trim import find_movement


def load_poses(videos: Path, rel: str) -> tuple[np.ndarray, float, float]:
    with np.load(videos / rel) as d:
        return d["landmarks"], float(d["fps"]), float(d["width"]) / float(d["height"])


def assert_well_formed(clips: list[ClipBounds], spans: list[tuple[int, int]]) -> None:
    """Every clip lies inside one span; repetition clips do not overlap."""
    for c in clips:
        assert c.end > c.start
        assert any(s <= c.start and c.end <= e for s, e in spans), (c, spans)
    reps = sorted((c.start, c.end) for c in clips if c.method == REPETITION)
    assert all(a[1] <= b[0] for a, b in zip(reps, reps[1:])), reps


# Counted by eye: frames extracted with OpenCV every 8th frame (3.1 per second) into a contact sheet and
# viewed, then checked against a plot of the mid-hip height. correct-squat.mp4: he stands, does 4 squats
# (deepest at about frames 48, 124, 196, 284), then walks towards the camera. knee_squat.mp4: 4 squats,
# the first already starting at frame 0 (deepest at about 20, 84, 140, 196); the last frames begin a fifth
# descent that the video cuts off, which is not a repetition.
@pytest.mark.parametrize("rel, bottoms", [
    ("twix_poses_bp33/correct-squat.npz", [48, 124, 196, 284]),
    ("twix_poses_bp33/knee_squat.npz", [20, 84, 140, 196]),
])
def test_twix_squat_videos_give_one_clip_per_squat_counted_by_eye(videos, rel, bottoms):
    lm, fps, aspect = load_poses(videos, rel)
    spans = find_movement(lm, fps, aspect=aspect).spans
    clips = segment_repetitions(lm, fps, spans, aspect=aspect)
    assert len(clips) == len(bottoms) == 4
    assert all(c.method == REPETITION for c in clips)
    # Each clip holds exactly one of the squats seen by eye, so cuts fall between squats.
    for c in clips:
        assert sum(c.start <= b < c.end for b in bottoms) == 1, (c, bottoms)
    assert_well_formed(clips, spans)


def test_cuts_fall_in_the_standing_rest_between_squats(videos):
    lm, fps, aspect = load_poses(videos, "twix_poses_bp33/correct-squat.npz")
    clips = segment_repetitions(lm, fps, [(0, len(lm))], aspect=aspect)
    hip_y = (lm[:, 23, 1] + lm[:, 24, 1]) / 2  # image y grows downwards: standing = small
    standing, deepest = np.nanpercentile(hip_y, 10), np.nanmax(hip_y)
    for a, b in zip(clips, clips[1:]):
        assert a.end == b.start
        assert hip_y[a.end] < standing + 0.2 * (deepest - standing), a.end


def manifest(videos: Path) -> list[dict[str, str]]:
    with open(videos / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_single_repetition_kaiakol_squats_give_one_clip_each(videos):
    rows = [r for r in manifest(videos) if r["video"].startswith("kaiakol/squat/")]
    assert len(rows) == 21
    for row in rows:
        lm, fps, aspect = load_poses(videos, row["poses_bp33"])
        for spans in ([(0, len(lm))], find_movement(lm, fps, aspect=aspect).spans):
            clips = segment_repetitions(lm, fps, spans, aspect=aspect)
            assert len(clips) == 1 and clips[0].method == REPETITION, (row["video"], spans, clips)
            assert_well_formed(clips, spans)


def test_plank_hold_falls_back_to_a_few_windows(videos):
    lm, fps, aspect = load_poses(videos, "kaiakol_poses_bp33/plank/correct/plank_correct_005.npz")
    spans = [(0, len(lm))]  # 6.5 s
    clips = segment_repetitions(lm, fps, spans, aspect=aspect)
    assert clips and all(c.method == WINDOW for c in clips)
    assert len(clips) <= 3  # 4 s windows overlapping by half
    assert clips[0].start == 0 and clips[-1].end == len(lm)
    assert_well_formed(clips, spans)


def test_clips_stay_inside_each_of_several_spans(videos):
    lm, fps, aspect = load_poses(videos, "twix_poses_bp33/knee_squat.npz")
    spans = [(0, 110), (110, 243)]  # two spans cut through the rest after the second squat
    clips = segment_repetitions(lm, fps, spans, aspect=aspect)
    assert len(clips) == 4
    assert_well_formed(clips, spans)


def test_long_still_span_is_windowed_not_cut_into_fake_reps(videos):
    lm, fps, aspect = load_poses(videos, "twix_poses_bp33/correct-squat.npz")
    rng = np.random.default_rng(0)
    still = np.repeat(lm[10:11], int(12 * fps), axis=0)
    still[..., :2] += rng.normal(0, 0.002, still[..., :2].shape).astype(np.float32)
    clips = segment_repetitions(still, fps, [(0, len(still))], aspect=aspect)
    assert all(c.method == WINDOW for c in clips) and 4 <= len(clips) <= 6


def test_spans_too_short_or_absent_give_no_clips(videos):
    lm, fps, aspect = load_poses(videos, "twix_poses_bp33/knee_squat.npz")
    assert segment_repetitions(lm, fps, [], aspect=aspect) == []
    assert segment_repetitions(lm, fps, [(10, 20)], aspect=aspect) == []  # 0.4 s < min_rep_seconds
    assert segment_repetitions(lm[:0], fps, [(0, 0)], aspect=aspect) == []
    assert segment_repetitions(lm[:1], fps, [(0, 1)], aspect=aspect) == []
    nan = np.full((100, 33, 4), np.nan, np.float32)
    assert all(c.method == WINDOW for c in segment_repetitions(nan, fps, [(0, 100)]))


def test_single_squat_in_a_span_longer_than_a_rep_is_cut_around_the_squat(videos):
    # squat_correct_010: 3 s, standing, one squat (deepest hip at frame 48), standing again. With
    # max_rep_seconds of 1 s the span is too long to be one repetition as a whole.
    lm, fps, aspect = load_poses(videos, "kaiakol_poses_bp33/squat/correct/squat_correct_010.npz")
    hip_y = (lm[:, 23, 1] + lm[:, 24, 1]) / 2
    deepest = int(np.nanargmax(hip_y))
    options = SegmentOptions(max_rep_seconds=1.0)
    clips = segment_repetitions(lm, fps, [(0, len(lm))], options=options, aspect=aspect)
    assert len(clips) == 1 and clips[0].method == REPETITION
    assert clips[0].start <= deepest < clips[0].end
    assert clips[0].end - clips[0].start <= round(options.max_rep_seconds * fps)
