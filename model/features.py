"""Features: clips to per-frame arrays, augmentation, windows and scaling."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from curation import store
from curation.dataset import clip_aspect, load_clip_landmarks
from curation.kinematics import BODY, frame_features
from curation.landmarks import INDEX, MIRROR
from curation.pose import load_track
from curation.project import Project

# Bump when clip_features changes its columns or their meaning: a saved Scaler (and a model trained on it)
# only fits features of the same version.
FEATURES_VERSION = 1
LABELS = store.LABELS  # ("correct", "incorrect"); y = the index: 0 = correct, 1 = incorrect
UNLABELLED = -1  # y of a clip without a consensus label (load_clipset(labelled_only=False))
MASK_PREFIX = "mask_"
# After standardising, values are clipped to this many standard deviations: a one-frame tracking glitch
# gives angular velocities of thousands of degrees per second that would otherwise dominate a network's
# input and the scaler's own statistics of later clips.
CLIP_SD = 10.0
STD_FLOOR = 1e-6  # a constant feature (e.g. a mask that is always 1) is centred, not blown up


# ---------------------------------------------------------------------------------------------- features


def _mask(landmarks: np.ndarray) -> np.ndarray:
    """(T, len(BODY)) how far each BODY landmark can be trusted: its visibility where x and y are known
    (1 when the source has no visibility), 0 where x or y is missing. Never NaN, so the network sees the
    difference between "missing" and "at the mean" that scaling erases."""
    pts = np.asarray(landmarks, dtype=np.float64)[:, [INDEX[n] for n in BODY]]
    seen = np.isfinite(pts[..., 0]) & np.isfinite(pts[..., 1])
    vis = np.where(np.isfinite(pts[..., 3]), np.clip(pts[..., 3], 0.0, 1.0), 1.0)
    return np.where(seen, vis, 0.0)


def clip_features(landmarks: np.ndarray, fps: float, aspect: float = 1.0) -> np.ndarray:
    """Per-frame model inputs of one clip: float32 (T, F), columns named by feature_names().

    curation.kinematics.frame_features (hip-centred, torso-scaled x, y of the body landmarks, joint angles,
    distances, angular velocities; NaN where unknown, kept as NaN for the Scaler) followed by one mask
    column per body landmark (visibility, 0 where missing; never NaN). Works for T = 1 (velocities NaN).
    aspect = image width / height.
    """
    kinematic, _ = frame_features(landmarks, fps, aspect)
    return np.concatenate([kinematic, _mask(landmarks).astype(np.float32)], axis=1)


@lru_cache(maxsize=1)
def _names() -> tuple[str, ...]:
    # Taken from frame_features itself (one all-NaN frame), so the names cannot drift from the columns.
    _, kinematic = frame_features(np.full((1, 33, 4), np.nan, dtype=np.float32), fps=1.0)
    return tuple(kinematic) + tuple(MASK_PREFIX + n for n in BODY)


def feature_names() -> list[str]:
    """The F column names of clip_features, in order."""
    return list(_names())


# ---------------------------------------------------------------------------------------------- resampling


def resample(x: np.ndarray, length: int) -> np.ndarray:
    """Linear resampling of a (T, ...) sequence to (length, ...) along time, first and last frames kept.

    NaN-safe: a new frame takes the missing-ness of its nearest original frame (a gap keeps about its share
    of the clip; halfway between a known and a missing frame counts as missing); beside a gap the nearest
    known value is used. T = 1 repeats
    the frame. The dtype is kept.
    """
    a = np.asarray(x)
    if a.shape[0] == 0:
        raise ValueError("cannot resample an empty sequence")
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    if a.shape[0] == 1:
        return np.repeat(a, length, axis=0)
    pos = np.linspace(0.0, a.shape[0] - 1, length)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, a.shape[0] - 1)
    w = (pos - lo).reshape(-1, *([1] * (a.ndim - 1)))
    before, after = a[lo].astype(np.float64), a[hi].astype(np.float64)
    mixed = before * (1 - w) + after * w
    nearest = np.where(w < 0.5, before, np.where(w > 0.5, after, mixed))  # halfway beside a gap: missing
    return np.where(np.isfinite(mixed), mixed, nearest).astype(a.dtype, copy=False)


# ---------------------------------------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class Augmentation:
    """How augment() perturbs a clip's landmarks; each step is applied with its own probability."""

    p_mirror: float = 0.5  # left/right mirror: most faults have no side
    p_stretch: float = 0.5
    stretch: tuple[float, float] = (0.8, 1.2)  # time-stretch factor range (the method's 0.8-1.2)
    p_shift: float = 0.5
    max_shift: int = 2  # frames (the method's +/-2)
    p_noise: float = 0.5
    sigma: float = 0.01  # sd of x, y jitter in normalised image units (the method's 0.01)


