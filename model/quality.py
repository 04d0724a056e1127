"""Label quality: likely label errors from out-of-fold predictions (confident learning), as a "check again" queue."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from curation import store
from curation.project import Project
from model import choice, runs
from model.features import LABELS


class NoOutOfFoldPredictions(ValueError):
    """No finished training run with out-of-fold predictions to judge the labels by."""


def confident_thresholds(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Per class j, the mean predicted probability of j over the clips labelled j (Northcutt et al. 2021).

    A clip "confidently belongs" to class j when its p_j reaches t_j: the threshold adapts to how sure the model
    is about each class on its own labels, so a model that leans towards one class does not flag the whole
    other class.
    """
    probs = np.column_stack([1 - p, p])
    return np.array([probs[y == j, j].mean() if (y == j).any() else 1.0 for j in (0, 1)])


def label_issues(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Indices of clips whose label is likely wrong, most likely first.

    Confident learning on binary labels y (0 correct, 1 incorrect) and out-of-fold p(incorrect): a clip
    labelled i is an issue when the probability of the other class j reaches that class's confident threshold
    t_j and exceeds p_i (the off-diagonal of the confident joint). Ranked by normalised margin p_j - p_i, the
    ranking cleanlab calls "normalized_margin". Clips without a prediction (NaN) are never flagged.
    """
    y = np.asarray(y, dtype=np.int64)
    p = np.asarray(p, dtype=np.float64)
    ok = ~np.isnan(p)
    if not ok.any():
        return np.zeros(0, dtype=np.int64)
    t = confident_thresholds(y[ok], p[ok])
    probs = np.column_stack([1 - p, p])
    rows = np.arange(len(y))
    given = probs[rows, y]
    other = probs[rows, 1 - y]
    flagged = ok & (other >= t[1 - y]) & (other > given)
    index = np.flatnonzero(flagged)
    return index[np.argsort(-(other[index] - given[index]), kind="stable")]


@dataclass(frozen=True)
class CheckAgain:
    """One clip whose label the model doubts."""

    clip_id: str
    exercise: str
    label: str  # the label the clip had when the run was trained
    p_incorrect: float  # out-of-fold: from a model that never saw this clip nor its group
    reason: str


def _reason(label: str, p_incorrect: float) -> str:
    other = "incorrect" if label == "correct" else "correct"
    p_other = p_incorrect if other == "incorrect" else 1 - p_incorrect
    return (f"labelled {label}, but a model that never saw this video says {other} "
            f"({p_other:.0%} sure): worth a second look")


def check_again(project: Project, run_id: str | None = None, exercise: str | None = None) -> list[CheckAgain]:
    """The "check again" queue of the run that scores suggestions (model.choice.current), or of run_id: clips
    whose out-of-fold prediction contradicts their label, most doubtful first.

    Excluded clips are left out, and so are clips whose consensus label changed since the run, or that a coach
    or lead labelled after the run was made: they have been looked at again already (a re-check is a new label event, and the
    next run judges the new label).
    """
    finished = {r["run_id"]: r for r in runs.list_runs(project)}
    if not finished:
        raise NoOutOfFoldPredictions("no finished training run yet: train a model on the Train page first")
    if run_id is not None and run_id not in finished:
        raise runs.RunNotFound(f"no finished run {run_id!r} in this project")
    run = finished[run_id or choice.current(project).run_id]
    oof = runs.read_oof(project, run["run_id"])
    if oof.empty:
        return []
    touched = store.clips_labelled_since(project, run["created_at"])
    touched |= set(store.excluded_clip_ids(project))  # an excluded clip leaves every queue
    consensus = store.consensus_label_of(project)
    keep = np.array([cid not in touched and consensus.get(cid) == LABELS[int(y)]
                     for cid, y in zip(oof["clip_id"].tolist(), oof["y"].tolist())], dtype=bool)
    if exercise is not None:
        keep &= (oof["exercise"] == exercise).to_numpy()
    y = oof["y"].to_numpy(dtype=np.int64)
    p = oof["p_incorrect"].to_numpy(dtype=np.float64)
    out = []
    for i in label_issues(y, p):  # thresholds from every out-of-fold clip, then the filters
        if keep[i]:
            label = LABELS[y[i]]
            out.append(CheckAgain(str(oof["clip_id"].iloc[i]), str(oof["exercise"].iloc[i]), label, float(p[i]),
                                  _reason(label, float(p[i]))))
    return out


def as_table(items: list[CheckAgain]) -> pd.DataFrame:
    """The queue as a table for pages and the CLI."""
    return pd.DataFrame([vars(i) for i in items], columns=["clip_id", "exercise", "label", "p_incorrect", "reason"])
