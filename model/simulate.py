"""Simulate: replay active learning on a labelled project and compare a strategy's learning curve with random order."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from scipy.special import expit
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from curation.jobs import Cancelled, JobFailed
from curation.project import Project
from model import active
from model.features import ClipSet, Scaler, load_clipset
from model.metrics import evaluate
from model.registry import TrainConfig
from model.registry import clip_statistics as baseline_statistics
from model.runs import Fitted
from model.splits import SplitError, grouped_holdout, grouped_kfold
from model.train import MC_SAMPLES, RunConfig, fit_clips

Progress = Callable[[float, str], None]
RANDOM = "random"
TARGET = 0.95  # labels_to_95: the first label count whose mean macro-F1 reaches this share of full_f1
FAST_MODEL = "baseline"  # simulated by _Statistics (statistics computed once per clip); other models by fit_clips
MAX_ITER = 500  # logistic regression iterations per fit (warm-started rounds need far fewer)


class SimulationRefused(ValueError):
    """The labelled clips or the settings cannot give a meaningful simulation (too few clips, bad sizes)."""


@dataclass(frozen=True)
class SimulateOptions:
    """One simulation: which strategy, how labelling is replayed, and on what model."""

    strategy: str = active.DEFAULT_STRATEGY  # a name of active.STRATEGIES; always compared with "random"
    seed_size: int = 10  # clips labelled before the first model (stratified random, at least one of each class)
    step: int = 10  # at least this many clips labelled per round (one select() batch)
    # Each round labels at least `growth` times the clips labelled so far (and at least `step`): 1.0 gives even
    # steps; 1.5 gives about 15 rounds from 10 to 5,000 labels instead of 500, and a learning curve is read on
    # a log scale of labels anyway (the first hundred labels are where strategies differ).
    growth: float = 1.5
    seeds: int = 3  # repetitions with different seed sets and tie-breaks; curves are their mean
    model: str = "baseline"  # a key of model.registry.MODELS, fitted with the project's RunConfig defaults
    test_share: float = 0.25  # grouped holdout of the labelled clips, the same for every seed and strategy
    rounds: int | None = None  # at most this many rounds after the seed set; None: until the pool is used up
    diversity: bool = True  # select()'s k-centre step
    balance: bool = True  # select()'s class balancing
    committee: int = 4  # bald without dropout: models fitted on grouped parts of the labelled clips
    split_seed: int = 0  # draws the (first) test part
    splits: int = 1  # grouped test parts (split seeds split_seed, split_seed + 1, ...), each a whole simulation

    def __post_init__(self) -> None:
        if self.strategy not in active.STRATEGIES:
            raise SimulationRefused(f"unknown strategy {self.strategy!r}; known: {', '.join(active.STRATEGIES)}")
        if self.seed_size < 2:
            raise SimulationRefused(f"the seed set needs at least 2 clips (one of each class), not {self.seed_size}")
        if self.step < 1 or self.seeds < 1 or self.splits < 1:
            raise SimulationRefused(f"step, seeds and splits must be at least 1 (got {self.step}, {self.seeds} and "
                                    f"{self.splits})")
        if not 1.0 <= self.growth <= 10.0:
            raise SimulationRefused(f"growth must be between 1 (even steps) and 10, not {self.growth}")
        if not 0 < self.test_share < 1:
            raise SimulationRefused(f"test_share must be between 0 and 1, not {self.test_share}")
        if self.rounds is not None and self.rounds < 0:
            raise SimulationRefused(f"rounds must be 0 or more, not {self.rounds}")
        if self.committee < 2:
            raise SimulationRefused(f"a committee needs at least 2 models, not {self.committee}")


def schedule(seed_size: int, step: int, growth: float, pool: int, rounds: int | None = None) -> list[int]:
    """Label counts after each round: seed_size, then each time max(previous + step, ceil(previous * growth)),
    ending with the whole pool (or after `rounds` rounds)."""
    sizes = [min(seed_size, pool)]
    while sizes[-1] < pool and (rounds is None or len(sizes) <= rounds):
        sizes.append(min(pool, max(sizes[-1] + step, math.ceil(sizes[-1] * growth - 1e-9))))
    return sizes


# ---------------------------------------------------------------------------------------------- learners
# A learner fits on clip indices and scores clip indices; the simulation asks nothing else of a model.


@dataclass(eq=False)
class _Linear:
    """A fitted logistic regression on _Statistics' design rows."""

    coef: np.ndarray
    intercept: float


