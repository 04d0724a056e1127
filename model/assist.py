"""Assist: the current run's opinion of the clips on the Label page, the project's assisted-labelling mode, and how
coaches and the model agree with the opinion shown or not (issue 12)."""

from __future__ import annotations

import json
import math
import statistics
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from curation import accounts, store
from curation.dataset import DatasetError, clip_aspect, load_clip_landmarks
from curation.project import Project

if TYPE_CHECKING:
    from model import runs

# model.choice, model.runs and model.features (torch) are imported where opinions are formed, not here: the Dataset
# page reads the agreement report and need not load torch to draw.

MODES = ("off", "on", "decide first")  # hidden; shown with the clip; shown once the coach's verdict is in
SETTING = "assist_mode"  # the project_settings name; no value (NULL) leaves the mode to each coach
THRESHOLD = 0.5  # p >= THRESHOLD: the model says incorrect / the criterion failed (as everywhere else)
MIN_GROUP = 10  # verdicts a group needs before its agreement or median seconds is worth comparing
CACHED_RUNS = 4  # loaded runs kept per process (the current one, and a few a lead may switch between)


class AssistError(ValueError):
    """A request about assisted labelling that is refused (an unknown mode, a non-lead setting the mode)."""


# ---------------------------------------------------------------------------------------------- opinions


@dataclass(eq=False)
class _Run:
    """What a finished run says of clips, loaded once per run: the saved per-clip predictions (predictions.csv,
    criteria.csv: the final models' p for every clip active at the time of the run) and, loaded only when a clip
    needs them, the final model and per-criterion models themselves."""

    run_id: str
    folder: Path
    created_at: str  # when the run read its labels: a clip edited after it may have other frames now
    exercises: set[str]
    p: dict[str, float]  # clip id -> p(incorrect) of the final model
    p_fail: dict[str, dict[str, float]]  # clip id -> {"exercise/criterion": p(fail)}
    lock: threading.Lock = field(default_factory=threading.Lock)
    _fitted: runs.Fitted | None = None
    _criterion_models: dict[str, runs.Fitted] | None = None

    def fitted(self, project: Project) -> runs.Fitted:
        from model import runs

        with self.lock:
            if self._fitted is None:
                self._fitted = runs.load_fitted(project, self.run_id)
            return self._fitted

    def criterion_models(self) -> dict[str, runs.Fitted]:
        from model.train import load_criterion_models  # train pulls in every model family: only when needed

        with self.lock:
            if self._criterion_models is None:
                self._criterion_models = load_criterion_models(self.folder)
            return self._criterion_models


_runs: OrderedDict[tuple[str, str], _Run] = OrderedDict()
_runs_lock = threading.Lock()


def _load(project: Project, run_id: str) -> _Run:
    """The run's saved opinions, read once per process and run (a finished run folder never changes)."""
    from model import runs
    from model.train import CRITERIA_CSV

    key = (str(project.root), run_id)
    with _runs_lock:
        if key in _runs:
            _runs.move_to_end(key)
            return _runs[key]
    folder = runs.run_dir(project, run_id)
    scores = runs.read_scores(project, run_id)  # raises runs.RunNotFound for a run that is not finished
    meta = _meta(folder)
    p = {cid: float(v) for cid, v in zip(scores.clip_id, scores.p_incorrect) if not math.isnan(v)}
    p_fail: dict[str, dict[str, float]] = {}
    if (folder / CRITERIA_CSV).is_file():
        table = pd.read_csv(folder / CRITERIA_CSV, dtype={"clip_id": str, "criterion": str},
                            usecols=["clip_id", "criterion", "p_fail"])
        for cid, key_, value in zip(table.clip_id, table.criterion, table.p_fail):
            if not math.isnan(value):
                p_fail.setdefault(cid, {})[key_] = float(value)
    loaded = _Run(run_id, folder, meta["created_at"], set(meta["exercises"]), p, p_fail)
    with _runs_lock:
        loaded = _runs.setdefault(key, loaded)  # another thread may have loaded it meanwhile: one copy
        _runs.move_to_end(key)
        while len(_runs) > CACHED_RUNS:
            _runs.popitem(last=False)
    return loaded


def _meta(folder: Path) -> dict:
    from model import runs

    return json.loads((folder / runs.META).read_text(encoding="utf-8"))


def _rubric_position(project: Project, exercise: str) -> dict[str, int]:
    """Criterion name -> its place in the exercise's rubric (retired criteria where they stood)."""
    return {c["name"]: i for i, c in enumerate(store.criteria_of(project, exercise, include_retired=True))}


