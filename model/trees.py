"""Trees: random forest and extra-trees on clip statistics, kept as plain arrays (a state without pickle)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.tree import DecisionTreeClassifier

from model.registry import MODELS, Baseline, _log_loss, class_weights, occlusion_saliency

# The arrays of a fitted ensemble, every tree's nodes one after the other. left/right: child node (global
# index), -1 at a leaf; feature/threshold: the split (x[feature] <= threshold goes left); leaf_p: the tree's
# p(incorrect) at that node (used at leaves); roots: each tree's first node.
TREE_ARRAYS = ("left", "right", "feature", "threshold", "leaf_p", "roots")


def pack_trees(trees: list[DecisionTreeClassifier]) -> dict[str, np.ndarray]:
    """The fitted sklearn trees of an ensemble as the TREE_ARRAYS (sklearn keeps them in Cython objects that
    only pickle; these arrays save as tensors and load with torch.load(weights_only=True))."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in TREE_ARRAYS}
    offset = 0
    for tree in trees:
        t = tree.tree_
        leaf = t.children_left < 0
        parts["left"].append(np.where(leaf, -1, t.children_left + offset))
        parts["right"].append(np.where(leaf, -1, t.children_right + offset))
        parts["feature"].append(np.where(leaf, 0, t.feature))
        parts["threshold"].append(t.threshold)
        value = t.value[:, 0, :].astype(np.float64)
        parts["leaf_p"].append(value[:, 1] / np.maximum(value.sum(1), 1e-300))
        parts["roots"].append(np.array([offset]))
        offset += t.node_count
    return {k: np.concatenate(v) for k, v in parts.items()}


def tree_p(arrays: dict[str, np.ndarray], design: np.ndarray) -> np.ndarray:
    """Mean p(incorrect) over the trees for each row of design (N, D): sklearn's predict_proba[:, 1].

    All (tree, row) pairs descend together, one level per step; a pair that reached its leaf drops out of
    the steps (trees are uneven: most pairs stop well above the deepest leaf). Rows are compared in float32
    as sklearn does.
    """
    x = np.asarray(design, dtype=np.float32)
    n = x.shape[0]
    if n == 0:
        return np.zeros(0)
    left, right, feature, threshold = (arrays[k] for k in ("left", "right", "feature", "threshold"))
    roots = arrays["roots"]
    node = np.repeat(roots, n)  # pair (tree t, row r) at t * n + r
    row = np.tile(np.arange(n), len(roots))
    active = np.arange(node.size)
    while active.size:
        at = node[active]
        child = left[at]
        inner = child >= 0
        active, at, child = active[inner], at[inner], child[inner]
        go_left = x[row[active], feature[at]] <= threshold[at]
        node[active] = np.where(go_left, child, right[at])
    return arrays["leaf_p"][node].reshape(len(roots), n).mean(axis=0)


class TreeEnsemble(Baseline):
    """Clip statistics (the baseline's: mean, sd, min, max, range per feature, and the exercise) -> a
    class-balanced ensemble of decision trees. Statistics are standardised only for the embedding."""

    estimator: ClassVar[type]

    def __init__(self, n_features: int, n_exercises: int = 0, config=None):
        super().__init__(n_features, n_exercises, config)
        self.trees_: dict[str, np.ndarray] | None = None

    def _fit(self, X, y, exercise, validation, progress, batch_size) -> dict:
        design = self._design(X, exercise)
        self.mean_ = design.mean(0)
        scale = design.std(0)
        self.scale_ = np.where(scale > 1e-12, scale, 1.0)
        cfg = self.config
        # "balanced" weights from the whole training part ("balanced_subsample", per bootstrap, cost a third of
        # the forest's fit time on 600 clips in sklearn's per-tree bookkeeping).
        ensemble = self.estimator(n_estimators=cfg.trees, min_samples_leaf=cfg.tree_min_leaf, max_features="sqrt",
                                  class_weight="balanced", random_state=cfg.seed, n_jobs=1)
        ensemble.fit(design.astype(np.float32), y)
        self.trees_ = pack_trees(ensemble.estimators_)
        train_loss = _log_loss(y, tree_p(self.trees_, design), class_weights(y))
        return self._single_pass_history(train_loss, y, validation, progress)

    def _predict(self, X, exercise) -> np.ndarray:
        if not X:
            return np.zeros(0)
        return tree_p(self.trees_, self._design(X, exercise))

    def _explain(self, x, exercise) -> dict[str, np.ndarray]:
        return occlusion_saliency(self, x, exercise)

    def _predict_embed(self, X, exercise) -> tuple[np.ndarray, np.ndarray]:
        design = self._design(X, exercise)
        return tree_p(self.trees_, design), (design - self.mean_) / self.scale_

    def _tensors(self) -> dict[str, torch.Tensor]:
        self._check_fitted()
        out = {"mean": torch.as_tensor(self.mean_), "scale": torch.as_tensor(self.scale_)}
        out.update({f"tree_{k}": torch.as_tensor(v) for k, v in self.trees_.items()})
        return out

    def _set_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.mean_, self.scale_ = tensors["mean"].numpy().copy(), tensors["scale"].numpy().copy()
        self.trees_ = {k: tensors[f"tree_{k}"].numpy().copy() for k in TREE_ARRAYS}


class Forest(TreeEnsemble):
    """Random forest (bootstrap samples, best split among sqrt(D) statistics) on clip statistics."""

    name = "forest"
    estimator = RandomForestClassifier


class ExtraTrees(TreeEnsemble):
    """Extremely randomised trees (random split points, whole training part) on clip statistics: about
    three times faster to fit than the forest, smoother probabilities."""

    name = "extra_trees"
    estimator = ExtraTreesClassifier


MODELS.update({Forest.name: Forest, ExtraTrees.name: ExtraTrees})
