"""People: how many people are in the picture, which of them is the athlete, and split screens.

MediaPipe's legacy Pose follows one person. Twice a second the pose pass (curation.pose) asks a second,
single-image Pose whether anybody is in the strip of the picture left of the person it tracks, and in the strip
right of them (each strip on its own, so that a second person is not shrunk out of sight in a wide frame; a
person standing behind the athlete, in the same strip, is not looked for). It is the tracker's own BlazePose
detector, so a squatting or side-on person is found as the tracked one is, and nothing is downloaded. The
Tasks PoseLandmarker with num_poses found one of two people side by side (../shared/notes/pose-tasks-bundle.md);
OpenCV's HOG people detector was trained on upright pedestrians.

Measured on the 32 shared videos (200 checks): a second person in 13 checks. 11 are real: the three kaiakol
videos (squat_correct_011-013) in which a coach stands beside the squatting athlete, found in every check (and
MediaPipe follows the coach in two of them); 2 are stray detections of plates on a rack (squat_correct_002, 008),
each a single check, which `min_checks` ignores. No single-person video gets a "several people" span.

From those checks: the spans with several people (flagged "several people"), the athlete by a rule a coach
picks (largest, most moving, left, right, or the person nearest a clicked point), and split screens (a
vertical or horizontal seam that stays put, with a person on each side), which can be ingested one side at a
time (PipelineOptions.side).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curation.shots import shots

SEVERAL_PEOPLE = "several people"
RULES = ("tracked", "largest", "most moving", "left", "right", "click")
SIDES = ("left", "right", "top", "bottom")


@dataclass(frozen=True)
class PeopleOptions:
    """Settings of the people checks. Boxes are in normalised image coordinates (0..1)."""

    # Seconds between checks: a person walking in is seen within half a second. Each check runs the detector
    # on the strips beside the athlete (and the landmark model on a person found): measured on 20 s of 720p
    # (tests/benchmarks, 600 frames), the pose pass's CPU time grows by 3.8 % at 0.5 s, 2.1 % at 1 s.
    every_seconds: float = 0.5
    max_people: int = 3  # the tracked person and one on each side
    # A person found beside the tracked one counts when its landmarks' mean visibility reaches this (MediaPipe's
    # frame-masking threshold, PoseOptions.min_visibility) and its box overlaps the tracked one's by less than
    # this intersection-over-union (else it is the tracked person's own arm or leg reaching into the strip).
    min_visibility: float = 0.6
    max_overlap: float = 0.3
    # Strips narrower than this share of the width beside the tracked person are not searched.
    min_strip: float = 0.15
    # A person found must be at least this tall against the tracked one (else: a stray detection).
    min_height: float = 0.4
    # A person box is the landmarks' extent grown by this share of its size on each side (the head's top
    # and the hands lie beyond the landmarks).
    box_margin: float = 0.15
    # "Several people" needs this many checks in a row (1 s): one check is a detector glitch.
    min_checks: int = 2


@dataclass
class PeopleChecks:
    """What the checks found: frames (K,) checked and boxes (K, max_people, 4) x0, y0, x1, y1 (NaN padded);
    box 0 is the person the tracker follows (NaN when it found nobody), then the people found left and right."""

    frames: np.ndarray
    boxes: np.ndarray

    @property
    def counts(self) -> np.ndarray:
        return np.isfinite(self.boxes[:, :, 0]).sum(axis=1) if len(self.frames) else np.zeros(0, int)


def empty_checks(max_people: int = PeopleOptions().max_people) -> PeopleChecks:
    return PeopleChecks(np.zeros(0, np.int64), np.zeros((0, max_people, 4), np.float32))


def landmark_box(xyv: np.ndarray, margin: float, min_visibility: float = 0.5) -> np.ndarray | None:
    """x0, y0, x1, y1 of the landmarks (33, 3 or 4: x, y[, z], visibility) seen with at least min_visibility,
    grown by `margin` of the box's size on each side and clipped to the picture; None when fewer than 4 seen."""
    seen = xyv[xyv[:, -1] >= min_visibility]
    if len(seen) < 4:
        return None
    x0, y0 = seen[:, 0].min(), seen[:, 1].min()
    x1, y1 = seen[:, 0].max(), seen[:, 1].max()
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    return np.clip(np.array([x0 - dx, y0 - dy, x1 + dx, y1 + dy], np.float32), 0.0, 1.0)


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


