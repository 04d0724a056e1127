"""Explanations: saliency over features mapped to the skeleton's landmarks; occlusion of time windows and joints,
for any model."""

import json
import subprocess
import sys

import numpy as np
import pytest

from curation import store
from curation.dataset import load_clip_landmarks
from curation.landmarks import INDEX, NAMES
from curation.project import Project
from curation.sample import sample_project
from model import runs
from model.explain import (MAX_WINDOWS, bridge, feature_landmarks, hide_joint, joint_columns, joint_saliency, occlusion,
                           time_windows)
from model.features import clip_features, feature_names
from model.train import RunConfig, train_run
from tests.conftest import ROOT


def test_features_map_to_the_landmarks_they_describe():
    assert feature_landmarks("x_left_knee") == ("left_knee",)
    assert feature_landmarks("angle_left_knee") == ("left_knee",)  # the vertex
    assert feature_landmarks("vel_trunk_lean") == ("left_hip", "right_hip")  # vertex mid_hip
    assert feature_landmarks("dist_knee_to_knee") == ("left_knee", "right_knee")
    assert feature_landmarks("mask_left_knee") == ()


def test_saliency_sums_to_one_and_lands_on_the_right_joint():
    names = ["x_left_knee", "angle_right_elbow", "dist_knee_to_knee", "mask_nose"]
    sal = np.array([[1.0, 0.0, 2.0, 50.0], [-1.0, 4.0, 0.0, 50.0]])  # sign does not matter; mask ignored
    w = joint_saliency(sal, names)
    assert w.sum() == pytest.approx(1.0)
    assert w[INDEX["left_knee"]] == pytest.approx(3 / 8)  # 2 of its own + half of the 2 of knee_to_knee
    assert w[INDEX["right_elbow"]] == pytest.approx(4 / 8)
    assert w[INDEX["nose"]] == 0


def test_nothing_mapped_gives_zeros_and_a_mismatch_is_refused():
    assert not joint_saliency(np.ones(1), ["mask_nose"]).any()
    with pytest.raises(ValueError):
        joint_saliency(np.ones((3, 2)), ["x_nose"])


# ---- occlusion: a model-agnostic explanation ----


def test_bridge_draws_the_line_between_the_window_neighbours_nan_safe():
    x = np.stack([np.arange(10.0) ** 2, np.arange(10.0), np.full(10, np.nan)], axis=1)
    x[2, 1] = np.nan  # a gap just before the window: the nearest known value is the anchor
    out = bridge(x, 4, 7)
    np.testing.assert_allclose(out[4:7, 0], [9 + (49 - 9) * k / 4 for k in (1, 2, 3)])  # 3^2 .. 7^2 line
    np.testing.assert_allclose(out[4:7, 1], [4, 5, 6])  # a straight movement is unchanged
    assert np.isnan(out[:, 2]).all()  # never known: stays unknown
    np.testing.assert_array_equal(np.delete(out, [4, 5, 6], axis=0), np.delete(x, [4, 5, 6], axis=0))
    assert (bridge(x, 0, 3)[:3, 0] == 9).all() and (bridge(x, 8, 10)[8:, 0] == 49).all()  # one side: held
    assert np.isnan(bridge(x, 0, 10)).all()
    pose = np.random.default_rng(0).normal(size=(6, 33, 4))
    assert bridge(pose, 2, 4).shape == pose.shape  # any (T, ...) sequence


def test_time_windows_are_bounded_and_cover_every_frame():
    for t in (1, 2, 7, 60, 500):
        spans = time_windows(t)
        assert 1 <= len(spans) <= MAX_WINDOWS and len(set(spans)) == len(spans)
        covered = np.zeros(t, dtype=bool)
        for a, b in spans:
            assert 0 <= a < b <= t
            covered[a:b] = True
        assert covered.all()


