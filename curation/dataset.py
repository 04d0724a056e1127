"""Dataset: the pose dataset folder of design.md 4.1 (import, export) and each clip's landmark array."""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curation import store
from curation.kinematics import complexity_row
from curation.landmarks import INDEX, N_LANDMARKS
from curation.pose import load_track
from curation.project import Project

CLIP_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
CRITERION_PREFIX = "criterion:"

# Keypoint orders of other tools, by BlazePose name (None: a point BlazePose does not have, e.g. neck).
LAYOUTS: dict[str, tuple[str | None, ...]] = {
    "bp33": tuple(INDEX),
    "coco17": (
        "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
        "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
        "left_knee", "right_knee", "left_ankle", "right_ankle",
    ),
    "openpose18": (
        "nose", None, "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
        "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
        "right_eye", "left_eye", "right_ear", "left_ear",
    ),
    "openpose25": (
        "nose", None, "right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist",
        None, "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
        "right_eye", "left_eye", "right_ear", "left_ear",
        "left_foot_index", None, "left_heel", "right_foot_index", None, "right_heel",
    ),
}


class DatasetError(ValueError):
    """A dataset folder that cannot be imported, with the reason (file, row, column)."""


@dataclass
class ImportResult:
    clips: int  # clips in the folder
    added: int  # new clips
    skipped: int  # clip ids already in the project (left as they are)
    labelled: int  # new clips with a label


def to_blazepose(array: np.ndarray, layout: str = "bp33", width: float | None = None,
                 height: float | None = None) -> np.ndarray:
    """Map a (T, K, C) keypoint array of `layout` to BlazePose (T, 33, 4) float32, NaN where absent.

    C is 2 (x, y), 3 (x, y, confidence) or 4 (x, y, z, visibility). A keypoint whose x, y and confidence are
    all 0 is OpenPose's "not detected" and becomes NaN. Pixel coordinates are divided by width and height
    when given.
    """
    if layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    names = LAYOUTS[layout]
    a = np.asarray(array, dtype=np.float64)
    if a.ndim != 3 or a.shape[0] < 1 or a.shape[1] != len(names) or a.shape[2] not in (2, 3, 4):
        raise DatasetError(
            f"array of shape {a.shape} does not fit layout {layout} (expected (T>=1, {len(names)}, 2|3|4))"
        )
    out = np.full((a.shape[0], N_LANDMARKS, 4), np.nan, dtype=np.float64)
    for k, name in enumerate(names):
        if name is None:
            continue
        j = INDEX[name]
        out[:, j, 0:2] = a[:, k, 0:2]
        if a.shape[2] == 3:
            out[:, j, 3] = a[:, k, 2]
        elif a.shape[2] == 4:
            out[:, j, 2:4] = a[:, k, 2:4]
    if layout != "bp33":
        missing = np.all(a[:, :, : min(3, a.shape[2])] == 0, axis=2)
        for k, name in enumerate(names):
            if name is not None:
                out[missing[:, k], INDEX[name]] = np.nan
    if width and height:
        out[:, :, 0] /= width
        out[:, :, 1] /= height
    return out.astype(np.float32)


def _label(value: str, where: str) -> str | None:
    value = (value or "").strip()
    if value in ("", "correct", "incorrect"):
        return value or None
    raise DatasetError(f"{where}: label must be correct, incorrect or empty, not {value!r}")


