"""Runs: each training is a folder of weights and readable JSON."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import subprocess
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from curation import store
from curation.dataset import clip_aspect, load_clip_landmarks
from curation.landmarks import NAMES
from curation.project import Project, UnsafePath
from model.explain import occlusion
from model.metrics import plain
from model.features import FEATURES_VERSION, Scaler, clip_features, feature_names
from model.registry import Model

# A run folder: runs/<run_id>/ with these files. DONE is written last: a folder without it is a run still
# going, or one that failed or was killed, and is never listed or loaded as finished.
WEIGHTS, SCALER, META, METRICS, OOF, PREDICTIONS, PROGRESS, DONE = (
    "weights.pt", "scaler.json", "meta.json", "metrics.json", "oof.csv", "predictions.csv", "progress.json", "done")
# folds/<k>/: the model of evaluation fold k (WEIGHTS and SCALER, as the final model's), the model behind the
# p of oof.csv's rows of fold k: a clip's explanation comes from the model that made its out-of-fold p.
FOLDS = "folds"
EXPLANATIONS = "explanations"  # explanations/<hash of clip id>.json: explain()'s cache, made when first asked
EMBEDDINGS = "embeddings.npy"  # float32 (N, D): the final model's embed() of each predictions.csv row, in order
SELECTION = "selection.csv"  # holdout runs: the inner out-of-fold predictions of each candidate setting
# predictions.csv after clip_id, one row per active clip (labelled or not), empty where unknown:
# p_incorrect: the final model's; uncertainty: sd of the committee's p (the fold models, or the holdout and
# final models); committee_mi: BALD mutual information over the committee, H(mean p) - mean H(p) in bits (model.active.bald);
# mc_mi: the same over MC-dropout samples of the final model (empty for models without dropout);
# window_spread: sd of the final model's window p's (empty for whole-clip input).
SCORE_COLUMNS = ("p_incorrect", "uncertainty", "committee_mi", "mc_mi", "window_spread")
RUN_ID = re.compile(r"^[A-Za-z0-9_-]+$")  # what new_run_dir makes (timestamp-random); anything else is refused
TOP_JOINTS = 5  # joints named in an explanation


class RunNotFound(ValueError):
    """A run id with no finished run behind it."""


class ClipNotFound(ValueError):
    """A clip id that is not in the project."""


class UnknownExercise(ValueError):
    """A clip of an exercise the run's model was not trained on."""


# ---------------------------------------------------------------------------------------------- the fitted model


