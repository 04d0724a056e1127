"""Shots: hard camera cuts found in the per-frame picture-change signal the pose pass already computes.

A hard cut (a new camera angle, another recording, a title card spliced in) changes the whole picture from one
frame to the next: the frame difference (curation.pose: mean absolute grey-level change of a 64 px image,
0..1) jumps for exactly one frame, far above what the frames before it showed, and falls back at once. Movement
inside a shot, even fast, raises the difference over several frames in a row; a camera pan too. The signal is
free (computed in the pose pass for trimming), so finding cuts costs nothing measurable at ingest.

PySceneDetect was considered: its detectors decode the video a second time (about a quarter of the pose pass's
cost at 720p) and would add a package for what is, on this signal, a few lines.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CutOptions:
    """Thresholds of the cut detector, on the pose pass's frame difference (mean abs grey change, 0..1).

    Measured on the 32 shared videos (/work/shared/data/videos) and on hard cuts made by joining them with
    ffmpeg (12 random pairs scaled to 640x360): within a continuous shot the difference is at most 0.10 a frame
    (0.03 for most) and at most 7x the median of the half second before it; at a cut between two videos of
    different scenes it is 0.16-0.52 and 14x-520x that median. Two shared videos hold same-scene jump cuts
    (frames dropped in editing: pushup_incorrect_001 at frame 145, twix knee_squat at 185; 0.07-0.09, 11x-30x):
    deliberately not cuts, as neither is a joined pair of the same scene (0.03): the scene and the person
    stay, the tracker copes, and splitting there would cut repetitions in two.
    """

    # A cut changes at least this much of the picture's grey level on average: between the highest change
    # within a shot or at a jump cut (0.10) and the lowest at a cut between scenes (0.16).
    min_change: float = 0.12
    # ...and at least this many times the median change of the frames before it (a trailing window, so
    # that the pose pass can restart its tracker at once, without look-ahead).
    min_ratio: float = 8.0  # between 7 (within a shot) and 14 (lowest cut)
    window_seconds: float = 0.5
    # ...and the next frame changes at most 1/min_isolation of it: a cut is one frame, fast movement and
    # pans are several in a row. (Checked after the pass; the tracker restart does not wait for it.)
    min_isolation: float = 2.0
    # Two cuts closer than this are one (a flash frame, a one-frame glitch): the first is kept.
    min_shot_seconds: float = 0.3


_EPS = 1e-3  # floor of the trailing median: a frozen picture (median 0) must not make every change a cut


class CutTracker:
    """Online half of the detector: fed the frame difference frame by frame, says whether a frame may start
    a new shot (used by the pose pass to restart MediaPipe's tracker there)."""

    def __init__(self, fps: float, options: CutOptions = CutOptions()) -> None:
        self.options = options
        self.window = max(2, int(round(options.window_seconds * fps)))
        self.recent: list[float] = []

    def update(self, change: float) -> bool:
        """Add the next frame's difference; True if that frame is a cut candidate (see is_candidate)."""
        candidate = is_candidate(change, self.recent, self.options)
        self.recent.append(float(change))
        if len(self.recent) > self.window:
            del self.recent[0]
        return candidate


def is_candidate(change: float, before: Sequence[float], options: CutOptions = CutOptions()) -> bool:
    """Whether a frame whose difference to the previous one is `change`, after frames `before`, may be a cut."""
    if len(before) == 0 or change < options.min_change:
        return False
    return change >= options.min_ratio * max(float(np.median(before)), _EPS)


def detect_cuts(motion: np.ndarray, fps: float, options: CutOptions = CutOptions()) -> list[int]:
    """Frame indices where a new shot starts (the first frame after a hard cut), sorted; 0 is never one.

    motion: (T,) frame difference to the previous frame, 0..1 (PoseTrack.motion). A cut is a candidate of
    CutTracker (large, and large against the trailing half second) whose next frame changes much less.
    """
    m = np.nan_to_num(np.asarray(motion, dtype=np.float64), nan=0.0)
    tracker = CutTracker(fps, options)
    min_gap = max(1, int(round(options.min_shot_seconds * fps)))
    cuts: list[int] = []
    for i, change in enumerate(m):
        if not tracker.update(change) or i == 0:
            continue
        following = m[i + 1] if i + 1 < len(m) else 0.0
        if change < options.min_isolation * following:
            continue
        if cuts and i - cuts[-1] < min_gap:
            continue
        cuts.append(i)
    return cuts


def shots(frames: int, cuts: Sequence[int]) -> list[tuple[int, int]]:
    """The shots [start, end) of a video of `frames` frames cut at `cuts`."""
    edges = [0, *sorted(c for c in cuts if 0 < c < frames), frames]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def split_at_cuts(spans: Sequence[tuple[int, int]], cuts: Sequence[int]) -> list[tuple[int, int]]:
    """Spans [start, end) cut wherever a cut falls strictly inside one, so that no span crosses a cut."""
    out: list[tuple[int, int]] = []
    ordered = sorted(cuts)
    for start, end in spans:
        for c in ordered:
            if start < c < end:
                out.append((start, c))
                start = c
        out.append((start, end))
    return out
