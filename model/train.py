"""Train: grouped evaluation and the final model of a run."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from curation import store
from curation.jobs import Cancelled, JobFailed
from curation.project import Project
from model import runs
from model.features import UNLABELLED, ClipSet, Scaler, augment, clip_features, load_clipset
from model.metrics import evaluate
from model.registry import TrainConfig, UnknownModel, make_model
from model.registry import Progress as EpochProgress
from model.splits import SplitError, fold_count, grouped_holdout, grouped_kfold, validation_split

MIN_LABELLED = 12  # below this a grouped K-fold has a handful of clips per test fold: numbers would be noise
# tests/benchmarks/bench_train.py: the best grouped out-of-fold macro-F1 on pose_trainer (0.61 against 0.55 at
# best for the networks) and 20x faster to fit (1.4 s against 25-29 s on 1,000 clips).
DEFAULT_MODEL = "baseline"

# Grouped 5-fold macro-F1 on pose_trainer (tests/benchmarks/bench_train.py, 3 seeds): two augmented copies
# lift the networks (BiLSTM 0.43 -> 0.54, Transformer 0.47 -> 0.55) and lower the baseline (0.61 -> 0.57).
AUGMENT_BY_MODEL = {"bilstm": 2, "transformer": 2, "baseline": 0}

Progress = Callable[[float, str], None]
IsCancelled = Callable[[], bool]

# Shares of the progress bar: loading and features first, saving last, the fits in between.
_LOAD, _SAVE = 0.05, 0.03


class TrainingRefused(ValueError):
    """The labelled clips cannot give an honest evaluation (too few, one class, too few videos or athletes)."""


class BadRunConfig(ValueError):
    """A run setting out of range (folds, holdout share, augmentation copies)."""


@dataclass(frozen=True)
class RunConfig:
    """One training run: the evaluation split and how each model is fitted."""

    model: str = DEFAULT_MODEL  # a key of model.registry.MODELS
    folds: int = 5  # stratified grouped K-fold (lowered when there are too few groups; the split text says so)
    holdout: float | None = None  # e.g. 0.2: one grouped holdout of this share instead of K-fold
    seed: int = 0  # splits, augmentation and network initialisation
    # Augmented copies (model.features.augment) of each training clip; None: the model's measured default
    # (AUGMENT_BY_MODEL: 2 for the networks, none for the baseline).
    augment: int | None = None
    validation_share: float = 0.15  # of the training groups, held out for early stopping
    train: TrainConfig = field(default_factory=TrainConfig)  # its `model` and `seed` are replaced by the above

    def __post_init__(self) -> None:
        try:  # the registry checks its own settings (and the model name) when a model is built: a tiny one here
            make_model(self.model, 1, 0, self.train_config())
        except UnknownModel:
            raise
        except ValueError as exc:
            raise BadRunConfig(f"bad training setting: {exc}") from None
        if self.folds < 2:
            raise BadRunConfig(f"folds must be at least 2, not {self.folds}")
        if self.holdout is not None and not 0 < self.holdout < 1:
            raise BadRunConfig(f"holdout must be a share between 0 and 1 (e.g. 0.2), not {self.holdout}")
        if self.augment is not None and self.augment < 0:
            raise BadRunConfig(f"augment must be 0 or more copies, not {self.augment}")
        if not 0 < self.validation_share < 1:
            raise BadRunConfig(f"validation_share must be between 0 and 1, not {self.validation_share}")

    def copies(self) -> int:
        """Augmented copies per training clip this run makes."""
        return AUGMENT_BY_MODEL.get(self.model, 0) if self.augment is None else self.augment

    def train_config(self) -> TrainConfig:
        """The TrainConfig each model of the run is built with."""
        return dataclasses.replace(self.train, model=self.model, seed=self.seed)

    def as_dict(self) -> dict:
        """Plain JSON form (meta.json)."""
        return {**dataclasses.asdict(self), "augment": self.copies(), "train": dataclasses.asdict(self.train_config())}

    @classmethod
    def from_params(cls, params: dict) -> "RunConfig":
        """From a job's or a form's plain dict: RunConfig fields, plus TrainConfig fields at the top level or
        under "train". Unknown keys are refused (a typo must not silently train something else)."""
        own = {f.name for f in dataclasses.fields(cls)} - {"train"}
        nested = {f.name for f in dataclasses.fields(TrainConfig)} - {"model", "seed"}
        train = dict(params.get("train") or {})
        kwargs = {}
        for key, value in params.items():
            if key == "train" or value is None and key != "holdout":
                continue
            if key in own:
                kwargs[key] = value
            elif key in nested:
                train[key] = value
            else:
                raise BadRunConfig(f"unknown training setting {key!r}")
        unknown = set(train) - nested
        if unknown:
            raise BadRunConfig(f"unknown training setting {sorted(unknown)[0]!r}")
        return cls(**kwargs, train=dataclasses.replace(TrainConfig(), **train))


# ---------------------------------------------------------------------------------------------- checks


def check_trainable(y: np.ndarray, groups: list[str], folds: int) -> int:
    """The number of folds the labelled clips allow (at most `folds`), or TrainingRefused saying what to label."""
    n = len(y)
    if n < MIN_LABELLED:
        raise TrainingRefused(
            f"training needs at least {MIN_LABELLED} labelled clips; this project has {n}: "
            f"label {MIN_LABELLED - n} more"
        )
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=2)
    if counts.min() == 0:
        have, missing = ("correct", "incorrect") if counts[1] == 0 else ("incorrect", "correct")
        raise TrainingRefused(f"all {n} labelled clips are {have}: label some {missing} clips too")
    try:
        return fold_count(y, groups, folds)
    except SplitError as exc:
        raise TrainingRefused(
            f"no honest grouped split is possible: {exc}; label clips of more videos or athletes"
        ) from None


def _group_kind(project: Project, clips: ClipSet) -> str:
    """What the groups of the split are, for the `split` text: video, group (athlete or source given on
    import), clip (nothing known: each clip its own group), or a mix."""
    rows = {c["id"]: c for c in store.list_clips(project)}
    kinds = []
    for clip_id in clips.clip_ids:
        row = rows.get(clip_id, {})
        kinds.append("group" if row.get("group_name") else "video" if row.get("video_id") else "clip")
    return "+".join(k for k in ("group", "video", "clip") if k in kinds)


# ---------------------------------------------------------------------------------------------- one fit

def fit_clips(clips: ClipSet, features: list[np.ndarray], train_idx: np.ndarray, config: RunConfig,
              exercises: list[str], on_epoch: EpochProgress | None = None, stream: int = 0) -> tuple[runs.Fitted, dict]:
    """A scaler and a fresh model fitted on the clips at train_idx only; returns them with a summary of the fit.

    The scaler sees the training clips only; the early-stopping validation part is drawn from the training
    groups (none when they are too few to spare one: then the model trains for its fixed number of epochs);
    config.copies() augmented copies of each fitting clip join the fitting part (never the validation part).
    features[i] = clip_features of clip i; exercises = the model's vocabulary; on_epoch as the registry's
    progress; stream tells the augmentation draws of different fits of one run apart.
    """
    train_idx = np.asarray(train_idx, dtype=np.int64)
    try:
        fit_idx, val_idx = validation_split(clips.labels, clips.groups, train_idx, config.validation_share,
                                            config.seed)
    except SplitError:
        fit_idx, val_idx = train_idx, np.zeros(0, dtype=np.int64)
    scaler = Scaler().fit([features[i] for i in train_idx])
    model = make_model(config.model, features[0].shape[1], _n_exercise_inputs(exercises), config.train_config())
    fitted = runs.Fitted(model, scaler, exercises)
    X = [features[i] for i in fit_idx]
    y = [int(clips.labels[i]) for i in fit_idx]
    ex = [clips.exercises[i] for i in fit_idx]
    rng = np.random.default_rng([config.seed, stream])
    for _ in range(config.copies()):
        for i in fit_idx:
            X.append(clip_features(augment(clips.landmarks[i], rng), clips.fps[i], clips.aspect[i]))
            y.append(int(clips.labels[i]))
            ex.append(clips.exercises[i])
    val_ex = [clips.exercises[i] for i in val_idx]
    has_val = len(val_idx) > 0
    history = model.fit(
        [scaler.transform(x) for x in X], np.asarray(y), fitted.exercise_ids(ex)[0],
        [scaler.transform(features[i]) for i in val_idx] if has_val else None,
        clips.labels[val_idx] if has_val else None,
        fitted.exercise_ids(val_ex)[0] if has_val else None,
        progress=on_epoch,
    )
    summary = {"n_train": int(len(fit_idx)), "n_augmented": int(len(X) - len(fit_idx)), "n_val": int(len(val_idx)),
               "epochs": history.get("epochs"), "best_epoch": history.get("best_epoch"),
               "seconds": history.get("seconds")}
    return fitted, summary


@dataclass
class _Context:
    """What every fit of a run shares: the clips, their features, the run folder and the progress plumbing."""

    clips: ClipSet  # labelled clips
    features: list[np.ndarray]  # clip_features of each labelled clip
    exercises: list[str]  # vocabulary of the run's models
    config: RunConfig
    folder: Path  # the run folder (progress.json goes there)
    n_fits: int
    progress: Progress | None
    cancelled: IsCancelled | None
    history: list[dict] = field(default_factory=list)
    fits_done: int = 0

    def report(self, fraction: float, message: str) -> None:
        if self.progress is not None:
            self.progress(min(1.0, fraction), message)

    def check_cancelled(self) -> None:
        if self.cancelled is not None and self.cancelled():
            raise Cancelled("training cancelled")

    def fit(self, train_idx: np.ndarray, fold: int | str) -> tuple[runs.Fitted, dict]:
        """fit_clips with the run's progress: each epoch goes to progress.json, the progress bar and a
        cancel check."""
        self.check_cancelled()
        label = f"fold {fold}" if isinstance(fold, int) else f"{fold} model"

        def on_epoch(epoch: int, epochs: int, train_loss: float, val_loss: float | None, val_f1: float | None):
            self.history.append({"fold": fold, "epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                                 "val_f1": val_f1})
            runs.write_progress(self.folder, self.history)
            self.report(_LOAD + (1 - _LOAD - _SAVE) * (self.fits_done + epoch / epochs) / self.n_fits,
                        f"{label}: epoch {epoch}/{epochs}")
            self.check_cancelled()

        fitted, summary = fit_clips(self.clips, self.features, train_idx, self.config, self.exercises, on_epoch,
                                    stream=self.fits_done)
        self.fits_done += 1
        return fitted, {"fold": fold, **summary}


def _n_exercise_inputs(exercises: list[str]) -> int:
    # One exercise: nothing for an exercise input to tell apart.
    return len(exercises) if len(exercises) > 1 else 0


# ---------------------------------------------------------------------------------------------- the run


def train_run(project: Project, config: RunConfig = RunConfig(), progress: Progress | None = None,
              cancelled: IsCancelled | None = None) -> dict:
    """Evaluate `config` on the project's labelled clips with a grouped split, fit the final model on all of
    them, score every active clip, and save it all as a run folder. Returns the run's metrics (with run_id).

    Evaluation: out-of-fold predictions of a stratified grouped K-fold (default), or one grouped holdout
    (config.holdout). Within each training part the scaler is fitted on the training clips only and the
    early-stopping validation part is drawn from the training groups only. Raises TrainingRefused (nothing
    written) when the labelled clips cannot be split honestly, Cancelled when cancelled() turns True (the
    unfinished run folder is removed).
    """
    start = time.perf_counter()
    every = load_clipset(project, labelled_only=False)
    labelled = np.flatnonzero(every.labels != UNLABELLED)
    clips = every.subset(labelled)
    n_folds = check_trainable(clips.labels, clips.groups, config.folds)
    try:
        if config.holdout is not None:
            splits = [grouped_holdout(clips.labels, clips.groups, config.holdout, config.seed)]
        else:
            splits = grouped_kfold(clips.labels, clips.groups, n_folds, config.seed)
    except SplitError as exc:
        raise TrainingRefused(f"no honest grouped split is possible: {exc}") from None
    if config.holdout is not None:
        split = f"grouped holdout {config.holdout:g}"
    else:
        split = f"grouped {len(splits)}-fold out-of-fold"
        if len(splits) < config.folds:
            split += f" ({config.folds} asked; too few groups per class)"
    split += f", groups={_group_kind(project, clips)}"

    all_features = [every.features(i) for i in range(len(every))]
    features = [all_features[i] for i in labelled]
    exercises = sorted(set(clips.exercises))
    folder = runs.new_run_dir(project)
    try:
        ctx = _Context(clips, features, exercises, config, folder, len(splits) + 1, progress, cancelled)
        ctx.report(_LOAD, f"{len(clips)} labelled clips, {split}")
        p_out = np.full(len(clips), np.nan)
        fold_of = np.zeros(len(clips), dtype=np.int64)
        committee, fold_summaries = [], []
        for k, (train_idx, test_idx) in enumerate(splits, start=1):
            fitted, summary = ctx.fit(train_idx, k)
            p_out[test_idx] = fitted.predict([features[i] for i in test_idx], [clips.exercises[i] for i in test_idx])
            fold_of[test_idx] = k
            fold_summaries.append({**summary, "n_test": int(len(test_idx))})
            committee.append(fitted.predict(all_features, every.exercises))

        tested = np.flatnonzero(fold_of > 0)
        metrics = evaluate(clips.labels[tested], p_out[tested], [clips.exercises[i] for i in tested],
                           groups=[clips.groups[i] for i in tested], criteria=[clips.criteria[i] for i in tested],
                           complexity=[clips.complexity[i] for i in tested])

        final, summary = ctx.fit(np.arange(len(clips)), "final")
        fold_summaries.append({**summary, "n_test": 0})
        timer = time.perf_counter()
        p_all = final.predict(all_features, every.exercises)
        predict_ms = (time.perf_counter() - timer) * 1000 / max(1, len(every))
        # Uncertainty = disagreement of the committee (the K fold models, or the holdout and final models):
        # the sd of their p(incorrect). The registry's models score a clip as a whole, so there is no
        # per-window vote to disagree; models fitted on different groups disagree where the data is thin.
        if len(committee) < 2:
            committee.append(p_all)
        uncertainty = np.std(np.stack(committee), axis=0)

        run_id = folder.name
        metrics.update({
            "run_id": run_id, "model": config.model, "split": split, "n_labelled": int(len(clips)),
            "fits": fold_summaries, "seed": config.seed,
            "train_seconds": time.perf_counter() - start, "predict_ms_per_clip": predict_ms,
        })
        ctx.report(1 - _SAVE, "saving the run")
        oof = [{"clip_id": clips.clip_ids[i], "exercise": clips.exercises[i], "group": clips.groups[i],
                "y": int(clips.labels[i]), "p_incorrect": float(p_out[i]), "fold": int(fold_of[i])} for i in tested]
        predictions = [{"clip_id": every.clip_ids[i], "p_incorrect": float(p_all[i]),
                        "uncertainty": float(uncertainty[i])} for i in range(len(every))]
        meta = runs.base_meta(config.as_dict(), clips.clip_ids, clips.exercises, clips.labels, clips.landmarks)
        runs.save_run(folder, final, meta, metrics, oof, predictions)
    finally:
        runs.discard_run(folder)  # a no-op once finished; else the failed or cancelled run's folder goes
    ctx.report(1.0, f"done: macro-F1 {metrics['macro_f1']:.3f}" if metrics["macro_f1"] is not None else "done")
    return metrics


HEADLINE = ("run_id", "model", "split", "n_clips", "n_groups", "accuracy", "balanced_accuracy", "macro_f1",
            "kappa", "ece", "train_seconds")


def train_job(project: Project, params: dict, progress: Progress | None = None,
              cancelled: IsCancelled | None = None) -> dict:
    """Background-worker runner of a "train" job (curation.jobs): params as RunConfig.from_params.

    Returns the run's headline metrics (the full ones are in the run folder); a refusal or a bad setting
    becomes JobFailed with its one-line message.
    """
    import torch

    # One thread: these small networks fit as fast on one core as on two (bench: BiLSTM 0.87 against 1.26 s
    # per epoch on 1,000 clips), and two threads per process fighting a second worker or the app for 2 cores
    # made epochs up to 20 times slower. The worker process is ours, so its torch setting is too.
    torch.set_num_threads(1)
    try:
        config = RunConfig.from_params(params)
        metrics = train_run(project, config, progress=progress, cancelled=cancelled)
    except (TrainingRefused, BadRunConfig, UnknownModel) as exc:
        raise JobFailed(str(exc)) from None
    return {k: metrics.get(k) for k in HEADLINE}