@dataclass(eq=False)
class Fitted:
    """A fitted model with what its inputs need: the scaler fitted on its training clips and the exercise
    vocabulary (exercise id = position in `exercises`). A model of one exercise takes no exercise input."""

    model: Model
    scaler: Scaler
    exercises: list[str]

    def exercise_ids(self, exercises: Sequence[str]) -> tuple[np.ndarray | None, np.ndarray]:
        """(ids for the model or None for a one-exercise model, mask of clips whose exercise it knows)."""
        index = {name: i for i, name in enumerate(self.exercises)}
        known = np.array([e in index for e in exercises], dtype=bool)
        if self.model.n_exercises == 0:
            return None, known
        return np.array([index.get(e, 0) for e in exercises], dtype=np.int64), known

    def _known(self, features: Sequence[np.ndarray], exercises: Sequence[str]
               ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray | None]:
        """(positions of the clips of known exercises, their scaled features, their exercise ids or None)."""
        if len(features) != len(exercises):
            raise ValueError(f"{len(features)} clips but {len(exercises)} exercises")
        ids, known = self.exercise_ids(exercises)
        keep = np.flatnonzero(known)
        return keep, [self.scaler.transform(features[i]) for i in keep], None if ids is None else ids[keep]

    def predict(self, features: Sequence[np.ndarray], exercises: Sequence[str]) -> np.ndarray:
        """p(incorrect) per clip from raw clip_features; NaN for a clip of an exercise the model never saw
        (a squat model has nothing to say about a push-up)."""
        return self.predict_details(features, exercises)["p"]

    def predict_details(self, features: Sequence[np.ndarray], exercises: Sequence[str], embed: bool = False
                        ) -> dict[str, np.ndarray]:
        """Model.predict_details from raw clip_features: "p" and "window_spread" (N,) (and with embed,
        "embedding" (N, D)), NaN for clips of unknown exercises."""
        keep, scaled, ids = self._known(features, exercises)
        out = {}
        for key, values in self.model.predict_details(scaled, ids, embed=embed).items():
            out[key] = np.full((len(features), *values.shape[1:]), np.nan)
            out[key][keep] = values
        return out

    def predict_samples(self, features: Sequence[np.ndarray], exercises: Sequence[str], n: int = 10,
                        seed: int = 0) -> np.ndarray:
        """Model.predict_samples from raw clip_features: (n, N) MC-dropout samples of p(incorrect), NaN columns
        for unknown exercises. Raises registry.NoDropout for a model without dropout."""
        keep, scaled, ids = self._known(features, exercises)
        samples = self.model.predict_samples(scaled, ids, n, seed)
        out = np.full((n, len(features)), np.nan)
        out[:, keep] = samples
        return out

    def embed(self, features: Sequence[np.ndarray], exercises: Sequence[str]) -> np.ndarray:
        """Model.embed from raw clip_features: (N, D), NaN rows for unknown exercises."""
        return self.predict_details(features, exercises, embed=True)["embedding"]

    def explain(self, features: np.ndarray, exercise: str) -> dict[str, np.ndarray]:
        """The model's attention (T,) and saliency (T, F) for one clip's raw clip_features."""
        ids, known = self.exercise_ids([exercise])
        if not known[0]:
            raise UnknownExercise(f"this run was not trained on {exercise!r} clips: label some and train again")
        return self.model.explain(self.scaler.transform(features), None if ids is None else int(ids[0]))


# ---------------------------------------------------------------------------------------------- folders


def new_run_id() -> str:
    """Timestamp (UTC, sortable) + short random part: two runs started in the same second still differ."""
    return f"{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def run_dir(project: Project, run_id: str) -> Path:
    """The folder of run `run_id`, refusing any id that is not a plain name inside project.runs."""
    if not isinstance(run_id, str) or not RUN_ID.match(run_id):
        raise UnsafePath(f"run id {run_id!r} is not a run name (letters, digits, - and _ only)")
    folder = project.path(Path(project.runs.relative_to(project.root)) / run_id)
    if folder.parent != project.runs.resolve():
        raise UnsafePath(f"run id {run_id!r} is outside the project's runs folder")
    return folder


def new_run_dir(project: Project) -> Path:
    """Create and return the folder of a new run (its name is the run id)."""
    project.runs.mkdir(parents=True, exist_ok=True)
    while True:
        folder = run_dir(project, new_run_id())
        try:
            folder.mkdir()
        except FileExistsError:  # same second, same random part: draw again
            continue
        return folder


def discard_run(folder: Path) -> None:
    """Remove an unfinished run's folder (failed or cancelled): nothing half-written stays behind."""
    if folder.is_dir() and not (folder / DONE).exists():
        shutil.rmtree(folder)


def is_finished(folder: Path) -> bool:
    return (folder / DONE).is_file()


