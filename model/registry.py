"""Registry: every model behind one interface (fit, predict_proba, explain, state/load)."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
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
from torch import nn
from torch.nn import functional as F

from model.nets import BiLSTMAttention, TransformerClassifier, focal_loss

# progress(epoch, n_epochs, train_loss, val_loss, val_f1); the last two are None without a validation part.
Progress = Callable[[int, int, float, float | None, float | None], None]


class UnknownModel(ValueError):
    """A model name that is not in the registry."""


class BadTrainingData(ValueError):
    """Training data a model cannot learn from (empty, one class only, wrong shapes)."""


@dataclass(frozen=True)
class TrainConfig:
    """How a model is built and fitted. Every field is a plain number or string, so asdict() is JSON."""

    model: str = "baseline"  # a key of MODELS
    epochs: int = 40  # at most; early stopping usually ends sooner when a validation part is given
    batch_size: int = 32
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
    input: str = "whole"  # "whole": one padded, masked sequence per clip
    dropout: float = -1.0  # < 0: the network's own default (0.3 BiLSTM, 0.1 Transformer)
    hidden: int = 64  # BiLSTM: first layer units per direction (the second has half); Transformer: d_model
    heads: int = 4
    layers: int = 2  # Transformer encoder layers
    baseline_c: float = 1.0  # baseline: inverse L2 strength of the logistic regression
    device: str = "auto"  # "auto" (CUDA when present), "cpu" or "cuda"
    predict_batch: int = 256  # clips per forward pass when scoring
    # torch CPU threads while fitting and scoring (0: leave torch's setting). These small sequence ops gain
    # nothing from a second thread, and when other processes busy the cores, OpenMP's spin-waiting made each
    # training step over 100x slower with 2 threads (15 ms -> 1.7 s measured) than with 1.
    threads: int = 1


def _check_config(config: TrainConfig) -> None:
    if config.loss not in ("focal", "weighted_ce"):
        raise ValueError(f"loss must be 'focal' or 'weighted_ce', not {config.loss!r}")
    if config.monitor not in ("val_loss", "val_f1"):
        raise ValueError(f"monitor must be 'val_loss' or 'val_f1', not {config.monitor!r}")
    if config.input != "whole":
        raise ValueError(f"input {config.input!r} is not supported; use 'whole'")
    if min(config.max_frames, config.frame_step, config.epochs, config.batch_size) < 1:
        raise ValueError("max_frames, frame_step, epochs and batch_size must be at least 1")


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


class Model(ABC):
    """A clip classifier: fit on (T, F) sequences, give p(incorrect), explain one clip, save and load."""

    name: ClassVar[str]

    def __init__(self, n_features: int, n_exercises: int = 0, config: TrainConfig | None = None):
        self.n_features = int(n_features)
        self.n_exercises = int(n_exercises)
        self.config = config if config is not None else TrainConfig(model=self.name)
        _check_config(self.config)

    @abstractmethod
    def fit(self, X: Sequence[np.ndarray], y: Sequence[int], exercise: Sequence[int] | None = None,
            X_val: Sequence[np.ndarray] | None = None, y_val: Sequence[int] | None = None,
            exercise_val: Sequence[int] | None = None, progress: Progress | None = None) -> dict:
        """Fit on clips X (list of (T_i, F)) with labels y (0 correct, 1 incorrect); returns the history."""

    @abstractmethod
    def predict_proba(self, X: Sequence[np.ndarray], exercise: Sequence[int] | None = None) -> np.ndarray:
        """p(incorrect) per clip, float (N,) in [0, 1]."""

    @abstractmethod
    def explain(self, x: np.ndarray, exercise: int | None = None) -> dict[str, np.ndarray]:
        """For one clip (T, F): attention (T,) summing to 1 and saliency (T, F) >= 0."""

    @abstractmethod
    def embed(self, X: Sequence[np.ndarray], exercise: Sequence[int] | None = None) -> np.ndarray:
        """One vector per clip (N, D), the representation the classifier decides from (for diversity)."""

    @abstractmethod
    def _tensors(self) -> dict[str, torch.Tensor]:
        """The fitted parameters as named tensors."""

    @abstractmethod
    def _set_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore the fitted parameters from _tensors()."""

    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild the fitted model: config (JSON-able) and tensors.

        Only dicts, strings, numbers and tensors, so torch.save / torch.load(weights_only=True) round-trip it.
        """
        return {
            "model": self.name,
            "n_features": self.n_features,
            "n_exercises": self.n_exercises,
            "config": dataclasses.asdict(self.config),
            "tensors": {k: v.detach().cpu().clone() for k, v in self._tensors().items()},
        }

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
        config = TrainConfig(**{k: v for k, v in state["config"].items() if k in known})
        model = target(state["n_features"], state["n_exercises"], config)
        model._set_tensors(state["tensors"])
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

    def _design(self, X: Sequence[np.ndarray], exercise: Sequence[int] | None) -> np.ndarray:
        clips = _as_clips(X, self.n_features)
        stats = np.stack([clip_statistics(x) for x in clips]) if clips else np.zeros((0, 5 * self.n_features))
        e = _as_exercise(exercise, len(clips), self.n_exercises)
        if e is not None:
            stats = np.concatenate([stats, np.eye(self.n_exercises)[e]], axis=1)
        return stats

    def _standardised(self, X: Sequence[np.ndarray], exercise: Sequence[int] | None) -> np.ndarray:
        if self.coef_ is None:
            raise RuntimeError("fit the model first")
        return (self._design(X, exercise) - self.mean_) / self.scale_

    def fit(self, X, y, exercise=None, X_val=None, y_val=None, exercise_val=None, progress=None) -> dict:
        start = time.perf_counter()
        design = self._design(X, exercise)
        labels = _as_labels(y, len(design))
        _check_both_classes(labels)
        self.mean_ = design.mean(0)
        scale = design.std(0)
        self.scale_ = np.where(scale > 1e-12, scale, 1.0)  # constant columns stay 0 instead of dividing by 0
        z = (design - self.mean_) / self.scale_
        lr = LogisticRegression(C=self.config.baseline_c, class_weight="balanced", max_iter=2000)
        lr.fit(z, labels)
        self.coef_, self.intercept_ = lr.coef_[0].copy(), float(lr.intercept_[0])
        train_loss = _log_loss(labels, self.predict_proba(X, exercise), class_weights(labels))
        val_loss = val_f1 = None
        if _has_validation(X_val, y_val):
            yv = _as_labels(y_val, len(X_val))
            pv = self.predict_proba(X_val, exercise_val)
            val_loss, val_f1 = _log_loss(yv, pv, class_weights(labels)), macro_f1(yv, pv)
        if progress is not None:
            progress(1, 1, train_loss, val_loss, val_f1)
        return {"train_loss": [train_loss], "val_loss": [val_loss], "val_f1": [val_f1],
                "lr": [None], "best_epoch": 1, "epochs": 1,
                "seconds": time.perf_counter() - start}

    def predict_proba(self, X, exercise=None) -> np.ndarray:
        if len(X) == 0:
            return np.zeros(0)
        return expit(self._standardised(X, exercise) @ self.coef_ + self.intercept_)

    def explain(self, x, exercise=None) -> dict[str, np.ndarray]:
        clip = _as_clips([x], self.n_features)[0]
        z = self._standardised([clip], None if exercise is None else [exercise])[0]
        # Gradient x input of the logit in the standardised statistic space, summed over a feature's statistics:
        # the same quantity as the networks' saliency, here constant over time.
        contribution = np.abs(self.coef_ * z)[: len(STATISTICS) * self.n_features]
        per_feature = contribution.reshape(len(STATISTICS), self.n_features).sum(0)
        t = clip.shape[0]
        return {"attention": np.full(t, 1.0 / t), "saliency": np.tile(per_feature, (t, 1))}

    def embed(self, X, exercise=None) -> np.ndarray:
        return self._standardised(X, exercise)

    def _tensors(self) -> dict[str, torch.Tensor]:
        if self.coef_ is None:
            raise RuntimeError("fit the model first")
        return {name: torch.as_tensor(np.asarray(value, dtype=np.float64))
                for name, value in (("mean", self.mean_), ("scale", self.scale_), ("coef", self.coef_),
                                    ("intercept", self.intercept_))}

    def _set_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.mean_, self.scale_, self.coef_ = (tensors[k].numpy().copy() for k in ("mean", "scale", "coef"))
        self.intercept_ = float(tensors["intercept"])


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


@contextlib.contextmanager
def _threads(n: int) -> Iterator[None]:
    """torch's CPU thread count set to n (n > 0) for the duration, then restored."""
    previous = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _with_threads(method: Callable) -> Callable:
    """Run a TorchModel method under the model's configured thread count."""

    @functools.wraps(method)
    def wrapper(self: TorchModel, *args, **kwargs):
        with _threads(self.config.threads):
            return method(self, *args, **kwargs)

    return wrapper


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

    def __init__(self, n_features: int, n_exercises: int = 0, config: TrainConfig | None = None):
        super().__init__(n_features, n_exercises, config)
        self.device = _device(self.config.device)
        with torch.random.fork_rng():
            torch.manual_seed(self.config.seed)
            self.net = self._build().to(self.device)
        self.fitted = False

    @abstractmethod
    def _build(self) -> nn.Module:
        """The untrained network for this model's sizes and config."""

    def _dropout(self, default: float) -> float:
        return default if self.config.dropout < 0 else self.config.dropout

    # -- batching --

    def _time_matrix(self, t: int) -> np.ndarray | None:
        return time_matrix(t, self.config.frame_step, self.config.max_frames)

    def _prepare(self, X, exercise) -> tuple[list[np.ndarray], np.ndarray | None]:
        clips = []
        for x in _as_clips(X, self.n_features):
            m = self._time_matrix(x.shape[0])
            clips.append(x if m is None else (m @ x).astype(np.float32))
        return clips, _as_exercise(exercise, len(clips), self.n_exercises)

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
    def _evaluate(self, clips, exercise, y: np.ndarray, weight: torch.Tensor) -> tuple[float, np.ndarray]:
        """Mean loss (over clips, as in training) and p(incorrect) of prepared clips."""
        logits = self._logits(clips, exercise)
        loss = self._loss(logits, torch.from_numpy(y).to(self.device), weight)
        return float(loss), torch.softmax(logits, 1)[:, 1].cpu().numpy().astype(np.float64)

    def _sorted_batches(self, clips: list[np.ndarray], exercise: np.ndarray | None
                        ) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor, torch.Tensor | None]]:
        """Scoring batches (clip indices, x, mask, exercise) with similar lengths together: less padding, same
        results (the masks make padding irrelevant)."""
        order = np.argsort([c.shape[0] for c in clips], kind="stable")
        for start in range(0, len(clips), self.config.predict_batch):
            index = order[start: start + self.config.predict_batch]
            yield (index, *self._batch(clips, exercise, index))

    @torch.no_grad()
    def _logits(self, clips, exercise) -> torch.Tensor:
        self.net.eval()
        out = torch.zeros(len(clips), 2, device=self.device)
        for index, x, mask, e in self._sorted_batches(clips, exercise):
            out[torch.from_numpy(index).to(self.device)] = self.net(x, mask, e)[0]
        return out

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise RuntimeError("fit the model first (or load a fitted state)")

    # -- the interface --

    @_with_threads
    def fit(self, X, y, exercise=None, X_val=None, y_val=None, exercise_val=None, progress=None) -> dict:
        start = time.perf_counter()
        cfg = self.config
        clips, ex = self._prepare(X, exercise)
        labels = _as_labels(y, len(clips))
        _check_both_classes(labels)
        has_val = _has_validation(X_val, y_val)
        if has_val:
            val_clips, val_ex = self._prepare(X_val, exercise_val)
            val_labels = _as_labels(y_val, len(val_clips))
        weight = torch.tensor(class_weights(labels), dtype=torch.float32, device=self.device)
        y_t = torch.from_numpy(labels).to(self.device)

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
                    for begin in range(0, len(clips), cfg.batch_size):
                        index = order[begin: begin + cfg.batch_size]
                        x, mask, e = self._batch(clips, ex, index)
                        loss = self._loss(self.net(x, mask, e)[0], y_t[torch.from_numpy(index).to(self.device)],
                                          weight)
                        optimiser.zero_grad(set_to_none=True)
                        loss.backward()
                        nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip)
                        optimiser.step()
                        total += loss.item() * len(index)
                    train_loss = total / len(clips)
                    val_loss = val_f1 = None
                    if has_val:
                        val_loss, p = self._evaluate(val_clips, val_ex, val_labels, weight)
                        val_f1 = macro_f1(val_labels, p)
                    plateau.step(val_loss if has_val else train_loss)
                    history["train_loss"].append(train_loss)
                    history["val_loss"].append(val_loss)
                    history["val_f1"].append(val_f1)
                    history["lr"].append(optimiser.param_groups[0]["lr"])
                    if progress is not None:
                        progress(epoch, cfg.epochs, train_loss, val_loss, val_f1)
                    if not has_val:
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
        self.fitted = True
        history["best_epoch"] = best_epoch if has_val else len(history["train_loss"])
        history["epochs"] = len(history["train_loss"])
        history["seconds"] = time.perf_counter() - start
        return history

    @_with_threads
    def predict_proba(self, X, exercise=None) -> np.ndarray:
        self._check_fitted()
        clips, ex = self._prepare(X, exercise)
        if not clips:
            return np.zeros(0)
        return torch.softmax(self._logits(clips, ex), 1)[:, 1].cpu().numpy().astype(np.float64)

    @_with_threads
    def explain(self, x, exercise=None) -> dict[str, np.ndarray]:
        self._check_fitted()
        clip = _as_clips([x], self.n_features)[0]
        e = _as_exercise(None if exercise is None else [exercise], 1, self.n_exercises)
        original = torch.from_numpy(clip).to(self.device).requires_grad_(True)
        m = self._time_matrix(clip.shape[0])
        # The frame averaging and resampling run inside autograd, so saliency lands on the clip's own frames.
        seen = original if m is None else torch.from_numpy(m.astype(np.float32)).to(self.device) @ original
        mask = torch.ones(1, seen.shape[0], dtype=torch.bool, device=self.device)
        self.net.eval()
        e = None if e is None else torch.from_numpy(e).to(self.device)
        logits, attention = self.net(seen.unsqueeze(0), mask, e)
        # The logit of p(incorrect) = softmax(logits)[1] is the difference of the two logits.
        (logits[0, 1] - logits[0, 0]).backward()
        saliency = (original.grad * original).abs().detach().cpu().numpy().astype(np.float64)
        attention = attention[0].detach().cpu().numpy().astype(np.float64)
        if m is not None:  # each original frame gets its share of the attention of the frames it fed
            attention = m.T @ attention
        return {"attention": attention / attention.sum(), "saliency": saliency}

    @_with_threads
    @torch.no_grad()
    def embed(self, X, exercise=None) -> np.ndarray:
        self._check_fitted()
        clips, ex = self._prepare(X, exercise)
        self.net.eval()
        parts = [(index, self.net.head.embed(self.net.encode(x, mask)[0], e).cpu().numpy())
                 for index, x, mask, e in self._sorted_batches(clips, ex)]
        out = np.zeros((len(clips), parts[0][1].shape[1] if parts else 0))
        for index, vectors in parts:
            out[index] = vectors
        return out

    def _tensors(self) -> dict[str, torch.Tensor]:
        return dict(self.net.state_dict())

    def _set_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.net.load_state_dict({k: v.to(self.device) for k, v in tensors.items()})
        self.fitted = True


