"""Registry: every model behind one interface (fit, predict_proba, explain, embed, state/load), whole or windowed."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import importlib
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from threadpoolctl import ThreadpoolController
from torch import nn
from torch.nn import functional as F

from model.calibration import Calibration
from model.features import windows
from model.nets import BiLSTMAttention, TransformerClassifier, focal_loss

# progress(epoch, n_epochs, train_loss, val_loss, val_f1); the last two are None without a validation part.
Progress = Callable[[int, int, float, float | None, float | None], None]


class UnknownModel(ValueError):
    """A model name that is not in the registry."""


class BadTrainingData(ValueError):
    """Training data a model cannot learn from (empty, one class only, wrong shapes)."""


class NoDropout(ValueError):
    """MC-dropout samples asked of a model that has no dropout (the baseline, or a network with dropout 0)."""


INPUTS = ("whole", "windows")
# The input each model gets when TrainConfig.input is "auto". tests/benchmarks/bench_train.py (c), grouped
# out-of-fold macro-F1, mean of seeds 0-2, whole against windows of 20 frames: pose_trainer (112 clips, 19
# groups, 5 folds) baseline 0.61 vs 0.55, BiLSTM 0.54 vs 0.47, Transformer 0.55 vs 0.49; kaiakol_squat (22
# clips, 4 incorrect, 2 folds) the other way, 0.48 vs 0.66, 0.48 vs 0.57, 0.41 vs 0.48. Whole clips win on the
# set with five times the clips and groups; on kaiakol one clip moves macro-F1 by about 0.1. (Windows of 40 or
# 60 frames did not rescue the baseline on pose_trainer: 0.54, 0.58.) A holdout run still tries both inputs.
INPUT_BY_MODEL = {"baseline": "whole", "bilstm": "whole", "transformer": "whole",
                  # Not measured: they summarise a clip as a whole (statistics, MiniRocket's shares), like the
                  # baseline, whose measured input is whole.
                  "forest": "whole", "extra_trees": "whole", "minirocket": "whole"}
# When every window of a clip sits at p = 0.5 (|2p - 1| summing below this), the vote is the plain mean.
VOTE_EPS = 1e-6
# Windowed input scores clips this many at a time: all windows of 10,000 clips at once would be ~0.8 GB.
CHUNK_CLIPS = 512


@dataclass(frozen=True)
class TrainConfig:
    """How a model is built and fitted. Every field is a plain number or string, so asdict() is JSON."""

    model: str = "baseline"  # a key of MODELS
    epochs: int = 40  # at most; early stopping usually ends sooner when a validation part is given
    batch_size: int = 32  # clips per step; with windowed input the windows of about this many clips
    lr: float = 1e-3  # Adam
    weight_decay: float = 1e-4  # Adam's L2 penalty
    patience: int = 15  # early stopping: epochs without improvement of `monitor` on the validation part
    # Early stopping on "val_f1" (macro-F1, ties to the lower loss) or "val_loss". On small validation parts the
    # loss favours the first, barely trained epochs (outputs near 0.5): pose_trainer 5-fold macro-F1 was
    # 0.55 (transformer) / 0.62 (bilstm) with "val_loss" against 0.86 / 0.90 with "val_f1" (clip-level folds, which
    # leak; under folds grouped by recording setup all networks score 0.43-0.55, see bench_train).
    monitor: str = "val_f1"
    plateau_factor: float = 0.5  # ReduceLROnPlateau: lr *= factor ...
    plateau_patience: int = 8  # ... after this many epochs without a lower (validation or training) loss
    loss: str = "focal"  # "focal" (with class weights) or "weighted_ce"
    gamma: float = 2.0  # focal loss focusing parameter
    grad_clip: float = 1.0  # max gradient norm; keeps early LSTM steps from blowing up
    seed: int = 0
    frame_step: int = 2  # average each run of this many frames into one (30 fps -> 15): halves the time cost
    max_frames: int = 128  # after that, longer clips are resampled down to this many frames
    # "whole": one padded, masked sequence per clip. "windows": overlapping windows of the clip (features.windows),
    # each a training sample with its clip's label; a clip's p(incorrect) is the vote of its windows' p weighted
    # by |2p - 1| (confident windows count more). "auto": the model's measured default, INPUT_BY_MODEL, fixed
    # when the model is built (so a saved model keeps the input it was trained with).
    input: str = "auto"
    window_size: int = 20  # frames of the clip as given (before frame_step): 0.67 s at 30 fps
    window_overlap: float = 0.7  # share of a window shared with the next: a step of 6 frames at size 20
    dropout: float = -1.0  # < 0: the network's own default (0.3 BiLSTM, 0.1 Transformer)
    hidden: int = 64  # BiLSTM: first layer units per direction (the second has half); Transformer: d_model
    heads: int = 4
    layers: int = 2  # Transformer encoder layers
    baseline_c: float = 1.0  # baseline: inverse L2 strength of the logistic regression
    # Tree ensembles (model.trees): trees per forest (sklearn's default; each tree costs ~10 ms of sklearn's
    # bookkeeping whatever the data) and the fewest clips in a leaf (2: a leaf is never one clip's own).
    trees: int = 100
    tree_min_leaf: int = 2
    # MiniRocket (model.rocket): features made (rounded down to a multiple of 84; the method's default is
    # 10,000, 2,000 keeps a fit on 1,000 clips under a second) and the frames each clip is resampled to.
    rocket_kernels: int = 2000
    rocket_length: int = 64
    device: str = "auto"  # "auto" (CUDA when present), "cpu" or "cuda"
    predict_batch: int = 256  # clips per forward pass when scoring
    # CPU threads of torch and of the BLAS/OpenMP pools (numpy, scipy, scikit-learn) while fitting and scoring
    # (0: leave them as they are). These small problems gain nothing from a second thread, and when other
    # processes busy the cores, spin-waiting made each training step over 100x slower with 2 threads than with 1
    # (a network step 15 ms -> 1.7 s; the baseline's logistic regression on 448 windows 0.02 s -> 1.3 s).
    threads: int = 1


def _check_config(config: TrainConfig) -> None:
    if config.loss not in ("focal", "weighted_ce"):
        raise ValueError(f"loss must be 'focal' or 'weighted_ce', not {config.loss!r}")
    if config.monitor not in ("val_loss", "val_f1"):
        raise ValueError(f"monitor must be 'val_loss' or 'val_f1', not {config.monitor!r}")
    if config.input not in (*INPUTS, "auto"):
        raise ValueError(f"input must be 'whole', 'windows' or 'auto', not {config.input!r}")
    if config.window_size < 1 or not 0 <= config.window_overlap < 1:
        raise ValueError("window_size must be at least 1 and window_overlap in [0, 1)")
    if min(config.max_frames, config.frame_step, config.epochs, config.batch_size) < 1:
        raise ValueError("max_frames, frame_step, epochs and batch_size must be at least 1")


def resolve_input(config: TrainConfig, name: str | None = None) -> TrainConfig:
    """config with input "auto" replaced by the measured default of model `name` (default: config.model)."""
    if config.input != "auto":
        return config
    return dataclasses.replace(config, input=INPUT_BY_MODEL.get(name or config.model, "whole"))


# ---- plain-array helpers shared by every model ----

def _as_clips(X: Sequence[np.ndarray], n_features: int) -> list[np.ndarray]:
    """Check and convert clips to float32 (T, F) arrays with NaN/inf set to 0 (the scaler's mean)."""
    clips = []
    for i, x in enumerate(X):
        a = np.asarray(x, dtype=np.float32)
        if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] != n_features:
            raise BadTrainingData(f"clip {i} has shape {a.shape}; expected (T>=1, {n_features})")
        clips.append(np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0))
    return clips