def time_stretch(landmarks: np.ndarray, rng: np.random.Generator, low: float = 0.8, high: float = 1.2) -> np.ndarray:
    """Play the clip faster or slower: resampled to round(T * f) frames (at least 1), f ~ U(low, high)."""
    factor = rng.uniform(low, high)
    return resample(landmarks, max(1, int(round(landmarks.shape[0] * factor))))


def add_noise(landmarks: np.ndarray, rng: np.random.Generator, sigma: float = 0.01) -> np.ndarray:
    """Gaussian jitter of sd sigma on x and y (z and visibility untouched; NaN stays NaN)."""
    out = np.array(landmarks, copy=True)
    out[..., :2] += rng.normal(0.0, sigma, size=out[..., :2].shape).astype(out.dtype)
    return out


def shift(landmarks: np.ndarray, rng: np.random.Generator, max_frames: int = 2) -> np.ndarray:
    """Move the clip by k ~ U{-max_frames..max_frames} frames, length kept: frames falling off one end are
    dropped, the other end repeats its edge frame. At least one original frame always stays."""
    t = landmarks.shape[0]
    k = int(rng.integers(-max_frames, max_frames + 1))
    k = max(-(t - 1), min(t - 1, k))
    if k > 0:
        return np.concatenate([np.repeat(landmarks[:1], k, axis=0), landmarks[:-k]])
    if k < 0:
        return np.concatenate([landmarks[-k:], np.repeat(landmarks[-1:], -k, axis=0)])
    return np.array(landmarks, copy=True)


def mirror(landmarks: np.ndarray) -> np.ndarray:
    """Left/right mirror image: x -> 1 - x and each left landmark swapped with its right twin."""
    out = np.asarray(landmarks)[:, list(MIRROR)]  # fancy indexing copies
    out[..., 0] = 1 - out[..., 0]
    return out


def augment(landmarks: np.ndarray, rng: np.random.Generator, options: Augmentation = Augmentation()) -> np.ndarray:
    """A random combination of mirror, time_stretch, shift and add_noise (each with its probability)."""
    out = np.array(landmarks, copy=True)  # the caller's array is never changed, whatever is drawn
    if rng.random() < options.p_mirror:
        out = mirror(out)
    if rng.random() < options.p_stretch:
        out = time_stretch(out, rng, *options.stretch)
    if rng.random() < options.p_shift:
        out = shift(out, rng, options.max_shift)
    if rng.random() < options.p_noise:
        out = add_noise(out, rng, options.sigma)
    return out


# ---------------------------------------------------------------------------------------------- windows


