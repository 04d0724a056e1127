"""Explain: a verdict's per-feature saliency mapped to the landmarks a coach sees on the skeleton."""

from __future__ import annotations

import numpy as np

from curation.kinematics import ANGLES, DISTANCES
from curation.landmarks import INDEX, N_LANDMARKS

# Points that kinematics derives from pairs of landmarks ("mid_hip" = both hips).
_MIDPOINTS = {"mid_" + part: ("left_" + part, "right_" + part) for part in ("shoulder", "hip", "ankle", "wrist")}


def _landmarks_of(point: str) -> tuple[str, ...]:
    if point in INDEX:
        return (point,)
    return _MIDPOINTS.get(point, ())


def feature_landmarks(name: str) -> tuple[str, ...]:
    """The landmarks a feature is about: its own for coordinates, the vertex of an angle (both points of a
    derived midpoint), both ends of a distance; none for the visibility mask."""
    kind, _, rest = name.partition("_")
    if kind in ("x", "y", "z"):
        return _landmarks_of(rest)
    if kind in ("angle", "vel") and rest in ANGLES:
        return _landmarks_of(ANGLES[rest][1])
    if kind == "dist" and rest in DISTANCES:
        a, b, _ = DISTANCES[rest]
        return _landmarks_of(a) + _landmarks_of(b)
    return ()


def joint_saliency(saliency: np.ndarray, names: list[str]) -> np.ndarray:
    """(33,) share of a verdict's saliency per landmark, from a (T, F) or (F,) saliency over named features.

    Each feature's summed |saliency| is split evenly among the landmarks it is about; the result sums to 1
    (all zeros when nothing maps).
    """
    s = np.abs(np.nan_to_num(np.asarray(saliency, dtype=np.float64)))
    per_feature = s.sum(axis=0) if s.ndim == 2 else s
    if per_feature.shape != (len(names),):
        raise ValueError(f"saliency has {per_feature.shape[0]} features, names {len(names)}")
    out = np.zeros(N_LANDMARKS)
    for value, name in zip(per_feature, names):
        points = feature_landmarks(name)
        for point in points:
            out[INDEX[point]] += value / len(points)
    total = out.sum()
    return out / total if total > 0 else out
