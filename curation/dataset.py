"""Dataset: the pose dataset folder of design.md 4.1 (import, export) and each clip's landmark array."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import sqlite3
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

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


# The tables a lossless export writes (one CSV each, rows sorted by primary key) and an import restores, in
# the order they are restored (a table after those it refers to). Streams that add a table holding project
# data (not claims, jobs, sessions) append its name here; every column of a listed table is exchanged.
EXCHANGE_TABLES: list[str] = [
    "exercises",
    "criteria",
    "annotators",
    "videos",
    "clips",
    "label_events",
    "clip_edits",
    "clip_parents",
    "exclusions",
    "rubric_events",
    "video_events",
    "trim_spans",
    "trim_events",
    "shot_cuts",
    "flagged_spans",
    "video_people",
    "project_settings",
]


class DatasetError(ValueError):
    """A dataset folder that cannot be imported, with the reason (file, row, column)."""


@dataclass(frozen=True)
class ImportLimits:
    """What an import accepts at most: a file past a limit is refused whole, before anything is written."""

    max_zip_entries: int = 200_000  # files in an uploaded .zip: a clip is one file, plus a few tables
    max_total_bytes: int = 1 << 30  # uncompressed bytes of a .zip, or of a folder's arrays (1 GiB)
    max_ratio: float = 200.0  # uncompressed / compressed size of a .zip, and of each entry over 1 MiB: exports of
    # the sample, kaiakol and pose_trainer measured 1.4-3.3 whole and at most 12 for one file; a bomb ~1000
    max_frames: int = 108_000  # frames of one array or video track: an hour at 30 fps (a repetition is seconds)
    max_clips: int = 100_000  # rows of clips.csv
    max_table_bytes: int = 256 << 20  # one CSV file
    max_text: int = 100_000  # characters of one text cell: notes stop at 10,000 (Label page), JSON lists of a long
    # video's clips run longer; below the csv module's 131,072
    min_fps: float = 1.0  # frames per second; below 1 is a photo series, not a movement
    max_fps: float = 1000.0  # high-speed cameras reach 1000
    max_side: int = 16_384  # pixels of a frame's width or height (16K)


LIMITS = ImportLimits()


@dataclass
class ImportResult:
    clips: int  # clips in the folder
    added: int  # new clips
    skipped: int  # clip ids already in the project (left as they are)
    labelled: int  # new clips with a label
    mode: str = "clips"  # "clips": clips.csv and poses/ (4.1); "full": the whole project restored from tables/


def to_blazepose(array: np.ndarray, layout: str = "bp33", width: float | None = None,
                 height: float | None = None) -> np.ndarray:
    """Map a (T, K, C) keypoint array of `layout` to BlazePose (T, 33, 4) float32, NaN where absent.

    C is 2 (x, y), 3 (x, y, confidence) or 4 (x, y, z, visibility). A keypoint whose x, y and confidence are
    all 0 is OpenPose's "not detected" and becomes NaN. Keypoints of another layout (coco17, openpose) are
    pixels and are divided by width and height when given; bp33 arrays are normalised already (design.md
    4.1), and width and height are only the frame size there.
    """
    if layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    names = LAYOUTS[layout]
    a = np.asarray(array, dtype=np.float64)
    if a.ndim != 3 or a.shape[0] < 1 or a.shape[1] != len(names) or a.shape[2] not in (2, 3, 4):
        raise DatasetError(
            f"array of shape {a.shape} does not fit layout {layout} (expected (T>=1, {len(names)}, 2|3|4))"
        )
    if np.isinf(a).any():
        raise DatasetError(f"array of shape {a.shape} holds infinite values (use NaN for a missing value)")
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


# ---------------------------------------------------------------- checked reading of untrusted files

# A text cell starting with one of these would be a formula in a spreadsheet (= + - @, and tab / CR that some
# spreadsheets strip first). Export puts a ' in front; import takes it off. ' itself and \ (which starts the
# NULL marker of tables/) are escaped the same way so that every text reads back exactly.
_ESCAPED = ("=", "+", "-", "@", "\t", "\r", "'", "\\")
NULL = "\\N"  # a NULL cell in tables/*.csv (an empty cell is the empty text)


def neutralise(text: str) -> str:
    """A text cell that a spreadsheet shows as text, never runs as a formula."""
    return "'" + text if text.startswith(_ESCAPED) else text


def unneutralise(text: str) -> str:
    """The text neutralise was given."""
    return text[1:] if text.startswith("'") and text[1:].startswith(_ESCAPED) else text


def _read_csv(path: Path, limits: ImportLimits) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(header, [(line number, cells)]) of a CSV file; a byte-order mark is allowed, ragged rows are not."""
    name = f"{path.parent.name}/{path.name}" if path.parent.name == "tables" else path.name
    size = path.stat().st_size
    if size > limits.max_table_bytes:
        raise DatasetError(f"{name} is {size / 2**20:.0f} MiB; at most {limits.max_table_bytes >> 20} MiB is read")
    rows: list[tuple[int, list[str]]] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise DatasetError(f"{name} is empty")
            if len(set(header)) != len(header):
                raise DatasetError(f"{name}: a column name appears twice in the header")
            for cells in reader:
                if not cells:  # a blank line
                    continue
                if len(cells) != len(header):
                    raise DatasetError(f"{name} line {reader.line_num}: {len(cells)} cells, the header has "
                                       f"{len(header)}")
                if len(rows) >= limits.max_clips * 100:
                    raise DatasetError(f"{name} has more than {limits.max_clips * 100} rows")
                rows.append((reader.line_num, cells))
    except UnicodeDecodeError:
        raise DatasetError(f"{name} is not UTF-8 text") from None
    except csv.Error as exc:
        raise DatasetError(f"{name} is not a readable CSV file: {exc}") from None
    return header, rows


