"""Choice: which finished run scores suggestions. The run a lead promoted, else the best run on the current labels.

Promotions are events in the store (store.run_promotions: append-only, the last one counts, a withdrawal sets
no run). Without a standing promotion the choice is automatic:
1. runs whose model knows every exercise that has labels now (a run that never saw lunges cannot score them);
2. among those, runs that saw nearly as many of the current labels as the most up-to-date run does (at least
   COVERAGE_SLACK of its share): a run on half of today's labels is not judged against one on all of them;
3. the highest macro-F1 of the run's own grouped evaluation (out-of-fold over a grouped K-fold, or on a grouped
   holdout: metrics.json "macro_f1", what the Train page shows); ties go to the newer run.
Each step falls back to the runs of the step before when it would leave none, and the reason says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from curation import store
from curation.project import Project
from model import runs
from model.compare import auc
from model.features import LABELS

COVERAGE_SLACK = 0.9  # a run is "on the current labels" when it saw at least 90 % of what the best-covering run saw


@dataclass(frozen=True)
class Choice:
    """The run that scores suggestions (None: no finished run, a cold start) and why, in plain words."""

    run: dict | None  # the runs.list_runs entry, with "coverage" (share of the current labels the run saw)
    reason: str
    promotion: dict | None = None  # the standing promotion event when a lead chose the run

    @property
    def run_id(self) -> str | None:
        return None if self.run is None else self.run["run_id"]


def _fmt_f1(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _coverage(project: Project, run_id: str, current: dict[str, str]) -> float:
    """Share of the clips labelled now that the run evaluated with the same label (its oof.csv)."""
    if not current:
        return 0.0
    oof = runs.read_oof(project, run_id)
    seen = sum(current.get(str(cid)) == LABELS[int(y)] for cid, y in zip(oof["clip_id"].tolist(), oof["y"].tolist()))
    return seen / len(current)


def _current_labels(project: Project) -> tuple[dict[str, str], set[str]]:
    """({clip id: consensus label} of the labelled active clips, the exercises among them)."""
    labelled = store.dataset_labels(project)  # not every clip's row and votes: a second at 100,000 clips
    return {cid: label for cid, (label, _) in labelled.items()}, {exercise for _, exercise in labelled.values()}


def _exercises(run: dict) -> set[str]:
    """The exercises a run was trained and evaluated on (metrics.json per_exercise)."""
    return set(run.get("per_exercise") or {})


def best(project: Project, finished: list[dict] | None = None) -> Choice:
    """The best finished run on the current labels (module docstring), or a cold start when there is none."""
    finished = runs.list_runs(project) if finished is None else finished
    if not finished:
        return Choice(None, "no finished training run yet: suggestions are a first batch spread over the clips")
    labels, wanted = _current_labels(project)
    notes = []
    candidates = [r for r in finished if wanted <= _exercises(r)]
    if not candidates:
        candidates = finished
        notes.append(f"no run knows every labelled exercise ({', '.join(sorted(wanted))})")
    cover = {r["run_id"]: _coverage(project, r["run_id"], labels) for r in candidates}
    top = max(cover.values())
    recent = [r for r in candidates if cover[r["run_id"]] >= COVERAGE_SLACK * top]
    # Newest first already (list_runs), so max() keeps the newer run on a tie of macro-F1.
    chosen = max(recent, key=lambda r: -1.0 if r.get("macro_f1") is None else r["macro_f1"])
    others = len(recent) - 1
    among = f"best of {len(recent)} runs" if others else "the only run"
    reason = (f"{among} on the current labels: macro-F1 {_fmt_f1(chosen.get('macro_f1'))} "
              f"({chosen.get('split', 'grouped evaluation')}); it saw {cover[chosen['run_id']]:.0%} of the "
              f"{len(labels)} labels given so far")
    if len(recent) < len(candidates):
        reason += f"; {len(candidates) - len(recent)} older run(s) on fewer labels left out"
    if notes:
        reason += "; " + "; ".join(notes)
    return Choice({**chosen, "coverage": cover[chosen["run_id"]]}, reason)


def standing_promotion(project: Project) -> dict | None:
    """The last promotion event when it promotes a run (None when there is none or it was withdrawn)."""
    events = store.run_promotions(project)
    return events[-1] if events and events[-1]["run_id"] else None


def current(project: Project) -> Choice:
    """The run that scores suggestions now: the promoted one while it stands and its run is finished, else best()."""
    finished = runs.list_runs(project)
    promotion = standing_promotion(project)
    if promotion is not None:
        by_id = {r["run_id"]: r for r in finished}
        run = by_id.get(promotion["run_id"])
        if run is not None:
            when = promotion["created_at"][:16].replace("T", " ")
            note = f": {promotion['note']}" if promotion["note"] else ""
            return Choice(run, f"promoted by {promotion['annotator']} on {when} UTC{note} (macro-F1 "
                               f"{_fmt_f1(run.get('macro_f1'))})", promotion)
        fallback = best(project, finished)
        return Choice(fallback.run, f"the promoted run {promotion['run_id']} is gone; {fallback.reason}")
    return best(project, finished)


def promote(project: Project, run_id: str, annotator: str, note: str = "") -> dict:
    """Make run_id the run that scores suggestions (until another promotion or a withdrawal). Raises
    runs.RunNotFound for an unknown or unfinished run."""
    if run_id not in {r["run_id"] for r in runs.list_runs(project)}:
        raise runs.RunNotFound(f"no finished run {run_id!r} in this project (see `python -m model runs`)")
    return store.add_run_promotion(project, run_id, annotator, note)


def withdraw(project: Project, annotator: str, note: str = "") -> dict:
    """End the standing promotion: the best run on the current labels scores suggestions again."""
    return store.add_run_promotion(project, None, annotator, note)


def table(project: Project) -> dict:
    """Every finished run, newest first, with its key metrics (macro_f1, balanced_accuracy, auc: ROC AUC of its
    out-of-sample p, None with one class), its name and note (the last naming event, "" when never named) and
    whether it is the current one; plus the choice's reason."""
    choice = current(project)
    names = runs.run_names(project)
    rows = [{"run_id": r["run_id"], "model": r.get("model"), "split": r.get("split"), "macro_f1": r.get("macro_f1"),
             "balanced_accuracy": r.get("balanced_accuracy"),
             "auc": r["auc"] if r.get("auc") is not None else auc(runs.read_oof(project, r["run_id"])),
             "n_clips": r.get("n_clips"), "created_at": r["created_at"],
             "name": names.get(r["run_id"], {}).get("name", ""), "note": names.get(r["run_id"], {}).get("note", ""),
             "current": r["run_id"] == choice.run_id}
            for r in runs.list_runs(project)]
    return {"current": choice.run_id, "reason": choice.reason, "promoted": choice.promotion is not None,
            "runs": rows}
