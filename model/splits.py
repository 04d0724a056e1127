"""Splits: grouped splits only; never one group on both sides."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from model.features import LABELS

# StratifiedGroupKFold balances classes greedily and can, with few groups, leave a class out of a training
# part; the split is then redrawn with the next seed, this many times at most, before giving up.
MAX_TRIES = 50


class SplitError(ValueError):
    """The labelled clips cannot be split honestly (too few groups, one class only), with what is missing."""


Fold = tuple[np.ndarray, np.ndarray]


def _class_name(c: int) -> str:
    return LABELS[c] if 0 <= c < len(LABELS) else str(c)


def _check(y: Sequence[int], groups: Sequence) -> tuple[np.ndarray, np.ndarray]:
    y_arr = np.asarray(y)
    g_arr = np.asarray([str(g) for g in groups])  # ids of any type, one comparable kind
    if y_arr.ndim != 1 or y_arr.shape != g_arr.shape:
        raise SplitError(f"labels ({y_arr.shape}) and groups ({g_arr.shape}) must be 1-D and of the same length")
    n_groups = len(np.unique(g_arr))
    if n_groups < 2:
        raise SplitError(
            f"a grouped split needs clips from at least 2 groups (videos or athletes); there are {n_groups}"
        )
    classes = np.unique(y_arr)
    if len(classes) < 2:
        present = ", ".join(_class_name(int(c)) for c in classes) or "none"
        missing = ", ".join(n for i, n in enumerate(LABELS) if i not in set(classes.tolist()))
        raise SplitError(f"the labelled clips are all of one class ({present}): label some {missing} clips too")
    return y_arr, g_arr


def _groups_per_class(y: np.ndarray, groups: np.ndarray) -> dict[int, int]:
    return {int(c): len(np.unique(groups[y == c])) for c in np.unique(y)}


def fold_count(y: Sequence[int], groups: Sequence, k: int = 5) -> int:
    """The number of folds grouped_kfold will use for k requested: at most the number of groups, and at
    most the number of groups holding each class (so every class can reach every training part)."""
    y_arr, g_arr = _check(y, groups)
    per_class = _groups_per_class(y_arr, g_arr)
    scarce = min(per_class, key=per_class.get)
    if per_class[scarce] < 2:
        raise SplitError(
            f"class {_class_name(scarce)!r} appears in only {per_class[scarce]} group (one video or athlete): "
            f"a grouped split needs {_class_name(scarce)} clips from at least 2 groups"
        )
    if k < 2:
        raise SplitError(f"K-fold needs k >= 2, got {k}")
    return int(min(k, len(np.unique(g_arr)), per_class[scarce]))


def _valid(folds: list[Fold], y: np.ndarray) -> bool:
    classes = set(np.unique(y).tolist())
    return all(len(test) and set(np.unique(y[train]).tolist()) == classes for train, test in folds)


def grouped_kfold(y: Sequence[int], groups: Sequence, k: int = 5, seed: int = 0) -> list[Fold]:
    """Stratified grouped K-fold: a list of (train indices, test indices), each clip tested exactly once.

    No group is on both sides of any fold, and every training part holds every class. k is lowered to
    fold_count(y, groups, k) when there are too few groups (len(result) tells the k used). Raises SplitError
    when fewer than 2 groups or a class within a single group.
    """
    y_arr, g_arr = _check(y, groups)
    n_splits = fold_count(y_arr, g_arr, k)
    x = np.zeros((len(y_arr), 1))
    for attempt in range(MAX_TRIES):
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed + attempt)
        with warnings.catch_warnings():
            # "The least populated class has only N members": expected with few clips, the checks above and
            # below are the ones that matter.
            warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
            folds = [(np.sort(tr), np.sort(te)) for tr, te in splitter.split(x, y_arr, g_arr)]
        if _valid(folds, y_arr):
            return folds
    per_class = _groups_per_class(y_arr, g_arr)
    raise SplitError(
        f"no {n_splits}-fold grouped split keeps every class in every training part "
        f"(groups per class: {', '.join(f'{_class_name(c)} {n}' for c, n in per_class.items())}); use fewer folds"
    )


def grouped_holdout(y: Sequence[int], groups: Sequence, test_size: float = 0.2, seed: int = 0) -> Fold:
    """One grouped, class-balanced (train indices, test indices) split with about test_size of the clips
    tested: the first fold of grouped_kfold with round(1 / test_size) folds (fewer with few groups, which
    makes the test part larger). The test part is never empty and the training part holds every class."""
    if not 0 < test_size < 1:
        raise SplitError(f"test_size must be between 0 and 1, got {test_size}")
    return grouped_kfold(y, groups, k=max(2, int(round(1 / test_size))), seed=seed)[0]


def validation_split(y: Sequence[int], groups: Sequence, train_idx: np.ndarray, share: float = 0.15,
                     seed: int = 0) -> Fold:
    """Split a training part into (fit indices, validation indices) for early stopping, by group.

    Drawn from the training groups only, so the test part never steers training. Indices refer to y and
    groups (not to train_idx). Raises SplitError when the training part is too small to spare a validation
    group (the caller may then train for a fixed number of epochs).
    """
    train = np.asarray(train_idx, dtype=np.int64)
    y_arr, g_arr = np.asarray(y), np.asarray([str(g) for g in groups])
    try:
        fit, val = grouped_holdout(y_arr[train], g_arr[train], test_size=share, seed=seed)
    except SplitError as exc:
        raise SplitError(f"no validation part can be drawn from the training groups: {exc}") from None
    return np.sort(train[fit]), np.sort(train[val])