def _npy_header(fh: BinaryIO, name: str, size: int, kinds: str = "fiu") -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of the .npy array at the start of fh (size bytes long), refused when its values are not of
    these kinds or its data is shorter than its header says (a header may not make numpy allocate more)."""
    if size == 0:
        raise DatasetError(f"{name} is empty (0 bytes)")
    if fh.read(2) == b"PK":
        raise DatasetError(f"{name} is a zip archive (.npz?), not a .npy array")
    fh.seek(0)
    try:
        version = np.lib.format.read_magic(fh)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = read_header(fh)
    except (ValueError, OSError, EOFError) as exc:
        raise DatasetError(f"{name} is not a .npy array ({str(exc)[:100]})") from None
    if dtype.kind not in kinds or dtype.hasobject:
        raise DatasetError(f"{name} holds {dtype} values, not numbers")
    if size - fh.tell() < math.prod(shape) * dtype.itemsize:
        raise DatasetError(f"{name} is truncated ({size} bytes for an array of shape {tuple(shape)})")
    return tuple(shape), dtype


def _load_array(path: Path, name: str, limits: ImportLimits, max_points: int = N_LANDMARKS) -> np.ndarray:
    """A numeric (T, K, C) .npy array, its header checked before its data is read (size, dtype, frames)."""
    with path.open("rb") as fh:
        shape, _dtype = _npy_header(fh, name, path.stat().st_size)
    if len(shape) != 3 or shape[0] < 1 or not 1 <= shape[1] <= max_points or not 2 <= shape[2] <= 4:
        raise DatasetError(f"{name}: array of shape {tuple(shape)} does not fit (expected (T>=1, K, 2|3|4))")
    if shape[0] > limits.max_frames:
        raise DatasetError(f"{name} has {shape[0]} frames; at most {limits.max_frames} are accepted")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DatasetError(f"{name} cannot be read: {str(exc)[:100]}") from None


def _number(value: str, where: str, what: str, low: float, high: float, integer: bool = False) -> float:
    """A number cell within [low, high] (NaN, infinities and text refused), with where it was in the message."""
    try:
        number = float(value)
    except ValueError:
        raise DatasetError(f"{where}: {what} {value[:30]!r} is not a number") from None
    if not (math.isfinite(number) and low <= number <= high) or (integer and number != int(number)):
        kind = "a whole number" if integer else "a number"
        raise DatasetError(f"{where}: {what} must be {kind} from {low:g} to {high:g}, not {value[:30]!r}")
    return int(number) if integer else number


def _name(check, value: str, where: str) -> str:
    """An exercise or criterion name through the editor's check (store), the reason said with where it was."""
    try:
        return check(value)
    except store.StoreError as exc:
        raise DatasetError(f"{where}: {value[:60]!r}: {exc}") from None


def _label(value: str, where: str) -> str | None:
    value = (value or "").strip()
    if value in ("", "correct", "incorrect"):
        return value or None
    raise DatasetError(f"{where}: label must be correct, incorrect or empty, not {value!r}")


def clip_aspect(clip: dict, video: dict | None) -> float:
    """Frame width / height of a clip: its own frame size (imported clips), else its video's, else 1 (unknown:
    coordinates taken as square, as pixel keypoints without a frame size are)."""
    if clip.get("width") and clip.get("height"):
        return clip["width"] / clip["height"]
    if video and video.get("height"):
        return video["width"] / video["height"]
    return 1.0


def read_folder(folder: Path, layout: str = "bp33",
                limits: ImportLimits = LIMITS) -> tuple[list[dict], list[dict], dict[str, np.ndarray]]:
    """Read and check a whole dataset folder: (clip rows, label events, BlazePose arrays by clip id)."""
    clips, events, arrays = [], [], {}
    for clip, event, array in iter_folder(folder, layout, limits):
        clips.append(clip)
        events.extend([event] if event else [])
        arrays[clip["id"]] = array
    return clips, events, arrays


