"""Suggest: the unlabelled clips worth a coach's next minutes, from the chosen run's scores (or a cold start)."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from curation import store
from curation.dataset import clip_aspect
from curation.project import Project
from model import active, choice, runs
from model.features import clip_features, clip_landmarks, clip_statistics, load_clipset


class UnknownStrategy(ValueError):
    """A strategy name that model.active does not have."""


@dataclass
class Suggestions:
    """A batch of suggestions and where it came from."""

    items: list[active.Suggestion]
    strategy: str
    run_id: str | None  # the run whose predictions scored the pool; None = cold start (no model yet)
    pool: int  # unlabelled active clips the batch was chosen from
    labelled: int  # clips with a coach's verdict (not in the pool)
    scored_live: int = 0  # pool clips newer than the run, scored now with its model
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    pool_ids: list[str] = field(default_factory=list)  # the pool, in the order of pool_p
    pool_p: np.ndarray | None = None  # p(incorrect) of each pool clip; None on a cold start
    run_reason: str = ""  # why this run scores the pool (model.choice), in plain words

    def as_dict(self) -> dict:
        """Plain JSON form (the CLI's --json)."""
        return {"strategy": self.strategy, "run_id": self.run_id, "run_reason": self.run_reason,
                "pool": self.pool, "labelled": self.labelled,
                "scored_live": self.scored_live, "seconds": self.seconds, "notes": self.notes,
                "suggestions": [dataclasses.asdict(s) for s in self.items]}


def _standardised(stats: np.ndarray) -> np.ndarray:
    """Clip statistics standardised over the clips given: the cold start's notion of "what a clip looks like"."""
    scale = stats.std(0)
    return (stats - stats.mean(0)) / np.where(scale > 1e-12, scale, 1.0)


def _judged(project: Project) -> set[str]:
    """Clips at least one coach has given a correct/incorrect verdict (labelled, or waiting for adjudication)."""
    return store.judged_clip_ids(project)


def suggest(project: Project, k: int = 10, strategy: str | None = None, exercise: str | None = None,
            seed: int = 0, run_id: str | None = None) -> Suggestions:
    """The k unlabelled clips to label next, each with its score and reason.

    With a finished run (model.choice.current: the promoted run, else the best on the current labels; or
    run_id): the run's saved predictions, signals and embeddings of every
    clip it scored; clips added since are scored now with the run's model. Without one: a cold start, a
    batch spread over the variety of pose statistics. Raises active.EmptyPool when the project has no clips
    (of this exercise), active.PoolExhausted when every one has a verdict.
    """
    start = time.perf_counter()
    strategy = strategy or active.DEFAULT_STRATEGY
    if strategy not in active.STRATEGIES:
        raise UnknownStrategy(f"unknown strategy {strategy!r}; known: {', '.join(active.STRATEGIES)}")
    clips = store.dataset_clip_order(project, exercise)  # ids: not every clip's row
    judged = _judged(project)
    pool_ids = [c for c in clips if c not in judged]
    labelled_ids = [c for c in clips if c in judged]
    if not clips:
        where = f" of {exercise}" if exercise else ""
        raise active.EmptyPool(f"there are no clips{where} to suggest: ingest or import some first")
    if not pool_ids:
        raise active.PoolExhausted("every clip here has a coach's verdict: nothing left to suggest")
    if run_id is None:
        chosen = choice.current(project)
        run_id, run_reason = chosen.run_id, chosen.reason
    else:
        run_reason = "asked for by name"

    if run_id is None:
        pool, scored_live = _cold_pool(project, pool_ids, labelled_ids), 0
    else:
        pool, scored_live = _run_pool(project, run_id, pool_ids, labelled_ids)
    items = active.select(pool, k, strategy=strategy, seed=seed)
    notes = []
    if run_id is None:
        notes.append("no trained model yet: a first batch spread over the kinds of movement in the pool"
                     + (f" (a sample of {COLD_SAMPLE} of its clips)" if len(pool_ids) > COLD_SAMPLE else ""))
    if scored_live:
        notes.append(f"{scored_live} clip(s) arrived after the last training and were scored now; "
                     "retrain to learn from the newest labels")
    return Suggestions(items, strategy if run_id else "cold start", run_id, len(pool_ids), len(labelled_ids),
                       scored_live, time.perf_counter() - start, notes, list(pool.clip_ids), pool.p, run_reason)


# A cold start reads the poses and computes the features of a seeded sample of the pool, not of every clip
# (1.5 ms a clip: minutes at 100,000 clips); a batch spread over a sample of 160 still spans the kinds of
# movement the pool holds.
COLD_SAMPLE = 160  # unlabelled clips looked at
COLD_LABELLED = 64  # labelled clips the batch keeps away from


def _sample(ids: list[str], n: int) -> list[str]:
    """n of ids (all when fewer), in their order; the same n for the same ids."""
    if len(ids) <= n:
        return ids
    keep = np.random.default_rng(0).choice(len(ids), n, replace=False)
    return [ids[i] for i in sorted(keep)]


def _cold_pool(project: Project, pool_ids: list[str], labelled_ids: list[str]) -> active.Pool:
    pool_ids, labelled_ids = _sample(pool_ids, COLD_SAMPLE), _sample(labelled_ids, COLD_LABELLED)
    found = pose_statistics(project, [*pool_ids, *labelled_ids])
    pool = [c for c in pool_ids if c in found]
    wanted = pool + [c for c in labelled_ids if c in found]
    stats = _standardised(np.stack([found[c] for c in wanted]))
    n_pool = len(pool)
    return active.Pool(clip_ids=pool, embeddings=stats[:n_pool], p=None,
                       labelled_embeddings=stats[n_pool:] if len(wanted) > n_pool else None)


# Each clip's pose statistics, kept in this process by everything they are computed from (the project, the clip,
# its pose file as last written, its frames, frame rate and aspect): a batch drawn again (another batch size, an
# exercise picked again, a new session after a write elsewhere) does not read and compute them again (1.5 ms a
# clip). Sessions are threads: the lock guards the dict, not the computing.
_STATISTICS: OrderedDict[tuple, np.ndarray] = OrderedDict()
_KEPT_LOCK = threading.Lock()  # guards _STATISTICS and _SAVED
STATISTICS_KEPT = 4096  # clips (2.4 KB each): a dozen cold-start samples


def _pose_file(project: Project, clip: dict, video: dict | None) -> tuple:
    """Which pose file a clip's landmarks come from and when it was last written (None: no file to read)."""
    relative = clip["pose_path"] or (video["pose_path"] if video is not None else None)
    if not relative:
        return (None,)
    stat = os.stat(project.root / relative)
    return relative, stat.st_mtime_ns, stat.st_size


def pose_statistics(project: Project, clip_ids: list[str]) -> dict[str, np.ndarray]:
    """clip_statistics of the clip_features of each active clip among clip_ids (an excluded or unknown id is
    left out), read and computed only for clips not kept in this process since."""
    rows = store.clips_in_order(project, set(clip_ids))
    videos = {v["id"]: v for v in store.list_videos(project)} if any(r["video_id"] for r in rows) else {}
    tracks: dict[str, np.ndarray] = {}
    out = {}
    for clip in rows:
        video = videos.get(clip["video_id"]) if clip["video_id"] else None
        fps, aspect = float(clip["fps"]), float(clip_aspect(clip, video))
        key = (str(project.root), clip["id"], *_pose_file(project, clip, video), clip["start_frame"],
               clip["end_frame"], fps, aspect)
        with _KEPT_LOCK:
            kept = _STATISTICS.get(key)
            if kept is not None:
                _STATISTICS.move_to_end(key)
        if kept is None:
            kept = clip_statistics(clip_features(clip_landmarks(project, clip, video, tracks), fps, aspect))
            with _KEPT_LOCK:
                _STATISTICS[key] = kept
                if len(_STATISTICS) > STATISTICS_KEPT:
                    _STATISTICS.popitem(last=False)
        out[clip["id"]] = kept
    return out


@dataclass(frozen=True)
class _Saved:
    """What a finished run saved of the clips it scored: its predictions.csv rows and embeddings, by row."""

    row: dict[str, int]  # clip id -> row; {} for a run saved without embeddings (every clip is scored live)
    scores: dict[str, np.ndarray]  # runs.SCORE_COLUMNS -> one float per row, NaN where not measured
    embeddings: np.ndarray | None  # (rows, D), memory-mapped


# A finished run's files never change: kept in this process by run, so that drawing a batch again (a new session,
# after a verdict) does not parse its 100,000 rows again.
_SAVED: OrderedDict[tuple[str, str], _Saved] = OrderedDict()
RUNS_KEPT = 2


def _saved(project: Project, run_id: str) -> _Saved:
    key = (str(project.root), run_id)
    with _KEPT_LOCK:
        kept = _SAVED.get(key)
    if kept is not None and runs.is_finished(runs.run_dir(project, run_id)):  # not deleted since
        return kept
    table = runs.read_scores(project, run_id)
    embeddings = runs.embeddings_array(project, run_id)
    if embeddings is not None and len(embeddings) != len(table):
        raise ValueError(f"run {run_id!r} has {len(embeddings)} embeddings for {len(table)} predictions")
    row = {cid: i for i, cid in enumerate(table["clip_id"].tolist())} if embeddings is not None else {}
    kept = _Saved(row, {c: table[c].to_numpy(dtype=np.float64) for c in runs.SCORE_COLUMNS}, embeddings)
    with _KEPT_LOCK:
        _SAVED[key] = kept
        if len(_SAVED) > RUNS_KEPT:
            _SAVED.popitem(last=False)
    return kept


def _measured(values: np.ndarray) -> np.ndarray | None:
    return None if np.isnan(values).all() else values


def _run_pool(project: Project, run_id: str, pool_ids: list[str], labelled_ids: list[str]
              ) -> tuple[active.Pool, int]:
    """The pool with the run's saved scores; clips the run never saw are scored with its model now."""
    saved = _saved(project, run_id)
    row, scores = saved.row, saved.scores
    blocks = [saved.embeddings] if saved.embeddings is not None else []
    new = [c for c in pool_ids if c not in row]
    scored_live = 0
    if new:
        fitted = runs.load_fitted(project, run_id)
        every = load_clipset(project, labelled_only=False, only=set(new))  # their poses alone
        feats = [every.features(i) for i in range(len(every))]
        details = fitted.predict_details(feats, every.exercises, embed=True)  # p, window spread, embedding: one pass
        n_saved = len(saved.embeddings) if saved.embeddings is not None else 0
        row = {**row, **{cid: n_saved + j for j, cid in enumerate(every.clip_ids)}}
        fresh = {"p_incorrect": details["p"], "window_spread": details["window_spread"]}
        scores = {c: np.concatenate([v[:n_saved], np.asarray(fresh.get(c, np.full(len(every), np.nan)), np.float64)])
                  for c, v in scores.items()}
        blocks.append(details["embedding"])
        scored_live = len(every)
    pool_ids = [c for c in pool_ids if c in row]
    at = np.asarray([row[c] for c in pool_ids], dtype=np.int64)
    known = [row[c] for c in labelled_ids if c in row]
    labelled_emb = None
    if known:
        labelled_emb = active.Rows(blocks, known).take(slice(None))
        labelled_emb = labelled_emb[~np.isnan(labelled_emb).any(1)]
    pool = active.Pool(
        clip_ids=pool_ids, embeddings=active.Rows(blocks, at) if pool_ids else np.zeros((0, 0)),
        p=scores["p_incorrect"][at], committee_sd=_measured(scores["uncertainty"][at]),
        committee_mi=_measured(scores["committee_mi"][at]), mc_mi=_measured(scores["mc_mi"][at]),
        window_spread=_measured(scores["window_spread"][at]), labelled_embeddings=labelled_emb,
    )
    return pool, scored_live
