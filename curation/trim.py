"""Trim: find the movement spans of a video; drop no-person, still and talking-head spans."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from curation.kinematics import ANGLES, BODY, body_scale, joint_angles, moving_average, time_derivative
from curation.landmarks import INDEX
from curation.shots import shots

NO_PERSON = "no person"
STILL = "still"
TALKING_HEAD = "talking head"


@dataclass(frozen=True)
class TrimOptions:
    """Thresholds of find_movement. Speeds are in torso lengths per second, times in seconds."""

    # Smoothed pose motion energy at or above this is movement. Measured on the reference poses: a person
    # standing between squats 0.06-0.25, a plank hold 0.01-0.08, squats and curls 0.4-1.5.
    still_speed: float = 0.3
    # Centred moving average of the energy: a rep's turning point is not a stop.
    smooth_seconds: float = 0.5
    # Mean visibility of hips and knees below this: only the upper body is in the picture.
    lower_body_visibility: float = 0.5
    # Frame difference (mean abs grey change, 0..1, smoothed like the energy) below this: the picture is
    # frozen (a still image, a paused screen), so pose jitter there is not movement.
    frozen_frame_motion: float = 0.002
    # A still stretch in a clearly non-upright posture (trunk this far from vertical: plank, push-up hold,
    # bridge) is a static hold, an exercise in itself, and is kept.
    keep_holds: bool = True
    hold_lean_degrees: float = 45.0
    # Removed stretches shorter than this between two movement stretches are kept (the rest between reps,
    # a short dropout of the pose).
    bridge_seconds: float = 1.5
    # Movement stretches shorter than this (after bridging) are dropped: shorter than the quickest
    # repetition (segment's min_rep_seconds), a shuffle is not an exercise.
    min_span_seconds: float = 0.6
    # A movement stretch (after bridging) in which a person is found in fewer of its frames than this share
    # is dropped: bridged dropouts must not make a span of mostly nobody.
    min_person_share: float = 0.5


@dataclass
class TrimResult:
    """Movement spans and what was cut. Frame indices, end exclusive, sorted, not overlapping."""

    spans: list[tuple[int, int]] = field(default_factory=list)
    removed: list[tuple[int, int, str]] = field(default_factory=list)  # reason: no person/still/talking head
    trimmed_share: float = 0.0  # share of frames removed, 0..1


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of the runs of True in a 1-D boolean array, end exclusive."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist()))


def pose_energy(landmarks: np.ndarray, fps: float, aspect: float = 1.0) -> np.ndarray:
    """(T,) pose motion energy: visibility-weighted mean speed of the BODY landmarks in torso lengths/second.

    Image coordinates (not hip-centred: moving about is movement too) divided by the clip's torso length.
    NaN where there is no person (or no neighbouring frame with one, as for T=1).
    """
    arr = np.asarray(landmarks, dtype=np.float64)
    idx = [INDEX[n] for n in BODY]
    xy = arr[:, idx, :2].copy()
    xy[..., 0] *= aspect
    xy /= body_scale(arr, aspect)
    velocity = time_derivative(xy, fps)
    speed = np.hypot(velocity[..., 0], velocity[..., 1])
    vis = np.nan_to_num(arr[:, idx, 3], nan=1.0)  # a source without visibility: every point counts fully
    weight = np.where(np.isfinite(speed), vis, 0.0)
    total = weight.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        energy = np.nan_to_num(speed * weight).sum(axis=1) / total
    energy[total == 0] = np.nan
    return energy


def _merge_short(runs: list[list], min_len: int) -> list[list]:
    """Fold sub-runs [start, end, reason] shorter than min_len (or without a reason) into a neighbour."""
    while True:
        merged: list[list] = []
        for run in runs:
            if merged and merged[-1][2] == run[2]:
                merged[-1][1] = run[1]
            else:
                merged.append(list(run))
        runs = merged
        short = [i for i, (s, e, why) in enumerate(runs) if why is None or e - s < min_len]
        if len(runs) == 1 or not short:
            return runs
        i = short[0]
        j = i - 1 if i > 0 else i + 1
        # The neighbour's reason wins unless it has none (a dropped movement island).
        reason = runs[j][2] if runs[j][2] is not None else runs[i][2]
        runs[min(i, j)] = [runs[min(i, j)][0], runs[max(i, j)][1], reason]
        del runs[max(i, j)]


def find_movement(
    landmarks: np.ndarray,
    fps: float,
    motion: np.ndarray | None = None,
    options: TrimOptions = TrimOptions(),
    aspect: float = 1.0,
    cuts: list[int] | np.ndarray = (),
) -> TrimResult:
    """Split a video's frames into movement spans and removed spans (no person, still, talking head).

    landmarks: (T, 33, 4) with NaN rows where no person was found. motion: optional (T,) frame difference
    (0..1) from the video; a frozen picture vetoes pose movement, and motion without a pose never counts
    (there is nobody to coach). aspect = width / height of the video. cuts: first frames of new shots
    (curation.shots); each shot is trimmed on its own, so no span crosses a cut and no smoothing, bridging
    or speed runs across one (the jump of the landmarks at a cut is not movement).
    """
    arr = np.asarray(landmarks, dtype=np.float64)
    n = arr.shape[0]
    if motion is not None and len(motion) != n:
        raise ValueError(f"motion has {len(motion)} frames, landmarks {n}")
    if n == 0:
        return TrimResult()
    if len(cuts):
        result = TrimResult()
        for a, b in shots(n, [int(c) for c in cuts]):
            # motion[a] is the change across the cut itself: not movement within the shot.
            part = find_movement(arr[a:b], fps, None if motion is None else np.r_[0.0, motion[a + 1:b]],
                                 options, aspect)
            result.spans += [(s + a, e + a) for s, e in part.spans]
            result.removed += [(s + a, e + a, why) for s, e, why in part.removed]
        result.trimmed_share = float(sum(e - s for s, e, _ in result.removed) / n)
        return result
    torso = arr[:, [INDEX[p] for p in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")], :2]
    person = np.isfinite(torso).all(axis=(1, 2))
    window = max(1, int(round(options.smooth_seconds * fps)))
    energy = moving_average(pose_energy(arr, fps, aspect), window)
    frozen = np.zeros(n, bool)
    if motion is not None:
        frame_motion = moving_average(np.asarray(motion, dtype=np.float64), window)
        frozen = np.nan_to_num(frame_motion, nan=np.inf) < options.frozen_frame_motion  # unknown: not frozen
    moving = person & ~frozen & (np.nan_to_num(energy) >= options.still_speed)

    # Only the upper body in the picture: hips and knees missing or barely visible. A source without
    # visibility (NaN) counts its found points as seen.
    lower = [INDEX[p] for p in ("left_hip", "right_hip", "left_knee", "right_knee")]
    found = np.isfinite(arr[:, lower, :2]).all(axis=2)
    lower_vis = np.where(found, np.nan_to_num(arr[:, lower, 3], nan=1.0), 0.0).mean(axis=1)
    upper_only = person & (lower_vis < options.lower_body_visibility)
    keep = moving.copy()
    if options.keep_holds:
        lean = moving_average(joint_angles(arr, aspect)[:, list(ANGLES).index("trunk_lean")], window)
        keep |= person & ~frozen & ~upper_only & (np.nan_to_num(lean) > options.hold_lean_degrees)

    # Bridge short gaps between movement, then drop what is still too short to be an exercise.
    bridge = int(round(options.bridge_seconds * fps))
    runs = _runs(keep)
    for (_, end), (start, _) in zip(runs[:-1], runs[1:]):
        if start - end < bridge:
            keep[end:start] = True
    min_span = max(1, int(round(options.min_span_seconds * fps)))
    spans = [(s, e) for s, e in _runs(keep)
             if e - s >= min_span and person[s:e].mean() >= options.min_person_share]
    kept = np.zeros(n, bool)
    for s, e in spans:
        kept[s:e] = True

    # Name each removed stretch by why its frames were not movement; a short flicker of another reason
    # (one frame without a person in a still stretch) is folded into its neighbour.
    reason = np.where(~person, NO_PERSON, np.where(upper_only, TALKING_HEAD, STILL)).astype(object)
    reason[moving] = None  # moving but cut as too short: takes its neighbours' reason
    removed: list[tuple[int, int, str]] = []
    for s, e in _runs(~kept):
        sub: list[list] = []
        for t in range(s, e):
            if sub and sub[-1][2] == reason[t]:
                sub[-1][1] = t + 1
            else:
                sub.append([t, t + 1, reason[t]])
        for a, b, why in _merge_short(sub, min_span):
            removed.append((a, b, why if why is not None else STILL))
    return TrimResult(spans=spans, removed=removed, trimmed_share=float((~kept).sum() / n))