def iter_folder(folder: Path, layout: str = "bp33",
                limits: ImportLimits = LIMITS) -> Iterator[tuple[dict, dict | None, np.ndarray]]:
    """Check a dataset folder's clips.csv whole, then yield each clip (row, label event or None, BlazePose
    array) as its array is read and checked: one array in memory at a time."""
    folder = Path(folder)
    table = folder / "clips.csv"
    if not table.is_file():
        raise DatasetError(f"{folder} has no clips.csv")
    header, lines = _read_csv(table, limits)
    if not lines:
        raise DatasetError(f"{table} has no clips")
    if len(lines) > limits.max_clips:
        raise DatasetError(f"clips.csv has {len(lines)} clips; at most {limits.max_clips} are imported at once")
    for column in ("clip_id", "exercise", "fps"):
        if column not in header:
            raise DatasetError(f"{table} lacks the required column {column!r}")
    criterion_columns = {}
    for column in header:
        if column.startswith(CRITERION_PREFIX):
            criterion_columns[column] = _name(store.criterion_key, column[len(CRITERION_PREFIX):],
                                              f"clips.csv column {column[:60]!r}")
    seen: set[str] = set()
    total = 0
    for n, cells in lines:
        row = {k: unneutralise(v) for k, v in zip(header, cells)}
        where = f"clips.csv line {n}"
        clip_id = row["clip_id"].strip()
        if not CLIP_ID.match(clip_id) or len(clip_id) > 200:
            raise DatasetError(f"{where}: clip_id {clip_id[:60]!r} must match [A-Za-z0-9_.-]+ (at most 200)")
        if clip_id in seen:
            raise DatasetError(f"{where}: clip_id {clip_id!r} appears twice")
        seen.add(clip_id)
        if not row["exercise"].strip():
            raise DatasetError(f"{where}: exercise is empty")
        exercise = _name(store.exercise_key, row["exercise"], where)
        fps = _number(row["fps"], where, "fps", limits.min_fps, limits.max_fps)
        size = [_number(row[k], where, k, 1, limits.max_side, integer=True) if row.get(k, "").strip() else None
                for k in ("width", "height")]
        if (size[0] is None) != (size[1] is None):
            raise DatasetError(f"{where}: give both width and height, or neither")
        label = _label(row.get("label", ""), where)
        criteria = {}
        for column, key in criterion_columns.items():
            value = row[column].strip()
            if value not in ("", "pass", "fail"):
                raise DatasetError(f"{where}: {column} must be pass, fail or empty, not {value[:20]!r}")
            criteria[key] = value
        text = {k: row.get(k, "").strip() for k in ("group", "source", "excluded")}
        for key, value in text.items():
            if len(value) > limits.max_text:
                raise DatasetError(f"{where}: {key} is longer than {limits.max_text} characters")
        path = folder / "poses" / f"{clip_id}.npy"
        if not path.is_file():
            raise DatasetError(f"{where}: poses/{clip_id}.npy is missing")
        total += path.stat().st_size
        if total > limits.max_total_bytes:
            raise DatasetError(f"the arrays exceed {limits.max_total_bytes >> 20} MiB")
        raw = _load_array(path, f"poses/{clip_id}.npy", limits)
        array = to_blazepose(raw, layout, *size)
        del raw
        clip = {
            "id": clip_id,
            "video_id": None,
            "exercise": exercise,
            "start_frame": 0,
            "end_frame": int(array.shape[0]),
            "fps": fps,
            "method": "imported",
            "pose_path": f"poses/{clip_id}.npy",
            "group_name": text["group"] or None,
            "source": text["source"] or None,
            "width": size[0],
            "height": size[1],
            "criteria": sorted(k for k, v in criteria.items() if v),  # a blank column names no criterion
            "excluded": text["excluded"] or None,  # the reason, in an export made with excluded clips kept
        }
        event = {
            "clip_id": clip_id,
            "annotator": "import",
            "verdict": label,
            "criteria": {k: v for k, v in criteria.items() if v},
            "request_id": f"import:{clip_id}",
        } if label else None
        yield clip, event, array