def read_folder(folder: Path, layout: str = "bp33") -> tuple[list[dict], list[dict], dict[str, np.ndarray]]:
    """Read and check a whole dataset folder: (clip rows, label events, BlazePose arrays by clip id)."""
    folder = Path(folder)
    table = folder / "clips.csv"
    if not table.is_file():
        raise DatasetError(f"{folder} has no clips.csv")
    with table.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise DatasetError(f"{table} has no clips")
    for column in ("clip_id", "exercise", "fps"):
        if column not in rows[0]:
            raise DatasetError(f"{table} lacks the required column {column!r}")
    clips, events, arrays = [], [], {}
    for n, row in enumerate(rows, start=2):
        where = f"clips.csv line {n}"
        clip_id = (row.get("clip_id") or "").strip()
        if not CLIP_ID.match(clip_id):
            raise DatasetError(f"{where}: clip_id {clip_id!r} must match [A-Za-z0-9_.-]+")
        if clip_id in arrays:
            raise DatasetError(f"{where}: clip_id {clip_id!r} appears twice")
        exercise = (row.get("exercise") or "").strip()
        if not exercise:
            raise DatasetError(f"{where}: exercise is empty")
        try:
            fps = float(row["fps"])
        except ValueError:
            raise DatasetError(f"{where}: fps {row['fps']!r} is not a number") from None
        if not math.isfinite(fps) or fps <= 0:
            raise DatasetError(f"{where}: fps must be > 0")
        label = _label(row.get("label", ""), where)
        criteria = {}
        for column, value in row.items():
            if column and column.startswith(CRITERION_PREFIX):
                value = (value or "").strip()
                if value not in ("", "pass", "fail"):
                    raise DatasetError(f"{where}: {column} must be pass, fail or empty, not {value!r}")
                criteria[column[len(CRITERION_PREFIX):]] = value
        path = folder / "poses" / f"{clip_id}.npy"
        if not path.is_file():
            raise DatasetError(f"{where}: poses/{clip_id}.npy is missing")
        try:
            raw = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise DatasetError(f"poses/{clip_id}.npy is not a plain numpy array: {exc}") from None
        width, height = (float(row[k]) if row.get(k) else None for k in ("width", "height"))
        arrays[clip_id] = to_blazepose(raw, layout, width, height)
        clips.append({
            "id": clip_id,
            "video_id": None,
            "exercise": exercise,
            "start_frame": 0,
            "end_frame": int(arrays[clip_id].shape[0]),
            "fps": fps,
            "method": "imported",
            "pose_path": f"poses/{clip_id}.npy",
            "group_name": (row.get("group") or "").strip() or None,
            "source": (row.get("source") or "").strip() or None,
            "criteria": sorted(k for k, v in criteria.items() if v),  # a blank column names no criterion
        })
        if label:
            events.append({
                "clip_id": clip_id,
                "annotator": "import",
                "verdict": label,
                "criteria": {k: v for k, v in criteria.items() if v},
                "request_id": f"import:{clip_id}",
            })
    return clips, events, arrays


def import_folder(project: Project, folder: Path, layout: str = "bp33") -> ImportResult:
    """Load a dataset folder into the project. All rows are checked before anything is written."""
    clips, events, arrays = read_folder(folder, layout)
    existing = set(store.clip_ids(project))
    fresh = [c for c in clips if c["id"] not in existing]
    for clip in fresh:  # the automatic complexity estimate, as ingested clips get it
        clip.update(complexity_row(arrays[clip["id"]], clip["fps"]))
    for clip in fresh:
        target = project.path(clip["pose_path"])
        tmp = target.with_suffix(".tmp.npy")
        np.save(tmp, arrays[clip["id"]])
        tmp.replace(target)
    criteria = {(c["exercise"], name) for c in clips for name in c.pop("criteria")}
    added = store.add_clips(project, fresh, events, sorted(criteria))
    fresh_ids = {c["id"] for c in fresh}
    return ImportResult(
        clips=len(clips), added=added, skipped=len(clips) - added,
        labelled=sum(e["clip_id"] in fresh_ids for e in events),
    )


def load_clip_landmarks(project: Project, clip: dict) -> np.ndarray:
    """A clip's BlazePose landmarks (T, 33, 4) float32: its own array, or its frames of the video's track."""
    if clip.get("pose_path"):  # an imported array; bounds start at 0 and move when a coach edits them
        return np.load(project.path(clip["pose_path"]), allow_pickle=False)[clip["start_frame"]:clip["end_frame"]]
    video = store.get_video(project, clip["video_id"])
    if video is None:
        raise DatasetError(f"clip {clip['id']} points to a missing video")
    return load_track(project.path(video["pose_path"])).landmarks[clip["start_frame"]:clip["end_frame"]]


