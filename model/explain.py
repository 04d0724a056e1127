"""Explain: which frames and which landmarks a verdict rests on, for any model (occlusion), and a per-feature
saliency mapped to the landmarks a coach sees on the skeleton."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from curation.kinematics import ANGLES, DISTANCES
from curation.landmarks import INDEX, N_LANDMARKS
from model.features import MASK_PREFIX

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


# ---------------------------------------------------------------------------------------------- occlusion

MAX_WINDOWS = 40  # time windows occluded per clip: with the joints, one batch of about 57 perturbed clips
# Windows of three widths (shares of the clip): a short one alone barely moves a verdict that rests on a
# whole phase (the bottom of a squat) or on a statistic such as the deepest knee angle, which the frames beside
# it nearly repeat; the wide ones hide the phase, the short ones tell which of its frames count.
WINDOW_SHARES = (0.1, 0.25, 0.5)
EPS = 1e-6  # p is clipped to [EPS, 1 - EPS] before its log-odds are taken

Predict = Callable[[list[np.ndarray]], np.ndarray]  # raw clip_features of N clips -> p(incorrect) (N,)


def _edge_values(block: np.ndarray, last: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per column of a (n, F) block, the value and the row of its last (or first) finite entry; NaN and -1
    where the column has none."""
    if block.shape[0] == 0:
        return np.full(block.shape[1], np.nan), np.full(block.shape[1], -1)
    finite = np.isfinite(block)
    has = finite.any(axis=0)
    rows = block.shape[0] - 1 - np.argmax(finite[::-1], axis=0) if last else np.argmax(finite, axis=0)
    rows = np.where(has, rows, -1)
    values = np.full(block.shape[1], np.nan)
    values[has] = block[rows[has], np.flatnonzero(has)]
    return values, rows


def bridge(x: np.ndarray, start: int, stop: int) -> np.ndarray:
    """A copy of a sequence x (T, ...) with frames start..stop-1 replaced, per value, by the straight line
    between the nearest finite values on either side: the clip as if that part of the movement had not happened.

    With a known value on one side only the value is held there; with none (the window covers every known
    value) it becomes NaN, unknown, as models already handle missing landmarks.
    """
    shape = np.shape(x)
    out = np.array(x, dtype=np.float64, copy=True).reshape(shape[0], -1)
    before, row_before = _edge_values(out[:start], last=True)
    after, row_after = _edge_values(out[stop:], last=False)
    row_after = np.where(row_after >= 0, row_after + stop, -1)
    frames = np.arange(start, stop, dtype=np.float64)[:, None]
    both = (row_before >= 0) & (row_after >= 0)
    span = np.where(both, row_after - row_before, 1).astype(np.float64)
    share = (frames - row_before) / span
    line = before + share * (after - before)
    out[start:stop] = np.where(both, line, np.where(row_before >= 0, before, after))
    return out.reshape(shape).astype(np.asarray(x).dtype, copy=False)


