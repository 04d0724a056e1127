"""Segment: cut movement spans into one-repetition clips."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import find_peaks

from curation.kinematics import joint_angles, moving_average
from curation.shots import split_at_cuts

REPETITION = "repetition"
WINDOW = "window"


@dataclass(frozen=True)
class SegmentOptions:
    """Settings of segment_repetitions. Times in seconds."""

    min_rep_seconds: float = 0.6  # quicker than this is not a repetition (and no clip is shorter)
    max_rep_seconds: float = 8.0  # slower than this is not one repetition
    # Fallback when no repetition shows: fixed windows of this length, overlapping by this share.
    window_seconds: float = 4.0
    window_overlap: float = 0.5
    smooth_seconds: float = 0.2  # centred moving average of the angles: keeps landmark jitter out of peaks
    n_angles: int = 4  # at most this many of the most-moving angles make the rep signal
    # The most-moving angle must swing this far (robust range, degrees) for there to be repetitions at all:
    # a plank's or a standing person's angles wobble by 5-20 degrees, a squat's knee swings 60-120.
    min_angle_range: float = 30.0
    # A rep's peak must stand out of the signal by this share of the signal's robust range.
    min_prominence: float = 0.4
    # Autocorrelation at the best lag needed to call the movement periodic (then peaks closer than half
    # a period are one rep).
    min_periodicity: float = 0.3
    # Frames within this share of the signal's range above a valley's lowest point are the rest position
    # between reps; cuts go to the middle of that rest.
    rest_band: float = 0.25
    # At the first and last rep of a span, rest kept before and after the movement (when the span has no
    # rest between reps to learn it from).
    edge_rest_seconds: float = 0.5


@dataclass
class ClipBounds:
    """One clip of a video: frames [start, end), cut as one repetition or as a fixed window."""

    start: int
    end: int
    method: str  # "repetition" or "window"


def _fill_gaps(x: np.ndarray) -> np.ndarray:
    """Linear interpolation of NaN along axis 0, per column (edges held); all-NaN columns stay NaN."""
    out = x.copy()
    t = np.arange(x.shape[0])
    for j in range(x.shape[1]):
        ok = np.isfinite(x[:, j])
        if ok.any() and not ok.all():
            out[:, j] = np.interp(t, t[ok], x[ok, j])
    return out


def _rep_signal(angles: np.ndarray, fps: float, options: SegmentOptions) -> tuple[np.ndarray, float]:
    """One signal (rest near 0, a rep's peak near 1) from the most-moving angles, and their largest range.

    First principal component of the standardised most-moving angles (smoothed, gaps interpolated), scaled
    so that its 5th-95th percentile range maps to 0..1. The range returned is in degrees. The sign is set
    so that the rest position is low: the side where the signal dwells longer (a squatter stands between
    reps; the bottom is a turning point), or failing that the side the span starts and ends on.
    """
    usable = np.isfinite(angles).mean(axis=0) >= 0.5
    if not usable.any():
        return np.zeros(angles.shape[0]), 0.0
    window = max(1, int(round(options.smooth_seconds * fps)))
    a = moving_average(_fill_gaps(angles[:, usable]), window)
    ranges = np.percentile(a, 95, axis=0) - np.percentile(a, 5, axis=0)
    top = np.argsort(ranges)[::-1][: options.n_angles]
    top = top[ranges[top] >= 0.5 * ranges[top[0]]]
    z = a[:, top] - a[:, top].mean(axis=0)
    std = z.std(axis=0)
    z = z[:, std > 0] / std[std > 0]
    if z.shape[1] == 0:
        return np.zeros(angles.shape[0]), float(ranges[top[0]])
    _, _, vt = np.linalg.svd(z, full_matrices=False)
    s = z @ vt[0]
    lo, hi = np.percentile(s, 5), np.percentile(s, 95)
    s = (s - lo) / (hi - lo) if hi > lo else np.zeros_like(s)
    dwell = np.mean(s > 0.75) - np.mean(s < 0.25)
    edge = max(1, len(s) // 10)
    edges_high = np.concatenate([s[:edge], s[-edge:]]).mean() > 0.5
    if dwell > 0.1 or (abs(dwell) <= 0.1 and edges_high):
        s = 1 - s
    return s, float(ranges[top[0]])


def _period(s: np.ndarray, lo: int, hi: int, min_corr: float) -> int | None:
    """Lag (frames) of the highest autocorrelation peak within [lo, hi], if it reaches min_corr."""
    x = s - s.mean()
    denom = float(x @ x)
    hi = min(hi, len(x) - 1)
    if denom == 0 or hi <= lo:
        return None
    acf = np.correlate(x, x, mode="full")[len(x) - 1:] / denom
    lags, _ = find_peaks(acf[: hi + 1])
    lags = lags[(lags >= lo) & (acf[lags] >= min_corr)]
    return int(lags[np.argmax(acf[lags])]) if lags.size else None


def _rest_run(s: np.ndarray, a: int, b: int, band: float) -> tuple[int, int, float]:
    """The rest between frames a and b: the run of frames near the lowest point there, and that low."""
    low = int(a + np.argmin(s[a:b]))
    near = s[a:b] <= s[low] + band
    start, end = low, low + 1
    while start > a and near[start - 1 - a]:
        start -= 1
    while end < b and near[end - a]:
        end += 1
    return start, end, float(s[low])


def _windows(start: int, end: int, length: int, step: int, min_len: int) -> list[ClipBounds]:
    """Fixed windows over [start, end); the last one is aligned to the end so nothing is left out."""
    n = end - start
    if n < min_len:
        return []
    if n <= length:
        return [ClipBounds(start, end, WINDOW)]
    starts = list(range(start, end - length + 1, step))
    if starts[-1] + length < end:
        starts.append(end - length)
    return [ClipBounds(s, s + length, WINDOW) for s in starts]


def _cut_reps(s: np.ndarray, peaks: np.ndarray, fps: float, options: SegmentOptions) -> list[tuple[int, int]]:
    """Cut points around each peak: middles of the rest between reps, rest-padded edges. Span-relative."""
    band = options.rest_band
    n = len(s)
    cuts = []
    half_rests = []
    for p, q in zip(peaks[:-1], peaks[1:]):
        a, b, _ = _rest_run(s, int(p), int(q) + 1, band)
        cuts.append((a + b) // 2)
        half_rests.append((b - a) / 2)
    pad = int(round(np.median(half_rests))) if half_rests else int(round(options.edge_rest_seconds * fps))
    # Before the first peak: start in the rest before it when the span has one (else the span starts
    # mid-movement and the clip starts with it).
    a, b, low = _rest_run(s, 0, int(peaks[0]) + 1, band)
    first = max(a, b - pad) if low <= band else 0
    a, b, low = _rest_run(s, int(peaks[-1]), n, band)
    last = min(b, a + pad) if low <= band else n
    bounds = list(zip([first, *cuts], [*cuts, last]))

    # A rep longer than max_rep_seconds holds a long rest: keep the movement and a rest pad around it.
    max_len = int(round(options.max_rep_seconds * fps))
    out = []
    for (start, end), p in zip(bounds, peaks):
        if end - start > max_len:
            moving = s[start:end] > band
            left = int(p)
            while left > start and moving[left - 1 - start]:
                left -= 1
            right = int(p) + 1
            while right < end and moving[right - start]:
                right += 1
            start, end = max(start, left - pad), min(end, right + pad)
            if end - start > max_len:
                start = max(start, int(p) - max_len // 2)
                end = start + max_len
        out.append((start, end))
    return out


def segment_repetitions(
    landmarks: np.ndarray,
    fps: float,
    spans: list[tuple[int, int]],
    options: SegmentOptions = SegmentOptions(),
    aspect: float = 1.0,
    cuts: list[int] | np.ndarray = (),
) -> list[ClipBounds]:
    """Clips of one repetition each within the movement spans, or fixed windows where no repetition shows.

    Per span: the most-moving joint angles are combined into one signal (see _rep_signal), its period is
    estimated by autocorrelation, reps are the signal's prominent peaks (excursions from rest) no closer than
    half a period, and cuts go to the middle of the rest between reps (the first and last rep keep up to
    about as much rest as the others). Fallbacks: a span no longer than max_rep_seconds with a clear
    movement and at most one peak is one clip; a longer span with one peak gives one clip around it; a span
    whose angles barely move (a hold: below min_angle_range), or a long one without any peak, is cut into
    overlapping windows. Clips shorter than min_rep_seconds are dropped. Every clip lies within its span;
    repetition clips do not overlap. Spans are first split at `cuts` (first frames of new shots), so no clip
    crosses a camera cut.
    """
    min_len = max(1, int(round(options.min_rep_seconds * fps)))
    max_len = int(round(options.max_rep_seconds * fps))
    window = max(min_len, int(round(options.window_seconds * fps)))
    step = max(1, int(round(window * (1 - options.window_overlap))))
    angles = joint_angles(landmarks, aspect)
    clips: list[ClipBounds] = []
    for start, end in split_at_cuts(spans, [int(c) for c in cuts]):
        start, end = max(0, int(start)), min(int(end), angles.shape[0])
        if end - start < min_len:
            continue
        s, swing = _rep_signal(angles[start:end], fps, options)
        if swing < options.min_angle_range:
            clips += _windows(start, end, window, step, min_len)
            continue
        period = _period(s, min_len, max_len, options.min_periodicity)
        distance = max(min_len, period // 2) if period else min_len
        peaks, _ = find_peaks(s, prominence=options.min_prominence, distance=distance)
        if peaks.size == 0:
            clips += [ClipBounds(start, end, REPETITION)] if end - start <= max_len else \
                _windows(start, end, window, step, min_len)
            continue
        if peaks.size == 1 and end - start <= max_len:
            clips.append(ClipBounds(start, end, REPETITION))
            continue
        clips += [ClipBounds(start + a, start + b, REPETITION)
                  for a, b in _cut_reps(s, peaks, fps, options) if b - a >= min_len]
    return clips
