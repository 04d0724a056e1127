"""Splits: no group on both sides, every clip tested once, both classes trained on, clear refusals."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from model.splits import SplitError, fold_count, grouped_holdout, grouped_kfold, validation_split


def random_layout(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Clips in groups of 1-6; a group mostly of one class (one athlete doing it right or wrong), sometimes
    mixed; classes often unbalanced."""
    n_groups = int(rng.integers(2, 40))
    share = rng.uniform(0.1, 0.9)
    y, groups = [], []
    for g in range(n_groups):
        size = int(rng.integers(1, 7))
        base = int(rng.random() < share)
        mixed = rng.random() < 0.2
        y += [int(rng.random() < 0.5) if mixed else base for _ in range(size)]
        groups += [f"g{g}"] * size
    order = rng.permutation(len(y))  # clips of a group need not be adjacent
    return np.asarray(y)[order], np.asarray(groups)[order]


def splittable(y: np.ndarray, groups: np.ndarray) -> bool:
    return all(len(set(groups[y == c])) >= 2 for c in (0, 1))


def assert_honest(train: np.ndarray, test: np.ndarray, y: np.ndarray, groups: np.ndarray) -> None:
    assert len(test) and len(train)
    assert not set(groups[train]) & set(groups[test]), "a group on both sides"
    assert set(y[train].tolist()) == {0, 1}, "a class missing from the training part"


def test_random_layouts_never_put_a_group_on_both_sides_and_test_every_clip_once():
    rng = np.random.default_rng(0)
    split, refused = 0, 0
    for seed in range(150):
        y, groups = random_layout(rng)
        if not splittable(y, groups):
            with pytest.raises(SplitError):
                grouped_kfold(y, groups, k=5, seed=seed)
            refused += 1
            continue
        folds = grouped_kfold(y, groups, k=5, seed=seed)
        assert len(folds) == fold_count(y, groups, 5)
        assert 2 <= len(folds) <= 5
        tested = np.concatenate([test for _, test in folds])
        assert np.array_equal(np.sort(tested), np.arange(len(y))), "each clip tested exactly once"
        for train, test in folds:
            assert_honest(train, test, y, groups)
            assert np.array_equal(np.union1d(train, test), np.arange(len(y)))
        split += 1
    assert split > 100 and refused > 0  # both paths were exercised


def test_random_layouts_give_honest_holdout_and_validation_parts():
    rng = np.random.default_rng(1)
    for seed in range(100):
        y, groups = random_layout(rng)
        if not splittable(y, groups):
            continue
        train, test = grouped_holdout(y, groups, test_size=0.2, seed=seed)
        assert_honest(train, test, y, groups)
        assert len(train) + len(test) == len(y)
        try:
            fit, val = validation_split(y, groups, train, share=0.15, seed=seed)
        except SplitError as exc:
            assert "validation" in str(exc)
            continue
        assert set(fit) | set(val) == set(train) and not set(fit) & set(val)
        assert_honest(fit, val, y, groups)
        assert not set(groups[val]) & set(groups[test])


def test_splits_are_reproducible_by_seed_and_vary_across_seeds():
    y = np.array([0, 1] * 30)
    groups = np.arange(60) // 3  # 20 groups, each with both classes
    a, b = grouped_kfold(y, groups, seed=3), grouped_kfold(y, groups, seed=3)
    assert all(np.array_equal(p[1], q[1]) for p, q in zip(a, b))
    assert any(not np.array_equal(a[0][1], grouped_kfold(y, groups, seed=s)[0][1]) for s in range(4, 10))


def test_mixed_groups_are_redrawn_until_every_training_part_holds_both_classes():
    # Group 1 holds both classes; the only honest 2-fold split is {0, 2} | {1}. StratifiedGroupKFold's
    # greedy balancing draws {0} | {1, 2} for about half of the seeds, leaving "incorrect" untrained.
    y = np.array([0, 0, 0, 0, 0, 0, 1, 1, 0, 1])
    groups = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 2])
    for seed in range(20):
        folds = grouped_kfold(y, groups, k=5, seed=seed)
        assert len(folds) == 2
        for train, test in folds:
            assert_honest(train, test, y, groups)