def _computed(project: Project, run: _Run, clips: list[dict]) -> dict[str, tuple[float, dict[str, float]]]:
    """(p(incorrect), {"exercise/criterion": p(fail)}) of clips the run has no saved opinion of, from its final
    models; a clip whose pose cannot be read is left out."""
    from model.features import clip_features

    features, kept = [], []
    videos: dict[str, dict | None] = {}
    for clip in clips:
        video_id = clip.get("video_id")
        if video_id and video_id not in videos:
            videos[video_id] = store.get_video(project, video_id)
        try:
            landmarks = load_clip_landmarks(project, clip)
        except (DatasetError, OSError, ValueError):  # no pose (a missing or damaged file): nothing to judge
            continue
        if len(landmarks) == 0:
            continue
        features.append(clip_features(landmarks, float(clip["fps"]), clip_aspect(clip, videos.get(video_id))))
        kept.append(clip)
    if not kept:
        return {}
    exercises = [c["exercise"] for c in kept]
    p = run.fitted(project).predict(features, exercises)
    fails: list[dict[str, float]] = [{} for _ in kept]
    for key_, model in run.criterion_models().items():
        members = [i for i, c in enumerate(kept) if key_.startswith(f"{c['exercise']}/")]
        if members:
            values = model.predict([features[i] for i in members], [exercises[i] for i in members])
            for i, value in zip(members, values):
                if not math.isnan(value):
                    fails[i][key_] = float(value)
    return {c["id"]: (float(v), f) for c, v, f in zip(kept, p, fails) if not math.isnan(v)}


_choices: dict[str, tuple[tuple, str | None]] = {}  # project root -> (what the choice depended on, its run id)


def current_run_id(project: Project) -> str | None:
    """model.choice.current's run id, kept until the labels, the finished runs or the promotions change: the
    choice reads every label (0.04-0.3 s at 10,000 clips), too slow to repeat for every clip a coach sees."""
    from model import choice, runs

    folders = project.runs.iterdir() if project.runs.is_dir() else []
    finished = tuple(sorted(f.name for f in folders if f.is_dir() and runs.is_finished(f)))
    promotions = store.run_promotions(project)
    key = (store.data_version(project), finished, promotions[-1]["id"] if promotions else None)
    kept = _choices.get(str(project.root))
    if kept is not None and kept[0] == key:
        return kept[1]
    run_id = choice.current(project).run_id
    _choices[str(project.root)] = (key, run_id)
    return run_id


def opinion(run_id: str, p_incorrect: float, criteria: dict[str, float], order: Sequence[str]) -> dict:
    """One clip's opinion from its p(incorrect) and per-criterion p(fail) (criterion name -> p, listed in
    `order`): verdict incorrect when p >= THRESHOLD, confidence max(p, 1 - p), failed = the criteria with
    p(fail) >= THRESHOLD."""
    return {"run_id": run_id, "p_incorrect": float(p_incorrect),
            "verdict": "incorrect" if p_incorrect >= THRESHOLD else "correct",
            "confidence": float(max(p_incorrect, 1.0 - p_incorrect)),
            "failed": [name for name in order if criteria[name] >= THRESHOLD],
            "criteria": {name: float(criteria[name]) for name in order}}


def opinions(project: Project, clips: list[dict], run_id: str | None = None) -> dict[str, dict]:
    """The current run's opinion (model.choice: the promoted run, else the best; or run `run_id`) of each clip
    it can judge, by clip id: run_id, p_incorrect, verdict, confidence, failed (criterion names in the rubric's order) and
    criteria ({criterion name: p_fail}). `clips` are store.get_clip / list_clips rows.

    p is the run's final model's: read from the run folder for a clip it scored (predictions.csv and
    criteria.csv) whose frames were not edited since, computed with the final models otherwise. A clip of an
    exercise the run never saw, or without a readable pose, is left out; {} when there is no finished run.
    The loaded run is kept per process; the choice of run until the labels, runs or promotions change.
    Raises runs.RunNotFound for a `run_id` that is not a finished run.
    """
    if not clips:
        return {}
    run_id = run_id or current_run_id(project)
    if run_id is None:
        return {}
    run = _load(project, run_id)
    judged = [c for c in clips if c["exercise"] in run.exercises]
    saved = [c["id"] for c in judged if c["id"] in run.p]
    stale = store.clips_edited_since(project, saved, run.created_at)
    found: dict[str, tuple[float, dict[str, float]]] = {}
    missing = []
    for clip in judged:
        if clip["id"] in run.p and clip["id"] not in stale:
            found[clip["id"]] = (run.p[clip["id"]], run.p_fail.get(clip["id"], {}))
        else:
            missing.append(clip)
    found.update(_computed(project, run, missing))
    out, orders = {}, {}
    for clip in judged:
        if clip["id"] not in found:
            continue
        p, fails = found[clip["id"]]
        prefix = f"{clip['exercise']}/"
        named = {key_[len(prefix):]: value for key_, value in fails.items() if key_.startswith(prefix)}
        if clip["exercise"] not in orders:
            orders[clip["exercise"]] = _rubric_position(project, clip["exercise"])
        position = orders[clip["exercise"]]
        order = sorted(named, key=lambda n: (position.get(n, len(position)), n))  # unknown criteria last
        out[clip["id"]] = opinion(run_id, p, named, order)
    return out


def recorded(opinion_: dict | None) -> dict | None:
    """What a label event keeps of an opinion (store.PREDICTION_FIELDS), None for none."""
    return None if opinion_ is None else {k: opinion_[k] for k in store.PREDICTION_FIELDS}