def set_clip_bounds(project: Project, clip: dict, start: int, end: int, annotator: str) -> dict:
    """Move a clip's boundaries within its video (or its imported array); the cached clip video is dropped."""
    from curation.clipmedia import clear_stale  # cv2 and ffmpeg: only when a coach edits boundaries

    frames = None
    if clip.get("pose_path"):
        frames = int(np.load(project.path(clip["pose_path"]), mmap_mode="r").shape[0])
    moved = store.set_bounds(project, clip["id"], start, end, annotator, pose_frames=frames)
    clear_stale(project, clip["id"])
    return moved


def clip_overview(project: Project) -> list[dict]:
    """One row per active clip for the Dataset page: where it comes from, its label state and complexity."""
    consensus = store.consensus_labels(project)
    coaches: dict[str, list[str]] = {}
    for row in store.current_labels(project):
        coaches.setdefault(row["clip_id"], []).append(row["annotator"])
    titles = {v["id"]: v["title"] for v in store.list_videos(project)}
    rows = []
    for clip in store.list_clips(project):
        label = consensus.get(clip["id"], {})
        votes = label.get("votes", {"correct": 0, "incorrect": 0})
        disputed = votes["correct"] > 0 and votes["incorrect"] > 0
        rows.append({
            "clip_id": clip["id"],
            "exercise": clip["exercise"],
            "video": titles.get(clip["video_id"], "") if clip["video_id"] else (clip["source"] or "imported"),
            "seconds": round((clip["end_frame"] - clip["start_frame"]) / clip["fps"], 2),
            "method": clip["method"],
            "label": label.get("label") or ("disputed" if disputed else "unlabelled"),
            "final": label.get("source") == "adjudication",
            "correct_votes": votes["correct"],
            "incorrect_votes": votes["incorrect"],
            "disagreement": disputed and label.get("source") != "adjudication",
            "coaches": ", ".join(sorted(coaches.get(clip["id"], []))),
            "complexity": clip["complexity"],
        })
    return rows


def export_folder(project: Project, folder: Path) -> int:
    """Write every active clip as a dataset folder (labels = current consensus). Returns the clip count."""
    folder = Path(folder)
    (folder / "poses").mkdir(parents=True, exist_ok=True)
    clips = store.list_clips(project)
    consensus = store.consensus_labels(project)
    criteria_by_exercise = {e["name"]: [c["name"] for c in e["criteria"]] for e in store.list_exercises(project)}
    names = sorted({n for c in clips for n in criteria_by_exercise.get(c["exercise"], [])})
    columns = ["clip_id", "exercise", "label", "fps", "group", "source"] + [CRITERION_PREFIX + n for n in names]
    tracks: dict[str, np.ndarray] = {}  # one video's track serves all its clips
    with (folder / "clips.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for clip in clips:
            if clip["pose_path"]:
                array = load_clip_landmarks(project, clip)
            else:
                if clip["video_id"] not in tracks:
                    video = store.get_video(project, clip["video_id"])
                    tracks[clip["video_id"]] = load_track(project.path(video["pose_path"])).landmarks
                array = tracks[clip["video_id"]][clip["start_frame"]:clip["end_frame"]]
            np.save(folder / "poses" / f"{clip['id']}.npy", array.astype(np.float32))
            label = consensus.get(clip["id"], {})
            writer.writerow({
                "clip_id": clip["id"],
                "exercise": clip["exercise"],
                "label": label.get("label") or "",
                "fps": repr(float(clip["fps"])),
                "group": clip["group_name"] or "",
                "source": clip["source"] or "",
                **{CRITERION_PREFIX + n: label.get("criteria", {}).get(n, "") for n in names},
            })
    return len(clips)
