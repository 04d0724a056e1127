"""Features: per-frame columns and masks, augmentation, resampling, windows, the scaler and the clip set."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from curation import store
from curation.dataset import import_folder
from curation.kinematics import ANGLES, BODY, frame_features, joint_angles
from curation.landmarks import INDEX, N_LANDMARKS
from curation.pose import PoseTrack, save_track
from curation.project import Project
from model import features as F
from tests.test_dataset import write_folder


def reference(videos: Path, video: str) -> tuple[np.ndarray, float, float]:
    """The reference MediaPipe landmarks of a shared video (manifest row `video`): (T, 33, 4), fps, aspect."""
    with (videos / "manifest.csv").open() as fh:
        row = next(r for r in csv.DictReader(fh) if r["video"] == video)
    with np.load(videos / row["poses_bp33"]) as d:
        return d["landmarks"], float(d["fps"]), float(d["width"]) / float(d["height"])


@pytest.fixture(scope="module")
def squat(videos) -> tuple[np.ndarray, float, float]:
    return reference(videos, "kaiakol/squat/correct/squat_correct_007.mp4")


def column(name: str) -> int:
    return F.feature_names().index(name)


# ---------------------------------------------------------------- features


def test_features_are_kinematics_plus_one_mask_per_body_landmark(squat):
    lm, fps, aspect = squat
    x = F.clip_features(lm, fps, aspect)
    kinematic, names = frame_features(lm, fps, aspect)
    assert x.dtype == np.float32 and x.shape == (lm.shape[0], len(names) + len(BODY))
    assert F.feature_names() == names + [f"mask_{n}" for n in BODY]
    np.testing.assert_array_equal(x[:, : len(names)], kinematic)
    masks = x[:, len(names):]
    np.testing.assert_allclose(masks, lm[:, [INDEX[n] for n in BODY], 3], rtol=1e-6)  # all seen: visibility


def test_missing_points_keep_nan_features_and_a_zero_mask(squat):
    lm, fps, aspect = squat
    lm = lm.copy()
    lm[5] = np.nan  # a frame without a person
    lm[:, INDEX["left_wrist"], :2] = np.nan  # a landmark the source lacks
    lm[:, :, 3] = np.where(np.arange(N_LANDMARKS) == INDEX["nose"], np.nan, lm[:, :, 3])  # no visibility
    x = F.clip_features(lm, fps, aspect)
    assert np.isnan(x[5, column("angle_left_knee")]) and np.isnan(x[:, column("x_left_wrist")]).all()
    assert np.isnan(x[:, column("angle_left_elbow")]).all()
    assert (x[5, column("mask_left_knee"):] == 0).all()
    assert (x[:, column("mask_left_wrist")] == 0).all()
    seen = np.arange(len(x)) != 5
    assert (x[seen, column("mask_nose")] == 1).all()  # x, y known, visibility unknown: trusted
    assert not np.isnan(x[:, column("mask_nose"):]).any()


def test_a_single_frame_gives_one_row_with_nan_velocities(squat):
    lm, fps, aspect = squat
    x = F.clip_features(lm[:1], fps, aspect)
    assert x.shape == (1, len(F.feature_names()))
    assert np.isnan(x[0, column("vel_left_knee")]) and np.isfinite(x[0, column("angle_left_knee")])


def test_an_all_missing_clip_gives_nan_features_and_zero_masks_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = F.clip_features(np.full((4, 33, 4), np.nan, dtype=np.float32), 30.0)
    assert np.isnan(x[:, : column("mask_nose")]).all() and (x[:, column("mask_nose"):] == 0).all()


# ---------------------------------------------------------------- augmentation


def test_mirror_twice_is_the_identity_and_swaps_left_and_right_angles(squat):
    lm, _, aspect = squat
    np.testing.assert_allclose(F.mirror(F.mirror(lm)), lm, atol=1e-6)
    before, after = joint_angles(lm, aspect), joint_angles(F.mirror(lm), aspect)
    names = list(ANGLES)
    for j, name in enumerate(names):
        twin = name.replace("left_", "\0").replace("right_", "left_").replace("\0", "right_")
        np.testing.assert_allclose(after[:, j], before[:, names.index(twin)], atol=1e-3, err_msg=name)
    assert not np.allclose(before[:, names.index("left_knee")], before[:, names.index("right_knee")], atol=1)
    x = F.mirror(lm)[:, INDEX["left_hip"], 0]
    np.testing.assert_allclose(x, 1 - lm[:, INDEX["right_hip"], 0], atol=1e-6)


def test_time_stretch_length_stays_in_range_and_keeps_the_ends(squat):
    lm = squat[0]
    rng = np.random.default_rng(0)
    lengths = set()
    for _ in range(50):
        out = F.time_stretch(lm, rng, 0.8, 1.2)
        assert round(0.8 * len(lm)) <= len(out) <= round(1.2 * len(lm))
        np.testing.assert_allclose(out[[0, -1]], lm[[0, -1]], atol=1e-6)
        lengths.add(len(out))
    assert len(lengths) > 5  # it does vary
    assert len(F.time_stretch(lm[:1], rng)) == 1


def test_noise_moves_x_and_y_only_by_about_sigma(squat):
    lm = squat[0]
    out = F.add_noise(lm, np.random.default_rng(1), sigma=0.01)
    np.testing.assert_array_equal(out[..., 2:], lm[..., 2:])
    assert 0.009 < np.std(out[..., :2] - lm[..., :2]) < 0.011
    gap = lm.copy()
    gap[3] = np.nan
    assert np.isnan(F.add_noise(gap, np.random.default_rng(1))[3]).all()


def test_shift_keeps_the_length_and_moves_by_at_most_max_frames(squat):
    lm = squat[0]
    rng = np.random.default_rng(2)
    seen = set()
    for _ in range(60):
        out = F.shift(lm, rng, max_frames=2)
        assert out.shape == lm.shape
        k = next(k for k in range(-2, 3) if np.array_equal(out[max(k, 0): len(lm) + min(k, 0)],
                                                          lm[max(-k, 0): len(lm) - max(k, 0)]))
        seen.add(k)
    assert seen == {-2, -1, 0, 1, 2}
    np.testing.assert_array_equal(F.shift(lm[:1], rng), lm[:1])  # one frame: nothing to move


def test_augment_is_reproducible_with_a_seed_and_leaves_its_input_alone(squat):
    lm = squat[0]
    original = lm.copy()
    a = [F.augment(lm, np.random.default_rng(3)) for _ in range(2)]
    np.testing.assert_array_equal(a[0], a[1])
    np.testing.assert_array_equal(lm, original)
    outs = [F.augment(lm, np.random.default_rng(s)) for s in range(20)]
    assert all(o.shape[1:] == (33, 4) for o in outs)
    assert len({o.shape[0] for o in outs}) > 1 and not all(np.array_equal(o, lm) for o in outs)


# ---------------------------------------------------------------- resampling and windows


def test_resample_is_linear_and_keeps_a_gap_in_place():
    x = np.arange(5, dtype=np.float32)[:, None] * 2.0  # 0, 2, 4, 6, 8
    np.testing.assert_allclose(F.resample(x, 9)[:, 0], np.arange(9), atol=1e-6)
    gap = x.copy()
    gap[2] = np.nan
    out = F.resample(gap, 9)[:, 0]  # positions 0, .5, 1, 1.5, 2, 2.5, 3, 3.5, 4
    np.testing.assert_array_equal(np.isnan(out), [False] * 3 + [True] * 3 + [False] * 3)
    assert out[2] == 2 and out[6] == 6  # beside the gap: the nearest known value
    np.testing.assert_array_equal(F.resample(x[:1], 4), np.repeat(x[:1], 4, axis=0))
    assert F.resample(x, 3).dtype == np.float32


def test_windows_step_by_thirty_percent_and_cover_the_end():
    x = np.arange(50, dtype=np.float32)[:, None]
    w, starts = F.windows(x, size=20, overlap=0.7)  # step 6: 0, 6, ..., 30, then one ending at 49
    assert starts.tolist() == [0, 6, 12, 18, 24, 30]
    assert w.shape == (6, 20, 1)
    np.testing.assert_array_equal(w[:, 0, 0], starts)
    w, starts = F.windows(np.arange(53, dtype=np.float32)[:, None], size=20, overlap=0.7)
    assert starts.tolist() == [0, 6, 12, 18, 24, 30, 33] and w[-1, -1, 0] == 52
    w, starts = F.windows(np.arange(20, dtype=np.float32)[:, None], size=20, overlap=0.7)
    assert starts.tolist() == [0]
    w, _ = F.windows(x, size=20, overlap=0.99)  # step floored at 1
    assert len(w) == 31


def test_a_short_clip_is_one_window_padded_with_its_last_frame():
    x = np.arange(14, dtype=np.float32).reshape(7, 2)
    w, starts = F.windows(x, size=20)
    assert w.shape == (1, 20, 2) and starts.tolist() == [0]
    np.testing.assert_array_equal(w[0, :7], x)
    np.testing.assert_array_equal(w[0, 7:], np.repeat(x[-1:], 13, axis=0))


# ---------------------------------------------------------------- scaler and statistics


def test_scaler_ignores_nan_and_maps_missing_to_the_mean():
    a = np.array([[1.0, np.nan, 5.0], [3.0, np.nan, 5.0]], dtype=np.float32)
    b = np.array([[np.nan, np.nan, 5.0], [5.0, np.nan, 5.0]], dtype=np.float32)
    s = F.Scaler().fit([a, b])
    np.testing.assert_allclose(s.mean, [3.0, 0.0, 5.0])
    np.testing.assert_allclose(s.std, [np.nanstd([1, 3, 5]), 1.0, F.STD_FLOOR])
    z = s.transform(b)
    assert z.dtype == np.float32 and not np.isnan(z).any()
    assert z[0, 0] == 0 and z[1, 0] == pytest.approx(2 / np.nanstd([1, 3, 5]), rel=1e-6)
    assert np.abs(s.transform(np.array([[1e9, 0, 5]]))).max() == F.CLIP_SD


def test_scaler_round_trips_through_json_and_refuses_another_version(squat):
    x = F.clip_features(*squat)
    s = F.Scaler().fit([x])
    again = F.Scaler.from_dict(json.loads(json.dumps(s.to_dict())))
    np.testing.assert_array_equal(again.transform(x), s.transform(x))
    with pytest.raises(F.ScalerError, match="features version"):
        F.Scaler.from_dict({**s.to_dict(), "version": F.FEATURES_VERSION + 1})
    with pytest.raises(F.ScalerError, match="not fitted"):
        F.Scaler().transform(x)
    with pytest.raises(F.ScalerError, match="columns"):
        s.transform(x[:, :5])


def test_clip_statistics_match_numpy_and_are_zero_where_nothing_is_seen():
    x = np.array([[1.0, np.nan, np.nan], [4.0, np.nan, 2.0], [np.nan, np.nan, 3.0], [2.0, np.nan, 7.0]])
    s = F.clip_statistics(x, fps=10).reshape(len(F.STATISTICS), 3)
    col = x[:, 0]
    np.testing.assert_allclose(s[:, 0], [np.nanmean(col), np.nanstd(col), 1, 4, 3, 10 * 3.0], rtol=1e-6)
    np.testing.assert_allclose(s[:, 2], [4, np.nanstd([2, 3, 7]), 2, 7, 5, 10 * np.mean([1, 4])], rtol=1e-6)
    assert (s[:, 1] == 0).all()
    assert (F.clip_statistics(x[:1])[5 * 3:] == 0).all()  # one frame: no change
    assert len(F.statistic_names()) == len(F.STATISTICS) * len(F.feature_names())


# ---------------------------------------------------------------- the clip set


def test_load_clipset_reads_labels_groups_aspect_and_landmarks(videos, data_dir, tmp_path):
    arrays, rows = {}, []
    for i, (video, label, group) in enumerate([
        ("kaiakol/squat/correct/squat_correct_001.avi", "correct", "A"),
        ("kaiakol/squat/correct/squat_correct_007.mp4", "correct", ""),
        ("kaiakol/squat/incorrect/squat_incorrect_002.mp4", "incorrect", "G"),
        ("kaiakol/squat/incorrect/squat_incorrect_003.mp4", "", "G"),
        ("kaiakol/squat/correct/squat_correct_010.mp4", "", "C"),
    ]):
        arrays[f"c{i}"] = reference(videos, video)[0]
        rows.append({"clip_id": f"c{i}", "exercise": "squat", "label": label, "fps": "30", "group": group})
    project = Project.open(data_dir)
    import_folder(project, write_folder(tmp_path / "folder", rows, arrays))
    for coach, verdict in (("ann", "correct"), ("bob", "incorrect")):  # c4: a tie between two coaches
        store.add_label_event(project, {"clip_id": "c4", "annotator": coach, "verdict": verdict})
    # A clip cut from an ingested 16:9 video, labelled by a coach.
    lm, fps, _ = reference(videos, "kaiakol/pushup/pushup_incorrect_001.mp4")
    save_track(PoseTrack(lm, np.arange(len(lm)) / fps, np.ones(len(lm), bool), np.zeros(len(lm), np.float32),
                         fps, 640, 360), project.poses / "v1.npz")
    store.add_video(project, {"id": "v1", "source_key": "k1", "source": "push.mp4", "video_path": "videos/v1.mp4",
                              "pose_path": "poses/v1.npz", "frames": len(lm), "fps": fps, "width": 640, "height": 360,
                              "person_share": 1.0, "trimmed_share": 0.0, "exercise": "push-up"},
                    [{"id": "v1_000", "video_id": "v1", "exercise": "push-up", "start_frame": 10, "end_frame": 70,
                      "fps": fps, "method": "repetition", "group_name": None, "complexity": 0.4}])
    store.add_label_event(project, {"clip_id": "v1_000", "annotator": "ann", "verdict": "incorrect",
                                    "criteria": {"hips": "fail"}})

    cs = F.load_clipset(project)
    by_id = {c: i for i, c in enumerate(cs.clip_ids)}
    assert sorted(by_id) == ["c0", "c1", "c2", "v1_000"]  # c3 unlabelled, c4 tied
    assert [int(cs.labels[by_id[c]]) for c in ("c0", "c1", "c2", "v1_000")] == [0, 0, 1, 1]
    assert [cs.groups[by_id[c]] for c in ("c0", "c1", "c2", "v1_000")] == ["A", "c1", "G", "v1"]
    assert cs.aspect[by_id["c0"]] == 1.0 and cs.aspect[by_id["v1_000"]] == pytest.approx(640 / 360)
    np.testing.assert_array_equal(cs.landmarks[by_id["c2"]], arrays["c2"])
    np.testing.assert_array_equal(cs.landmarks[by_id["v1_000"]], lm[10:70])
    assert cs.fps[by_id["v1_000"]] == fps and cs.exercises[by_id["v1_000"]] == "push-up"
    assert cs.criteria[by_id["v1_000"]] == {"hips": "fail"} and cs.complexity[by_id["v1_000"]] == 0.4
    assert len(cs) == 4 and len(cs.subset([by_id["c2"]]).landmarks) == 1

    everything = F.load_clipset(project, labelled_only=False)
    assert len(everything) == 6
    assert {c for c, y in zip(everything.clip_ids, everything.labels) if y == F.UNLABELLED} == {"c3", "c4"}