def test_many_groups_give_k_folds_of_balanced_classes_and_holdout_of_about_test_size():
    y = np.array([0] * 150 + [1] * 50)
    groups = np.arange(200) // 2  # 100 groups of two clips of one class
    folds = grouped_kfold(y, groups, k=5, seed=0)
    assert len(folds) == 5
    for _, test in folds:
        assert len(test) == 40 and y[test].sum() == 10  # 25 % incorrect in every fold, as overall
    train, test = grouped_holdout(y, groups, test_size=0.2)
    assert len(test) == 40
    train, test = grouped_holdout(y, groups, test_size=0.5)
    assert len(test) == 100


def test_fewer_groups_than_k_lowers_k_to_the_groups_there_are():
    y = np.array([0, 0, 1, 1, 0, 1])
    groups = np.array(["a", "a", "b", "b", "c", "c"])  # 3 groups, each class in 2 of them
    assert fold_count(y, groups, 5) == 2
    y = np.array([0, 1, 0, 1, 0, 1])
    groups = np.array(["a", "a", "b", "b", "c", "c"])  # every group holds both classes
    folds = grouped_kfold(y, groups, k=5)
    assert len(folds) == 3 and all(len(test) == 2 for _, test in folds)


def test_one_group_is_refused_with_the_reason():
    with pytest.raises(SplitError, match="at least 2 groups.*there are 1"):
        grouped_kfold([0, 1, 0, 1], ["v1"] * 4)


def test_one_class_is_refused_and_names_the_missing_class():
    with pytest.raises(SplitError, match=r"all of one class \(correct\): label some incorrect clips"):
        grouped_kfold([0, 0, 0, 0], ["a", "b", "c", "d"])
    with pytest.raises(SplitError, match="label some correct clips"):
        grouped_holdout([1, 1, 1], ["a", "b", "c"])


def test_a_class_within_a_single_group_is_refused_and_named():
    with pytest.raises(SplitError, match="'incorrect' appears in only 1 group"):
        grouped_kfold([0, 0, 0, 1, 1], ["a", "b", "c", "d", "d"])


def test_bad_arguments_are_refused():
    with pytest.raises(SplitError, match="same length"):
        grouped_kfold([0, 1, 0], ["a", "b"])
    with pytest.raises(SplitError, match="k >= 2"):
        grouped_kfold([0, 1, 0, 1], ["a", "b", "c", "d"], k=1)
    with pytest.raises(SplitError, match="test_size"):
        grouped_holdout([0, 1, 0, 1], ["a", "b", "c", "d"], test_size=1.0)


def test_a_training_part_too_small_for_validation_is_refused_clearly():
    y = np.array([0, 1, 0, 1, 0, 1])
    groups = np.array(["a", "b", "c", "d", "e", "f"])
    train, _ = grouped_holdout(y, groups, test_size=0.34)  # 3 folds: train holds 4 singleton groups
    fit, val = validation_split(y, groups, train, share=0.5)
    assert_honest(fit, val, y, groups)
    with pytest.raises(SplitError, match="no validation part.*'(in)?correct' appears in only 1 group"):
        validation_split(y, groups, np.array([0, 1, 2]), share=0.5)


def test_shared_videos_split_by_the_manifest_groups(videos):
    """The real squat and push-up clips, grouped by person or scene: the incorrect squats all show one woman,
    so squats alone cannot be split honestly, while all labelled videos give 4 folds (4 groups hold
    incorrect clips)."""
    with (videos / "manifest.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["label"]]
    y = np.array([r["label"] == "incorrect" for r in rows], dtype=int)
    groups = np.array([r["group"] for r in rows])
    incorrect_groups = len(set(groups[y == 1]))
    folds = grouped_kfold(y, groups, k=5)
    assert len(folds) == incorrect_groups == 4
    for train, test in folds:
        assert_honest(train, test, y, groups)
    kaiakol_squat = np.array([r["exercise"] == "squat" and r["video"].startswith("kaiakol") for r in rows])
    with pytest.raises(SplitError, match="'incorrect' appears in only 1 group"):
        grouped_kfold(y[kaiakol_squat], groups[kaiakol_squat])