def _write_atomic(path: Path, text: str) -> None:
    """Write via a temporary file and a rename, so a reader never sees half a file (the temporary name is
    drawn per write: two processes writing the same file, e.g. one explanation asked for twice, never collide)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_json(path: Path, value: Any) -> None:
    """Atomic, readable JSON (NaN written as null: the files must stay standard JSON for other tools)."""
    _write_atomic(path, json.dumps(plain(value), indent=2, allow_nan=False))


def write_progress(folder: Path, history: list[dict]) -> None:
    """The per-epoch history so far (fold, epoch, train_loss, val_loss, val_f1), for live curves."""
    write_json(folder / PROGRESS, history)


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if _missing(row.get(k)) else row.get(k) for k in columns})
    os.replace(tmp, path)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


SELECTION_COLUMNS = ["clip_id", "candidate", "fold", "y", "p_incorrect"]


def save_fitted(folder: Path, fitted: Fitted) -> None:
    """A fitted model into `folder`: WEIGHTS (plain tensors, for torch.load(weights_only=True)) and SCALER.
    The one format of the final model (the run folder) and of each fold model (folds/<k>/); whatever else
    makes a model's p (e.g. a calibration) must be saved here, so a reloaded fold model gives oof.csv's p."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(fitted.model.state(), folder / WEIGHTS)
    write_json(folder / SCALER, fitted.scaler.to_dict())


def save_fold(folder: Path, fold: int, fitted: Fitted) -> None:
    """The model of evaluation fold `fold` (1-based, as oof.csv's fold column) into the run folder."""
    save_fitted(folder / FOLDS / str(int(fold)), fitted)


def save_run(folder: Path, fitted: Fitted, meta: dict, metrics: dict, oof: list[dict], predictions: list[dict],
             embeddings: np.ndarray | None = None, selection: list[dict] | None = None) -> None:
    """Write a finished run: weights, scaler, metrics, out-of-sample and all-clip predictions, then meta.json
    and the `done` marker last.

    oof rows: clip_id, exercise, group, y, p_incorrect, fold. predictions rows: clip_id and SCORE_COLUMNS
    (missing or NaN written empty). embeddings: one row per predictions row, saved as float32 EMBEDDINGS.
    selection rows (holdout model selection): SELECTION_COLUMNS.
    """
    save_fitted(folder, fitted)
    write_json(folder / METRICS, metrics)
    _write_csv(folder / OOF, ["clip_id", "exercise", "group", "y", "p_incorrect", "fold"], oof)
    _write_csv(folder / PREDICTIONS, ["clip_id", *SCORE_COLUMNS], predictions)
    if embeddings is not None:
        if len(embeddings) != len(predictions):
            raise ValueError(f"{len(embeddings)} embeddings for {len(predictions)} predictions")
        tmp = folder / f".{EMBEDDINGS}.tmp"
        with tmp.open("wb") as fh:
            np.save(fh, np.asarray(embeddings, dtype=np.float32), allow_pickle=False)
        os.replace(tmp, folder / EMBEDDINGS)
    if selection is not None:
        _write_csv(folder / SELECTION, SELECTION_COLUMNS, selection)
    write_json(folder / META, {**meta, "exercises": fitted.exercises})
    (folder / DONE).write_text(datetime.now(timezone.utc).isoformat())


# ---------------------------------------------------------------------------------------------- provenance


def snapshot_hash(clip_ids: Sequence[str], labels: Sequence[int], landmarks: Sequence[np.ndarray]) -> str:
    """sha256 over the (clip id, label, pose array) triples in clip id order: two runs on the same labelled
    data share it, and any change of a label, a boundary or a pose array changes it."""
    digest = hashlib.sha256()
    for i in sorted(range(len(clip_ids)), key=lambda k: clip_ids[k]):
        array = np.ascontiguousarray(landmarks[i], dtype=np.float32)
        digest.update(f"{clip_ids[i]}\0{int(labels[i])}\0{array.shape}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[1]
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):  # no git on this machine: the version numbers still say a lot
        return None
    commit = done.stdout.strip()
    return commit if done.returncode == 0 and commit else None


def code_version() -> dict:
    """The code that made a run: package version, features version and git commit (None outside a checkout)."""
    try:
        package = metadata.version("formcheck")
    except metadata.PackageNotFoundError:
        package = None
    return {"package": package, "features_version": FEATURES_VERSION, "git_commit": _git_commit()}