class _Statistics:
    """The baseline's recipe with every per-clip cost paid once per test split instead of once per fit.

    model.registry.Baseline computes clip statistics of scaled features, standardises them and fits a balanced
    logistic regression, all again at every fit: on 7,000 clips x 15 rounds x 2 strategies x seeds that was
    most of the time. Here the scaler and the standardisation are fitted once on the whole pool (the features
    of unlabelled clips are known to the app; only their labels are not; the test part stays out), each clip's
    statistics are computed once, and each round's fit starts from the previous round's coefficients.
    The embeddings are the standardised statistics, as the baseline's.

    Two differences from a training run's baseline, both measured (5 grouped splits): every labelled clip is
    learned from (model.train.fit_clips keeps back an early-stopping part of the training groups that the
    baseline never uses: on ngoquocbao with plank cut into 6,707 overlapping clips, 1,491 of the 4,673 training
    clips, 1,264 of the 1,282 incorrect planks among them, so the model on every training clip scored below
    one on 1,500 of them), and the
    classes are balanced within each exercise, not over the whole set (an exercise whose training clips are
    mostly incorrect no longer tilts its test clips towards incorrect: ngoquocbao bicep + lunge, full-data
    macro-F1 0.617 -> 0.648).
    """

    def __init__(self, clips: ClipSet, features: list[np.ndarray], exercises: list[str], pool: np.ndarray,
                 c: float):
        scaler = Scaler().fit([features[i] for i in pool])
        design = np.stack([baseline_statistics(scaler.transform(x)) for x in features])
        index = {name: i for i, name in enumerate(exercises)}
        if len(exercises) > 1:  # the baseline's exercise input: one-hot columns
            design = np.concatenate([design, np.eye(len(exercises))[[index[e] for e in clips.exercises]]], axis=1)
        mean, scale = design[pool].mean(0), design[pool].std(0)
        self.z = (design - mean) / np.where(scale > 1e-12, scale, 1.0)
        self.y = np.asarray(clips.labels, dtype=np.int64)
        # (exercise, class) cell of each clip: each cell weighs as much in a fit as any other
        self.cell = np.array([2 * index[e] for e in clips.exercises], dtype=np.int64) + self.y
        self.c = c
        self.fit_size = 0  # clips the last fit learned from

    def fit(self, idx: np.ndarray, seed: int, stream: int = 0, warm: _Linear | None = None) -> _Linear:
        solver = LogisticRegression(C=self.c, max_iter=MAX_ITER, warm_start=warm is not None)
        if warm is not None:
            solver.coef_, solver.intercept_ = warm.coef.copy()[None], np.array([warm.intercept])
        cells, inverse, counts = np.unique(self.cell[idx], return_inverse=True, return_counts=True)
        weight = len(idx) / (len(cells) * counts[inverse])  # "balanced" over (exercise, class) cells
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # a capped fit is still a usable model
            solver.fit(self.z[idx], self.y[idx], sample_weight=weight)
        self.fit_size = len(idx)
        return _Linear(solver.coef_[0].copy(), float(solver.intercept_[0]))

    def predict(self, fitted: _Linear, idx: np.ndarray) -> np.ndarray:
        return expit(self.z[idx] @ fitted.coef + fitted.intercept)

    def details(self, fitted: _Linear, idx: np.ndarray, labelled: np.ndarray, seed: int, strategy: str) -> dict:
        return {"p": self.predict(fitted, idx), "embeddings": self.z[idx], "labelled_embeddings": self.z[labelled]}


