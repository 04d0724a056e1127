"""Simulate: replay active learning on a labelled project and compare a strategy's learning curve with random order."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from curation.project import Project
from model import active
from model.features import ClipSet, load_clipset
from model.metrics import evaluate
from model.runs import Fitted
from model.splits import SplitError, grouped_holdout, grouped_kfold
from model.train import MC_SAMPLES, RunConfig, fit_clips

Progress = Callable[[float, str], None]
RANDOM = "random"
TARGET = 0.95  # labels_to_95: the first label count whose mean macro-F1 reaches this share of full_f1


class SimulationRefused(ValueError):
    """The labelled clips or the settings cannot give a meaningful simulation (too few clips, bad sizes)."""


@dataclass(frozen=True)
class SimulateOptions:
    """One simulation: which strategy, how labelling is replayed, and on what model."""

    strategy: str = active.DEFAULT_STRATEGY  # a name of active.STRATEGIES; always compared with "random"
    seed_size: int = 10  # clips labelled before the first model (stratified random, at least one of each class)
    step: int = 10  # clips labelled per round (one select() batch)
    seeds: int = 3  # repetitions with different seed sets and tie-breaks; curves are their mean
    model: str = "baseline"  # a key of model.registry.MODELS, fitted with the project's RunConfig defaults
    test_share: float = 0.25  # grouped holdout of the labelled clips, the same for every seed and strategy
    rounds: int | None = None  # at most this many rounds after the seed set; None: until the pool is used up
    diversity: bool = True  # select()'s k-centre step
    balance: bool = True  # select()'s class balancing
    committee: int = 4  # bald without dropout: models fitted on grouped parts of the labelled clips
    split_seed: int = 0  # draws the test part

    def __post_init__(self) -> None:
        if self.strategy not in active.STRATEGIES:
            raise SimulationRefused(f"unknown strategy {self.strategy!r}; known: {', '.join(active.STRATEGIES)}")
        if self.seed_size < 2:
            raise SimulationRefused(f"the seed set needs at least 2 clips (one of each class), not {self.seed_size}")
        if self.step < 1 or self.seeds < 1:
            raise SimulationRefused(f"step and seeds must be at least 1 (got {self.step} and {self.seeds})")
        if not 0 < self.test_share < 1:
            raise SimulationRefused(f"test_share must be between 0 and 1, not {self.test_share}")
        if self.rounds is not None and self.rounds < 0:
            raise SimulationRefused(f"rounds must be 0 or more, not {self.rounds}")
        if self.committee < 2:
            raise SimulationRefused(f"a committee needs at least 2 models, not {self.committee}")


@dataclass
class _Data:
    """What every fit of a simulation shares."""

    clips: ClipSet
    features: list[np.ndarray]
    exercises: list[str]  # every exercise of the project: the model's vocabulary does not depend on the round
    test: np.ndarray
    options: SimulateOptions

    def fit(self, idx: np.ndarray, seed: int, stream: int = 0) -> Fitted:
        config = RunConfig(model=self.options.model, seed=seed)  # the project's defaults for that model
        return fit_clips(self.clips, self.features, np.sort(idx), config, self.exercises, stream=stream)[0]

    def predict(self, fitted: Fitted, idx: np.ndarray) -> np.ndarray:
        return fitted.predict([self.features[i] for i in idx], [self.clips.exercises[i] for i in idx])

    def macro_f1(self, fitted: Fitted) -> float:
        y = self.clips.labels[self.test]
        return float(evaluate(y, self.predict(fitted, self.test), [self.clips.exercises[i] for i in self.test])
                     ["macro_f1"])

    def pool(self, fitted: Fitted, left: np.ndarray, labelled: np.ndarray, seed: int, strategy: str) -> active.Pool:
        """The clips still unlabelled as the app would see them after training `fitted`: p, window spread
        and embeddings from one pass, the labelled clips' embeddings, and for bald the disagreement measure
        (MC-dropout samples of a network with dropout, else a committee)."""
        features = [self.features[i] for i in left]
        exercises = [self.clips.exercises[i] for i in left]
        details = fitted.predict_details(features, exercises, embed=True)
        signals = {}
        if strategy == "bald":
            if fitted.model.has_dropout:
                signals["mc_mi"] = active.bald(fitted.predict_samples(features, exercises, MC_SAMPLES, seed))
            else:
                signals["committee_sd"], signals["committee_mi"] = _committee(self, labelled, left, seed)
        return active.Pool(
            clip_ids=[str(i) for i in left], embeddings=details["embedding"], p=details["p"],
            window_spread=details["window_spread"], **signals,
            labelled_embeddings=fitted.embed([self.features[i] for i in labelled],
                                             [self.clips.exercises[i] for i in labelled]))


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


def _curve(data: _Data, strategy: str, start: np.ndarray, pool: np.ndarray, seed: int,
           tick: Callable[[str], None]) -> list[list[float]]:
    """[[labels, macro-F1], ...] labelling `start` first, then `step` clips per round chosen by `strategy`."""
    options = data.options
    labelled, left = np.sort(start), np.setdiff1d(pool, start)
    points = []
    for round_ in range(len(pool)):
        fitted = data.fit(labelled, seed)
        points.append([int(len(labelled)), data.macro_f1(fitted)])
        tick(f"{strategy}, seed {seed}: {len(labelled)} labels, macro-F1 {points[-1][1]:.3f}")
        if len(left) == 0 or (options.rounds is not None and round_ >= options.rounds):
            break
        candidates = data.pool(fitted, left, labelled, seed, strategy)
        batch = active.select(candidates, options.step, strategy, options.diversity, options.balance,
                              seed=seed * 100_003 + round_)
        chosen = np.array([int(s.clip_id) for s in batch], dtype=np.int64)
        labelled, left = np.union1d(labelled, chosen), np.setdiff1d(left, chosen)
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


def simulate(project: Project, options: SimulateOptions = SimulateOptions(), progress: Progress | None = None) -> dict:
    """Replay labelling on the project's labelled clips: learning curves of options.strategy and of random order.

    One grouped holdout (options.test_share, the same for every seed and strategy) is the test part; the rest
    is the pool. For each seed: a stratified random seed set (the same for the strategy and for random), then
    rounds of fit (model.train.fit_clips, the project's RunConfig for options.model), macro-F1 on the test
    part, and `step` more clips chosen by active.select (p, window spread and embeddings of the fitted model;
    for bald, MC-dropout samples of a network with dropout, else a committee of models on grouped parts of
    the labelled clips), until the pool is used up or options.rounds.
    Returns the design.md 4.2 contract (strategy, seeds, full_f1, curves, auc, labels_to_95) plus per-seed
    curves, label_saving (1 - labels_to_95 of the strategy / of random), sizes and seconds.
    Raises SimulationRefused when the labelled clips cannot hold a test part, a seed set and a pool.
    """
    start_time = time.perf_counter()
    clips = load_clipset(project, labelled_only=True)
    if len(clips) == 0:
        raise SimulationRefused("the project has no labelled clips: a simulation replays labelling already done")
    try:
        train, test = grouped_holdout(clips.labels, clips.groups, options.test_share, options.split_seed)
    except SplitError as exc:
        raise SimulationRefused(f"no grouped test part can be drawn: {exc}") from None
    if len(train) <= options.seed_size:
        raise SimulationRefused(
            f"after a test part of {len(test)} clips, {len(train)} are left for labelling: the seed set of "
            f"{options.seed_size} needs more (lower --seed-size or label more clips)")
    data = _Data(clips, [clips.features(i) for i in range(len(clips))], sorted(set(clips.exercises)), test, options)
    names = [options.strategy] if options.strategy == RANDOM else [options.strategy, RANDOM]
    rounds = -(-(len(train) - options.seed_size) // options.step) + 1
    if options.rounds is not None:
        rounds = min(rounds, options.rounds + 1)
    total = options.seeds * (len(names) * rounds + 1)
    done = 0

    def tick(message: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(min(1.0, done / total), message)

    seeds = list(range(options.seeds))
    per_seed: dict[str, list] = {name: [] for name in names}
    full = []
    for seed in seeds:
        full.append(data.macro_f1(data.fit(train, seed)))
        tick(f"seed {seed}: all {len(train)} training clips, macro-F1 {full[-1]:.3f}")
        start = seed_set(clips.labels, train, options.seed_size, np.random.default_rng([options.split_seed, seed]))
        for name in names:
            per_seed[name].append(_curve(data, name, start, train, seed, tick))

    full_f1 = float(np.mean(full))
    curves = {name: _mean_curve(c) for name, c in per_seed.items()}
    to_95 = {name: labels_to_reach(c, TARGET * full_f1) for name, c in curves.items()}
    ours, base = to_95[options.strategy], to_95[RANDOM]
    return {
        "strategy": options.strategy, "seeds": seeds, "full_f1": full_f1, "curves": curves,
        "auc": {name: area(c) for name, c in curves.items()}, "labels_to_95": to_95,
        "label_saving": 1 - ours / base if ours is not None and base else None,
        "per_seed": per_seed, "full_f1_per_seed": full,
        "n_clips": len(clips), "n_pool": int(len(train)), "n_test": int(len(test)),
        "test_groups": len({clips.groups[i] for i in test}), "options": asdict(options),
        "seconds": time.perf_counter() - start_time,
    }