def label_counts(exercises: Sequence[str], labels: Sequence[int]) -> dict[str, dict[str, int]]:
    """{exercise: {"correct": n, "incorrect": n}} of the labelled clips."""
    out: dict[str, dict[str, int]] = {}
    for ex, y in zip(exercises, labels):
        entry = out.setdefault(ex, {"correct": 0, "incorrect": 0})
        entry["incorrect" if int(y) == 1 else "correct"] += 1
    return dict(sorted(out.items()))


def base_meta(config: dict, clip_ids: Sequence[str], exercises: Sequence[str], labels: Sequence[int],
              landmarks: Sequence[np.ndarray], created_at: datetime | None = None) -> dict:
    """meta.json of a run (without the exercise vocabulary, which save_run adds). created_at: when the run read
    its labels (default now), to the microsecond like label events: a label given after it, even within the
    same second, is one the run did not see."""
    return {
        "created_at": (created_at or datetime.now(timezone.utc)).isoformat(timespec="microseconds"),
        "config": config,
        "data_hash": snapshot_hash(clip_ids, labels, landmarks),
        "n_labelled": len(clip_ids),
        "label_counts": label_counts(exercises, labels),
        "code_version": code_version(),
        "feature_names": feature_names(),
    }


# ---------------------------------------------------------------------------------------------- reading


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _finished(project: Project, run_id: str) -> Path:
    folder = run_dir(project, run_id)
    if not is_finished(folder):
        raise RunNotFound(f"no finished run {run_id!r} in this project")
    return folder


def list_runs(project: Project) -> list[dict]:
    """Finished runs, newest first: each its metrics.json (run_id, model, split, macro_f1, ...) plus created_at,
    config and data_hash from meta.json."""
    out = []
    if not project.runs.is_dir():
        return out
    for folder in project.runs.iterdir():
        if not (folder.is_dir() and RUN_ID.match(folder.name) and is_finished(folder)):
            continue
        try:
            meta = _read_json(folder / META)
            metrics = _read_json(folder / METRICS)
        except FileNotFoundError:  # deleted (moved to the trash) while we listed: it is gone
            continue
        out.append({**metrics, "run_id": folder.name, "created_at": meta["created_at"],
                    "config": meta["config"], "data_hash": meta["data_hash"]})
    # Run ids start with the UTC time, so they break ties of created_at (whole seconds in older runs) in order.
    out.sort(key=lambda r: (r["created_at"], r["run_id"]), reverse=True)
    return out


def load_run(project: Project, run_id: str) -> tuple[Model, Scaler, dict]:
    """A finished run's (model, scaler, meta). Weights load with torch.load(weights_only=True): tensors and
    plain values only, never pickled code, and only from the project's own runs folder."""
    folder = _finished(project, run_id)
    model, scaler = _load_saved(folder)
    return model, scaler, _read_json(folder / META)


def _load_saved(folder: Path) -> tuple[Model, Scaler]:
    """What save_fitted wrote into `folder` (a path made by this module from a checked run id)."""
    state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
    return Model.load(state), Scaler.from_dict(_read_json(folder / SCALER))


def load_fitted(project: Project, run_id: str) -> Fitted:
    """load_run as a Fitted (model + scaler + exercise vocabulary), ready to score clips."""
    model, scaler, meta = load_run(project, run_id)
    return Fitted(model, scaler, list(meta["exercises"]))


def load_fold(project: Project, run_id: str, fold: int) -> Fitted | None:
    """The model of evaluation fold `fold` of a finished run (the one that made the out-of-fold p of that
    fold's clips); None for a run saved without fold models (older runs)."""
    folder = _finished(project, run_id)
    part = folder / FOLDS / str(int(fold))
    if not (part / WEIGHTS).is_file():
        return None
    model, scaler = _load_saved(part)
    return Fitted(model, scaler, list(_read_json(folder / META)["exercises"]))


def read_meta(project: Project, run_id: str) -> dict:
    """A finished run's meta.json (config, data_hash, label_counts, code_version, exercises, ...)."""
    return _read_json(_finished(project, run_id) / META)


def read_metrics(project: Project, run_id: str) -> dict:
    """A finished run's metrics.json (design.md 4.2 and 4.3 keys)."""
    return _read_json(_finished(project, run_id) / METRICS)