def _as_exercise(exercise: Sequence[int] | np.ndarray | None, n: int, n_exercises: int) -> np.ndarray | None:
    """Exercise ids as int64 (n,), checked against the model's exercise count (None for a one-exercise model)."""
    if n_exercises == 0:
        if exercise is not None:
            raise ValueError("this model was built without exercise ids (n_exercises=0); pass exercise=None")
        return None
    if exercise is None:
        raise ValueError(f"this model takes the exercise as an input: pass {n} exercise ids")
    e = np.asarray(exercise, dtype=np.int64).reshape(-1)
    if e.shape[0] != n or (n and (e.min() < 0 or e.max() >= n_exercises)):
        raise ValueError(f"exercise ids must be {n} integers in [0, {n_exercises})")
    return e


def _as_labels(y: Sequence[int] | np.ndarray, n: int) -> np.ndarray:
    labels = np.asarray(y).reshape(-1)
    if labels.shape[0] != n:
        raise BadTrainingData(f"{n} clips but {labels.shape[0]} labels")
    if not np.isin(labels, (0, 1)).all():
        raise BadTrainingData("labels must be 0 (correct) or 1 (incorrect)")
    return labels.astype(np.int64)


def time_matrix(t: int, frame_step: int, max_frames: int) -> np.ndarray | None:
    """The linear map (T', t) from a clip's t frames to the frames a network sees; None when it is the identity.

    Consecutive groups of frame_step frames are averaged (decimation without aliasing), then a clip still longer
    than max_frames is linearly resampled to max_frames. Rows sum to 1, so attention mapped back through the
    transpose still sums to 1, and saliency flows back to the original frames exactly.
    """
    step = max(1, frame_step)
    n = -(-t // step)
    pool = None
    if step > 1 and t > 1:
        group = np.arange(t) // step
        pool = np.zeros((n, t))
        pool[group, np.arange(t)] = 1.0 / np.bincount(group)[group]
    if n <= max_frames:
        return pool
    at = np.linspace(0.0, n - 1, max_frames)
    lo = np.floor(at).astype(int)
    hi = np.minimum(lo + 1, n - 1)
    interp = np.zeros((max_frames, n))
    rows = np.arange(max_frames)
    np.add.at(interp, (rows, lo), 1.0 - (at - lo))
    np.add.at(interp, (rows, hi), at - lo)
    return interp if pool is None else interp @ pool


def class_weights(y: np.ndarray) -> np.ndarray:
    """Balanced class weights n / (2 * count) for labels 0 and 1."""
    counts = np.bincount(y, minlength=2).astype(np.float64)
    return len(y) / (2.0 * counts)


def _check_both_classes(y: np.ndarray) -> None:
    counts = np.bincount(y, minlength=2)
    if counts.min() == 0:
        raise BadTrainingData(
            f"training needs both classes; got {counts[0]} correct and {counts[1]} incorrect clips"
        )


def _has_validation(X_val: Sequence[np.ndarray] | None, y_val: Sequence[int] | None) -> bool:
    """Whether a validation part was given (an empty one counts as none); its labels must come with it."""
    if X_val is None or len(X_val) == 0:
        return False
    if y_val is None:
        raise BadTrainingData("a validation part needs its labels (y_val)")
    return True


def macro_f1(y: np.ndarray, p: np.ndarray) -> float:
    """Macro-F1 of labels y against p(incorrect) thresholded at 0.5."""
    return float(f1_score(y, (p >= 0.5).astype(int), average="macro", labels=[0, 1], zero_division=0))


@functools.lru_cache(maxsize=1)
def _thread_pools() -> ThreadpoolController:
    # Made once: finding the loaded BLAS/OpenMP libraries costs ~6 ms, a limit through the controller ~0.02 ms.
    return ThreadpoolController()


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """torch's CPU threads and the BLAS/OpenMP thread pools set to n (n > 0) for the duration, then restored."""
    if n <= 0:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with _thread_pools().limit(limits=n):
            yield
    finally:
        torch.set_num_threads(previous)


def _with_threads(method: Callable) -> Callable:
    """Run a Model method under the model's configured thread count."""

    @functools.wraps(method)
    def wrapper(self: Model, *args, **kwargs):
        with _threads(self.config.threads):
            return method(self, *args, **kwargs)

    return wrapper


def vote(p: np.ndarray, owner: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows' p(incorrect) to one p per clip: (p (n,), spread (n,)).

    owner[i] = the clip of window i. Each window's vote weighs |2p - 1|, so a confident window counts more
    than one near 0.5; a clip whose windows all sit at 0.5 gets their plain mean. spread = the standard
    deviation of the clip's window p's (0.0 for a one-window clip).
    """
    p = np.asarray(p, dtype=np.float64)
    owner = np.asarray(owner, dtype=np.int64)
    count = np.bincount(owner, minlength=n).astype(np.float64)
    if (count == 0).any():
        raise ValueError("every clip needs at least one window")
    weight = np.abs(2.0 * p - 1.0)
    total = np.bincount(owner, weight, minlength=n)
    mean = np.bincount(owner, p, minlength=n) / count
    weighted = np.bincount(owner, weight * p, minlength=n) / np.maximum(total, VOTE_EPS)
    spread = np.sqrt(np.maximum(np.bincount(owner, p * p, minlength=n) / count - mean ** 2, 0.0))
    return np.where(total >= VOTE_EPS, weighted, mean), spread


@dataclass(frozen=True)
class Units:
    """What a model's clip-level methods see: the clips themselves (whole input) or the windows of the clips."""

    X: list[np.ndarray]  # float32 (T, F) each
    exercise: np.ndarray | None  # exercise id per unit, None for a one-exercise model
    owner: np.ndarray  # (U,) the clip each unit comes from
    starts: np.ndarray  # (U,) the unit's first frame in its clip
    n: int  # clips


@dataclass(frozen=True)
class Validation:
    """The validation part of a fit, scored at clip level: a windowed model's early stopping follows the vote."""

    units: Units
    y: np.ndarray  # (n,) clip labels

    def clip_p(self, p_units: np.ndarray) -> np.ndarray:
        """p(incorrect) per validation clip from the p of its units."""
        return vote(p_units, self.units.owner, self.units.n)[0]


def _stitch(parts: list[np.ndarray], starts: np.ndarray, weights: np.ndarray, t: int) -> np.ndarray:
    """Per-window arrays (size, ...) placed back on a clip of t frames: each frame gets the weighted mean of
    the windows that cover it (frames near the ends, covered by fewer windows, are not made smaller). The
    padded tail of a window longer than the clip is added onto the clip's last frame (those frames are copies
    of it)."""
    out = np.zeros((t, *parts[0].shape[1:]))
    cover = np.zeros(t)
    for part, start, w in zip(parts, starts, weights):
        real = min(part.shape[0], t - int(start))
        piece = part[:real].astype(np.float64)
        if real < part.shape[0]:
            piece[-1] = piece[-1] + part[real:].sum(0)
        out[start:start + real] += w * piece
        cover[start:start + real] += w
    return out / np.maximum(cover, 1e-12).reshape(-1, *([1] * (out.ndim - 1)))


class Model(ABC):
    """A clip classifier: fit on (T, F) sequences, give p(incorrect), explain one clip, save and load.

    The public methods take whole clips. With config.input "windows" they cut each clip into windows and the
    subclass's clip-level _fit/_predict/_predict_embed/_explain see windows; otherwise they see the clips. The
    results always come back per clip.
    """

    name: ClassVar[str]
    # Whether fit() stops early on a validation part. Models that do not (the clip-statistics families) are
    # fitted on every training clip: holding a part back for them only cost data (model.train.fit_one).
    stops_early: ClassVar[bool] = False

    def __init__(self, n_features: int, n_exercises: int = 0, config: TrainConfig | None = None):
        self.n_features = int(n_features)
        self.n_exercises = int(n_exercises)
        config = config if config is not None else TrainConfig(model=self.name)
        _check_config(config)
        self.config = resolve_input(config, self.name)
        self.fitted = False
        # A map of p(incorrect) fitted on out-of-fold predictions of the training part (model.train), applied
        # to every p the model gives; saved with its state.
        self.calibration: Calibration | None = None

    # -- what subclasses implement, on checked clips or windows (float32 (T, F), NaN-free) --

    @abstractmethod
    def _fit(self, X: list[np.ndarray], y: np.ndarray, exercise: np.ndarray | None, validation: Validation | None,
             progress: Progress | None, batch_size: int) -> dict:
        """Fit on units X with labels y; score `validation` (when given) at clip level; returns the history."""

    @abstractmethod
    def _predict(self, X: list[np.ndarray], exercise: np.ndarray | None) -> np.ndarray:
        """p(incorrect) per unit, float64 (U,)."""

    @abstractmethod
    def _explain(self, x: np.ndarray, exercise: np.ndarray | None) -> dict[str, np.ndarray]:
        """For one unit (T, F) (exercise: (1,) or None): attention (T,) summing to 1, saliency (T, F) >= 0."""

    @abstractmethod
    def _predict_embed(self, X: list[np.ndarray], exercise: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """p(incorrect) (U,) and one vector (U, D) per unit, from one pass (D is kept for no units too)."""

    def _predict_samples(self, X: list[np.ndarray], exercise: np.ndarray | None, n: int, seed: int) -> np.ndarray:
        """(n, U) MC-dropout samples of p(incorrect) per unit (only called when has_dropout)."""
        raise NotImplementedError

    @abstractmethod
    def _tensors(self) -> dict[str, torch.Tensor]:
        """The fitted parameters as named tensors."""

    @abstractmethod
    def _set_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore the fitted parameters from _tensors()."""

    # -- whole clips or windows --

    @property
    def has_dropout(self) -> bool:
        """Whether predict_samples can draw MC-dropout samples."""
        return False

    @property
    def windowed(self) -> bool:
        return self.config.input == "windows"

    def _units(self, clips: list[np.ndarray], exercise: np.ndarray | None) -> Units:
        n = len(clips)
        if not self.windowed:
            return Units(clips, exercise, np.arange(n), np.zeros(n, dtype=np.int64), n)
        cut = [windows(x, self.config.window_size, self.config.window_overlap) for x in clips]
        owner = np.repeat(np.arange(n), [len(w) for w, _ in cut])
        return Units([w for ws, _ in cut for w in ws], None if exercise is None else exercise[owner], owner,
                     np.concatenate([s for _, s in cut]) if cut else np.zeros(0, dtype=np.int64), n)

    def _chunks(self, clips: list[np.ndarray], exercise: np.ndarray | None) -> Iterator[tuple[slice, Units]]:
        """Units of consecutive parts of the clips: all at once for whole input, CHUNK_CLIPS clips of windows."""
        step = max(1, len(clips)) if not self.windowed else CHUNK_CLIPS
        for start in range(0, len(clips), step):
            part = slice(start, start + step)
            yield part, self._units(clips[part], None if exercise is None else exercise[part])

    def _inputs(self, X: Sequence[np.ndarray], exercise: Sequence[int] | None
                ) -> tuple[list[np.ndarray], np.ndarray | None]:
        self._check_fitted()
        clips = _as_clips(X, self.n_features)
        if not clips:  # nothing to score: no exercise ids to check either
            return clips, np.zeros(0, dtype=np.int64) if self.n_exercises else None
        return clips, _as_exercise(exercise, len(clips), self.n_exercises)

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError("fit the model first (or load a fitted state)")

    # -- the interface --

    @_with_threads
    def fit(self, X: Sequence[np.ndarray], y: Sequence[int], exercise: Sequence[int] | None = None,
            X_val: Sequence[np.ndarray] | None = None, y_val: Sequence[int] | None = None,
            exercise_val: Sequence[int] | None = None, progress: Progress | None = None) -> dict:
        """Fit on clips X (list of (T_i, F)) with labels y (0 correct, 1 incorrect); returns the history.

        With a validation part, early stopping (networks) follows its clip-level scores: for windowed input
        the vote of each validation clip's windows, the verdict the model will give.
        """
        start = time.perf_counter()
        clips = _as_clips(X, self.n_features)
        labels = _as_labels(y, len(clips))
        _check_both_classes(labels)
        units = self._units(clips, _as_exercise(exercise, len(clips), self.n_exercises))
        validation = None
        if _has_validation(X_val, y_val):
            val_clips = _as_clips(X_val, self.n_features)
            val_labels = _as_labels(y_val, len(val_clips))
            validation = Validation(self._units(val_clips, _as_exercise(exercise_val, len(val_clips),
                                                                        self.n_exercises)), val_labels)
        # A step sees the windows of about batch_size clips: as many steps per epoch as whole input.
        batch = max(1, round(self.config.batch_size * len(units.X) / len(clips)))
        history = self._fit(units.X, labels[units.owner], units.exercise, validation, progress, batch)
        self.fitted = True
        history["seconds"] = time.perf_counter() - start
        return history

    def predict_proba(self, X: Sequence[np.ndarray], exercise: Sequence[int] | None = None) -> np.ndarray:
        """p(incorrect) per clip, float (N,) in [0, 1]."""
        return self.predict_details(X, exercise)["p"]

    @_with_threads
    def predict_details(self, X: Sequence[np.ndarray], exercise: Sequence[int] | None = None, embed: bool = False
                        ) -> dict[str, np.ndarray]:
        """Per clip: "p" (N,) p(incorrect) and "window_spread" (N,) the standard deviation of its windows' p
        (how much the parts of the clip disagree; 0.0 for a one-window clip, NaN for whole-clip input); with
        embed, also "embedding" (N, D) as embed() gives, from the same pass (half the cost of both apart)."""
        clips, e = self._inputs(X, exercise)
        p, spread = np.zeros(len(clips)), np.full(len(clips), np.nan)
        vectors = None
        for part, units in self._chunks(clips, e):
            if embed:
                p_units, v_units = self._predict_embed(units.X, units.exercise)
            else:
                p_units = self._predict(units.X, units.exercise)
            if self.windowed:
                p[part], spread[part] = vote(p_units, units.owner, units.n)
            else:
                p[part] = p_units
            if embed:
                if self.windowed:  # a clip's vector: the mean of its windows' vectors
                    sums = np.zeros((units.n, v_units.shape[1]))
                    np.add.at(sums, units.owner, v_units)
                    v_units = sums / np.bincount(units.owner, minlength=units.n)[:, None]
                if vectors is None:
                    vectors = np.zeros((len(clips), v_units.shape[1]))
                vectors[part] = v_units
        out = {"p": p if self.calibration is None else self.calibration.apply(p), "window_spread": spread}
        if embed:
            out["embedding"] = vectors if vectors is not None else self._predict_embed([], e)[1]
        return out

    @_with_threads
    def predict_samples(self, X: Sequence[np.ndarray], exercise: Sequence[int] | None = None, n: int = 10,
                        seed: int = 0) -> np.ndarray:
        """(n, N) MC-dropout samples of p(incorrect): dropout layers active, everything else as in scoring.

        The same seed gives the same samples; the caller's torch random state is left as it was. Raises
        NoDropout for a model without dropout (the baseline).
        """
        if not self.has_dropout:
            raise NoDropout(f"the {self.name} model has no dropout to sample: MC-dropout needs a network "
                            f"(bilstm or transformer) with dropout > 0")
        if n < 1:
            raise ValueError(f"n must be at least 1, not {n}")
        clips, e = self._inputs(X, exercise)
        out = np.zeros((n, len(clips)))
        for k, (part, units) in enumerate(self._chunks(clips, e)):
            # Each chunk its own stream: chunks do not repeat one another's dropout masks.
            chunk_seed = int(np.random.SeedSequence([seed, k]).generate_state(1)[0])
            samples = self._predict_samples(units.X, units.exercise, n, chunk_seed)
            out[:, part] = samples if not self.windowed else np.stack(
                [vote(row, units.owner, units.n)[0] for row in samples])
        return out if self.calibration is None else self.calibration.apply(out)

    @_with_threads
    def explain(self, x: np.ndarray, exercise: int | None = None) -> dict[str, np.ndarray]:
        """For one clip (T, F): attention (T,) summing to 1 and saliency (T, F) >= 0.

        Windowed input: each window is explained on its own and put back on the clip's frames, every frame
        taking the mean of the windows covering it weighted by their vote weights |2p - 1|.
        """
        self._check_fitted()
        clip = _as_clips([x], self.n_features)[0]
        e = _as_exercise(None if exercise is None else [exercise], 1, self.n_exercises)
        if not self.windowed:
            return self._explain(clip, e)
        units = self._units([clip], e)
        weight = np.abs(2.0 * self._predict(units.X, units.exercise) - 1.0)
        if weight.sum() < VOTE_EPS:
            weight = np.ones_like(weight)
        parts = [self._explain(w, e) for w in units.X]
        attention = _stitch([p["attention"] for p in parts], units.starts, weight, clip.shape[0])
        saliency = _stitch([p["saliency"] for p in parts], units.starts, weight, clip.shape[0])
        return {"attention": attention / attention.sum(), "saliency": saliency}

    def embed(self, X: Sequence[np.ndarray], exercise: Sequence[int] | None = None) -> np.ndarray:
        """One vector per clip (N, D), the representation the classifier decides from (for diversity); for
        windowed input the mean of the clip's window vectors."""
        return self.predict_details(X, exercise, embed=True)["embedding"]

    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild the fitted model: config (JSON-able) and tensors.

        Only dicts, strings, numbers and tensors, so torch.save / torch.load(weights_only=True) round-trip it.
        """
        out = {
            "model": self.name,
            "n_features": self.n_features,
            "n_exercises": self.n_exercises,
            "config": dataclasses.asdict(self.config),
            "tensors": {k: v.detach().cpu().clone() for k, v in self._tensors().items()},
        }
        if self.calibration is not None:
            out["calibration"] = self.calibration.state()
        return out

    @classmethod
    def load(cls, state: dict[str, Any]) -> Model:
        """Rebuild a fitted model from state() (the registry picks the class by the saved model name)."""
        target = MODELS.get(state["model"])
        if target is None:
            raise UnknownModel(f"unknown model {state['model']!r}; known: {', '.join(MODELS)}")
        if cls is not Model and target is not cls:
            raise ValueError(f"a saved {state['model']!r} model cannot be loaded as {cls.name!r}")
        # Fields this version does not know are dropped and new ones take their defaults, so older runs load.
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        saved = {"input": "whole", **state["config"]}  # states older than windowed input were all whole-clip
        config = TrainConfig(**{k: v for k, v in saved.items() if k in known})
        model = target(state["n_features"], state["n_exercises"], config)
        model._set_tensors(state["tensors"])
        if "calibration" in state:
            model.calibration = Calibration.from_state(state["calibration"])
        model.fitted = True
        return model


# ---- the scikit-learn baseline ----

STATISTICS = ("mean", "std", "min", "max", "range")  # per feature, over time


def clip_statistics(x: np.ndarray) -> np.ndarray:
    """Per-feature statistics over time of one clip (T, F): (len(STATISTICS) * F,), statistic-major."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: their statistics become 0 below
        lo, hi = np.nanmin(x, axis=0), np.nanmax(x, axis=0)
        stats = np.concatenate([np.nanmean(x, axis=0), np.nanstd(x, axis=0), lo, hi, hi - lo])
    return np.nan_to_num(stats, nan=0.0).astype(np.float64)


class Baseline(Model):
    """Clip statistics (mean, std, min, max, range per feature) -> standardise -> balanced logistic regression.

    Chosen over histogram gradient boosting: as good on the checks (5-fold macro-F1 on pose_trainer's 112 real
    clips 0.86 vs 0.86, on noisy synthetic sinusoids 0.66 vs 0.63), twice as fast, and its coefficients give a
    per-feature saliency and a state made of plain tensors.
    """

    name = "baseline"

    def __init__(self, n_features: int, n_exercises: int = 0, config: TrainConfig | None = None):
        super().__init__(n_features, n_exercises, config)
        self.mean_: np.ndarray | None = None
        self.scale_: np.ndarray | None = None
        self.coef_: np.ndarray | None = None
        self.intercept_: float = 0.0

    def _design(self, clips: list[np.ndarray], e: np.ndarray | None) -> np.ndarray:
        stats = np.stack([clip_statistics(x) for x in clips]) if clips else np.zeros((0, 5 * self.n_features))
        if self.n_exercises:
            stats = np.concatenate([stats, np.eye(self.n_exercises)[e]], axis=1)
        return stats

    def _standardised(self, clips: list[np.ndarray], e: np.ndarray | None) -> np.ndarray:
        return (self._design(clips, e) - self.mean_) / self.scale_

    def _fit(self, X, y, exercise, validation, progress, batch_size) -> dict:
        design = self._design(X, exercise)
        self.mean_ = design.mean(0)
        scale = design.std(0)
        self.scale_ = np.where(scale > 1e-12, scale, 1.0)  # constant columns stay 0 instead of dividing by 0
        z = (design - self.mean_) / self.scale_
        lr = LogisticRegression(C=self.config.baseline_c, class_weight="balanced", max_iter=2000)
        lr.fit(z, y)
        self.coef_, self.intercept_ = lr.coef_[0].copy(), float(lr.intercept_[0])
        train_loss = _log_loss(y, expit(z @ self.coef_ + self.intercept_), class_weights(y))
        return self._single_pass_history(train_loss, y, validation, progress)

    def _single_pass_history(self, train_loss: float, y: np.ndarray, validation: Validation | None,
                             progress: Progress | None) -> dict:
        """The history of a model fitted in one pass (no epochs): one point, scored on validation if given."""
        val_loss = val_f1 = None
        if validation is not None:
            pv = validation.clip_p(self._predict(validation.units.X, validation.units.exercise))
            val_loss, val_f1 = _log_loss(validation.y, pv, class_weights(y)), macro_f1(validation.y, pv)
        if progress is not None:
            progress(1, 1, train_loss, val_loss, val_f1)
        return {"train_loss": [train_loss], "val_loss": [val_loss], "val_f1": [val_f1],
                "lr": [None], "best_epoch": 1, "epochs": 1}

    def _predict(self, X, exercise) -> np.ndarray:
        if not X:
            return np.zeros(0)
        return expit(self._standardised(X, exercise) @ self.coef_ + self.intercept_)

    def _explain(self, x, exercise) -> dict[str, np.ndarray]:
        z = self._standardised([x], exercise)[0]
        # Gradient x input of the logit in the standardised statistic space, summed over a feature's statistics:
        # the same quantity as the networks' saliency, here constant over time.
        contribution = np.abs(self.coef_ * z)[: len(STATISTICS) * self.n_features]
        per_feature = contribution.reshape(len(STATISTICS), self.n_features).sum(0)
        t = x.shape[0]
        return {"attention": np.full(t, 1.0 / t), "saliency": np.tile(per_feature, (t, 1))}

    def _predict_embed(self, X, exercise) -> tuple[np.ndarray, np.ndarray]:
        z = self._standardised(X, exercise)
        return expit(z @ self.coef_ + self.intercept_), z

    def _tensors(self) -> dict[str, torch.Tensor]:
        self._check_fitted()
        return {name: torch.as_tensor(np.asarray(value, dtype=np.float64))
                for name, value in (("mean", self.mean_), ("scale", self.scale_), ("coef", self.coef_),
                                    ("intercept", self.intercept_))}

    def _set_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.mean_, self.scale_, self.coef_ = (tensors[k].numpy().copy() for k in ("mean", "scale", "coef"))
        self.intercept_ = float(tensors["intercept"])


def occlusion_saliency(model: "Model", x: np.ndarray, exercise: np.ndarray | None) -> dict[str, np.ndarray]:
    """Attention and saliency of one standardised clip (T, F) for a model without gradients: each feature in
    turn set to 0 (the training mean) over the whole clip; its saliency is how far that moves the logit of
    p(incorrect), spread evenly over the frames; attention is uniform (these models summarise the clip
    before deciding, so no frame weighs more by construction)."""
    t, f = x.shape
    occluded = [x]
    for j in range(f):
        y = x.copy()
        y[:, j] = 0.0
        occluded.append(y)
    p = np.clip(model._predict(occluded, None if exercise is None else np.repeat(exercise, f + 1)), 1e-6, 1 - 1e-6)
    logits = np.log(p / (1 - p))
    per_feature = np.abs(logits[1:] - logits[0])
    return {"attention": np.full(t, 1.0 / t), "saliency": np.tile(per_feature / t, (t, 1))}


def _log_loss(y: np.ndarray, p: np.ndarray, weight: np.ndarray) -> float:
    """Class-weighted mean cross-entropy of p(incorrect), comparable with the networks' weighted CE."""
    p = np.clip(p, 1e-7, 1 - 1e-7)
    w = weight[y]
    return float(-(w * np.where(y == 1, np.log(p), np.log(1 - p))).sum() / w.sum())


# ---- the torch networks ----

def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _better(score: tuple[float, ...], best: tuple[float, ...], tol: float = 1e-6) -> bool:
    """Lexicographic "lower is better" with a tolerance on each part."""
    for a, b in zip(score, best):
        if a < b - tol:
            return True
        if a > b + tol:
            return False
    return False


class TorchModel(Model):
    """Shared training, scoring and explanation for the sequence networks of model.nets."""

    default_dropout: ClassVar[float]  # the network's dropout when config.dropout < 0
    stops_early = True

    def __init__(self, n_features: int, n_exercises: int = 0, config: TrainConfig | None = None):
        super().__init__(n_features, n_exercises, config)
        self.device = _device(self.config.device)
        with torch.random.fork_rng():
            torch.manual_seed(self.config.seed)
            self.net = self._build().to(self.device)

    @abstractmethod
    def _build(self) -> nn.Module:
        """The untrained network for this model's sizes and config."""

    def _dropout(self) -> float:
        return self.default_dropout if self.config.dropout < 0 else self.config.dropout

    @property
    def has_dropout(self) -> bool:
        return self._dropout() > 0

    # -- batching --

    def _time_matrix(self, t: int) -> np.ndarray | None:
        return time_matrix(t, self.config.frame_step, self.config.max_frames)

    def _prepare(self, X: list[np.ndarray]) -> list[np.ndarray]:
        """Checked clips (or windows) as the network sees them: frames averaged and resampled (time_matrix)."""
        out = []
        for x in X:
            m = self._time_matrix(x.shape[0])
            out.append(x if m is None else (m @ x).astype(np.float32))
        return out

    def _batch(self, clips: list[np.ndarray], exercise: np.ndarray | None, index: np.ndarray
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Right-padded x (B, T, F), mask (B, T) True on real frames, and exercise ids, on the device."""
        lengths = [clips[i].shape[0] for i in index]
        x = np.zeros((len(index), max(lengths), self.n_features), dtype=np.float32)
        mask = np.zeros((len(index), max(lengths)), dtype=bool)
        for row, (i, t) in enumerate(zip(index, lengths)):
            x[row, :t] = clips[i]
            mask[row, :t] = True
        e = None if exercise is None else torch.from_numpy(exercise[index]).to(self.device)
        return torch.from_numpy(x).to(self.device), torch.from_numpy(mask).to(self.device), e

    def _loss(self, logits: torch.Tensor, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if self.config.loss == "focal":
            return focal_loss(logits, y, self.config.gamma, weight)
        return F.cross_entropy(logits, y, weight=weight)

    @torch.no_grad()
    def _validate(self, validation: Validation, prepared: list[np.ndarray], weight: torch.Tensor
                  ) -> tuple[float, float]:
        """(loss, macro-F1) of the validation clips' p(incorrect), the vote of their units for windowed input.

        The loss is the training loss taken on log p, which for whole input equals the loss on the logits."""
        p = validation.clip_p(self._p(prepared, validation.units.exercise))
        log_p = np.log(np.clip(np.stack([1.0 - p, p], axis=1), 1e-7, 1.0))
        loss = self._loss(torch.from_numpy(log_p).float().to(self.device),
                          torch.from_numpy(validation.y).to(self.device), weight)
        return float(loss), macro_f1(validation.y, p)

    def _sorted_batches(self, clips: list[np.ndarray], exercise: np.ndarray | None
                        ) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """Scoring batches (clip indices, x, mask, exercise) with similar lengths together: less padding, same
        results (the masks make padding irrelevant)."""
        order = np.argsort([c.shape[0] for c in clips], kind="stable")
        for start in range(0, len(clips), self.config.predict_batch):
            index = order[start: start + self.config.predict_batch]
            yield (index, *self._batch(clips, exercise, index))

    @torch.no_grad()
    def _p(self, prepared: list[np.ndarray], exercise: np.ndarray | None) -> np.ndarray:
        """p(incorrect) of prepared units, network in eval mode."""
        self.net.eval()
        out = np.zeros(len(prepared))
        for index, x, mask, e in self._sorted_batches(prepared, exercise):
            out[index] = torch.softmax(self.net(x, mask, e)[0], 1)[:, 1].cpu().numpy()
        return out

    # -- the clip-level methods --

    def _fit(self, X, y, exercise, validation, progress, batch_size) -> dict:
        cfg = self.config
        clips = self._prepare(X)
        val_prepared = self._prepare(validation.units.X) if validation is not None else None
        weight = torch.tensor(class_weights(y), dtype=torch.float32, device=self.device)
        y_t = torch.from_numpy(y).to(self.device)

        history: dict[str, Any] = {"train_loss": [], "val_loss": [], "val_f1": [], "lr": []}
        best_score, best_epoch, best_state, stale = None, 0, None, 0
        deterministic = (torch.are_deterministic_algorithms_enabled(),
                         torch.is_deterministic_algorithms_warn_only_enabled())
        torch.use_deterministic_algorithms(True, warn_only=True)
        # A private random stream: the same seed gives the same model whatever ran before, and the caller's
        # global torch state is left as it was.
        with torch.random.fork_rng():
            try:
                torch.manual_seed(cfg.seed)
                rng = np.random.default_rng(cfg.seed)
                self.net = self._build().to(self.device)  # a refit starts from the same initial weights
                optimiser = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
                plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
                    optimiser, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience)
                for epoch in range(1, cfg.epochs + 1):
                    self.net.train()
                    order = rng.permutation(len(clips))
                    total = 0.0
                    for begin in range(0, len(clips), batch_size):
                        index = order[begin: begin + batch_size]
                        x, mask, e = self._batch(clips, exercise, index)
                        loss = self._loss(self.net(x, mask, e)[0], y_t[torch.from_numpy(index).to(self.device)],
                                          weight)
                        optimiser.zero_grad(set_to_none=True)
                        loss.backward()
                        nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip)
                        optimiser.step()
                        total += loss.item() * len(index)
                    train_loss = total / len(clips)
                    val_loss = val_f1 = None
                    if validation is not None:
                        val_loss, val_f1 = self._validate(validation, val_prepared, weight)
                    plateau.step(val_loss if validation is not None else train_loss)
                    history["train_loss"].append(train_loss)
                    history["val_loss"].append(val_loss)
                    history["val_f1"].append(val_f1)
                    history["lr"].append(optimiser.param_groups[0]["lr"])
                    if progress is not None:
                        progress(epoch, cfg.epochs, train_loss, val_loss, val_f1)
                    if validation is None:
                        continue
                    # Lower is better; macro-F1 moves in steps on a small validation part, so its ties go
                    # to the lower loss.
                    score = (-val_f1, val_loss) if cfg.monitor == "val_f1" else (val_loss,)
                    if best_score is None or _better(score, best_score):
                        best_score, best_epoch, stale = score, epoch, 0
                        best_state = copy.deepcopy(self.net.state_dict())
                    else:
                        stale += 1
                        if stale >= cfg.patience:
                            break
            finally:
                torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])
        if best_state is not None:
            self.net.load_state_dict(best_state)
        history["best_epoch"] = best_epoch if validation is not None else len(history["train_loss"])
        history["epochs"] = len(history["train_loss"])
        return history

    def _predict(self, X, exercise) -> np.ndarray:
        return self._p(self._prepare(X), exercise)

    @torch.no_grad()
    def _predict_samples(self, X, exercise, n, seed) -> np.ndarray:
        prepared = self._prepare(X)
        out = np.zeros((n, len(prepared)))
        self.net.eval()
        # Only the layers that drop (nn.Dropout and attention's own dropout) go to train mode: layer norms and
        # everything else score as usual.
        dropping = [m for m in self.net.modules() if isinstance(m, (nn.Dropout, nn.MultiheadAttention))]
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            try:
                for m in dropping:
                    m.train()
                for index, x, mask, e in self._sorted_batches(prepared, exercise):
                    for k in range(n):
                        out[k, index] = torch.softmax(self.net(x, mask, e)[0], 1)[:, 1].cpu().numpy()
            finally:
                self.net.eval()
        return out

    def _explain(self, x, exercise) -> dict[str, np.ndarray]:
        original = torch.from_numpy(x).to(self.device).requires_grad_(True)
        m = self._time_matrix(x.shape[0])
        # The frame averaging and resampling run inside autograd, so saliency lands on the clip's own frames.
        seen = original if m is None else torch.from_numpy(m.astype(np.float32)).to(self.device) @ original
        mask = torch.ones(1, seen.shape[0], dtype=torch.bool, device=self.device)
        self.net.eval()
        e = None if exercise is None else torch.from_numpy(exercise).to(self.device)
        logits, attention = self.net(seen.unsqueeze(0), mask, e)
        # The logit of p(incorrect) = softmax(logits)[1] is the difference of the two logits.
        (logits[0, 1] - logits[0, 0]).backward()
        saliency = (original.grad * original).abs().detach().cpu().numpy().astype(np.float64)
        attention = attention[0].detach().cpu().numpy().astype(np.float64)
        if m is not None:  # each original frame gets its share of the attention of the frames it fed
            attention = m.T @ attention
        return {"attention": attention / attention.sum(), "saliency": saliency}

    @torch.no_grad()
    def _predict_embed(self, X, exercise) -> tuple[np.ndarray, np.ndarray]:
        if not X:  # the width still matters to the caller: measure it on one blank frame
            blank = np.zeros((1, self.n_features), dtype=np.float32)
            width = self._predict_embed([blank], None if exercise is None else np.zeros(1, np.int64))[1].shape[1]
            return np.zeros(0), np.zeros((0, width))
        prepared = self._prepare(X)
        self.net.eval()
        p, out = np.zeros(len(prepared)), None
        for index, x, mask, e in self._sorted_batches(prepared, exercise):
            vectors = self.net.head.embed(self.net.encode(x, mask)[0], e)  # what the head's MLP decides from
            p[index] = torch.softmax(self.net.head.mlp(vectors), 1)[:, 1].cpu().numpy()
            if out is None:
                out = np.zeros((len(prepared), vectors.shape[1]))
            out[index] = vectors.cpu().numpy()
        return p, out

    def _tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.net.state_dict())

    def _set_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.net.load_state_dict({k: v.to(self.device) for k, v in tensors.items()})


def _check_heads(width: int, heads: int) -> None:
    if heads < 1 or width % heads:
        raise ValueError(f"{heads} attention heads do not divide the attention width {width}; change hidden or heads")


class BiLSTM(TorchModel):
    """Two bidirectional LSTMs + 4-head self-attention + mean/max pooling (model.nets.BiLSTMAttention)."""

    name = "bilstm"
    default_dropout = 0.3

    def _build(self) -> nn.Module:
        h = self.config.hidden
        _check_heads(2 * max(1, h // 2), self.config.heads)
        return BiLSTMAttention(self.n_features, self.n_exercises, hidden=(h, max(1, h // 2)),
                               heads=self.config.heads, dropout=self._dropout())


class Transformer(TorchModel):
    """Pre-norm Transformer encoder over projected frames (model.nets.TransformerClassifier)."""

    name = "transformer"
    default_dropout = 0.1

    def _build(self) -> nn.Module:
        _check_heads(self.config.hidden, self.config.heads)
        return TransformerClassifier(self.n_features, self.n_exercises, d_model=self.config.hidden,
                                     heads=self.config.heads, layers=self.config.layers,
                                     dropout=self._dropout(), max_len=self.config.max_frames)


MODELS: dict[str, type[Model]] = {"baseline": Baseline, "bilstm": BiLSTM, "transformer": Transformer}

# The other families live in modules of their own that subclass Model (above) and add themselves to MODELS
# when imported (imported by name, so either side may be imported first).
for _family in ("model.trees", "model.rocket"):
    importlib.import_module(_family)


def make_model(name: str, n_features: int, n_exercises: int = 0, config: TrainConfig | None = None) -> Model:
    """A new, unfitted model of registry `name` for clips of n_features columns and n_exercises exercises."""
    if name not in MODELS:
        raise UnknownModel(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    config = dataclasses.replace(config, model=name) if config is not None else TrainConfig(model=name)
    return MODELS[name](n_features, n_exercises, config)