def test_occlusion_finds_the_frames_and_the_joint_a_model_rests_on():
    # A model that calls a clip incorrect when the left knee bends below 100 degrees at any moment.
    names = ["angle_left_knee", "angle_right_elbow", "x_nose", "mask_left_knee"]
    knee = 170 - 80 * np.exp(-0.5 * ((np.arange(60) - 40) / 3) ** 2)  # dips to 90 at frame 40
    clip = np.stack([knee, np.full(60, 150.0), np.linspace(0, 1, 60), np.ones(60)], axis=1)

    def predict(batch):
        low = np.array([np.nanmin(np.where(np.isnan(c[:, 0]), 180, c[:, 0])) for c in batch])
        return 1 / (1 + np.exp((low - 100) / 5))

    why = occlusion(predict, clip, lambda x: x, names)
    assert why["p"] > 0.8
    assert 34 <= int(np.argmax(why["frame_weights"])) <= 46  # the dip
    assert why["frame_weights"][:20].max() < 0.2 * why["frame_weights"].max()
    assert why["frame_weights"].sum() == pytest.approx(1.0)
    assert int(np.argmax(why["joint_weights"])) == INDEX["left_knee"]
    assert why["joint_weights"][INDEX["right_elbow"]] == 0 and why["joint_weights"].sum() == pytest.approx(1.0)


def test_a_verdict_nothing_moves_gives_zero_weights():
    names = ["angle_left_knee"]
    why = occlusion(lambda batch: np.full(len(batch), 0.3), np.ones((5, 1)), lambda x: x, names)
    assert why["p"] == pytest.approx(0.3) and not why["frame_weights"].any() and not why["joint_weights"].any()


def test_hiding_a_joint_unsets_every_feature_about_it_and_its_mask():
    names = feature_names()
    columns = joint_columns(names)
    about, mask = columns[INDEX["left_knee"]]
    assert {names[c] for c in mask} == {"mask_left_knee"}
    assert "angle_left_knee" in {names[c] for c in about} and "x_left_knee" in {names[c] for c in about}
    x = np.ones((4, len(names)), dtype=np.float32)
    hidden = hide_joint(x, columns[INDEX["left_knee"]])
    assert np.isnan(hidden[:, about]).all() and (hidden[:, mask] == 0).all()
    untouched = [c for c in range(len(names)) if c not in about + mask]
    assert (hidden[:, untouched] == 1).all()


# ---- the baseline's explanation of a real run, on a clip with a fault in known frames ----

UPPER_BODY = [i for i, name in enumerate(NAMES)
              if not any(part in name for part in ("hip", "knee", "ankle", "heel", "foot"))]


def lean_forward(landmarks: np.ndarray, start: int, stop: int, degrees: float) -> np.ndarray:
    """The clip with the upper body (everything above the hips) folded forward about the hips in frames
    start..stop-1 only, up to `degrees` halfway: a trunk-lean fault in known frames and joints."""
    out = landmarks.copy()
    hip = np.nanmean(landmarks[:, [INDEX["left_hip"], INDEX["right_hip"]], :2], axis=1)
    shoulder = np.nanmean(landmarks[:, [INDEX["left_shoulder"], INDEX["right_shoulder"]], :2], axis=1)
    wrist = np.nanmean(landmarks[:, [INDEX["left_wrist"], INDEX["right_wrist"]], :2], axis=1)
    forward = np.sign(np.nanmean(wrist[:, 0] - shoulder[:, 0]))  # the squat's arms point forward
    angle = np.zeros(len(landmarks))
    angle[start:stop] = forward * np.radians(degrees) * np.sin(np.linspace(0, np.pi, stop - start))
    v = landmarks[:, UPPER_BODY, :2] - hip[:, None]
    cos, sin = np.cos(angle)[:, None], np.sin(angle)[:, None]  # image y points down: this turns towards +x, down
    out[:, UPPER_BODY, 0] = hip[:, :1] + v[..., 0] * cos - v[..., 1] * sin
    out[:, UPPER_BODY, 1] = hip[:, 1:] + v[..., 0] * sin + v[..., 1] * cos
    return out


@pytest.fixture(scope="module")
def baseline_run(tmp_path_factory):
    project = Project.open(tmp_path_factory.mktemp("explain") / "project")
    sample_project(project)
    metrics = train_run(project, RunConfig(model="baseline", folds=3))
    return project, metrics["run_id"]


