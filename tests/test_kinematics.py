"""Kinematics: angles on hand-made skeletons with known answers, and complexity on the reference poses."""

from __future__ import annotations

import csv
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from curation.kinematics import (
    ANGLES,
    DISTANCES,
    angular_velocity,
    body_scale,
    complexity_components,
    distances,
    frame_features,
    joint_angles,
    normalised_coordinates,
)
from curation.landmarks import INDEX, MIRROR


def load_poses(videos: Path, rel: str) -> tuple[np.ndarray, float, float]:
    """Reference MediaPipe landmarks of a shared video: (landmarks, fps, aspect = width / height)."""
    with np.load(videos / rel) as d:
        return d["landmarks"], float(d["fps"]), float(d["width"]) / float(d["height"])


def standing_skeleton() -> np.ndarray:
    """One frame (1, 33, 4) of an upright person facing the camera, arms hanging straight, in a square image.

    Shoulders, hips and legs 0.12 apart; torso length (mid-shoulder to mid-hip) 0.2; every landmark fully
    visible; z = 0.
    """
    pts = {
        "nose": (0.50, 0.22),
        "left_eye_inner": (0.51, 0.21), "left_eye": (0.52, 0.21), "left_eye_outer": (0.53, 0.21),
        "right_eye_inner": (0.49, 0.21), "right_eye": (0.48, 0.21), "right_eye_outer": (0.47, 0.21),
        "left_ear": (0.54, 0.22), "right_ear": (0.46, 0.22),
        "mouth_left": (0.51, 0.24), "mouth_right": (0.49, 0.24),
        # The person's left is on the image's right when facing the camera.
        "left_shoulder": (0.56, 0.30), "right_shoulder": (0.44, 0.30),
        "left_elbow": (0.56, 0.42), "right_elbow": (0.44, 0.42),
        "left_wrist": (0.56, 0.54), "right_wrist": (0.44, 0.54),
        "left_pinky": (0.56, 0.57), "right_pinky": (0.44, 0.57),
        "left_index": (0.56, 0.58), "right_index": (0.44, 0.58),
        "left_thumb": (0.55, 0.56), "right_thumb": (0.45, 0.56),
        "left_hip": (0.56, 0.50), "right_hip": (0.44, 0.50),
        "left_knee": (0.56, 0.70), "right_knee": (0.44, 0.70),
        "left_ankle": (0.56, 0.90), "right_ankle": (0.44, 0.90),
        "left_heel": (0.56, 0.92), "right_heel": (0.44, 0.92),
        "left_foot_index": (0.58, 0.95), "right_foot_index": (0.42, 0.95),
    }
    frame = np.zeros((1, 33, 4), np.float32)
    for name, (x, y) in pts.items():
        frame[0, INDEX[name]] = (x, y, 0.0, 1.0)
    return frame


def angle(angles: np.ndarray, name: str) -> np.ndarray:
    return angles[:, list(ANGLES).index(name)]


def mirror(landmarks: np.ndarray) -> np.ndarray:
    """The same pose seen in a mirror: x flipped, left and right landmarks swapped."""
    out = landmarks[:, list(MIRROR)].copy()
    out[..., 0] = 1.0 - out[..., 0]
    return out


def test_straight_limbs_read_180_degrees():
    a = joint_angles(standing_skeleton())
    for name in ("left_elbow", "right_elbow", "left_knee", "right_knee", "left_hip", "right_hip"):
        assert angle(a, name)[0] == pytest.approx(180.0, abs=1e-4), name
    assert angle(a, "trunk_lean")[0] == pytest.approx(0.0, abs=1e-4)
    assert angle(a, "left_shin_lean")[0] == pytest.approx(0.0, abs=1e-4)


def test_right_angle_at_the_knee_reads_90_degrees():
    sk = standing_skeleton()
    # Shin swung back horizontally: hip above knee, ankle level with the knee, 0.2 away.
    sk[0, INDEX["left_ankle"], :2] = (0.76, 0.70)
    a = joint_angles(sk)
    assert angle(a, "left_knee")[0] == pytest.approx(90.0, abs=1e-4)
    assert angle(a, "left_shin_lean")[0] == pytest.approx(90.0, abs=1e-4)
    assert angle(a, "right_knee")[0] == pytest.approx(180.0, abs=1e-4)


