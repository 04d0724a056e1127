"""Rocket: MiniRocket features (sktime) of the whole clip -> balanced logistic regression."""

from __future__ import annotations

import numpy as np
import torch

from model.features import resample
from model.registry import MODELS, Baseline, occlusion_saliency

# MiniRocket's convolutions need at least 9 frames; clips are resampled to config.rocket_length anyway.
MIN_LENGTH = 9
# sktime.transformations.rocket.MiniRocketMultivariate keeps its fitted parameters as this tuple of arrays;
# its numba kernels are called directly (below) so that a model loaded from saved tensors transforms
# exactly as the fitted one, without sktime's estimator wrapper (which only pickles).
PARAMETERS = ("channels_per_combination", "channel_indices", "dilations", "features_per_dilation", "biases")
DTYPES = (np.int32, np.int32, np.int32, np.int32, np.float32)


def _kernels():
    # Imported on first use: the first import in a fresh environment compiles the numba kernels (~30 s,
    # then cached on disk), which nobody training a baseline should wait for.
    from sktime.transformations.rocket._minirocket_multi_numba import _fit_multi, _transform_multi

    return _fit_multi, _transform_multi


class MiniRocket(Baseline):
    """MiniRocket (Dempster et al. 2021, sktime's multivariate version): thousands of fixed dilated
    convolutions over the resampled clip (config.rocket_length frames, every feature a channel), each giving
    the share of frames where it exceeds a bias fitted on the training clips; then the baseline's
    standardised, class-balanced logistic regression (C = config.baseline_c) on those shares.

    NaN was set to 0 (the mean) before; the mask columns of clip_features tell missing from average.
    Deterministic: the kernels' channels and biases come from config.seed.
    """

    name = "minirocket"

    def __init__(self, n_features: int, n_exercises: int = 0, config=None):
        super().__init__(n_features, n_exercises, config)
        self.parameters_: tuple[np.ndarray, ...] | None = None

    def _series(self, clips: list[np.ndarray]) -> np.ndarray:
        """(N, F, L) float32: each clip resampled to L = max(rocket_length, MIN_LENGTH) frames, time last."""
        length = max(self.config.rocket_length, MIN_LENGTH)
        return np.stack([resample(x, length).T for x in clips]).astype(np.float32)

    def _design(self, clips: list[np.ndarray], e: np.ndarray | None) -> np.ndarray:
        if not clips:
            width = int(self.parameters_[4].shape[0])
            return np.zeros((0, width + (self.n_exercises if self.n_exercises else 0)))
        _, transform = _kernels()
        import numba  # loaded with the kernels

        previous = numba.get_num_threads()
        numba.set_num_threads(max(1, min(self.config.threads or previous, numba.config.NUMBA_NUM_THREADS)))
        try:
            shares = transform(self._series(clips), self.parameters_).astype(np.float64)
        finally:
            numba.set_num_threads(previous)
        if self.n_exercises:
            shares = np.concatenate([shares, np.eye(self.n_exercises)[e]], axis=1)
        return shares

    def _fit(self, X, y, exercise, validation, progress, batch_size) -> dict:
        fit, _ = _kernels()
        # sktime seeds numpy's global generator: the caller's draws must not depend on whether a MiniRocket
        # was fitted in between.
        state = np.random.get_state()
        try:
            self.parameters_ = tuple(fit(self._series(X), self.config.rocket_kernels, 32, np.int32(self.config.seed)))
        finally:
            np.random.set_state(state)
        return super()._fit(X, y, exercise, validation, progress, batch_size)

    def _explain(self, x, exercise) -> dict[str, np.ndarray]:
        return occlusion_saliency(self, x, exercise)

    def _tensors(self) -> dict[str, torch.Tensor]:
        out = super()._tensors()
        out.update({f"rocket_{k}": torch.as_tensor(v) for k, v in zip(PARAMETERS, self.parameters_)})
        return out

    def _set_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        super()._set_tensors(tensors)
        self.parameters_ = tuple(tensors[f"rocket_{k}"].numpy().astype(d) for k, d in zip(PARAMETERS, DTYPES))


MODELS[MiniRocket.name] = MiniRocket