def _check_heads(width: int, heads: int) -> None:
    if heads < 1 or width % heads:
        raise ValueError(f"{heads} attention heads do not divide the attention width {width}; change hidden or heads")


class BiLSTM(TorchModel):
    """Two bidirectional LSTMs + 4-head self-attention + mean/max pooling (model.nets.BiLSTMAttention)."""

    name = "bilstm"

    def _build(self) -> nn.Module:
        h = self.config.hidden
        _check_heads(2 * max(1, h // 2), self.config.heads)
        return BiLSTMAttention(self.n_features, self.n_exercises, hidden=(h, max(1, h // 2)),
                               heads=self.config.heads, dropout=self._dropout(0.3))


class Transformer(TorchModel):
    """Pre-norm Transformer encoder over projected frames (model.nets.TransformerClassifier)."""

    name = "transformer"

    def _build(self) -> nn.Module:
        _check_heads(self.config.hidden, self.config.heads)
        return TransformerClassifier(self.n_features, self.n_exercises, d_model=self.config.hidden,
                                     heads=self.config.heads, layers=self.config.layers,
                                     dropout=self._dropout(0.1), max_len=self.config.max_frames)


MODELS: dict[str, type[Model]] = {"baseline": Baseline, "bilstm": BiLSTM, "transformer": Transformer}


def make_model(name: str, n_features: int, n_exercises: int = 0, config: TrainConfig | None = None) -> Model:
    """A new, unfitted model of registry `name` for clips of n_features columns and n_exercises exercises."""
    if name not in MODELS:
        raise UnknownModel(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    config = dataclasses.replace(config, model=name) if config is not None else TrainConfig(model=name)
    return MODELS[name](n_features, n_exercises, config)