class _Registry:
    """Any model of the registry through model.train.fit_clips, as a training run fits it (slow: every fit
    recomputes the model's inputs)."""

    def __init__(self, clips: ClipSet, features: list[np.ndarray], exercises: list[str], model: str):
        self.clips, self.features, self.exercises, self.model = clips, features, exercises, model
        self.fit_size = 0  # clips the last fit learned from (a network's early-stopping part left out)

    def fit(self, idx: np.ndarray, seed: int, stream: int = 0, warm: Fitted | None = None) -> Fitted:
        config = RunConfig(model=self.model, seed=seed)  # the project's defaults for that model
        fitted, summary = fit_clips(self.clips, self.features, np.sort(idx), config, self.exercises, stream=stream)
        self.fit_size = summary["n_train"]
        return fitted

    def predict(self, fitted: Fitted, idx: np.ndarray) -> np.ndarray:
        return fitted.predict([self.features[i] for i in idx], [self.clips.exercises[i] for i in idx])

    def details(self, fitted: Fitted, idx: np.ndarray, labelled: np.ndarray, seed: int, strategy: str) -> dict:
        features = [self.features[i] for i in idx]
        exercises = [self.clips.exercises[i] for i in idx]
        details = fitted.predict_details(features, exercises, embed=True)
        out = {"p": details["p"], "window_spread": details["window_spread"], "embeddings": details["embedding"],
               "labelled_embeddings": fitted.embed([self.features[i] for i in labelled],
                                                   [self.clips.exercises[i] for i in labelled])}
        if strategy == "bald" and fitted.model.has_dropout:
            out["mc_mi"] = active.bald(fitted.predict_samples(features, exercises, MC_SAMPLES, seed))
        return out


@dataclass
class _Data:
    """What every fit of one test split shares."""

    clips: ClipSet
    learner: _Statistics | _Registry
    test: np.ndarray
    options: SimulateOptions

    def fit(self, idx: np.ndarray, seed: int, stream: int = 0, warm=None):
        return self.learner.fit(np.sort(idx), seed, stream, warm)

    def predict(self, fitted, idx: np.ndarray) -> np.ndarray:
        return self.learner.predict(fitted, idx)

    def macro_f1(self, fitted) -> float:
        y = self.clips.labels[self.test]
        return float(evaluate(y, self.predict(fitted, self.test), [self.clips.exercises[i] for i in self.test])
                     ["macro_f1"])

    def pool(self, fitted, left: np.ndarray, labelled: np.ndarray, seed: int, strategy: str) -> active.Pool:
        """The clips still unlabelled as the app would see them after training `fitted`: p, window spread
        and embeddings from one pass, the labelled clips' embeddings, and for bald the disagreement measure
        (MC-dropout samples of a network with dropout, else a committee)."""
        signals = self.learner.details(fitted, left, labelled, seed, strategy)
        if strategy == "bald" and "mc_mi" not in signals:
            signals["committee_sd"], signals["committee_mi"] = _committee(self, labelled, left, seed)
        return active.Pool(clip_ids=[str(i) for i in left], **signals)