class PeopleChecker:
    """The in-pass half: every `every_seconds`, the people in the frame besides the tracked one."""

    def __init__(self, fps: float, options: PeopleOptions = PeopleOptions()) -> None:
        import mediapipe as mp  # only where the pose pass runs

        self.options = options
        self.step = max(1, int(round(options.every_seconds * fps)))
        self.pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1,
                                           min_detection_confidence=0.5)
        self.frames: list[int] = []
        self.boxes: list[np.ndarray] = []

    def due(self, index: int) -> bool:
        # By absolute frame number, so a video split over worker processes is checked at the same frames.
        return index % self.step == 0

    def check(self, index: int, image: np.ndarray, tracked) -> None:
        """Record the people in `image` (RGB) at frame `index`; `tracked` is the tracker's pose_landmarks."""
        o = self.options
        row = np.full((o.max_people, 4), np.nan, np.float32)
        box = None if tracked is None else landmark_box(_xyv(tracked), o.box_margin)
        if box is not None:
            row[0] = box
            h, w = image.shape[:2]
            k = 1
            # The strips left and right of the tracked person, each searched on its own: the detector sees
            # the whole image shrunk to 224 px, where a second person in a wide frame is too small to find.
            for x0, x1 in ((0.0, float(box[0])), (float(box[2]), 1.0)):
                if k >= o.max_people or x1 - x0 < o.min_strip:
                    continue
                a, b = int(x0 * w), int(np.ceil(x1 * w))
                result = self.pose.process(np.ascontiguousarray(image[:, a:b]))
                if result.pose_landmarks is None:
                    continue
                xyv = _xyv(result.pose_landmarks)
                xyv[:, 0] = (a + xyv[:, 0] * (b - a)) / w
                other = landmark_box(xyv, o.box_margin)
                # A body, not a stray detection among equipment: well seen, and at least this tall against
                # the tracked person (a coach a few metres further back is still over half as tall).
                if (other is None or float(np.mean(xyv[:, 2])) < o.min_visibility
                        or other[3] - other[1] < o.min_height * (box[3] - box[1])
                        or overlap(other, box) >= o.max_overlap):
                    continue
                row[k] = other
                k += 1
        self.frames.append(index)
        self.boxes.append(row)

    def result(self) -> PeopleChecks:
        if not self.frames:
            return empty_checks(self.options.max_people)
        return PeopleChecks(np.array(self.frames, np.int64), np.stack(self.boxes))

    def close(self) -> None:
        self.pose.close()


def _xyv(landmarks) -> np.ndarray:
    return np.array([(p.x, p.y, p.visibility) for p in landmarks.landmark], np.float32)


# ------------------------------------------------------------------------------------------- analysis


