"""Trim: movement spans of real squats, and the still, no-person and talking-head stretches around them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from curation.landmarks import INDEX
from curation.trim import NO_PERSON, STILL, TALKING_HEAD, TrimOptions, find_movement

FPS = 25.0


def load_poses(videos: Path, rel: str) -> tuple[np.ndarray, float, float]:
    with np.load(videos / rel) as d:
        return d["landmarks"], float(d["fps"]), float(d["width"]) / float(d["height"])


def still_person(frame: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """n frames of one real pose held still, with MediaPipe-like landmark jitter (0.1 % of the image)."""
    rng = np.random.default_rng(seed)
    out = np.repeat(frame[None], n, axis=0).astype(np.float32)
    out[..., :2] += rng.normal(0, 0.001, out[..., :2].shape).astype(np.float32)
    return out


def covers_all_frames(result, n: int) -> bool:
    """Spans and removed stretches tile [0, n) exactly, in order."""
    parts = sorted([(s, e) for s, e in result.spans] + [(s, e) for s, e, _ in result.removed])
    return parts[0][0] == 0 and parts[-1][1] == n and all(a[1] == b[0] for a, b in zip(parts, parts[1:]))


def test_still_start_and_missing_end_are_trimmed_from_a_real_squat(videos):
    squat, fps, aspect = load_poses(videos, "twix_poses_bp33/knee_squat.npz")
    still = still_person(squat[0], int(2 * fps))
    gone = np.full((int(2 * fps), 33, 4), np.nan, np.float32)
    lm = np.concatenate([still, squat, gone])
    result = find_movement(lm, fps, aspect=aspect)
    a, b = len(still), len(still) + len(squat)
    assert len(result.spans) == 1
    start, end = result.spans[0]
    assert abs(start - a) <= 8 and abs(end - b) <= 8
    reasons = {why for _, _, why in result.removed}
    assert reasons == {STILL, NO_PERSON}
    assert result.removed[0][2] == STILL and result.removed[-1][2] == NO_PERSON
    assert result.trimmed_share == pytest.approx((len(lm) - (end - start)) / len(lm))
    assert covers_all_frames(result, len(lm))


@pytest.mark.parametrize("rel, max_share", [
    # Observed: correct-squat trims 7 % (about 1 s standing before the first squat, 5 frames without a
    # person at the end); knee_squat trims nothing (it squats from the first frame to the last).
    ("twix_poses_bp33/correct-squat.npz", 0.12),
    ("twix_poses_bp33/knee_squat.npz", 0.05),
])
def test_real_squat_videos_keep_most_frames_in_one_span(videos, rel, max_share):
    lm, fps, aspect = load_poses(videos, rel)
    result = find_movement(lm, fps, aspect=aspect)
    assert result.trimmed_share <= max_share
    # The standing pauses between squats are bridged, not cut.
    assert len(result.spans) == 1
    assert covers_all_frames(result, len(lm)) if result.removed else result.spans == [(0, len(lm))]


def test_correct_squat_standing_start_is_removed_as_still(videos):
    # By eye (contact sheet, every 8th frame): he stands still until about frame 24, then squats.
    lm, fps, aspect = load_poses(videos, "twix_poses_bp33/correct-squat.npz")
    result = find_movement(lm, fps, aspect=aspect)
    first = result.removed[0]
    assert first[0] == 0 and first[2] == STILL and 15 <= first[1] <= 32


def test_a_frozen_picture_vetoes_pose_jitter(videos):
    lm, fps, aspect = load_poses(videos, "twix_poses_bp33/knee_squat.npz")
    motion = np.full(len(lm), 0.05, np.float32)
    motion[100:] = 0.0  # the video froze at frame 100 though the pose estimate kept moving
    result = find_movement(lm, fps, motion=motion, aspect=aspect)
    assert len(result.spans) == 1 and abs(result.spans[0][1] - 100) <= 8
    assert result.removed[-1][2] == STILL


def test_frame_motion_without_a_person_is_not_movement():
    lm = np.full((100, 33, 4), np.nan, np.float32)
    result = find_movement(lm, FPS, motion=np.full(100, 0.2, np.float32))
    assert result.spans == [] and result.removed == [(0, 100, NO_PERSON)] and result.trimmed_share == 1.0


def test_still_upper_body_is_a_talking_head(videos):
    squat, fps, aspect = load_poses(videos, "twix_poses_bp33/correct-squat.npz")
    head = still_person(squat[10], int(4 * fps))
    lower = [INDEX[f"{side}_{part}"] for side in ("left", "right")
             for part in ("hip", "knee", "ankle", "heel", "foot_index")]
    head[:, lower, 3] = 0.05  # out of the picture: MediaPipe still guesses them, with low visibility
    result = find_movement(head, fps, aspect=aspect)
    assert result.spans == [] and result.removed == [(0, len(head), TALKING_HEAD)]


def test_moving_upper_body_of_a_curl_is_kept(videos):
    # pose_trainer's curl is filmed from the waist up (hips and knees visibility about 0.1).
    lm, fps, aspect = load_poses(videos, "pose_trainer/sample_bicep_curl.npz")
    assert np.nanmean(lm[:, [INDEX["left_knee"], INDEX["right_knee"]], 3]) < 0.5
    result = find_movement(lm, fps, aspect=aspect)
    assert result.trimmed_share < 0.1


def test_plank_hold_is_kept_unless_holds_are_disabled(videos):
    lm, fps, aspect = load_poses(videos, "kaiakol_poses_bp33/plank/correct/plank_correct_005.npz")
    assert find_movement(lm, fps, aspect=aspect).trimmed_share < 0.05
    no_holds = find_movement(lm, fps, options=TrimOptions(keep_holds=False), aspect=aspect)
    assert no_holds.trimmed_share > 0.8 and {why for *_, why in no_holds.removed} == {STILL}


def test_short_movement_island_is_dropped(videos):
    squat, fps, aspect = load_poses(videos, "twix_poses_bp33/knee_squat.npz")
    still = still_person(squat[0], int(3 * fps))
    blip = squat[:8]  # a third of a second of real movement: a shuffle, not an exercise
    lm = np.concatenate([still, blip, still_person(squat[7], int(3 * fps), seed=1)])
    result = find_movement(lm, fps, aspect=aspect)
    assert result.spans == [] and result.removed == [(0, len(lm), STILL)]


def test_short_pose_dropout_inside_movement_is_bridged(videos):
    lm, fps, aspect = load_poses(videos, "twix_poses_bp33/knee_squat.npz")
    lm = lm.copy()
    lm[100:115] = np.nan  # 0.6 s without a pose in the middle of the set
    result = find_movement(lm, fps, aspect=aspect)
    assert len(result.spans) == 1 and result.spans[0][0] <= 100 and result.spans[0][1] >= 115


def test_empty_and_single_frame_inputs(videos):
    squat, fps, aspect = load_poses(videos, "twix_poses_bp33/knee_squat.npz")
    empty = find_movement(squat[:0], fps, aspect=aspect)
    assert empty.spans == [] and empty.removed == [] and empty.trimmed_share == 0.0
    one = find_movement(squat[:1], fps, aspect=aspect)
    assert one.spans == [] and one.removed == [(0, 1, STILL)] and one.trimmed_share == 1.0


def test_span_bridged_over_mostly_missing_pose_is_dropped(videos):
    lm, fps, aspect = load_poses(videos, "twix_poses_bp33/knee_squat.npz")
    lm = lm.copy()
    for start in range(0, len(lm), 40):
        lm[start + 10:start + 40] = np.nan  # 0.4 s of squat, then 1.2 s without a pose, over and over
    result = find_movement(lm, fps, aspect=aspect)
    assert result.spans == [] and result.trimmed_share == 1.0
    assert find_movement(lm, fps, options=TrimOptions(min_person_share=0.2), aspect=aspect).spans


def test_motion_of_another_length_is_refused(videos):
    lm, fps, aspect = load_poses(videos, "twix_poses_bp33/knee_squat.npz")
    with pytest.raises(ValueError, match="motion has"):
        find_movement(lm, fps, motion=np.zeros(len(lm) - 1), aspect=aspect)