class _Staging:
    """An import's files, written first to a fresh folder under work/ (unique names, so that no clip's file is
    another's temporary) and moved into place by place(), inside the rows' transaction."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.folder = Path(tempfile.mkdtemp(prefix="import-", dir=project.work))
        self.staged: list[tuple[Path, Path]] = []
        self.placed: list[Path] = []

    def add(self, relative: str, content: np.ndarray | Path) -> None:
        """Stage an array (saved as .npy) or a copy of a checked file, for project path `relative`."""
        target = self.project.path(relative)
        tmp = self.folder / f"{len(self.staged)}{target.suffix}"
        if isinstance(content, np.ndarray):
            np.save(tmp, content)
        else:
            shutil.copyfile(content, tmp)
        self.staged.append((tmp, target))

    def place(self) -> None:
        for tmp, target in self.staged:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
            self.placed.append(target)


@contextmanager
def _all_or_nothing(project: Project) -> Iterator[_Staging]:
    """Stage files, then write rows whose transaction calls place() last: any failure (a refused row, a full
    disk) removes what was placed, and the staging folder goes in every case."""
    staging = _Staging(project)
    try:
        yield staging
    except BaseException:
        for target in staging.placed:
            target.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging.folder, ignore_errors=True)


def _free_pose_path(project: Project, clip_id: str, taken: set[str]) -> str:
    """poses/<clip_id>.npy, or poses/<clip_id>-2.npy ... when that file exists (never overwrite a file)."""
    candidate, n = f"poses/{clip_id}.npy", 1
    while candidate in taken or project.path(candidate).exists():
        n += 1
        candidate = f"poses/{clip_id}-{n}.npy"
    taken.add(candidate)
    return candidate


def import_folder(project: Project, folder: Path, layout: str = "bp33",
                  limits: ImportLimits = LIMITS) -> ImportResult:
    """Load a dataset folder into the project; everything is checked before anything is written, and any
    failure leaves the project as it was and raises DatasetError (one line, no server path).

    A folder exported by Formcheck (with tables/) going into a project without clips or videos is restored
    whole: every table of EXCHANGE_TABLES with its ids, the pose tracks and arrays (mode "full"). Any other
    case reads clips.csv and poses/ (design.md 4.1: clips, consensus labels, frame size; mode "clips"), and
    clip ids already in the project are skipped.
    """
    try:
        return _import_folder(project, Path(folder), layout, limits)
    except OSError as exc:  # a full disk, an unreadable file
        raise DatasetError(f"nothing was imported: a file could not be read or written ({exc.strerror or exc})") \
            from None
    except sqlite3.OperationalError as exc:  # "database or disk is full"
        raise DatasetError(f"nothing was imported: the database refused the rows ({exc})") from None
    except store.StoreError as exc:
        raise DatasetError(f"nothing was imported: {exc}") from None


def _import_folder(project: Project, folder: Path, layout: str, limits: ImportLimits) -> ImportResult:
    if (folder / "tables").is_dir() and layout == "bp33" and not store.has_project_data(project):
        return _restore(project, folder, limits)
    existing = set(store.clip_ids(project))
    clips, fresh, events, taken = [], [], [], set()
    with _all_or_nothing(project) as staging:
        for clip, event, array in iter_folder(folder, layout, limits):
            clips.append(clip)
            events.extend([event] if event else [])
            if clip["id"] in existing:
                continue
            # The automatic complexity estimate, as ingested clips get it.
            clip.update(complexity_row(array, clip["fps"], clip_aspect(clip, None)))
            clip["pose_path"] = _free_pose_path(project, clip["id"], taken)
            staging.add(clip["pose_path"], array)
            fresh.append(clip)
        criteria = {(c["exercise"], name) for c in clips for name in c.pop("criteria")}
        excluded = {c["id"]: reason for c in clips if (reason := c.pop("excluded"))}
        added = store.add_clips(project, fresh, events, sorted(criteria), before_commit=staging.place)
    fresh_ids = {c["id"] for c in fresh}
    for clip_id, reason in excluded.items():
        if clip_id in fresh_ids:
            store.set_excluded(project, "import", True, reason, clip_id=clip_id)
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
    """Move a clip's boundaries within its video (or its imported array); the cached clip video is dropped and
    the automatic complexity recomputed on the new frames."""
    from curation.clipmedia import clear_stale  # cv2 and ffmpeg: only when a coach edits boundaries
    from curation.lineage import recompute_complexity  # lineage reads landmarks through this module

    frames = None
    if clip.get("pose_path"):
        frames = int(np.load(project.path(clip["pose_path"]), mmap_mode="r").shape[0])
    moved = store.set_bounds(project, clip["id"], start, end, annotator, pose_frames=frames)
    clear_stale(project, clip["id"])
    return {**moved, **recompute_complexity(project, [clip["id"]])[clip["id"]]}


@store.memoised  # the Dataset page's table, rebuilt on every rerun otherwise
def clip_overview(project: Project) -> list[dict]:
    """One row per active clip for the Dataset page: where it comes from, its label state and complexity
    (automatic, and the coaches' median: coach_complexity), and second_look (labels made on other frames)."""
    consensus = store.consensus_labels(project)
    coach_values = store.coach_complexity(project)
    looks = store.second_looks(project)
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
            "coach_complexity": coach_values.get(clip["id"], {}).get("complexity"),
            "view": clip.get("view"),  # camera view (curation.view), None when not estimated
            "second_look": clip["id"] in looks,
        })
    return rows


# ---------------------------------------------------------------- uploads