def several_people_spans(checks: PeopleChecks, frames: int, fps: float,
                         options: PeopleOptions = PeopleOptions(), cuts: list[int] | np.ndarray = ()
                         ) -> list[tuple[int, int]]:
    """Spans [start, end) in which at least two people are in the picture: runs of at least
    options.min_checks checks finding two or more (a single check without the second person inside a run
    is bridged), each check standing for the frames half a step either side; no span crosses a cut."""
    if len(checks.frames) == 0:
        return []
    several = checks.counts >= 2
    # Bridge one missed check between two that found several people (the other one turned away).
    bridged = several.copy()
    bridged[1:-1] |= several[:-2] & several[2:]
    step = max(1, int(round(options.every_seconds * fps)))
    spans: list[tuple[int, int]] = []
    k = 0
    while k < len(bridged):
        if not bridged[k]:
            k += 1
            continue
        j = k
        while j + 1 < len(bridged) and bridged[j + 1]:
            j += 1
        if j - k + 1 >= options.min_checks:
            start = max(0, int(checks.frames[k]) - step // 2)
            end = min(frames, int(checks.frames[j]) + step - step // 2)
            if j == len(bridged) - 1 and frames - int(checks.frames[j]) <= step:
                end = frames  # the last check: nothing after it says the second person left
            spans.append((start, end))
        k = j + 1
    out = []
    for a, b in spans:
        out += [(max(a, s), min(b, e)) for s, e in shots(frames, [int(c) for c in cuts]) if min(b, e) > max(a, s)]
    return out


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def chosen_boxes(checks: PeopleChecks, rule: str, point: tuple[float, float] | None = None) -> np.ndarray:
    """(K,) index of the athlete's box at each check by `rule` (RULES): "tracked" the tracker's person,
    "largest" the largest box, "left"/"right" the leftmost/rightmost centre, "click" the box nearest `point`
    (x, y normalised) at every check, "most moving" the person (followed from check to check by nearest
    centre) whose box moves and changes shape most. -1 where nobody was found."""
    if rule not in RULES:
        raise ValueError(f"athlete rule must be one of {', '.join(RULES)}, got {rule!r}")
    k = len(checks.frames)
    out = np.full(k, -1, int)
    for i in range(k):
        ok = np.flatnonzero(np.isfinite(checks.boxes[i, :, 0]))
        if not len(ok):
            continue
        b = checks.boxes[i, ok]
        if rule == "tracked" or rule == "most moving":
            out[i] = ok[0]
        elif rule == "largest":
            out[i] = ok[np.argmax((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))]
        elif rule in ("left", "right"):
            cx = (b[:, 0] + b[:, 2]) / 2
            out[i] = ok[np.argmin(cx) if rule == "left" else np.argmax(cx)]
        else:
            if point is None:
                raise ValueError("the click rule needs a point")
            d = [np.hypot(*(_centre(x) - np.asarray(point))) for x in b]
            out[i] = ok[int(np.argmin(d))]
    if rule == "most moving":
        out = _most_moving(checks, out)
    return out


def _most_moving(checks: PeopleChecks, fallback: np.ndarray) -> np.ndarray:
    """Follow each person of the first check with several people by nearest centre; the one whose box moved
    most over the run is the athlete at every check of that run."""
    counts = checks.counts
    out = fallback.copy()
    i = 0
    while i < len(counts):
        if counts[i] < 2:
            i += 1
            continue
        j = i
        while j + 1 < len(counts) and counts[j + 1] >= 2:
            j += 1
        first = np.flatnonzero(np.isfinite(checks.boxes[i, :, 0]))
        paths = [[checks.boxes[i, p]] for p in first]
        picks = [[int(p)] for p in first]
        for t in range(i + 1, j + 1):
            ok = np.flatnonzero(np.isfinite(checks.boxes[t, :, 0]))
            # Each person to the nearest box centre not taken by a nearer person (boxes of people side by
            # side overlap, so whole boxes compare badly: a squat changes a box's top more than its centre).
            pairs = sorted((float(np.hypot(*(_centre(checks.boxes[t, q]) - _centre(path[-1])))), n, int(q))
                           for n, path in enumerate(paths) for q in ok)
            taken: dict[int, int] = {}
            for _, n, q in pairs:
                if n not in taken and q not in taken.values():
                    taken[n] = q
            for n, (path, pick) in enumerate(zip(paths, picks)):
                q = taken.get(n, pick[-1])
                path.append(checks.boxes[t, q] if n in taken else path[-1])
                pick.append(q if n in taken else -1)
        moved = [float(np.abs(np.diff(np.stack(p), axis=0)).sum()) if len(p) > 1 else 0.0 for p in paths]
        best = int(np.argmax(moved))
        out[i:j + 1] = [q if q >= 0 else fallback[i + t] for t, q in enumerate(picks[best])]
        i = j + 1
    return out


# ------------------------------------------------------------------------------------------ split screen


@dataclass(frozen=True)
class SplitOptions:
    """Settings of find_split, on the pose pass's small grey frames (PoseTrack.thumbs, 64 px on the long side).

    A split screen joins two pictures along a straight line: across it the grey level jumps in most rows, in
    every frame, at the same place. Measured on an ffmpeg hstack of two shared squat videos: the seam's median
    jump over rows is 5-20x the frame's median jump between columns in every frame. But a tripod shot has
    such lines too: on the 32 shared videos (none a split screen) a door frame, rack or floor line passes this
    test in 15 (at 0.36-0.66 of the width or height). So a seam alone is never a split screen: find_split
    keeps only one in the middle (most split-screen edits and ffmpeg's hstack halve the picture; 6 of the 15
    tripod lines still fall there), and sides_with_people also wants a person on each side at once and nobody
    across it, which none of the single-person shared videos can give.
    """

    min_ratio: float = 3.5  # the seam's jump against the frame's median jump between columns
    min_share: float = 0.8  # ...in at least this share of the frames sampled
    # Only a seam near the middle splits a picture into two views (a picture-in-picture is not handled).
    centre_band: float = 0.04  # seam within 0.5 +/- this of the width (height): 1-2 px of 64
    sample_every: int = 5  # frames


def find_split(thumbs: np.ndarray, options: SplitOptions = SplitOptions()) -> tuple[str, float] | None:
    """("vertical" or "horizontal", position 0..1 of the seam) when the video is a split screen, else None.

    thumbs: (T, h, w) uint8 grey frames. A vertical seam at x splits the picture into left and right views."""
    if thumbs.ndim != 3 or len(thumbs) == 0:
        return None
    sample = thumbs[::options.sample_every].astype(np.float32)
    for axis, name in ((2, "vertical"), (1, "horizontal")):
        jumps = np.abs(np.diff(sample, axis=axis))  # (S, h, w-1) or (S, h-1, w)
        profile = np.median(jumps, axis=1 if axis == 2 else 2)  # (S, positions): median over rows (columns)
        base = np.median(profile, axis=1, keepdims=True) + 1.0
        ratio = profile / base
        size = profile.shape[1] + 1
        lo, hi = int((0.5 - options.centre_band) * size), int(np.ceil((0.5 + options.centre_band) * size))
        share = (ratio[:, lo:hi] >= options.min_ratio).mean(axis=0)
        if share.size and share.max() >= options.min_share:
            return name, (lo + int(np.argmax(share)) + 1) / size
    return None


def sides_with_people(split: tuple[str, float], checks: PeopleChecks) -> bool:
    """Whether people were found on both sides of a seam at once (in at least two checks) and no person's box
    ever straddles it (by more than a tenth of the box: the margin grown around the landmarks)."""
    direction, at = split
    c = 0 if direction == "vertical" else 1
    both = 0
    for row in checks.boxes:
        ok = row[np.isfinite(row[:, 0])]
        size = ok[:, c + 2] - ok[:, c]
        if ((ok[:, c] < at - 0.1 * size) & (ok[:, c + 2] > at + 0.1 * size)).any():
            return False
        centres = (ok[:, c] + ok[:, c + 2]) / 2
        both += bool((centres < at).any() and (centres > at).any())
    return both >= 2
