"""Compare: two finished runs side by side (settings, label sets, metrics, confusion matrices, changed verdicts)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from curation import store
from curation.project import Project
from model import runs
from model.features import LABELS

# The headline numbers compared, in the order shown: the metrics.json keys of design.md 4.2, plus "auc".
HEADLINE = ("macro_f1", "balanced_accuracy", "accuracy", "kappa", "ece", "auc", "n_clips", "n_groups",
            "train_seconds", "predict_ms_per_clip")
# What a run's settings are, besides meta.json's config: how it was evaluated and what it finally picked.
RUN_SETTINGS = ("split", "input", "picked", "calibration", "threshold")


class SameRun(ValueError):
    """Two picks of one run: nothing to compare."""


@dataclass(frozen=True)
class Comparison:
    """Run `a` against run `b`; every difference is b minus a."""

    a: str
    b: str
    settings: list[dict]  # setting, a, b, same: config (flattened, "train.lr"), split, picked, data_hash, code
    label_counts: list[dict]  # exercise, correct_a, incorrect_a, correct_b, incorrect_b (meta.json)
    only_a: list[dict]  # clips in a's evaluated label set and not in b's: clip_id, exercise, label
    only_b: list[dict]
    relabelled: list[dict]  # clips in both with another label: clip_id, exercise, label_a, label_b
    holdout_note: str | None  # a holdout run's oof.csv holds its tested clips only: the label sets are partial
    metrics: list[dict]  # metric, a, b, diff
    per_exercise: list[dict]  # exercise, n_a, n_b, macro_f1_a, macro_f1_b, diff
    per_criterion: list[dict]  # criterion ("exercise/name"), n_a, n_b, auc_a, auc_b, auc_diff, f1_a, f1_b, f1_diff,
    # auc_p_incorrect_a, auc_p_incorrect_b, auc_p_incorrect_diff
    confusion: dict  # labels, a, b: the two confusion matrices (rows truth, columns predicted)
    n_both: int  # clips both runs judged
    changed: list[dict]  # clip_id, exercise, label_now, p_a, p_b, verdict_a, verdict_b, source_a, source_b, right
    # (which run agrees with the current label: "a", "b" or "" when unlabelled), largest change of p first

    def as_dict(self) -> dict:
        return asdict(self)


def auc(oof: pd.DataFrame) -> float | None:
    """ROC AUC of a run's out-of-sample p(incorrect) against its labels; None with one class only."""
    y = oof["y"].to_numpy()
    p = oof["p_incorrect"].to_numpy(dtype=float)
    known = ~np.isnan(p)
    if len(set(y[known].tolist())) < 2:
        return None
    return float(roc_auc_score(y[known], p[known]))


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _diff(a: Any, b: Any) -> float | None:
    a, b = _number(a), _number(b)
    return None if a is None or b is None else b - a


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as dotted keys ({"train": {"lr": 1e-3}} -> {"train.lr": 1e-3})."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, inner in value.items():
        out.update(_flat(inner, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _settings(meta: dict, metrics: dict) -> dict[str, Any]:
    code = meta.get("code_version") or {}
    return {**_flat(meta.get("config") or {}), **{k: metrics.get(k) for k in RUN_SETTINGS},
            "data_hash": meta.get("data_hash"), "n_labelled": meta.get("n_labelled"),
            "exercises": ", ".join(meta.get("exercises") or []), "git_commit": code.get("git_commit"),
            "features_version": code.get("features_version")}


def compare_settings(meta_a: dict, metrics_a: dict, meta_b: dict, metrics_b: dict) -> list[dict]:
    """Every setting of either run: setting, a, b, same (values shown as text; missing: None)."""
    a, b = _settings(meta_a, metrics_a), _settings(meta_b, metrics_b)
    return [{"setting": key, "a": _text(a.get(key)), "b": _text(b.get(key)), "same": a.get(key) == b.get(key)}
            for key in [*a, *(k for k in b if k not in a)]]


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _labels(oof: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """clip_id -> (exercise, label) of a run's evaluated clips."""
    return {str(c): (str(e), LABELS[int(y)]) for c, e, y in zip(oof["clip_id"], oof["exercise"], oof["y"])}


def compare_label_sets(oof_a: pd.DataFrame, oof_b: pd.DataFrame) -> tuple[list[dict], list[dict], list[dict]]:
    """(clips only in a, clips only in b, clips in both whose label differs), each in clip id order."""
    a, b = _labels(oof_a), _labels(oof_b)
    only_a = [{"clip_id": c, "exercise": a[c][0], "label": a[c][1]} for c in sorted(a.keys() - b.keys())]
    only_b = [{"clip_id": c, "exercise": b[c][0], "label": b[c][1]} for c in sorted(b.keys() - a.keys())]
    relabelled = [{"clip_id": c, "exercise": a[c][0], "label_a": a[c][1], "label_b": b[c][1]}
                  for c in sorted(a.keys() & b.keys()) if a[c][1] != b[c][1]]
    return only_a, only_b, relabelled


def _label_counts(meta_a: dict, meta_b: dict) -> list[dict]:
    a, b = meta_a.get("label_counts") or {}, meta_b.get("label_counts") or {}
    return [{"exercise": ex, "correct_a": a.get(ex, {}).get("correct", 0),
             "incorrect_a": a.get(ex, {}).get("incorrect", 0), "correct_b": b.get(ex, {}).get("correct", 0),
             "incorrect_b": b.get(ex, {}).get("incorrect", 0)} for ex in sorted(a.keys() | b.keys())]


def _per_exercise(metrics_a: dict, metrics_b: dict) -> list[dict]:
    a, b = metrics_a.get("per_exercise") or {}, metrics_b.get("per_exercise") or {}
    rows = []
    for ex in sorted(a.keys() | b.keys()):
        ea, eb = a.get(ex, {}), b.get(ex, {})
        rows.append({"exercise": ex, "n_a": ea.get("n"), "n_b": eb.get("n"), "macro_f1_a": _number(ea.get("macro_f1")),
                     "macro_f1_b": _number(eb.get("macro_f1")), "diff": _diff(ea.get("macro_f1"), eb.get("macro_f1"))})
    return rows


def _per_criterion(metrics_a: dict, metrics_b: dict) -> list[dict]:
    a, b = metrics_a.get("per_criterion") or {}, metrics_b.get("per_criterion") or {}
    rows = []
    for key in sorted(a.keys() | b.keys()):
        ca, cb = a.get(key, {}), b.get(key, {})
        row: dict[str, Any] = {"criterion": key, "n_a": ca.get("n"), "n_b": cb.get("n")}
        for measure in ("auc", "f1", "auc_p_incorrect"):
            row[f"{measure}_a"], row[f"{measure}_b"] = _number(ca.get(measure)), _number(cb.get(measure))
            row[f"{measure}_diff"] = _diff(ca.get(measure), cb.get(measure))
        rows.append(row)
    return rows


def _judged(project: Project, run_id: str, oof: pd.DataFrame) -> dict[str, tuple[float, str]]:
    """clip_id -> (p_incorrect, source) of every clip the run judged: its out-of-fold (or holdout) p for a clip
    of its evaluation, else the final model's p (clips labelled after the run, or never)."""
    out = {str(c): (float(p), "out-of-fold") for c, p in zip(oof["clip_id"], oof["p_incorrect"]) if not math.isnan(p)}
    for clip_id, (p, _) in runs.read_predictions(project, run_id).items():
        if clip_id not in out and not math.isnan(p):
            out[clip_id] = (p, "final model")
    return out


def _verdict(p: float, threshold: float) -> str:
    return LABELS[int(p >= threshold)]


def changed_verdicts(project: Project, a: str, b: str, oof_a: pd.DataFrame, oof_b: pd.DataFrame,
                     threshold_a: float = 0.5, threshold_b: float = 0.5) -> tuple[int, list[dict]]:
    """(number of clips both runs judged, the clips among them whose verdict differs), largest change of p first.
    Each verdict is the run's p at its own threshold; "right" says which run agrees with the current label."""
    judged_a, judged_b = _judged(project, a, oof_a), _judged(project, b, oof_b)
    both = judged_a.keys() & judged_b.keys()
    exercise = {str(c): str(e) for frame in (oof_a, oof_b) for c, e in zip(frame["clip_id"], frame["exercise"])}
    exercise.update({c["id"]: c["exercise"] for c in store.list_clips(project)})
    consensus = store.consensus_labels(project)
    rows = []
    for clip_id in both:
        (p_a, source_a), (p_b, source_b) = judged_a[clip_id], judged_b[clip_id]
        verdict_a, verdict_b = _verdict(p_a, threshold_a), _verdict(p_b, threshold_b)
        if verdict_a == verdict_b:
            continue
        now = (consensus.get(clip_id) or {}).get("label") or ""
        rows.append({"clip_id": clip_id, "exercise": exercise.get(clip_id, ""), "label_now": now,
                     "p_a": p_a, "p_b": p_b, "verdict_a": verdict_a, "verdict_b": verdict_b,
                     "source_a": source_a, "source_b": source_b,
                     "right": "" if not now else ("a" if verdict_a == now else "b")})
    rows.sort(key=lambda r: (-abs(r["p_b"] - r["p_a"]), r["clip_id"]))
    return len(both), rows


def _metric_rows(metrics_a: dict, metrics_b: dict) -> list[dict]:
    return [{"metric": key, "a": _number(metrics_a.get(key)), "b": _number(metrics_b.get(key)),
             "diff": _diff(metrics_a.get(key), metrics_b.get(key))} for key in HEADLINE]


def compare(project: Project, a: str, b: str) -> Comparison:
    """Run `a` against run `b` (design.md 5: runs are listed and compared). Raises runs.RunNotFound, SameRun."""
    if a == b:
        raise SameRun(f"pick two different runs to compare (both are {a})")
    side = {}
    for run_id in (a, b):
        meta, metrics = runs.read_meta(project, run_id), runs.read_metrics(project, run_id)
        oof = runs.read_oof(project, run_id)
        side[run_id] = (meta, {**metrics, "auc": metrics.get("auc", auc(oof))}, oof)
    (meta_a, metrics_a, oof_a), (meta_b, metrics_b, oof_b) = side[a], side[b]
    only_a, only_b, relabelled = compare_label_sets(oof_a, oof_b)
    holdouts = [r for r, m in ((a, meta_a), (b, meta_b)) if (m.get("config") or {}).get("holdout")]
    note = (f"{' and '.join(holdouts)} evaluated on a holdout: its out-of-fold file holds only its tested clips, so "
            "the clips listed as only in one run may have been in the other's training part") if holdouts else None
    n_both, changed = changed_verdicts(project, a, b, oof_a, oof_b, float(metrics_a.get("threshold") or 0.5),
                                       float(metrics_b.get("threshold") or 0.5))
    labels = metrics_a.get("confusion_labels") or list(LABELS)
    return Comparison(
        a=a, b=b, settings=compare_settings(meta_a, metrics_a, meta_b, metrics_b),
        label_counts=_label_counts(meta_a, meta_b), only_a=only_a, only_b=only_b, relabelled=relabelled,
        holdout_note=note, metrics=_metric_rows(metrics_a, metrics_b),
        per_exercise=_per_exercise(metrics_a, metrics_b), per_criterion=_per_criterion(metrics_a, metrics_b),
        confusion={"labels": labels, "a": metrics_a.get("confusion"), "b": metrics_b.get("confusion")},
        n_both=n_both, changed=changed)