def extract_zip_safely(source: bytes | str | os.PathLike | BinaryIO, dest: Path,
                       limits: ImportLimits = LIMITS) -> Path:
    """Unpack an uploaded .zip into dest after checking all of it (entry count, paths, links, uncompressed size
    and compression ratio); returns the folder in it that holds clips.csv. Nothing is written when a check
    fails."""
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise DatasetError("the upload is not a .zip file") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > limits.max_zip_entries:
            raise DatasetError(f"the zip holds {len(infos)} files; at most {limits.max_zip_entries} are accepted")
        archive.fp.seek(0, os.SEEK_END)
        packed = max(archive.fp.tell(), 1)
        total = 0
        for info in infos:
            parts = PurePosixPath(info.filename.replace("\\", "/")).parts
            if info.filename.startswith(("/", "\\")) or ".." in parts or any(":" in p for p in parts) or not parts:
                raise DatasetError(f"unsafe path in the zip: {info.filename[:100]!r}")
            if stat.S_ISLNK(info.external_attr >> 16):
                raise DatasetError(f"the zip holds a link: {info.filename[:100]!r}")
            if info.flag_bits & 0x1:
                raise DatasetError(f"the zip holds an encrypted file: {info.filename[:100]!r}")
            total += info.file_size
            if info.file_size > 1 << 20 and info.file_size > limits.max_ratio * max(info.compress_size, 1):
                raise DatasetError(f"{info.filename[:100]!r} unpacks {info.file_size / max(info.compress_size, 1):.0f}"
                                   f" times its packed size (a zip bomb?); at most {limits.max_ratio:g} is accepted")
        if total > limits.max_total_bytes:
            raise DatasetError(f"the zip unpacks to {total / 2**20:.0f} MiB; at most "
                               f"{limits.max_total_bytes >> 20} MiB are accepted")
        if total > 1 << 20 and total > limits.max_ratio * packed:
            raise DatasetError(f"the zip unpacks {total / packed:.0f} times its size (a zip bomb?); at most "
                               f"{limits.max_ratio:g} is accepted")
        dest = Path(dest)
        try:
            for info in infos:
                target = dest.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)  # zipfile stops at the declared size and checks the CRC
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
            shutil.rmtree(dest, ignore_errors=True)
            raise DatasetError(f"the zip is damaged: {exc}") from None
        except OSError as exc:
            shutil.rmtree(dest, ignore_errors=True)
            raise DatasetError(f"the zip could not be unpacked ({exc.strerror or exc})") from None
    found = sorted((p.parent for p in dest.rglob("clips.csv")), key=lambda p: len(p.parts))
    if not found:
        raise DatasetError("the zip holds no clips.csv")
    return found[0]


def import_zip(project: Project, source: bytes | str | os.PathLike | BinaryIO, layout: str = "bp33",
               limits: ImportLimits = LIMITS) -> ImportResult:
    """import_folder of a dataset packed as a .zip (an upload, or a .zip given to the command line), unpacked by
    extract_zip_safely into a scratch folder of the project that is removed afterwards."""
    scratch = Path(tempfile.mkdtemp(prefix="upload-", dir=project.work))
    try:
        return import_folder(project, extract_zip_safely(source, scratch, limits), layout, limits)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------- the whole project (tables/ and files/)

POSE_PATH = re.compile(r"^poses/[A-Za-z0-9_.-]{1,200}\.(npy|npz)$")
VIDEO_PATH = re.compile(r"^videos/[A-Za-z0-9_.-]{1,200}$")
TRACK_ARRAYS = {"landmarks.npy", "timestamps.npy", "detected.npy", "motion.npy", "fps.npy", "width.npy",
                "height.npy"}  # what curation.pose.save_track writes


def _affinity(declared: str) -> str:
    """SQLite's type affinity of a declared column type (sqlite.org/datatype3.html, 3.1)."""
    declared = declared.upper()
    if "INT" in declared:
        return "integer"
    if any(k in declared for k in ("CHAR", "CLOB", "TEXT")):
        return "text"
    if any(k in declared for k in ("REAL", "FLOA", "DOUB")):
        return "real"
    return "any"


def _cell_out(value: object, where: str) -> str:
    """A value of the database as a cell of tables/*.csv (floats exact, NULL as \\N, text neutralised)."""
    if value is None:
        return NULL
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return neutralise(value)
    raise DatasetError(f"{where} holds binary data, which the exchange does not carry")


def _cell_in(text: str, affinity: str, where: str, limits: ImportLimits) -> object:
    """The value a tables/*.csv cell stands for, typed by its column."""
    if text == NULL:
        return None
    if affinity in ("integer", "real"):
        try:
            number = float(text) if affinity == "real" or not re.fullmatch(r"-?[0-9]+", text) else int(text)
        except ValueError:
            raise DatasetError(f"{where}: {text[:30]!r} is not a number") from None
        if isinstance(number, float) and not math.isfinite(number):
            raise DatasetError(f"{where}: {text[:30]!r} is not a finite number")
        return number
    if len(text) > limits.max_text:
        raise DatasetError(f"{where}: text longer than {limits.max_text} characters")
    return unneutralise(text)


def _json(value: str, where: str, kind: type) -> object:
    try:
        parsed = json.loads(value)
    except ValueError:
        raise DatasetError(f"{where}: not JSON") from None
    if not isinstance(parsed, kind):
        raise DatasetError(f"{where}: JSON {kind.__name__} expected")
    return parsed


