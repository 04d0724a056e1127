"""The pose dataset folder: layouts mapped to BlazePose, import checks, import then export round trip."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from curation import store
from curation.dataset import DatasetError, export_folder, import_folder, to_blazepose
from curation.landmarks import INDEX
from curation.project import Project
from tests.conftest import ROOT

# kaiakol_squat arrays hold 17 BlazePose points (x, y, visibility), in this order (its SOURCE.md).
KAIAKOL_POINTS = ("nose", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
                  "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
                  "left_heel", "right_heel", "left_foot_index", "right_foot_index")


def write_folder(folder: Path, rows: list[dict], arrays: dict[str, np.ndarray]) -> Path:
    (folder / "poses").mkdir(parents=True)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with (folder / "clips.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    for clip_id, array in arrays.items():
        np.save(folder / "poses" / f"{clip_id}.npy", array)
    return folder


def kaiakol_arrays(shared_data: Path) -> dict[str, tuple[str, np.ndarray]]:
    """The kaiakol squat clips by name: (label from the folder, BlazePose-33 array with missing points NaN)."""
    out = {}
    for path in sorted((shared_data / "keypoints/kaiakol_squat/landmarks").glob("*/*.npy")):
        raw = np.load(path)
        full = np.full((raw.shape[0], 33, 4), np.nan, dtype=np.float32)
        for k, name in enumerate(KAIAKOL_POINTS):
            full[:, INDEX[name], 0:2] = raw[:, k, 0:2]
            full[:, INDEX[name], 3] = raw[:, k, 2]
        out[path.stem] = (path.parent.name, full)
    return out


@pytest.fixture
def kaiakol_folder(shared_data, tmp_path) -> Path:
    """The 22 kaiakol squat clips as a BlazePose-33 dataset folder (missing points NaN, z NaN)."""
    rows, arrays = [], {}
    for stem, (label, full) in kaiakol_arrays(shared_data).items():
        arrays[stem] = full
        rows.append({"clip_id": stem, "exercise": "squat", "label": label, "fps": "30",
                     "group": "", "source": "kaiakol", "criterion:depth": "fail" if stem.endswith("002") else ""})
    return write_folder(tmp_path / "kaiakol", rows, arrays)


@pytest.fixture
def pose_trainer_folder(shared_data, tmp_path) -> Path:
    """pose_trainer as a dataset folder (layout openpose18): see pose_trainer_clips."""
    return write_folder(tmp_path / "pose_trainer", *pose_trainer_clips(shared_data))


def pose_trainer_clips(shared_data: Path) -> tuple[list[dict], dict[str, np.ndarray]]:
    """pose_trainer's OpenPose-18 pixel clips as (clips.csv rows, arrays), labelled by file name; frame size
    unknown, so the largest coordinate of each clip is given as width and height (same scale on both axes keeps
    angles true)."""
    rows, arrays = [], {}
    for path in sorted((shared_data / "keypoints/pose_trainer/poses_compressed").glob("*/*.npy")):
        raw = np.load(path)
        size = float(np.ceil(raw[:, :, :2].max()))
        clip_id = f"{path.parent.name}_{path.stem}"
        arrays[clip_id] = raw
        rows.append({"clip_id": clip_id, "exercise": path.parent.name,
                     "label": "correct" if "good" in path.stem else "incorrect", "fps": "30",
                     "width": size, "height": size})
    return rows, arrays


def test_openpose18_maps_by_joint_name_and_zero_means_missing():
    a = np.zeros((2, 18, 3))
    a[:, 2] = (100, 50, 0.9)  # right shoulder
    a[:, 11] = (80, 150, 0.7)  # left hip
    a[1, 2] = 0  # not detected in frame 1
    out = to_blazepose(a, "openpose18", width=200, height=300)
    assert out.shape == (2, 33, 4) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, INDEX["right_shoulder"]][[0, 1, 3]], [0.5, 50 / 300, 0.9], rtol=1e-6)
    np.testing.assert_allclose(out[1, INDEX["left_hip"]][[0, 1, 3]], [0.4, 0.5, 0.7], rtol=1e-6)
    assert np.isnan(out[1, INDEX["right_shoulder"]]).all()
    assert np.isnan(out[:, INDEX["left_heel"]]).all()  # COCO has no heels
    assert np.isnan(out[:, :, 2]).all()  # no depth in 2D keypoints


def test_openpose25_maps_feet_and_drops_neck_and_midhip():
    a = np.arange(25 * 3, dtype=float).reshape(1, 25, 3) + 1
    out = to_blazepose(a, "openpose25")
    assert out[0, INDEX["left_heel"], 0] == a[0, 21, 0]
    assert out[0, INDEX["right_foot_index"], 1] == a[0, 22, 1]
    assert np.isfinite(out[0, :, 0]).sum() == 25 - 2 - 2  # neck, mid-hip and both small toes have no match


def test_coco17_rejects_an_array_of_another_layout():
    with pytest.raises(DatasetError, match="does not fit layout coco17"):
        to_blazepose(np.zeros((5, 18, 3)), "coco17")


def test_import_then_export_gives_back_the_same_clips_labels_and_arrays(kaiakol_folder, data_dir, tmp_path):
    project = Project.open(data_dir)
    result = import_folder(project, kaiakol_folder)
    assert (result.clips, result.added, result.labelled) == (22, 22, 22)
    out = tmp_path / "exported"
    assert export_folder(project, out) == 22
    original = {r["clip_id"]: r for r in csv.DictReader((kaiakol_folder / "clips.csv").open())}
    exported = {r["clip_id"]: r for r in csv.DictReader((out / "clips.csv").open())}
    assert exported.keys() == original.keys()
    for clip_id, row in original.items():
        assert exported[clip_id]["label"] == row["label"]
        assert exported[clip_id]["exercise"] == "squat"
        assert float(exported[clip_id]["fps"]) == 30.0
        assert exported[clip_id]["criterion:depth"] == row["criterion:depth"]
        np.testing.assert_array_equal(np.load(out / "poses" / f"{clip_id}.npy"),
                                      np.load(kaiakol_folder / "poses" / f"{clip_id}.npy"))


def test_importing_twice_adds_nothing(kaiakol_folder, data_dir):
    project = Project.open(data_dir)
    import_folder(project, kaiakol_folder)
    again = import_folder(project, kaiakol_folder)
    assert (again.added, again.skipped) == (0, 22)
    with store.connect(project) as db:
        assert db["clips"].count == 22 and db["label_events"].count == 22


def test_pose_trainer_imports_with_its_openpose_layout(pose_trainer_folder, data_dir):
    project = Project.open(data_dir)
    result = import_folder(project, pose_trainer_folder, layout="openpose18")
    assert result.added == 112
    counts = store.stats(project)["per_exercise"]
    assert {k: v["clips"] for k, v in counts.items()} == {"bicep": 16, "frontraise": 28, "shoulderpress": 36,
                                                         "shouldershrug": 32}
    labels = [c["label"] for c in store.consensus_labels(project).values()]
    assert (labels.count("correct"), labels.count("incorrect")) == (55, 57)
    clip = store.list_clips(project, exercise="bicep")[0]
    arr = np.load(project.path(clip["pose_path"]))
    xy = arr[:, :, :2][np.isfinite(arr[:, :, :2])]
    assert 0 <= xy.min() and xy.max() <= 1.0


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda rows, arrays: rows[0].update(clip_id="bad id!"), "must match"),
        (lambda rows, arrays: rows[0].update(label="good"), "label must be"),
        (lambda rows, arrays: rows[0].update(fps="0"), "fps must be a number from 1 to 1000"),
        (lambda rows, arrays: rows[1].update(clip_id=rows[0]["clip_id"]), "appears twice"),
        (lambda rows, arrays: rows[0].update({"criterion:depth": "maybe"}), "pass, fail or empty"),
        (lambda rows, arrays: arrays.pop(rows[0]["clip_id"]), "is missing"),
        (lambda rows, arrays: arrays.update({rows[0]["clip_id"]: np.zeros((4, 17, 3))}), "does not fit"),
    ],
)
def test_a_bad_folder_is_refused_whole_with_the_reason(tmp_path, data_dir, mutate, message):
    rows = [{"clip_id": f"c{i}", "exercise": "squat", "label": "correct", "fps": "30", "criterion:depth": ""}
            for i in range(3)]
    arrays = {r["clip_id"]: np.random.default_rng(0).random((5, 33, 4)).astype(np.float32) for r in rows}
    mutate(rows, arrays)
    folder = write_folder(tmp_path / "bad", rows, arrays)
    project = Project.open(data_dir)
    with pytest.raises(DatasetError, match=message):
        import_folder(project, folder)
    assert store.stats(project)["clips"] == 0


def test_a_single_frame_clip_round_trips(tmp_path, data_dir):
    arr = np.random.default_rng(1).random((1, 33, 4)).astype(np.float32)
    folder = write_folder(tmp_path / "one", [{"clip_id": "hold", "exercise": "plank", "label": "", "fps": "1"}],
                          {"hold": arr})
    project = Project.open(data_dir)
    import_folder(project, folder)
    export_folder(project, tmp_path / "out")
    np.testing.assert_array_equal(np.load(tmp_path / "out/poses/hold.npy"), arr)
    assert store.stats(project)["labelled"] == 0


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curation", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_cli_import_stats_export_round_trip(pose_trainer_folder, data_dir, tmp_path):
    out = run_cli("import", str(pose_trainer_folder), "--layout", "openpose18", "--data", str(data_dir),
                  "--json", str(tmp_path / "import.json"))
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "import.json").read_text())["added"] == 112
    out = run_cli("stats", "--data", str(data_dir), "--json", str(tmp_path / "stats.json"))
    assert out.returncode == 0 and "112 clips" in out.stdout
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert (stats["clips"], stats["labelled"]) == (112, 112)
    assert stats["per_exercise"]["bicep"] == {"clips": 16, "labelled": 16}
    out = run_cli("export", str(tmp_path / "exp"), "--data", str(data_dir))
    assert out.returncode == 0, out.stderr
    assert len(list((tmp_path / "exp/poses").glob("*.npy"))) == 112


def test_cli_refuses_a_bad_folder_in_one_line(tmp_path, data_dir):
    out = run_cli("import", str(tmp_path / "nowhere"), "--data", str(data_dir))
    assert out.returncode != 0
    assert out.stderr.strip().count("\n") == 0 and "no clips.csv" in out.stderr


def test_every_command_has_help():
    for command in ("ingest", "stats", "import", "export", "worker", "passwd"):
        out = run_cli(command, "--help")
        assert out.returncode == 0 and "--data" in out.stdout, command