def read_oof(project: Project, run_id: str) -> pd.DataFrame:
    """A finished run's out-of-sample predictions: clip_id, exercise, group, y, p_incorrect, fold."""
    return pd.read_csv(_finished(project, run_id) / OOF, dtype={"clip_id": str, "exercise": str, "group": str})


def read_predictions(project: Project, run_id: str) -> dict[str, tuple[float, float]]:
    """A finished run's final-model predictions: clip_id -> (p_incorrect, uncertainty), NaN where unknown."""
    out = {}
    with (_finished(project, run_id) / PREDICTIONS).open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            out[row["clip_id"]] = tuple(float(row[k]) if row[k] else math.nan for k in ("p_incorrect", "uncertainty"))
    return out


# ---------------------------------------------------------------------------------------------- the registry

NAME_CHARS, NOTE_CHARS = 80, 1000  # a run's name is a short label in tables and pickers; its note a few sentences
TRASH = ".trash-"  # runs/.trash-<run id>-<random>: a deleted run on its way out, never a run name (RUN_ID)


class RunTextRefused(ValueError):
    """A run name or note that is too long."""


def _clean(text: str, limit: int, what: str, lines: bool) -> str:
    """Untrusted text as typed, minus control and format characters (bidi overrides can disguise text); a name on
    one line. Refused, never cut, past `limit` characters."""
    text = unicodedata.normalize("NFC", str(text or ""))
    keep = "\n" if lines else ""
    text = "".join(c if c in keep or unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp") else " " for c in text)
    text = "\n".join(" ".join(line.split()) for line in text.split("\n")).strip()
    if len(text) > limit:
        raise RunTextRefused(f"a run's {what} has at most {limit} characters (this one has {len(text)})")
    return text


def run_names(project: Project) -> dict[str, dict]:
    """Per run id the name and note that count (the last naming event): name, note, annotator, created_at."""
    return store.run_names(project)


def name_run(project: Project, run_id: str, annotator: str, name: str | None = None, note: str | None = None) -> dict:
    """Name and/or annotate a finished run (None keeps the present value): a new event in the store, the last one
    counts; the run folder is never rewritten. Raises RunNotFound, RunTextRefused."""
    _finished(project, run_id)
    before = store.run_names(project).get(run_id, {})
    name = before.get("name", "") if name is None else _clean(name, NAME_CHARS, "name", lines=False)
    note = before.get("note", "") if note is None else _clean(note, NOTE_CHARS, "note", lines=True)
    return store.add_run_name(project, run_id, name, note, annotator)


def delete_run(project: Project, run_id: str, actor: str) -> dict:
    """Delete a finished run for good, recorded in the audit log; returns what was deleted (run_id, model,
    macro_f1, created_at, name). The folder is first renamed to a trash name (one atomic step: from then on the run
    is neither listed nor loaded), then removed; a trash folder left by an interrupted removal goes at the next
    deletion. A promotion of the run stays in the store's history; model.choice falls back from a gone run.
    Raises RunNotFound."""
    folder = _finished(project, run_id)
    meta, metrics = _read_json(folder / META), _read_json(folder / METRICS)
    trash = folder.with_name(f"{TRASH}{run_id}-{secrets.token_hex(3)}")
    try:
        os.rename(folder, trash)
    except FileNotFoundError:  # deleted by someone else meanwhile
        raise RunNotFound(f"no finished run {run_id!r} in this project") from None
    gone = {"run_id": run_id, "model": metrics.get("model"), "macro_f1": metrics.get("macro_f1"),
            "created_at": meta.get("created_at"), "name": store.run_names(project).get(run_id, {}).get("name", "")}
    try:
        store.record_audit(project, actor, "run deleted", run_id, gone)
    except BaseException:  # not recorded, not deleted: the run comes back as it was
        os.rename(trash, folder)
        raise
    for leftover in project.runs.glob(f"{TRASH}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    return gone


def latest_run_id(project: Project) -> str | None:
    """The id of the newest finished run, None when there is none."""
    finished = list_runs(project)
    return finished[0]["run_id"] if finished else None


def latest_predictions(project: Project) -> dict[str, tuple[float, float]]:
    """clip_id -> (p_incorrect, uncertainty) of the newest finished run; {} when there is none."""
    run_id = latest_run_id(project)
    return read_predictions(project, run_id) if run_id is not None else {}


def read_scores(project: Project, run_id: str) -> pd.DataFrame:
    """A finished run's per-clip scores (predictions.csv): clip_id and SCORE_COLUMNS as floats, one row per
    clip active at the time of the run; a column an older run did not write is all NaN."""
    table = pd.read_csv(_finished(project, run_id) / PREDICTIONS, dtype={"clip_id": str})
    for column in SCORE_COLUMNS:
        table[column] = pd.to_numeric(table[column], errors="coerce") if column in table else np.nan
    return table[["clip_id", *SCORE_COLUMNS]].astype({c: np.float64 for c in SCORE_COLUMNS})


def embeddings_array(project: Project, run_id: str) -> np.ndarray | None:
    """A finished run's clip embeddings, float32 (N, D) in predictions.csv order (read_scores' rows), NaN rows
    for clips it could not score; None for a run saved without them (older runs). Memory-mapped: a row is read
    from the file when used (200 MB at 100,000 clips, of which a batch of suggestions needs a few rows)."""
    folder = _finished(project, run_id)
    if not (folder / EMBEDDINGS).is_file():
        return None
    return np.load(folder / EMBEDDINGS, mmap_mode="r", allow_pickle=False)


def read_embeddings(project: Project, run_id: str) -> tuple[list[str], np.ndarray] | None:
    """A finished run's clip embeddings: (clip ids, float32 (N, D)) in predictions.csv order, NaN rows for
    clips it could not score; None for a run saved without them (older runs)."""
    vectors = embeddings_array(project, run_id)
    if vectors is None:
        return None
    with (_finished(project, run_id) / PREDICTIONS).open(newline="", encoding="utf-8") as fh:
        ids = [row["clip_id"] for row in csv.DictReader(fh)]
    if len(ids) != len(vectors):
        raise ValueError(f"run {run_id!r} has {len(vectors)} embeddings for {len(ids)} predictions")
    return ids, np.array(vectors)


def live_history(project: Project, run_id: str | None = None) -> list[dict]:
    """Per-epoch rows (fold, epoch, train_loss, val_loss, val_f1) of run `run_id`, by default of the newest
    run still going (none: [])."""
    if run_id is None:
        if not project.runs.is_dir():
            return []
        going = sorted((f for f in project.runs.iterdir() if f.is_dir() and RUN_ID.match(f.name)
                        and not is_finished(f) and (f / PROGRESS).is_file()), key=lambda f: f.name, reverse=True)
        if not going:
            return []
        folder = going[0]
    else:
        folder = run_dir(project, run_id)
    path = folder / PROGRESS
    return _read_json(path) if path.is_file() else []


EXPLANATION_VERSION = 1  # bump when explain() changes what it computes: older cached explanations are redone


def _fold_of(project: Project, run_id: str, clip_id: str) -> int | None:
    """The evaluation fold of a clip in a run (oof.csv), None for a clip outside the run's evaluation."""
    oof = read_oof(project, run_id)
    rows = oof.fold[oof.clip_id == clip_id]
    return int(rows.iloc[0]) if len(rows) and int(rows.iloc[0]) > 0 else None


def _cache_path(folder: Path, clip_id: str) -> Path:
    # Clip ids may come from imported datasets (any text): the file is named by a hash, never by the id.
    return folder / EXPLANATIONS / f"{hashlib.sha256(clip_id.encode()).hexdigest()[:32]}.json"


def explain(project: Project, run_id: str, clip: dict) -> dict:
    """Why run `run_id` judged `clip` (a row of store.get_clip) as it did, from the model that made the clip's
    prediction in that run: for a clip of the run's evaluation, the model of its fold (its p is the clip's
    out-of-fold p); for any other clip, the final model. Model-agnostic: occlusion of time windows and of
    landmarks (model.explain.occlusion), so every model's explanation varies over frames and joints.

    Returns plain JSON values: clip_id, run_id, p_incorrect, source ("fold K" or "final"), fold (K or None),
    frames, frame_weights (one per frame, summing to 1), joint_weights (every landmark name -> its share, summing
    to 1), top_joints (up to TOP_JOINTS names, largest share first), note (why the final model was used for an
    evaluated clip, else None). Cached in the run folder per clip, redone when the clip's pose or exercise
    changed.
    Raises UnknownExercise for a clip of an exercise the run was not trained on.
    """
    folder = _finished(project, run_id)
    video = store.get_video(project, clip["video_id"]) if clip.get("video_id") else None
    aspect = clip_aspect(clip, video)
    landmarks = load_clip_landmarks(project, clip)
    features = clip_features(landmarks, float(clip["fps"]), aspect)
    fold = _fold_of(project, run_id, clip["id"])
    # What the explanation depends on: the model (fold), the clip's pose and its exercise (an input of the model).
    key = hashlib.sha256(f"{EXPLANATION_VERSION}\0{fold}\0{clip['exercise']}\0{features.shape}\0".encode()
                         + np.ascontiguousarray(features).tobytes()).hexdigest()
    cache = _cache_path(folder, clip["id"])
    if cache.is_file():
        try:
            saved = _read_json(cache)
        except (OSError, ValueError):  # a damaged cache file is redone, never trusted
            saved = None
        if isinstance(saved, dict) and saved.get("key") == key:
            return saved["explanation"]
    fitted = load_fold(project, run_id, fold) if fold is not None else None
    note = None
    if fitted is None:
        if fold is not None:
            note = "this run saved no fold models (it predates them): the final model, trained on this clip"
        fitted = load_fitted(project, run_id)
    if not fitted.exercise_ids([clip["exercise"]])[1][0]:
        raise UnknownExercise(f"this run was not trained on {clip['exercise']!r} clips: label some and train again")
    why = occlusion(lambda batch: fitted.predict(batch, [clip["exercise"]] * len(batch)), landmarks,
                    lambda pose: clip_features(pose, float(clip["fps"]), aspect), feature_names())
    joints = why["joint_weights"]
    explanation = {
        "clip_id": clip["id"], "run_id": run_id, "p_incorrect": why["p"],
        "source": f"fold {fold}" if note is None and fold is not None else "final",
        "fold": fold if note is None else None, "frames": int(features.shape[0]),
        "frame_weights": [float(w) for w in why["frame_weights"]],
        "joint_weights": {name: float(w) for name, w in zip(NAMES, joints)},
        "top_joints": [NAMES[i] for i in np.argsort(-joints, kind="stable")[:TOP_JOINTS] if joints[i] > 0],
        "note": note,
    }
    try:
        cache.parent.mkdir(exist_ok=True)
        write_json(cache, {"key": key, "explanation": explanation})
    except OSError:  # a runs folder we may not write to (read-only copy): explain anyway, uncached
        pass
    return explanation


def explain_clip(project: Project, clip_id: str, run_id: str | None = None) -> dict:
    """explain() by ids, for the command line: run `run_id` (default the current run, model.choice: the
    promoted one, else the best on the current labels). Raises ClipNotFound, RunNotFound (also when there is no
    run yet), UnknownExercise."""
    from model import choice  # it reads runs: imported here, not at the top

    clip = store.get_clip(project, clip_id)
    if clip is None:
        raise ClipNotFound(f"no clip {clip_id!r} in this project")
    if run_id is None:
        run_id = choice.current(project).run_id
        if run_id is None:
            raise RunNotFound("no finished run in this project yet: train one first (python -m model train)")
    return explain(project, run_id, clip)