def _check_cell(table: str, column: str, value: object, where: str, limits: ImportLimits) -> None:
    """The checks a cell of a restored table gets beyond its type: names through the editor's check, ids, paths
    and numbers in range, JSON columns parsed."""
    if value is None:
        return
    text = value if isinstance(value, str) else None

    def must(ok: bool, what: str) -> None:
        if not ok:
            raise DatasetError(f"{where}: {str(value)[:60]!r} is not {what}")

    if column == "exercise" or (table == "exercises" and column == "name"):
        must(text is not None and _name(store.exercise_key, text, where) == text, "an exercise name")
    elif column == "criterion" or (table == "criteria" and column == "name"):
        must(text is not None and _name(store.criterion_key, text, where) == text, "a criterion name")
    elif column == "clip_id" or (table == "clips" and column == "id"):
        must(text is not None and CLIP_ID.match(text) is not None and len(text) <= 200, "a clip id")
    elif column == "fps":
        must(isinstance(value, (int, float)) and limits.min_fps <= value <= limits.max_fps,
             f"an fps from {limits.min_fps:g} to {limits.max_fps:g}")
    elif column in ("width", "height") and table in ("clips", "videos"):
        must(isinstance(value, int) and 1 <= value <= limits.max_side, f"a frame size from 1 to {limits.max_side}")
    elif column in ("frames", "start_frame", "end_frame"):
        must(isinstance(value, int) and 0 <= value <= limits.max_frames, f"a frame from 0 to {limits.max_frames}")
    elif column == "pose_path":
        must(text is not None and POSE_PATH.match(text) is not None, "a path poses/<name>.npy|npz")
    elif column == "video_path":
        must(text is not None and VIDEO_PATH.match(text) is not None, "a path videos/<name>")
    elif table == "label_events" and column == "criteria":
        marks = _json(text or "", where, dict)
        for key, mark in marks.items():
            _name(store.criterion_key, key, where)
            must(store.criterion_key(key) == key and mark in ("pass", "fail"), "{criterion: pass | fail}")
    elif table == "label_events" and column == "prediction":
        opinion = _json(text or "", where, dict)
        must(isinstance(opinion.get("verdict"), str) and isinstance(opinion.get("failed"), list),
             "a model's opinion {run_id, p_incorrect, verdict, failed}")
    elif table == "exercises" and column == "joints":
        must(all(isinstance(j, str) for j in _json(text or "", where, list)), "a JSON list of joint names")


def _check_track(path: Path, name: str, limits: ImportLimits) -> int:
    """A video's pose track (.npz of curation.pose.save_track) checked member by member; returns its frames."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            # cuts.npy: tracks made since camera cuts are found (curation.shots); older ones have none. Likewise
            # people_*.npy, the people checks (curation.people).
            if {i.filename for i in infos} - {"cuts.npy", "people_frames.npy", "people_boxes.npy"} != TRACK_ARRAYS:
                raise DatasetError(f"{name} holds {sorted(i.filename for i in infos)[:9]}, not a pose track's arrays")
            if sum(i.file_size for i in infos) > limits.max_frames * (N_LANDMARKS * 4 * 4 + 13 + 8 + 8) + (1 << 16):
                raise DatasetError(f"{name} has more than {limits.max_frames} frames")
            for info in infos:
                with archive.open(info) as fh:
                    _npy_header(fh, f"{name}:{info.filename}", info.file_size, kinds="fiub")
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error):
        raise DatasetError(f"{name} is not a pose track (.npz)") from None
    try:
        with np.load(path, allow_pickle=False) as d:
            arrays = {k: d[k] for k in d.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DatasetError(f"{name} cannot be read: {str(exc)[:100]}") from None
    landmarks = arrays["landmarks"]
    frames = landmarks.shape[0] if landmarks.ndim == 3 else -1
    fits = (
        landmarks.dtype == np.float32 and landmarks.shape[1:] == (N_LANDMARKS, 4) and 0 < frames <= limits.max_frames
        and all(arrays[k].shape == (frames,) and arrays[k].dtype.kind in kinds
                for k, kinds in (("timestamps", "f"), ("detected", "b"), ("motion", "f")))
        and all(arrays[k].shape == () and arrays[k].dtype.kind in "fiu" and math.isfinite(float(arrays[k]))
                for k in ("fps", "width", "height"))
        and ("cuts" not in arrays or (arrays["cuts"].ndim == 1 and arrays["cuts"].dtype.kind in "iu"
                                      and bool(((arrays["cuts"] > 0) & (arrays["cuts"] < frames)).all())))
        and ("people_frames" not in arrays
             or (arrays["people_frames"].ndim == 1 and arrays["people_frames"].dtype.kind in "iu"
                 and arrays.get("people_boxes", np.zeros(0)).ndim == 3
                 and arrays["people_boxes"].shape[::2] == (len(arrays["people_frames"]), 4)
                 and arrays["people_boxes"].dtype.kind == "f"
                 and bool(((arrays["people_frames"] >= 0) & (arrays["people_frames"] < frames)).all())))
    )
    if not fits:
        raise DatasetError(f"{name}: the arrays do not form a pose track ((T, 33, 4) float32 and T values each)")
    return int(frames)


def _restore(project: Project, folder: Path, limits: ImportLimits) -> ImportResult:
    """Restore a whole exported project (tables/ and files/) into this project, which has no clips or videos."""
    schema = store.exchange_schema(project, EXCHANGE_TABLES)
    for path in sorted((folder / "tables").iterdir()):
        if path.name[:-4] not in schema or path.suffix != ".csv":
            raise DatasetError(f"tables/{path.name[:100]} is not a table of this version of Formcheck")
    tables: dict[str, tuple[list[str], list[tuple[int, list]]]] = {}
    for table, columns in schema.items():
        path = folder / "tables" / f"{table}.csv"
        if not path.is_file():  # a table newer than the export: restored empty
            tables[table] = ([], [])
            continue
        header, lines = _read_csv(path, limits)
        types = dict(columns)
        for column in header:
            if column not in types:
                raise DatasetError(f"tables/{table}.csv: column {column[:60]!r} is not in this version's {table}")
        rows = []
        for n, cells in lines:
            values = []
            for column, text in zip(header, cells):
                where = f"tables/{table}.csv line {n} column {column}"
                value = _cell_in(text, _affinity(types[column]), where, limits)
                _check_cell(table, column, value, where, limits)
                values.append(value)
            rows.append((n, values))
        tables[table] = (header, rows)

    def records(table: str) -> list[tuple[int, dict]]:
        header, rows = tables.get(table, ([], []))
        return [(n, dict(zip(header, values))) for n, values in rows]

    files: dict[str, Path] = {}
    frames: dict[str, int] = {}  # frames of each pose file, by its path in the project
    total = 0

    def take(relative: str, where: str) -> int:
        nonlocal total
        if relative not in frames:
            source = folder / "files" / relative
            if not source.is_file():
                raise DatasetError(f"{where}: files/{relative} is missing")
            total += source.stat().st_size
            if total > limits.max_total_bytes:
                raise DatasetError(f"the arrays exceed {limits.max_total_bytes >> 20} MiB")
            if relative.endswith(".npz"):
                frames[relative] = _check_track(source, f"files/{relative}", limits)
            else:
                array = _load_array(source, f"files/{relative}", limits)
                if array.dtype != np.float32 or array.shape[1:] != (N_LANDMARKS, 4):
                    raise DatasetError(f"files/{relative}: a clip's array is (T, 33, 4) float32, not "
                                       f"{array.shape} {array.dtype}")
                frames[relative] = int(array.shape[0])
            files[relative] = source
        return frames[relative]

    video_frames = {}
    for n, video in records("videos"):
        where = f"tables/videos.csv line {n}"
        if not video.get("pose_path"):
            raise DatasetError(f"{where}: pose_path is required")
        if take(video["pose_path"], where) != video.get("frames"):
            raise DatasetError(f"{where}: frames {video.get('frames')} differs from its track's")
        video_frames[video["id"]] = video["frames"]
    clip_rows = records("clips")
    if len(clip_rows) > limits.max_clips:
        raise DatasetError(f"tables/clips.csv has {len(clip_rows)} clips; at most {limits.max_clips} are imported")
    for n, clip in clip_rows:
        where = f"tables/clips.csv line {n}"
        if not (isinstance(clip.get("start_frame"), int) and isinstance(clip.get("end_frame"), int)):
            raise DatasetError(f"{where}: start_frame and end_frame are required")
        limit = take(clip["pose_path"], where) if clip.get("pose_path") else video_frames.get(clip.get("video_id"))
        if limit is not None and not 0 <= clip["start_frame"] < clip["end_frame"] <= limit:
            raise DatasetError(f"{where}: frames {clip['start_frame']}..{clip['end_frame']} are not within 0..{limit}")
    with _all_or_nothing(project) as staging:
        for relative, source in files.items():
            staging.add(relative, source)
        store.restore_tables(project, tables, before_commit=staging.place)
    consensus = store.consensus_labels(project)
    active = [clip for _n, clip in clip_rows if clip.get("active", 1)]
    return ImportResult(clips=len(active), added=len(active), skipped=0, mode="full",
                        labelled=sum(consensus.get(c["id"], {}).get("label") is not None for c in active))


# ---------------------------------------------------------------- export

README = """\
# Formcheck dataset export