def time_windows(t: int, max_windows: int = MAX_WINDOWS, shares: tuple[float, ...] = WINDOW_SHARES
                 ) -> list[tuple[int, int]]:
    """(start, stop) of the occluded windows of a T-frame clip: of each width (a share of T), about
    max_windows / len(shares) windows evenly spread from the first frame to the last; no window twice."""
    out: list[tuple[int, int]] = []
    for share in shares:
        width = min(t, max(1, round(t * share)))
        n = min(max_windows // len(shares), t - width + 1)
        for start in np.unique(np.round(np.linspace(0, t - width, max(n, 1))).astype(int)):
            if (int(start), int(start) + width) not in out:
                out.append((int(start), int(start) + width))
    return out


def joint_columns(names: list[str]) -> dict[int, tuple[list[int], list[int]]]:
    """Per landmark index, (columns of the features about it, its visibility mask column(s)), for the
    landmarks that any feature is about."""
    out: dict[int, tuple[list[int], list[int]]] = {}
    for column, name in enumerate(names):
        if name.startswith(MASK_PREFIX) and name[len(MASK_PREFIX):] in INDEX:
            out.setdefault(INDEX[name[len(MASK_PREFIX):]], ([], []))[1].append(column)
            continue
        for point in feature_landmarks(name):
            out.setdefault(INDEX[point], ([], []))[0].append(column)
    return {j: cols for j, cols in sorted(out.items()) if cols[0]}


def hide_joint(x: np.ndarray, columns: tuple[list[int], list[int]]) -> np.ndarray:
    """A copy of features x (T, F) with one landmark unseen for the whole clip: the features about it unknown
    (NaN) and its visibility mask 0, as when the pose tracker loses that landmark."""
    out = np.array(x, copy=True)
    about, mask = columns
    out[:, about] = np.nan
    out[:, mask] = 0.0
    return out


def _shares(values: np.ndarray) -> np.ndarray:
    total = values.sum()
    return values / total if total > 0 else np.zeros_like(values)


def occlusion(predict: Predict, landmarks: np.ndarray, features: Callable[[np.ndarray], np.ndarray],
              names: list[str], max_windows: int = MAX_WINDOWS) -> dict:
    """A model-agnostic explanation of one clip's verdict: how far its log-odds move when a part is hidden.

    landmarks: the clip's (T, 33, 4) pose; features(landmarks) -> its raw clip_features (T, F), columns `names`;
    predict scores raw features (the model with its scaler and whatever else turns them into p). Each time
    window (time_windows) is bridged over in the landmarks (bridge), so the angles, distances and velocities
    derived from them stay those of one movement; each landmark is hidden in the features (hide_joint). All
    perturbed clips go to `predict` in one call.

    Returns p (the clip's own p(incorrect)); frame_weights (T,): per frame the mean |change of the log-odds|
    of the windows covering it, as shares summing to 1; joint_weights (33,): the change per landmark as
    shares summing to 1 (landmarks no feature is about get 0); frame_change and joint_change: the same before
    normalising (how much the verdict moves at all). All zeros when nothing moves it.
    """
    x = features(landmarks)
    t = x.shape[0]
    spans = time_windows(t, max_windows)
    joints = joint_columns(names)
    # The clip's first and last frames stay as anchors of the windows at its ends: held at the pose beside the
    # window instead, the clip would start (or end) somewhere else, and everything that depends on where the
    # movement goes overall (mean velocities are net displacement over time) would move for that reason alone.
    inner = [(max(a, 1), min(b, t - 1)) if t > 2 else (a, b) for a, b in spans]
    batch = ([x] + [features(bridge(landmarks, a, b)) for a, b in inner]
             + [hide_joint(x, cols) for cols in joints.values()])
    p = np.asarray(predict(batch), dtype=np.float64)
    if p.shape != (len(batch),) or not np.isfinite(p[0]):
        raise ValueError("the model gave no p(incorrect) for this clip")
    # Change of the log-odds, not of p: a confident verdict (p = 0.99) hardly moves in p whatever is hidden,
    # while its log-odds still tell the parts it rests on from the rest.
    logit = np.log(np.clip(p, EPS, 1 - EPS)) - np.log(np.clip(1 - p, EPS, 1 - EPS))
    change = np.abs(np.nan_to_num(logit[1:] - logit[0]))
    window_change, joint_change = change[: len(spans)], change[len(spans):]
    total, cover = np.zeros(t), np.zeros(t)
    for (a, b), value in zip(spans, window_change):
        total[a:b] += value
        cover[a:b] += 1
    frame_change = total / np.maximum(cover, 1)
    per_joint = np.zeros(N_LANDMARKS)
    per_joint[list(joints)] = joint_change
    return {"p": float(p[0]), "frame_weights": _shares(frame_change), "joint_weights": _shares(per_joint),
            "frame_change": frame_change, "joint_change": per_joint}