def test_aspect_correction_recovers_a_45_degree_angle_drawn_in_pixels():
    width, height = 1280, 720
    sk = standing_skeleton()
    # In pixels: elbow at (640, 360), shoulder 100 px to the right, wrist 100 px right and 100 px up:
    # the elbow angle is 45 degrees in the picture.
    pixels = {"left_elbow": (640, 360), "left_shoulder": (740, 360), "left_wrist": (740, 260)}
    for name, (px, py) in pixels.items():
        sk[0, INDEX[name], :2] = (px / width, py / height)
    assert angle(joint_angles(sk, aspect=width / height), "left_elbow")[0] == pytest.approx(45.0, abs=1e-3)
    # Without the correction the normalised coordinates give a visibly wrong angle.
    assert abs(angle(joint_angles(sk), "left_elbow")[0] - 45.0) > 10


def test_mirroring_swaps_left_and_right_angle_columns(videos):
    lm, _, aspect = load_poses(videos, "twix_poses_bp33/knee_squat.npz")
    a, m = joint_angles(lm, aspect), joint_angles(mirror(lm), aspect)
    names = list(ANGLES)
    for j, name in enumerate(names):
        other = name.replace("left_", "\0").replace("right_", "left_").replace("\0", "right_")
        np.testing.assert_allclose(m[:, j], a[:, names.index(other)], atol=1e-3, err_msg=name)
    # A squat is not symmetric frame by frame, so the swap is not trivially an identity.
    assert np.nanmax(np.abs(angle(a, "left_knee") - angle(a, "right_knee"))) > 5


def test_missing_landmark_makes_only_its_angles_and_distances_nan():
    sk = standing_skeleton()
    sk[0, INDEX["left_wrist"]] = np.nan
    a = joint_angles(sk)
    nan_cols = {n for n, v in zip(ANGLES, a[0]) if np.isnan(v)}
    assert nan_cols == {"left_elbow", "left_wrist"}
    d = distances(sk)
    nan_dists = {n for n, v in zip(DISTANCES, d[0]) if np.isnan(v)}
    assert nan_dists == {"wrist_to_wrist", "left_wrist_to_shoulder", "wrist_height"}


def test_distances_are_in_torso_lengths():
    sk = standing_skeleton()  # torso 0.2: wrists and ankles 0.12 apart = 0.6 torso lengths
    sk[0, INDEX["right_ankle"], 0] = 0.36  # a wider stance: ankles 0.2 apart = 1 torso length
    d = dict(zip(DISTANCES, distances(sk)[0]))
    assert d["wrist_to_wrist"] == pytest.approx(0.6, abs=1e-4)
    assert d["ankle_to_ankle"] == pytest.approx(1.0, abs=1e-4)
    assert d["hip_height"] == pytest.approx(2.0, abs=1e-4)  # hips 0.4 above ankles
    assert d["left_wrist_to_shoulder"] == pytest.approx(1.2, abs=1e-4)


def test_normalised_coordinates_are_hip_centred_in_torso_lengths(videos):
    lm, _, aspect = load_poses(videos, "twix_poses_bp33/correct-squat.npz")
    xyz = normalised_coordinates(lm, aspect)
    mid_hip = (xyz[:, INDEX["left_hip"]] + xyz[:, INDEX["right_hip"]]) / 2
    assert np.nanmax(np.abs(mid_hip)) < 1e-6
    mid_shoulder = (xyz[:, INDEX["left_shoulder"]] + xyz[:, INDEX["right_shoulder"]]) / 2
    assert np.nanmedian(np.hypot(mid_shoulder[:, 0], mid_shoulder[:, 1])) == pytest.approx(1.0, abs=1e-6)
    # Frames without a person stay NaN rather than collapsing to the origin.
    missing = np.isnan(lm[:, 0, 0])
    assert missing.any() and np.isnan(xyz[missing]).all()


def test_angular_velocity_of_a_ramp_is_constant_and_gaps_stay_nan():
    ramp = np.arange(10, dtype=float)[:, None] * 2.0  # 2 degrees per frame
    ramp[5] = np.nan
    v = angular_velocity(ramp, fps=25)
    assert np.isnan(v[5, 0])
    np.testing.assert_allclose(np.delete(v[:, 0], 5), 50.0)  # edges and frames beside the gap included
    assert np.isnan(angular_velocity(ramp[:1], fps=25)).all()  # one frame has no speed