def describe_recorded(event: dict) -> str:
    """A label event's recorded opinion in a few words ("incorrect, p 0.82, failed depth; shown"), "" for none.
    `event` is a label_events row (prediction as JSON text or a dict, prediction_shown 1/0/None or a bool)."""
    prediction = event.get("prediction")
    if isinstance(prediction, str):
        prediction = json.loads(prediction)
    if not prediction:
        return ""
    failed = f", failed {', '.join(prediction['failed'])}" if prediction.get("failed") else ""
    shown = {None: "", True: "; shown", False: "; not shown"}[None if event.get("prediction_shown") is None
                                                              else bool(event["prediction_shown"])]
    return f"{prediction['verdict']}, p {prediction['p_incorrect']:.2f}{failed}{shown}"


# ---------------------------------------------------------------------------------------------- the mode


def project_mode(project: Project) -> str | None:
    """The assisted-labelling mode a lead set for the project ("off", "on", "decide first"), None when each
    coach chooses (never set, or left to coaches again)."""
    value = store.setting(project, SETTING)
    return value if value in MODES else None


def _role(project: Project, name: str) -> str | None:
    """A person's role as sign-in sees it: the project's accounts table, else a coach when on the password list."""
    row = store.get_account(project, name)
    if row is not None:
        return row["role"]
    path = accounts.password_file()
    if path is not None and path.exists() and name in accounts.read_list(path).entries:
        return accounts.LIST_DEFAULT_ROLE
    return None


def set_project_mode(project: Project, mode: str | None, annotator: str, *, sign_in: bool | None = None) -> dict:
    """A lead sets the project's assisted-labelling mode (None: each coach chooses), appended as an event (the
    last counts); returns the event. With sign-in configured (`sign_in`; by default: a password list is
    configured) only a lead or admin may. Raises AssistError for an unknown mode or someone else."""
    if mode is not None and mode not in MODES:
        raise AssistError(f"assisted labelling is one of {', '.join(MODES)} (or left to each coach), not {mode!r}")
    if not (annotator or "").strip():
        raise AssistError("say who sets the assisted labelling mode")
    if sign_in is None:
        sign_in = accounts.password_file() is not None
    if sign_in:
        role = _role(project, annotator.strip())
        if not accounts.allows(role, "lead"):
            raise AssistError(f"only a lead sets the project's assisted labelling ({annotator.strip()} is "
                              f"{role or 'not a user of this project'})")
    return store.add_setting(project, SETTING, mode, annotator)


# ---------------------------------------------------------------------------------------------- agreement


ALL = "all coaches"


def _group(coach: str, shown: bool, events: list[dict], min_group: int) -> dict:
    judged = [e for e in events if e["prediction"] is not None]
    agree = sum(e["verdict"] == e["prediction"]["verdict"] for e in judged)
    timed = [float(e["seconds"]) for e in events if e["seconds"] is not None]
    return {"coach": coach, "shown": shown, "verdicts": len(events), "with_prediction": len(judged),
            "agree": agree, "agreement": agree / len(judged) if judged else None,
            "timed": len(timed), "median_seconds": statistics.median(timed) if timed else None,
            "enough_agreement": len(judged) >= min_group, "enough_seconds": len(timed) >= min_group}


def coach_model_report(verdicts: list[dict], min_group: int = MIN_GROUP) -> dict:
    """Coach-model agreement and seconds per verdict, per coach and over all coaches, with the model's opinion
    shown before the verdict and not (store.assisted_verdicts rows).

    Returns {"groups": per coach (sorted, then ALL) a row for shown=True and one for shown=False: coach, shown,
    verdicts, with_prediction (verdicts with an opinion recorded), agree, agreement (agree / with_prediction,
    None without any), timed (verdicts with seconds), median_seconds, enough_agreement and enough_seconds
    (at least min_group behind the figure); "unrecorded": verdicts made before showing was recorded (left out);
    "gap": over all coaches, shown minus not shown of agreement and of median_seconds (None unless both groups
    have enough); "min_group"}.
    """
    recorded_ = [v for v in verdicts if v.get("prediction_shown") is not None]
    groups = []
    for coach in [*sorted({v["annotator"] for v in recorded_}), ALL]:
        mine = [v for v in recorded_ if coach == ALL or v["annotator"] == coach]
        for shown in (True, False):
            groups.append(_group(coach, shown, [v for v in mine if v["prediction_shown"] is shown], min_group))
    on, off = groups[-2], groups[-1]
    gap = {"agreement": on["agreement"] - off["agreement"] if on["enough_agreement"] and off["enough_agreement"]
           else None,
           "median_seconds": on["median_seconds"] - off["median_seconds"]
           if on["enough_seconds"] and off["enough_seconds"] else None}
    return {"groups": groups, "unrecorded": len(verdicts) - len(recorded_), "gap": gap, "min_group": min_group}


def report(project: Project, min_group: int = MIN_GROUP) -> dict:
    """coach_model_report over the project's verdicts."""
    return coach_model_report(store.assisted_verdicts(project), min_group)