Written by `python -m curation export` (or the Dataset page). `python -m curation import` reads it back.

## The pose dataset (design.md 4.1)

- `clips.csv`: one row per active clip that is not excluded (the training set); an export made with excluded
  clips kept has them too, marked by the reason in an extra `excluded` column. `clip_id`, `exercise`, `label`
  (the current consensus: a lead coach's adjudication, else the coaches' majority; empty when unlabelled or
  tied), `fps`, `group` (athlete or source video), `source`, `width` and `height` (pixels of the source frame;
  angles are measured with x scaled by width / height; empty when unknown), and `criterion:<name>` columns
  (`pass`, `fail` or empty).
- `poses/<clip_id>.npy`: float32 (T, 33, 4), BlazePose order, x and y normalised to the frame, z, visibility;
  NaN where missing.

## The whole project (lossless)

- `tables/<table>.csv`: every row and column of each project table, rows sorted by primary key: `exercises`,
  `criteria` and `rubric_events` (the rubric and its history), `annotators`, `videos` (provenance, frame size,
  athlete), `video_events`, `trim_spans` and `trim_events` (what the trim removed and its review), `shot_cuts`
  (first frames after camera cuts) and `flagged_spans` (kept but marked; a replay with the span it repeats),
  `video_people` (the athlete rule, split screen and side of each video ingested since issue 15), `clips` (bounds, fps, complexity
  values, frame size, camera view, active or replaced), `clip_edits` and `clip_parents` (bounds
  moved, splits, merges), `exclusions`, `label_events` (every event of every coach: verdict, criteria JSON,
  complexity values, note, seconds, the frames and exercise judged, the model's opinion recorded and whether
  it was shown, undo and adjudication events), `project_settings` (the assisted-labelling mode and who set it
  when, as events). A cell `\\N`
  is NULL; numbers are written exactly (Python repr); JSON columns hold JSON text.