def windows(x: np.ndarray, size: int = 20, overlap: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    """Overlapping fixed-length windows of a (T, F) clip: ((n, size, F) windows, (n,) start frames).

    step = max(1, round(size * (1 - overlap))). When the steps leave the last frames out, one more window
    ends at the last frame (a repetition's end, e.g. the lockout, matters as much as its start). A clip
    shorter than size gives one window starting at 0, padded by repeating its last frame.
    """
    a = np.asarray(x)
    if a.shape[0] == 0:
        raise ValueError("cannot cut windows from an empty clip")
    if size < 1 or not 0 <= overlap < 1:
        raise ValueError("size must be >= 1 and overlap in [0, 1)")
    t = a.shape[0]
    if t <= size:
        padded = np.concatenate([a, np.repeat(a[-1:], size - t, axis=0)])
        return padded[None], np.zeros(1, dtype=np.int64)
    step = max(1, int(round(size * (1 - overlap))))
    starts = list(range(0, t - size + 1, step))
    if starts[-1] != t - size:
        starts.append(t - size)
    starts_arr = np.asarray(starts, dtype=np.int64)
    return np.stack([a[s:s + size] for s in starts_arr]), starts_arr


# ---------------------------------------------------------------------------------------------- scaling


class ScalerError(ValueError):
    """A scaler used before fitting, or on features of another shape or version."""


@dataclass(eq=False)  # holds arrays: compare with to_dict()
class Scaler:
    """Per-feature standardisation that ignores NaN; missing values become 0 (the mean) after scaling.

    Fit it on the training clips only (the caller's job: statistics of test clips must not leak into the
    model), then transform every clip with it and save it beside the weights with to_dict().
    """

    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    version: int = FEATURES_VERSION

    def fit(self, arrays: list[np.ndarray]) -> "Scaler":
        """Mean and sd per feature over every frame of every array ((T, F) or (n, T, F)); NaN ignored.

        A feature never seen gets mean 0 and sd 1; the sd is floored at STD_FLOOR.
        """
        if not arrays:
            raise ScalerError("cannot fit a scaler on no clips")
        f = arrays[0].shape[-1]
        rows = np.concatenate([np.asarray(a, dtype=np.float64).reshape(-1, f) for a in arrays])
        finite = np.isfinite(rows)
        count = finite.sum(axis=0)
        filled = np.where(finite, rows, 0.0)
        mean = np.divide(filled.sum(axis=0), count, out=np.zeros(f), where=count > 0)
        var = np.divide((np.where(finite, rows - mean, 0.0) ** 2).sum(axis=0), count, out=np.ones(f),
                        where=count > 0)
        self.mean = mean
        self.std = np.maximum(np.sqrt(var), STD_FLOOR)
        self.version = FEATURES_VERSION
        return self

    def transform(self, x: np.ndarray, clip: float = CLIP_SD) -> np.ndarray:
        """Standardised float32 copy of (..., F) features; NaN -> 0 after scaling; clipped to +/- clip sd."""
        if self.mean is None or self.std is None:
            raise ScalerError("the scaler is not fitted")
        a = np.asarray(x, dtype=np.float64)
        if a.shape[-1] != self.mean.shape[0]:
            raise ScalerError(f"features have {a.shape[-1]} columns, the scaler was fitted on {self.mean.shape[0]}")
        z = np.clip((a - self.mean) / self.std, -clip, clip)
        return np.nan_to_num(z, nan=0.0).astype(np.float32)

    def to_dict(self) -> dict:
        """Plain JSON-able form (for meta.json beside the weights)."""
        if self.mean is None or self.std is None:
            raise ScalerError("the scaler is not fitted")
        return {"version": self.version, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Scaler":
        """A scaler saved by to_dict; refused when made for another FEATURES_VERSION."""
        if d.get("version") != FEATURES_VERSION:
            raise ScalerError(
                f"the scaler was saved for features version {d.get('version')}, this code makes version "
                f"{FEATURES_VERSION}: retrain the model"
            )
        return cls(mean=np.asarray(d["mean"], dtype=np.float64), std=np.asarray(d["std"], dtype=np.float64),
                   version=FEATURES_VERSION)


# ---------------------------------------------------------------------------------------------- clip statistics

STATISTICS = ("mean", "std", "min", "max", "range", "mean_abs_velocity")


def clip_statistics(x: np.ndarray, fps: float | None = None) -> np.ndarray:
    """Clip-level summary of (T, F) features for the scikit-learn baseline: float32 (6 * F,).

    Per feature, in the order of STATISTICS (all means of one statistic first, then the next): mean, sd,
    min, max, range over the frames, and mean absolute frame-to-frame change (per second when fps is
    given, else per frame). NaN ignored; a feature never seen (or a change with no two consecutive frames
    seen, e.g. T = 1) gives 0.
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] == 0:
        raise ValueError(f"features must be (T>=1, F), got {a.shape}")
    finite = np.isfinite(a)
    count = finite.sum(axis=0)
    seen = count > 0
    mean = np.divide(np.where(finite, a, 0.0).sum(axis=0), count, out=np.zeros(a.shape[1]), where=seen)
    var = np.divide((np.where(finite, a - mean, 0.0) ** 2).sum(axis=0), count, out=np.zeros(a.shape[1]), where=seen)
    low = np.where(seen, np.where(finite, a, np.inf).min(axis=0), 0.0)
    high = np.where(seen, np.where(finite, a, -np.inf).max(axis=0), 0.0)
    step = np.abs(np.diff(a, axis=0))
    step_ok = np.isfinite(step)
    n_steps = step_ok.sum(axis=0)
    velocity = np.divide(np.where(step_ok, step, 0.0).sum(axis=0), n_steps, out=np.zeros(a.shape[1]),
                         where=n_steps > 0)
    if fps is not None:
        velocity *= float(fps)
    return np.concatenate([mean, np.sqrt(var), low, high, high - low, velocity]).astype(np.float32)


def statistic_names(names: list[str] | None = None) -> list[str]:
    """Names of clip_statistics' entries ("<statistic>:<feature>"), by default for feature_names()."""
    names = feature_names() if names is None else names
    return [f"{s}:{n}" for s in STATISTICS for n in names]


# ---------------------------------------------------------------------------------------------- the labelled clips


@dataclass(eq=False)
class ClipSet:
    """The clips a model trains on or scores, in one order across every list.

    labels: int array, 0 = correct, 1 = incorrect (LABELS), UNLABELLED (-1) for a clip without a consensus.
    groups: what a grouped split keeps together (athlete or source video; the clip itself when unknown).
    criteria: per clip the consensus criteria verdicts {criterion: "pass" | "fail"}.
    complexity: per clip the automatic complexity index in [0, 1], None when not measured.
    views: per clip the camera view (curation.view: front, side, oblique), None when not estimated.
    """

    clip_ids: list[str]
    exercises: list[str]
    labels: np.ndarray
    groups: list[str]
    fps: list[float]
    landmarks: list[np.ndarray]
    aspect: list[float]
    criteria: list[dict[str, str]] = field(default_factory=list)
    complexity: list[float | None] = field(default_factory=list)
    views: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.clip_ids)

    def subset(self, indices: np.ndarray | list[int]) -> "ClipSet":
        """The clips at these positions, in that order."""
        idx = [int(i) for i in indices]

        def pick(values: list) -> list:
            return [values[i] for i in idx] if values else []

        return ClipSet(
            clip_ids=pick(self.clip_ids), exercises=pick(self.exercises),
            labels=np.asarray(self.labels, dtype=np.int64)[idx] if idx else np.zeros(0, dtype=np.int64),
            groups=pick(self.groups), fps=pick(self.fps), landmarks=pick(self.landmarks),
            aspect=pick(self.aspect), criteria=pick(self.criteria), complexity=pick(self.complexity),
            views=pick(self.views),
        )

    def features(self, index: int) -> np.ndarray:
        """clip_features of clip `index` (unaugmented)."""
        return clip_features(self.landmarks[index], self.fps[index], self.aspect[index])


GROUP_MODES = ("video", "athlete", "channel")  # what a grouped split keeps together


def group_of(clip: dict, video: dict | None, mode: str = "video") -> tuple[str, str]:
    """A clip's group for a grouped split, and its kind (the mode, or what stood in for it).

    video: the clip's group name (athlete or source given on import), else its video, else the clip itself.
    athlete / channel: the video's athlete / channel id; a clip whose video has none (or an imported clip)
    falls back to its video-mode group, and its kind says so.
    """
    if mode not in GROUP_MODES:
        raise ValueError(f"group must be one of {', '.join(GROUP_MODES)}, not {mode!r}")
    field = {"athlete": "athlete", "channel": "channel_id"}.get(mode)
    if field and video and video.get(field):
        return f"{mode}:{video[field]}", mode
    kind = "group" if clip["group_name"] else "video" if clip["video_id"] else "clip"
    return clip["group_name"] or clip["video_id"] or clip["id"], kind


def clip_landmarks(project: Project, clip: dict, video: dict | None, tracks: dict[str, np.ndarray]) -> np.ndarray:
    """A clip's landmarks (T, 33, 4): its own array, or its frames of its video's track (video: the clip's video
    row). tracks keeps each video's track, read once for all its clips of one call."""
    # One video's track serves all its clips (as in dataset.export_folder): reading the whole .npz once per
    # clip cost ~7 ms a clip on a 100 s video, seconds for a project of 1,000 clips.
    if video is not None and not clip["pose_path"]:
        if video["id"] not in tracks:
            tracks[video["id"]] = load_track(project.path(video["pose_path"])).landmarks
        return tracks[video["id"]][clip["start_frame"]:clip["end_frame"]].copy()
    return load_clip_landmarks(project, clip)


def load_clipset(project: Project, labelled_only: bool = True, group: str = "video",
                 only: set[str] | None = None) -> ClipSet:
    """The project's active clips with their consensus labels, groups, frame rates and landmarks.

    labelled_only drops clips whose consensus label is None (unlabelled, or a tie between coaches not yet
    adjudicated); otherwise they are kept with label UNLABELLED. groups: group_of(clip, video, group).
    aspect = the frame's width / height (dataset.clip_aspect: an imported clip's own, else its video's, else 1).
    only: these clips alone (a sample: their landmarks are read, no others').
    """
    consensus = store.consensus_labels(project)
    videos = {v["id"]: v for v in store.list_videos(project)}
    out = ClipSet([], [], np.zeros(0, dtype=np.int64), [], [], [], [], [], [])
    labels: list[int] = []
    tracks: dict[str, np.ndarray] = {}
    for clip in store.list_clips(project) if only is None else store.clips_in_order(project, only):
        entry = consensus.get(clip["id"], {})
        label = entry.get("label")
        if label is None and labelled_only:
            continue
        video = videos.get(clip["video_id"]) if clip["video_id"] else None
        aspect = clip_aspect(clip, video)
        out.clip_ids.append(clip["id"])
        out.exercises.append(clip["exercise"])
        labels.append(LABELS.index(label) if label is not None else UNLABELLED)
        out.groups.append(group_of(clip, video, group)[0])
        out.fps.append(float(clip["fps"]))
        out.landmarks.append(clip_landmarks(project, clip, video, tracks))
        out.aspect.append(float(aspect))
        out.criteria.append(dict(entry.get("criteria") or {}))
        out.complexity.append(float(clip["complexity"]) if clip["complexity"] is not None else None)
        out.views.append(clip.get("view"))
    out.labels = np.asarray(labels, dtype=np.int64)
    return out