def test_frame_features_columns_are_named_and_single_frames_work(videos):
    lm, fps, aspect = load_poses(videos, "twix_poses_bp33/knee_squat.npz")
    feats, names = frame_features(lm, fps, aspect)
    assert feats.dtype == np.float32 and feats.shape == (len(lm), len(names))
    assert len(set(names)) == len(names)
    assert 16 <= len(ANGLES) <= 21 and len(DISTANCES) == 7
    assert np.isfinite(feats).mean() > 0.99  # this video has a person in every frame
    one, one_names = frame_features(lm[:1], fps, aspect)
    assert one.shape == (1, len(names)) and one_names == names
    assert np.isnan(one[0, [n.startswith("vel_") for n in names]]).all()
    empty, _ = frame_features(lm[:0], fps, aspect)
    assert empty.shape == (0, len(names))


def test_all_nan_clip_gives_nan_complexity_and_nan_features():
    lm = np.full((20, 33, 4), np.nan, np.float32)
    c = complexity_components(lm, fps=30)
    assert all(math.isnan(v) for v in (c.joints_engaged, c.angular_sensitivity, c.range_of_motion,
                                       c.balance_demand, c.index))
    assert math.isnan(body_scale(lm))
    assert np.isnan(frame_features(lm, 30)[0]).all()
    empty = complexity_components(lm[:0], fps=30)
    assert math.isnan(empty.index)


def test_single_frame_complexity_is_a_still_pose():
    c = complexity_components(standing_skeleton(), fps=30)
    assert c.joints_engaged == 0 and c.range_of_motion == 0 and c.angular_sensitivity == 0
    # Centre of mass over the middle of a symmetric stance: little balance demand.
    assert 0 <= c.balance_demand < 0.2


def manifest(videos: Path) -> list[dict[str, str]]:
    with open(videos / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_complexity_components_lie_in_unit_interval_on_real_clips(videos):
    for row in manifest(videos):
        lm, fps, aspect = load_poses(videos, row["poses_bp33"])
        c = complexity_components(lm, fps, aspect)
        values = [c.joints_engaged, c.angular_sensitivity, c.range_of_motion, c.balance_demand, c.index]
        finite = [v for v in values if not math.isnan(v)]
        assert all(0.0 <= v <= 1.0 for v in finite), (row["video"], values)
        assert not math.isnan(c.index), row["video"]


def test_squat_engages_more_joints_and_range_than_a_plank(videos):
    squat = complexity_components(*load_poses(videos, "twix_poses_bp33/correct-squat.npz"))
    plank_poses = load_poses(videos, "kaiakol_poses_bp33/plank/correct/plank_correct_005.npz")
    plank = complexity_components(*plank_poses)
    assert squat.joints_engaged > plank.joints_engaged + 0.5
    assert squat.range_of_motion > plank.range_of_motion + 0.3
    assert squat.angular_sensitivity > plank.angular_sensitivity
    assert squat.index > plank.index


def test_the_same_squat_done_faster_has_higher_angular_sensitivity(videos):
    lm, fps, aspect = load_poses(videos, "twix_poses_bp33/knee_squat.npz")
    normal = complexity_components(lm, fps, aspect)
    double_speed = complexity_components(lm[::2], fps, aspect)  # every other frame at the same rate
    assert double_speed.angular_sensitivity > normal.angular_sensitivity
    # Speed changes how fast, not how far: the range of motion barely moves.
    assert double_speed.range_of_motion == pytest.approx(normal.range_of_motion, abs=0.05)


def test_nan_percentile_matches_numpy_on_columns_with_gaps():
    from curation.kinematics import _nan_percentile

    rng = np.random.default_rng(7)
    for _ in range(300):
        x = rng.normal(size=(rng.integers(1, 60), rng.integers(1, 8))) * 90
        x[rng.random(x.shape) < rng.random()] = np.nan  # from no gap to all-NaN columns
        for q in (0, 5, 50, 95, 100):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                want = np.nanpercentile(x, q, axis=0)
            np.testing.assert_allclose(_nan_percentile(x, q), want, rtol=0, atol=1e-9, equal_nan=True)