- `files/poses/...`: the pose files the tables point to (`pose_path`): a video's whole pose track (.npz of
  arrays `landmarks` (T, 33, 4), `timestamps`, `detected`, `motion`, `fps`, `width`, `height`, and `cuts`
  since camera cuts are found, `people_frames` and `people_boxes` since people are checked), so that clip
  bounds can still move, and imported clips' arrays (.npy). Video files are not exported: after an import the
  Label page shows the skeleton without the picture.

## Rules

- A text cell that would start a spreadsheet formula (`=`, `+`, `-`, `@`, tab, carriage return), or starts
  with `'` or `\\`, is written with a `'` in front; import removes it. Files are UTF-8 (a byte-order mark is
  accepted on import).
- Importing this folder into a project with no clips and no videos restores the whole project from `tables/`
  and `files/` (ids kept): exporting that project again writes identical files. Into a project that has clips
  already, only `clips.csv` and `poses/` are read: new clip ids are added with their consensus label and frame
  size, known clip ids are left as they are.
"""


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def _exclusion_reasons(project: Project, clips: list[dict]) -> dict[str, str]:
    """clip id -> the reason it is excluded (its own exclusion, else its video's), for the excluded ones."""
    own, by_video = {}, {}
    for e in store.exclusions(project):  # newest first: the first seen is in force
        if e.get("clip_id"):
            own.setdefault(e["clip_id"], e["reason"] or "excluded")
        elif e.get("video_id"):
            by_video.setdefault(e["video_id"], e["reason"] or "excluded")
    excluded = store.excluded_clip_ids(project)
    return {c["id"]: own.get(c["id"]) or by_video.get(c["video_id"]) or "excluded"
            for c in clips if c["id"] in excluded}


def export_folder(project: Project, folder: Path, include_excluded: bool = False) -> int:
    """Write the project as a dataset folder: clips.csv and poses/ (design.md 4.1, labels = current consensus)
    plus tables/ and files/, from which import rebuilds the whole project (README.md in the folder says what
    each file holds). Returns the count of clips in clips.csv.

    Excluded clips are left out of clips.csv, unless include_excluded: then they are in it too, marked by the
    reason in an extra `excluded` column (an import marks them excluded again)."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise DatasetError(f"{folder} is not empty: export into a new folder")
    (folder / "poses").mkdir(parents=True, exist_ok=True)
    clips = store.list_clips(project, include_excluded=include_excluded)
    reasons = _exclusion_reasons(project, clips) if include_excluded else {}
    videos = {v["id"]: v for v in store.list_videos(project)}
    consensus = store.consensus_labels(project)
    criteria_by_exercise = {e["name"]: [c["name"] for c in e["criteria"]] for e in store.list_exercises(project)}
    names = sorted({n for c in clips for n in criteria_by_exercise.get(c["exercise"], [])})
    columns = ["clip_id", "exercise", "label", "fps", "group", "source", "width", "height"] + \
        [CRITERION_PREFIX + n for n in names] + (["excluded"] if include_excluded else [])
    tracks: dict[str, np.ndarray] = {}  # one video's track serves all its clips
    rows = []
    for clip in clips:
        video = videos.get(clip["video_id"]) if clip["video_id"] else None
        if clip["pose_path"] or video is None:
            array = load_clip_landmarks(project, clip)
        else:
            if video["id"] not in tracks:
                tracks[video["id"]] = load_track(project.path(video["pose_path"])).landmarks
            array = tracks[video["id"]][clip["start_frame"]:clip["end_frame"]]
        np.save(folder / "poses" / f"{clip['id']}.npy", array.astype(np.float32))
        label = consensus.get(clip["id"], {})
        size = (clip.get("width"), clip.get("height")) if clip.get("width") else \
            ((video["width"], video["height"]) if video else (None, None))
        rows.append([
            neutralise(clip["id"]), clip["exercise"], label.get("label") or "", repr(float(clip["fps"])),
            neutralise(clip["group_name"] or ""), neutralise(clip["source"] or ""),
            "" if size[0] is None else str(size[0]), "" if size[1] is None else str(size[1]),
            *(label.get("criteria", {}).get(n, "") for n in names),
            *([neutralise(reasons.get(clip["id"], ""))] if include_excluded else []),
        ])
    _write_csv(folder / "clips.csv", columns, rows)
    (folder / "tables").mkdir()
    pose_files = set()
    for table, (header, records) in store.dump_tables(project, EXCHANGE_TABLES).items():
        _write_csv(folder / "tables" / f"{table}.csv", header,
                   [[_cell_out(v, f"{table}.{c}") for c, v in zip(header, r)] for r in records])
        if "pose_path" in header:
            pose_files.update(r[header.index("pose_path")] for r in records if r[header.index("pose_path")])
    for relative in sorted(pose_files):
        target = folder / "files" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(project.path(relative), target)
    (folder / "README.md").write_text(README, encoding="utf-8")
    return len(clips)