def test_the_default_models_explanation_peaks_at_a_fault_in_known_frames_and_joints(baseline_run):
    project, run_id = baseline_run
    fitted = runs.load_fitted(project, run_id)
    assert fitted.model.name == "baseline"
    oof = runs.read_oof(project, run_id)
    clip_id = oof[(oof.exercise == "squat") & (oof.y == 0)].sort_values("p_incorrect").clip_id.iloc[0]
    clip = store.get_clip(project, clip_id)
    landmarks = load_clip_landmarks(project, clip)
    t = len(landmarks)
    start, stop = int(0.35 * t), int(0.65 * t)
    faulty = lean_forward(landmarks, start, stop, 30)

    def predict(batch):
        return fitted.predict(batch, ["squat"] * len(batch))

    def features(pose):
        return clip_features(pose, clip["fps"])

    assert predict([features(landmarks)])[0] < 0.2
    why = occlusion(predict, faulty, features, feature_names())
    assert why["p"] > 0.8  # the model sees the fault
    weights = why["frame_weights"]
    assert weights.std() > 0.1 * weights.mean()  # not flat, unlike the baseline's own "attention"
    assert start <= int(np.argmax(weights)) < stop
    assert weights[start:stop].mean() > 1.5 * np.delete(weights, np.arange(start, stop)).mean()
    joints = why["joint_weights"]
    assert int(np.argmax(joints)) in UPPER_BODY and joints[UPPER_BODY].sum() > 0.5
    assert (joints > 0).sum() > 5 and joints.max() > 2 * np.median(joints[joints > 0])  # varies across joints


# ---- python -m model explain ----


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "model", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_cli_explain_writes_the_fold_models_view_of_an_evaluated_clip(baseline_run, tmp_path):
    project, run_id = baseline_run
    oof = runs.read_oof(project, run_id)
    row = oof.iloc[len(oof) // 2]
    out = tmp_path / "why.json"
    done = run_cli("explain", row.clip_id, "--run", run_id, "--data", str(project.root), "--json", str(out))
    assert done.returncode == 0, done.stderr
    why = json.loads(out.read_text())
    assert {"clip_id", "run_id", "p_incorrect", "source", "frame_weights", "joint_weights"} <= set(why)
    assert why["clip_id"] == row.clip_id and why["run_id"] == run_id
    assert why["source"] == f"fold {row.fold}" and why["p_incorrect"] == pytest.approx(row.p_incorrect, abs=1e-6)
    clip = store.get_clip(project, row.clip_id)
    assert len(why["frame_weights"]) == clip["end_frame"] - clip["start_frame"]
    assert set(why["joint_weights"]) == set(NAMES) and all(w >= 0 for w in why["joint_weights"].values())
    assert f"fold {row.fold}" in done.stdout and why["top_joints"][0] in done.stdout


def test_cli_explain_of_an_unlabelled_clip_uses_the_current_runs_final_model(baseline_run, tmp_path):
    project, run_id = baseline_run
    evaluated = set(runs.read_oof(project, run_id).clip_id)
    clip_id = next(c for c in store.clip_ids(project) if c not in evaluated)
    out = tmp_path / "why.json"
    done = run_cli("explain", clip_id, "--data", str(project.root), "--json", str(out))
    assert done.returncode == 0, done.stderr
    why = json.loads(out.read_text())
    assert why["source"] == "final" and why["run_id"] == run_id  # the only run, so the current one
    assert why["p_incorrect"] == pytest.approx(runs.read_predictions(project, run_id)[clip_id][0], abs=1e-6)


@pytest.mark.parametrize("args, says", [(["no-such-clip"], "no clip"),
                                        (["CLIP", "--run", "20990101-000000-abcdef"], "no finished run"),
                                        (["CLIP", "--run", "../etc"], "not a run name")])
def test_cli_explain_refuses_a_bad_clip_or_run_in_one_line(baseline_run, args, says):
    project, _ = baseline_run
    args = [store.clip_ids(project)[0] if a == "CLIP" else a for a in args]
    done = run_cli("explain", *args, "--data", str(project.root))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and says in done.stderr


def test_cli_explain_without_any_run_says_to_train_first(data_dir):
    project = Project.open(data_dir)
    sample_project(project, clips_per_class=2)
    done = run_cli("explain", store.clip_ids(project)[0], "--data", str(data_dir))
    assert done.returncode == 2 and "train one first" in done.stderr
