"""Replays: footage shown a second time (at normal speed or slowed down), found in the pose pass's small frames.

A replay repeats the same footage: the same pixels, background and athlete position. A genuine next
repetition looks alike in pose but is not the same footage: the body is a little elsewhere, the limbs at a
slightly different angle, the camera a little moved. On the pose pass's 64-pixel grey frames (PoseTrack.thumbs)
the difference is stark. Measured: a replayed frame against its original has no pixel more than 12 grey levels
off, even re-encoded on its own (x264 crf 32, scaled 2x, 2 % brighter), and a frame blended from two neighbours
(a slow motion made by ffmpeg's framerate filter) against the blend of the two originals none either; the
nearest earlier frame of another repetition in the same shot (the twix squats) has 4-11 % of its pixels off
(5th percentile 6 %), and other takes of the same athlete in the same gym (kaiakol A_atlantis_gym_barbell) over
40 %. Hence a match at most 2 % off. Not handled: a replay zoomed or reframed, or with a caption over it.

A frame "matches" an earlier one when at most `match_changed` of its pixels differ from it, or from the mean
of two consecutive earlier frames (a slowed replay's in-between frames); only frames that show movement
count (a still picture matches every other still picture). Matches that advance through the earlier footage
in step (0.15x to 1.1x its speed, the speed the replay was shown at) over at least `min_seconds` of it make
a replay: its frames are flagged "replay" and never cut into clips, so slowed frames never feed velocities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REPLAY = "replay"
SNAP = 3  # frames: a replay's end this close to a camera cut is at the cut


@dataclass(frozen=True)
class ReplayOptions:
    """Thresholds of find_replays. Pixel levels are grey levels 0..255 of the 64-px frames."""

    level: int = 12  # a pixel differing by more than this counts as changed (compression noise: up to 8)
    match_changed: float = 0.02  # at most this share of pixels off: the same footage (0 measured; other reps 4 %+)
    # A frame shows movement when this share of its pixels changed from its neighbour. Measured (25th-95th
    # percentile): hand-held twix squats 2.5-14 %, a small side-on squatter on a tripod (kaiakol 010) 0.2-2.9 %,
    # a plank hold 0. Only moving frames are searched for; the still frames of a replay join it when its run
    # is grown (find_replays).
    moving_changed: float = 0.01
    min_lag_seconds: float = 1.0  # a replay starts at least this long after what it repeats
    min_seconds: float = 0.6  # of the earlier footage shown again (the quickest repetition: segment's 0.6 s)
    min_match_share: float = 0.3  # of the replay's frames match (a 0.33x slow motion of blends: a third)
    max_gap_seconds: float = 0.6  # a run of matches ends after this long without one
    min_speed: float = 0.15
    max_speed: float = 1.1
    candidates: int = 4  # earlier frames verified per frame (nearest on a coarser 16-px picture)


@dataclass
class Replay:
    """Frames [start, end) show again the footage of frames [source_start, source_end)."""

    start: int
    end: int
    source_start: int
    source_end: int

    @property
    def speed(self) -> float:
        """How fast the replay runs against the original (1.0 real time, 0.5 half speed)."""
        return (self.source_end - self.source_start) / max(1, self.end - self.start)


def _changed(a: np.ndarray, b: np.ndarray, level: int) -> np.ndarray:
    """Share of pixels differing by more than `level` between rows of a and b (uint8, same shape)."""
    return (np.abs(a.astype(np.int16) - b.astype(np.int16)) > level).mean(axis=-1)


def _coarse(flat: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """4x4 block means of the frames (search signature), float32 and centred for dot-product distances."""
    h, w = shape
    h4, w4 = h // 4 * 4, w // 4 * 4
    x = flat.reshape(-1, h, w)[:, :h4, :w4].astype(np.float32)
    x = x.reshape(len(x), h4 // 4, 4, w4 // 4, 4).mean(axis=(2, 4))
    return x.reshape(len(x), -1)


def match_frames(thumbs: np.ndarray, fps: float, options: ReplayOptions = ReplayOptions()
                 ) -> list[tuple[int, float]]:
    """For each frame, the earlier frame (or half-way between two) it repeats: [(frame, earlier)], sorted.

    thumbs: (T, h, w) uint8 grey frames. Earlier frames lie at least min_lag_seconds back and show movement.
    """
    t = len(thumbs)
    if t < 3 or thumbs.ndim != 3 or thumbs.shape[1] * thumbs.shape[2] == 0:
        return []
    o = options
    flat = thumbs.reshape(t, -1)
    step = _changed(flat[1:], flat[:-1], o.level)
    moving = np.zeros(t, bool)  # changed from the frame before or to the one after
    moving[1:] |= step >= o.moving_changed
    moving[:-1] |= step >= o.moving_changed
    lag = max(1, int(round(o.min_lag_seconds * fps)))
    refs = np.flatnonzero(moving)
    if len(refs) == 0:
        return []
    sig = _coarse(flat, thumbs.shape[1:])
    ref_sig = sig[refs]
    ref_norm = (ref_sig ** 2).sum(axis=1)
    matches: list[tuple[int, float]] = []
    origin: dict[int, float] = {}
    block = 512
    for b0 in range(lag, t, block):
        queries = np.arange(b0, min(t, b0 + block))
        q = sig[queries]
        # Squared distances on the coarse signature, only to earlier frames at least `lag` back.
        d = ref_norm[None, :] - 2.0 * q @ ref_sig.T + (q ** 2).sum(axis=1)[:, None]
        d[refs[None, :] > queries[:, None] - lag] = np.inf
        k = min(o.candidates, len(refs))
        best = np.argpartition(d, k - 1, axis=1)[:, :k]
        for row, i in enumerate(queries):
            cands = [refs[c] for c in best[row] if np.isfinite(d[row, c])]
            if not cands:
                continue
            found = None
            for j in sorted(cands, key=lambda j: d[row, np.searchsorted(refs, j)]):
                if _changed(flat[i], flat[j], o.level) <= o.match_changed:
                    found = float(j)
                    break
                # A slowed replay's in-between frame: the blend of two consecutive originals.
                for j2 in (j - 1, j + 1):
                    if 0 <= j2 < i - lag:
                        mid = ((flat[j].astype(np.uint16) + flat[j2]) // 2).astype(np.uint8)
                        if _changed(flat[i], mid, o.level) <= o.match_changed:
                            found = (j + j2) / 2
                            break
                if found is not None:
                    break
            if found is not None:
                # Footage already shown twice: point at its first showing, not at the earlier replay.
                k = int(found)
                if k in origin:
                    found = origin[k] + (found - k) * 0.5
                origin[int(i)] = found
                matches.append((int(i), found))
    return matches


def _same(flat: np.ndarray, i: int, j: float, limit: int, options: ReplayOptions) -> bool:
    """Whether frame i shows the footage of (fractional) earlier frame j: that frame, a neighbour (a slowed
    replay repeats frames, and j is rounded), or the blend of the two around j."""
    lo = int(np.floor(j))
    for k in {lo - 1, lo, lo + 1, lo + 2}:
        if 0 <= k < limit and k != i and _changed(flat[i], flat[k], options.level) <= options.match_changed:
            return True
    if 0 <= lo and lo + 1 < limit:
        mid = ((flat[lo].astype(np.uint16) + flat[lo + 1]) // 2).astype(np.uint8)
        return bool(_changed(flat[i], mid, options.level) <= options.match_changed)
    return False


def _mapping(run: list[tuple[int, float]]) -> tuple[float, float]:
    """Robust line j = a + s * i through a run's matches (Theil-Sen: median of pairwise slopes), so that
    a few stalled matches (a still stretch matched to the nearest moving frame) do not bend it."""
    pts = np.array(run[:: max(1, len(run) // 150)], dtype=np.float64)
    i, j = pts[:, 0], pts[:, 1]
    di = i[None, :] - i[:, None]
    dj = j[None, :] - j[:, None]
    far = di >= max(3.0, 0.2 * (i[-1] - i[0]))
    s = float(np.median(dj[far] / di[far])) if far.any() else 1.0
    return float(np.median(j - s * i)), s


def find_replays(thumbs: np.ndarray, fps: float, options: ReplayOptions = ReplayOptions(),
                 cuts: list[int] | np.ndarray = ()) -> list[Replay]:
    """The spans of a video that show earlier footage again, in frame order, not overlapping.

    Matches (match_frames) are grouped into runs that advance in step through the earlier footage; each run's
    mapping (earlier frame = a + speed x frame) is fitted robustly and the run is grown frame by frame, before
    and after, while the frames still show the mapped footage (a still stretch of a replay has no movement
    to match on, but its pixels are the same). A run makes a replay when it covers min_seconds of the
    earlier footage at a speed within [min_speed, max_speed] and enough of its frames match. Its ends move to
    a camera cut (`cuts`) within a few frames: still frames either side of a cut can look alike.
    """
    o = options
    t = len(thumbs)
    matches = match_frames(thumbs, fps, o)
    if not matches:
        return []
    flat = thumbs.reshape(t, -1)
    gap = max(1, int(round(o.max_gap_seconds * fps)))
    lag = max(1, int(round(o.min_lag_seconds * fps)))
    runs: list[list[tuple[int, float]]] = []
    for i, j in matches:
        run = runs[-1] if runs else None
        if run is not None:
            pi, pj = run[-1]
            # In step: the earlier footage advances, no faster than the replay itself (plus a frame).
            if i - pi <= gap and -1.0 <= j - pj <= o.max_speed * (i - pi) + 1.0:
                run.append((i, j))
                continue
        runs.append([(i, j)])
    replays: list[Replay] = []
    for run in runs:
        if len(run) < 3:
            continue
        a, speed = _mapping(run)
        if not o.min_speed <= speed <= o.max_speed:
            continue
        start, end = run[0][0], run[-1][0] + 1
        floor = replays[-1].end if replays else 0
        misses = 0
        while start - 1 - misses >= floor and a + speed * (start - 1 - misses) >= 0 and misses <= gap:
            k = start - 1 - misses
            if _same(flat, k, a + speed * k, k - lag, o):
                start, misses = k, 0
            else:
                misses += 1
        misses = 0
        while end + misses < t and misses <= gap:
            k = end + misses
            if _same(flat, k, a + speed * k, k - lag, o):
                end, misses = k + 1, 0
            else:
                misses += 1
        src_start = max(0, int(np.floor(a + speed * start)))
        src_end = int(np.ceil(a + speed * (end - 1))) + 1
        matched = sum(_same(flat, k, a + speed * k, k - lag, o) for k in range(start, end))
        if src_end - src_start < o.min_seconds * fps or matched < o.min_match_share * (end - start):
            continue
        near = [c for c in cuts if abs(int(c) - start) <= SNAP]
        start = int(near[0]) if near else start
        near = [c for c in cuts if abs(int(c) - end) <= SNAP]
        end = int(near[0]) if near else end
        if replays and start <= replays[-1].end and abs(replays[-1].source_end - src_start) <= gap:
            replays[-1] = Replay(replays[-1].start, end, replays[-1].source_start, src_end)  # one replay, cut by
            continue  # a stretch without movement the first pass could not place
        if src_end > start or (replays and start < replays[-1].end):
            continue
        replays.append(Replay(start, end, src_start, src_end))
    return replays


def without(spans: list[tuple[int, int]], holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spans [start, end) with the frames of `holes` taken out (a span may split in two)."""
    out = list(spans)
    for a, b in holes:
        nxt = []
        for s, e in out:
            if e <= a or s >= b:
                nxt.append((s, e))
                continue
            if s < a:
                nxt.append((s, a))
            if e > b:
                nxt.append((b, e))
        out = nxt
    return out