def seed_set(labels: np.ndarray, pool: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """`size` clips of the pool drawn at random within each class, in proportion to the classes (largest
    remainder) with at least one of each class; sorted indices."""
    pool = np.asarray(pool, dtype=np.int64)
    classes, counts = np.unique(labels[pool], return_counts=True)
    if len(classes) < 2:
        raise SimulationRefused("the clips left for labelling are all of one class: label clips of both classes")
    size = min(size, len(pool))
    quota = size * counts / counts.sum()
    take = np.maximum(1, np.floor(quota).astype(int))
    for c in np.argsort(-(quota - np.floor(quota)), kind="stable"):  # hand out what rounding left
        if take.sum() >= size:
            break
        take[c] += take[c] < counts[c]
    while take.sum() > size:  # the minimum of one per class overshot: trim the largest class
        take[np.argmax(take)] -= 1
    chosen = [rng.choice(pool[labels[pool] == c], n, replace=False) for c, n in zip(classes, take)]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _committee(data: _Data, labelled: np.ndarray, pool: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(sd, mutual information) of the pool's p(incorrect) over options.committee models, each fitted on a
    grouped part of the labelled clips (the training parts of a grouped K-fold; random subsets of clips when
    the groups are too few to split)."""
    size = data.options.committee
    y = data.clips.labels[labelled]
    groups = [data.clips.groups[i] for i in labelled]
    try:
        parts = [labelled[train] for train, _ in grouped_kfold(y, groups, size, seed)]
    except SplitError:
        parts = []
    rng = np.random.default_rng([seed, len(labelled)])
    while len(parts) < size:  # a clip-level subset, still holding both classes
        part = labelled[rng.random(len(labelled)) < 1 - 1 / size]
        if len(np.unique(data.clips.labels[part])) == 2:
            parts.append(part)
    samples = np.stack([data.predict(data.fit(part, seed, stream=m + 1), pool) for m, part in enumerate(parts)])
    return samples.std(axis=0), active.bald(samples)


def _curve(data: _Data, strategy: str, start: np.ndarray, pool: np.ndarray, sizes: list[int], seed: int,
           tick: Callable[[str], None]) -> list[list[float]]:
    """[[labels, macro-F1], ...] labelling `start` first, then up to each count of `sizes` by `strategy`."""
    options = data.options
    labelled, left = np.sort(start), np.setdiff1d(pool, start)
    points = []
    fitted = None
    for round_, size in enumerate(sizes):
        if round_:
            candidates = data.pool(fitted, left, labelled, seed, strategy)
            batch = active.select(candidates, size - len(labelled), strategy, options.diversity, options.balance,
                                  seed=seed * 100_003 + round_)
            chosen = np.array([int(s.clip_id) for s in batch], dtype=np.int64)
            labelled, left = np.union1d(labelled, chosen), np.setdiff1d(left, chosen)
        fitted = data.fit(labelled, seed, warm=fitted)
        points.append([int(len(labelled)), data.macro_f1(fitted)])
        tick(f"{strategy}, seed {seed}: {len(labelled)} labels, macro-F1 {points[-1][1]:.3f}")
    return points


def _mean_curve(curves: list[list[list[float]]]) -> list[list[float]]:
    # Every seed labels the same counts (seed_size, then step at a time from the same pool size).
    return [[curves[0][j][0], float(np.mean([c[j][1] for c in curves]))] for j in range(len(curves[0]))]


def area(curve: list[list[float]]) -> float | None:
    """Normalised area under a learning curve: trapezoid area / label range, in [0, 1] for F1 values
    (the mean F1 over the label counts, each stretch weighted by its width). None with fewer than 2 points."""
    if len(curve) < 2:
        return None
    x, y = np.array(curve, dtype=np.float64).T
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))


def labels_to_reach(curve: list[list[float]], target: float) -> int | None:
    """The first label count whose F1 is at least target; None when never."""
    return next((int(x) for x, f1 in curve if f1 >= target), None)


def _mean_sd(values: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample sd (0 for one value) of the values that are not None; (None, None) when none are."""
    known = [v for v in values if v is not None]
    if not known:
        return None, None
    return float(np.mean(known)), float(np.std(known, ddof=1)) if len(known) > 1 else 0.0


def _learner(clips: ClipSet, features: list[np.ndarray], exercises: list[str], train: np.ndarray,
             options: SimulateOptions) -> _Statistics | _Registry:
    if options.model == FAST_MODEL:
        return _Statistics(clips, features, exercises, train, TrainConfig().baseline_c)
    return _Registry(clips, features, exercises, options.model)


def _one_split(clips: ClipSet, features: list[np.ndarray], exercises: list[str], split_seed: int,
               options: SimulateOptions, names: list[str], tick: Callable[[str], None]) -> dict:
    """One grouped test part: full-data F1 and each name's curve per seed, their mean curve, AUC, labels to 95 %."""
    try:
        train, test = grouped_holdout(clips.labels, clips.groups, options.test_share, split_seed)
    except SplitError as exc:
        raise SimulationRefused(f"no grouped test part can be drawn: {exc}") from None
    if len(train) <= options.seed_size:
        raise SimulationRefused(
            f"after a test part of {len(test)} clips, {len(train)} are left for labelling: the seed set of "
            f"{options.seed_size} needs more (lower --seed-size or label more clips)")
    data = _Data(clips, _learner(clips, features, exercises, train, options), test, options)
    sizes = schedule(options.seed_size, options.step, options.growth, len(train), options.rounds)
    per_seed: dict[str, list] = {name: [] for name in names}
    full = []
    for seed in range(options.seeds):
        full.append(data.macro_f1(data.fit(train, seed)))
        full_size = data.learner.fit_size
        tick(f"split {split_seed}, seed {seed}: all {len(train)} training clips, macro-F1 {full[-1]:.3f}")
        start = seed_set(clips.labels, train, options.seed_size, np.random.default_rng([split_seed, seed]))
        for name in names:
            per_seed[name].append(_curve(data, name, start, train, sizes, seed, tick))
    full_f1 = float(np.mean(full))
    curves = {name: _mean_curve(c) for name, c in per_seed.items()}
    return {"split_seed": split_seed, "full_f1": full_f1, "full_f1_per_seed": full, "curves": curves,
            "auc": {name: area(c) for name, c in curves.items()},
            "labels_to_95": {name: labels_to_reach(c, TARGET * full_f1) for name, c in curves.items()},
            "per_seed": per_seed, "n_pool": int(len(train)), "n_full_fit": int(full_size), "n_test": int(len(test)),
            "test_groups": len({clips.groups[i] for i in test})}


def _common_curve(curves: list[list[list[float]]]) -> list[list[float]]:
    """The mean over splits at the label counts every split's curve has (pools differ in size by split)."""
    counts = sorted(set.intersection(*({x for x, _ in c} for c in curves)))
    lookup = [dict((x, f1) for x, f1 in c) for c in curves]
    return [[x, float(np.mean([d[x] for d in lookup]))] for x in counts]


def simulate(project: Project, options: SimulateOptions = SimulateOptions(), progress: Progress | None = None,
             cancelled: Callable[[], bool] | None = None) -> dict:
    """Replay labelling on the project's labelled clips: learning curves of options.strategy and of random order,
    on options.splits grouped test parts.

    Per test part (a grouped holdout of options.test_share, split seeds options.split_seed, +1, ...) the rest
    is the pool. For each seed: a stratified random seed set (the same for the strategy and for random), then
    rounds of fit, macro-F1 on the test part, and more clips chosen by active.select up to the next count of
    schedule() (p and embeddings of the fitted model; for bald, MC-dropout samples of a network with dropout,
    else a committee of models on grouped parts of the labelled clips), until the pool is used up or
    options.rounds. The baseline is simulated by _Statistics (its recipe with each clip's statistics computed
    once); other models are fitted as a training run fits them.
    Returns the design.md 4.2 contract (strategy, seeds, full_f1, curves, auc, labels_to_95: of the one split,
    or with several the mean curve over splits at the label counts they share), plus "splits" (each split's
    own result), auc_mean, auc_sd, auc_diff_mean, auc_diff_sd (keyed by strategy like auc; diff = the
    strategy's AUC minus random's on the same split), label_saving (1 - labels_to_95 of the strategy / of
    random, on the mean curve), sizes and seconds.
    Raises SimulationRefused when the labelled clips cannot hold a test part, a seed set and a pool, and
    curation.jobs.Cancelled as soon as `cancelled()` says so.
    """
    start_time = time.perf_counter()
    clips = load_clipset(project, labelled_only=True)
    if len(clips) == 0:
        raise SimulationRefused("the project has no labelled clips: a simulation replays labelling already done")
    names = [options.strategy] if options.strategy == RANDOM else [options.strategy, RANDOM]
    about_pool = max(options.seed_size + 1, int(len(clips) * (1 - options.test_share)))  # for the progress bar only
    rounds = len(schedule(options.seed_size, options.step, options.growth, about_pool, options.rounds))
    total = options.splits * options.seeds * (1 + len(names) * rounds)
    done = 0

    def tick(message: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(min(1.0, done / total), message)
        if cancelled is not None and cancelled():
            raise Cancelled("simulation cancelled")

    # One thread: these fits are small, and on shared cores BLAS threads spin-waiting for each other were
    # slower than one (see registry.TrainConfig.threads).
    with threadpool_limits(1):
        features = [clips.features(i) for i in range(len(clips))]  # once per clip for every split, seed and round
        exercises = sorted(set(clips.exercises))
        splits = [_one_split(clips, features, exercises, options.split_seed + k, options, names, tick)
                  for k in range(options.splits)]

    if len(splits) == 1:
        curves, full_f1 = splits[0]["curves"], splits[0]["full_f1"]
    else:
        curves = {name: _common_curve([s["curves"][name] for s in splits]) for name in names}
        full_f1 = float(np.mean([s["full_f1"] for s in splits]))
    to_95 = {name: labels_to_reach(c, TARGET * full_f1) for name, c in curves.items()}
    ours, base = to_95[options.strategy], to_95[RANDOM]
    auc_mean, auc_sd, diff_mean, diff_sd = {}, {}, {}, {}
    for name in names:
        auc_mean[name], auc_sd[name] = _mean_sd([s["auc"][name] for s in splits])
        diffs = [None if s["auc"][name] is None or s["auc"][RANDOM] is None else s["auc"][name] - s["auc"][RANDOM]
                 for s in splits]
        diff_mean[name], diff_sd[name] = _mean_sd(diffs)
    first = splits[0]
    return {
        "strategy": options.strategy, "seeds": list(range(options.seeds)), "full_f1": full_f1, "curves": curves,
        "auc": {name: area(c) for name, c in curves.items()}, "labels_to_95": to_95,
        "label_saving": 1 - ours / base if ours is not None and base else None,
        "auc_mean": auc_mean, "auc_sd": auc_sd, "auc_diff_mean": diff_mean, "auc_diff_sd": diff_sd,
        "splits": splits,
        # Of the first split (the only one by default), as before several splits existed:
        "per_seed": first["per_seed"], "full_f1_per_seed": first["full_f1_per_seed"],
        "n_clips": len(clips), "n_pool": first["n_pool"], "n_test": first["n_test"],
        "test_groups": first["test_groups"], "options": asdict(options),
        "seconds": time.perf_counter() - start_time,
    }


# ---------------------------------------------------------------------------------------------- the app


def bands(result: dict) -> list[dict]:
    """Rows (strategy, labels, mean, sd) of each curve over the splits, at the label counts every split has:
    what the Suggest page draws (a line with a band of one sd)."""
    rows = []
    for name in result["curves"]:
        per_split = [s["curves"][name] for s in result["splits"]]
        counts = [x for x, _ in _common_curve(per_split)]
        for x in counts:
            values = [dict((int(a), f1) for a, f1 in c)[x] for c in per_split]
            rows.append({"strategy": name, "labels": x, "mean": float(np.mean(values)),
                         "sd": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0})
    return rows


def simulate_job(project: Project, params: dict, progress: Progress | None = None,
                 cancelled: Callable[[], bool] | None = None) -> dict:
    """Background-worker runner of a "simulate" job (curation.jobs): params are SimulateOptions fields (the
    page's default: 3 splits) and an optional "title" for the job card. Returns the result without the per-seed curves (kept small for the jobs
    table); a refusal becomes JobFailed with its one-line message."""
    try:
        options = SimulateOptions(**{k: v for k, v in params.items() if k != "title"})
        result = simulate(project, options, progress=progress, cancelled=cancelled)
    except (SimulationRefused, TypeError) as exc:
        raise JobFailed(str(exc)) from None
    result.pop("per_seed", None)
    for split in result["splits"]:
        split.pop("per_seed", None)
    return result
