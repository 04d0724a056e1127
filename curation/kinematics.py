"""Kinematics: joint angles, velocities, distances and the complexity components."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from curation.landmarks import INDEX

# Points that are not landmarks: mid-points of a left/right pair. "vertical" is special: the point one unit
# straight up (image y points down) from the angle's vertex, so an angle against it is a lean from vertical.
_MIDPOINTS: dict[str, tuple[str, str]] = {
    "mid_shoulder": ("left_shoulder", "right_shoulder"),
    "mid_hip": ("left_hip", "right_hip"),
    "mid_knee": ("left_knee", "right_knee"),
    "mid_ankle": ("left_ankle", "right_ankle"),
    "mid_wrist": ("left_wrist", "right_wrist"),
}
VERTICAL = "vertical"


def _sides(pattern: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    """Expand "{s}" templates into left_ and right_ entries, left first, so pairs sit side by side."""
    out: dict[str, tuple[str, ...]] = {}
    for name, points in pattern.items():
        if "{s}" in name:
            for side in ("left", "right"):
                out[name.format(s=side)] = tuple(p.format(s=side, o="right" if side == "left" else "left")
                                                 for p in points)
        else:
            out[name] = points
    return out


# name -> (point a, vertex, point c): the unsigned angle a-vertex-c in degrees (0..180), in the image plane.
# 2D on purpose: many sources have no depth, and MediaPipe's z is much noisier than x and y.
ANGLES: dict[str, tuple[str, str, str]] = _sides({  # type: ignore[assignment]
    "{s}_elbow": ("{s}_shoulder", "{s}_elbow", "{s}_wrist"),            # 180 = straight arm
    "{s}_shoulder": ("{s}_elbow", "{s}_shoulder", "{s}_hip"),           # 0 = arm along the trunk
    "{s}_arm_to_shoulder_line": ("{o}_shoulder", "{s}_shoulder", "{s}_elbow"),  # 180 = arm out sideways
    "{s}_wrist": ("{s}_elbow", "{s}_wrist", "{s}_index"),               # 180 = hand in line with forearm
    "{s}_hip": ("{s}_shoulder", "{s}_hip", "{s}_knee"),                 # 180 = standing straight
    "{s}_hip_abduction": ("{o}_hip", "{s}_hip", "{s}_knee"),            # 90 = thigh square to the pelvis
    "{s}_knee": ("{s}_hip", "{s}_knee", "{s}_ankle"),                   # 180 = straight leg
    "{s}_ankle": ("{s}_knee", "{s}_ankle", "{s}_foot_index"),           # shin to foot
    "{s}_shin_lean": ("{s}_knee", "{s}_ankle", VERTICAL),               # 0 = vertical shin (knee over ankle)
    "trunk_lean": ("mid_shoulder", "mid_hip", VERTICAL),                # 0 = upright, 90 = horizontal
    "neck": ("nose", "mid_shoulder", "mid_hip"),                        # 180 = head in line with trunk
})

# name -> (point a, point b, kind), in torso lengths. "distance": |a - b| in the image plane; "height": how
# far a is above b (positive up).
DISTANCES: dict[str, tuple[str, str, str]] = {
    "wrist_to_wrist": ("left_wrist", "right_wrist", "distance"),
    "ankle_to_ankle": ("left_ankle", "right_ankle", "distance"),     # stance width
    "knee_to_knee": ("left_knee", "right_knee", "distance"),         # knee valgus proxy (vs stance width)
    "left_wrist_to_shoulder": ("left_wrist", "left_shoulder", "distance"),
    "right_wrist_to_shoulder": ("right_wrist", "right_shoulder", "distance"),
    "hip_height": ("mid_hip", "mid_ankle", "height"),                # squat depth
    "wrist_height": ("mid_wrist", "mid_shoulder", "height"),         # presses, raises, pull-ups
}

# Landmarks whose normalised x, y enter the per-frame features (face and finger details left out: they add
# noise, not technique).
BODY: tuple[str, ...] = (
    "nose",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)

# The joints the complexity index looks at, with a typical adult active range of motion in degrees (the
# normalisation of range_of_motion): elbow flexion ~150, shoulder flexion ~180, hip flexion ~120, knee
# flexion ~140, ankle dorsi- plus plantar-flexion ~70 (AAOS reference values, rounded).
MAJOR_JOINTS: dict[str, float] = {
    "left_elbow": 150.0, "right_elbow": 150.0,
    "left_shoulder": 180.0, "right_shoulder": 180.0,
    "left_hip": 120.0, "right_hip": 120.0,
    "left_knee": 140.0, "right_knee": 140.0,
    "left_ankle": 70.0, "right_ankle": 70.0,
}
ENGAGED_DEGREES = 15.0  # a joint whose robust range over the clip reaches this counts as engaged
SENSITIVITY_SCALE = 20.0  # torso lengths per second of lever-weighted angular speed scoring 1 - 1/e (~0.63);
# chosen on real clips: planks ~0.1, push-ups ~0.3-0.4, bodyweight squats ~0.6-0.9
COMPLEXITY_SMOOTH_SECONDS = 0.2  # angle smoothing before ranges and speeds: keeps landmark jitter out
# Body segments for the centre of mass: (proximal point, distal point, share of body mass, position of the
# segment's own centre of mass from proximal to distal). Winter, Biomechanics and Motor Control of Human
# Movement (2009), table 4.1; the head is placed at the nose, the hand is lumped with the forearm.
_SEGMENTS: tuple[tuple[str, str, float, float], ...] = (
    ("nose", "nose", 0.081, 0.0),
    ("mid_shoulder", "mid_hip", 0.497, 0.5),
    *((f"{s}_shoulder", f"{s}_elbow", 0.028, 0.436) for s in ("left", "right")),
    *((f"{s}_elbow", f"{s}_wrist", 0.022, 0.682) for s in ("left", "right")),
    *((f"{s}_hip", f"{s}_knee", 0.100, 0.433) for s in ("left", "right")),
    *((f"{s}_knee", f"{s}_ankle", 0.0465, 0.433) for s in ("left", "right")),
    *((f"{s}_ankle", f"{s}_foot_index", 0.0145, 0.5) for s in ("left", "right")),
)
_MIN_VISIBILITY = 0.5  # below this a landmark is taken as unseen where it matters where it is (the base)
_SUPPORT_TOLERANCE = 0.3  # torso lengths above the lowest foot at which a hand, elbow, knee is on the floor
_SINGLE_LEG_LIFT = 0.3  # torso lengths a foot must rise above its own lowest recent position to be lifted
_MIN_HALF_BASE = 0.1  # torso lengths: floor on the base half-width so a point-like base does not divide by 0


def _check(landmarks: np.ndarray) -> np.ndarray:
    arr = np.asarray(landmarks, dtype=np.float64)
    if arr.ndim != 3 or arr.shape[1:] != (33, 4):
        raise ValueError(f"landmarks must have shape (T, 33, 4), got {arr.shape}")
    return arr


def _xy(landmarks: np.ndarray, aspect: float) -> np.ndarray:
    """(T, 33, 2) x, y in units of image height (x times width/height), so angles are true angles."""
    xy = _check(landmarks)[..., :2].copy()
    xy[..., 0] *= aspect
    return xy


def _point(xy: np.ndarray, name: str) -> np.ndarray:
    """(T, 2) coordinates of a landmark or a mid-point; NaN when either half of a mid-point is missing."""
    if name in _MIDPOINTS:
        a, b = _MIDPOINTS[name]
        return (xy[:, INDEX[a]] + xy[:, INDEX[b]]) / 2
    return xy[:, INDEX[name]]


def _angle(u: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Unsigned angle in degrees between (T, 2) vectors; NaN where either is missing or of zero length."""
    cross = u[:, 0] * w[:, 1] - u[:, 1] * w[:, 0]
    dot = (u * w).sum(axis=1)
    out = np.degrees(np.arctan2(np.abs(cross), dot))
    degenerate = (np.hypot(*u.T) == 0) | (np.hypot(*w.T) == 0)
    out[degenerate] = np.nan
    return out


def joint_angles(landmarks: np.ndarray, aspect: float = 1.0) -> np.ndarray:
    """Angles of ANGLES per frame: float64 (T, len(ANGLES)) in degrees, NaN where an input point is missing.

    aspect = image width / height; x is multiplied by it so that an angle measured on normalised
    coordinates is the angle seen in the picture.
    """
    xy = _xy(landmarks, aspect)
    out = np.full((xy.shape[0], len(ANGLES)), np.nan)
    for j, (a, v, c) in enumerate(ANGLES.values()):
        vertex = _point(xy, v)
        u = _point(xy, a) - vertex
        w = np.broadcast_to([0.0, -1.0], vertex.shape) if c == VERTICAL else _point(xy, c) - vertex
        out[:, j] = _angle(u, w)
    return out


def torso_lengths(landmarks: np.ndarray, aspect: float = 1.0) -> np.ndarray:
    """(T,) mid-shoulder to mid-hip distance per frame in image heights; NaN where not seen."""
    xy = _xy(landmarks, aspect)
    return np.hypot(*(_point(xy, "mid_shoulder") - _point(xy, "mid_hip")).T)


def body_scale(landmarks: np.ndarray, aspect: float = 1.0) -> float:
    """The clip's torso length: the median over frames (robust: the scale does not jitter); NaN if unseen."""
    lengths = torso_lengths(landmarks, aspect)
    lengths = lengths[np.isfinite(lengths) & (lengths > 0)]
    return float(np.median(lengths)) if lengths.size else float("nan")


def normalised_coordinates(landmarks: np.ndarray, aspect: float = 1.0) -> np.ndarray:
    """(T, 33, 3) x, y, z with the mid-hip at the origin, in torso lengths (body_scale), y down.

    z is MediaPipe's depth (same scale as x, so it is multiplied by aspect too) and stays NaN when the
    source has none. A frame without both hips is all NaN: it has no origin.
    """
    arr = _check(landmarks)
    xyz = arr[..., :3].copy()
    xyz[..., 0] *= aspect
    xyz[..., 2] *= aspect
    origin = (xyz[:, INDEX["left_hip"]] + xyz[:, INDEX["right_hip"]]) / 2
    return (xyz - origin[:, None, :]) / body_scale(arr, aspect)


def distances(landmarks: np.ndarray, aspect: float = 1.0) -> np.ndarray:
    """DISTANCES per frame: float64 (T, len(DISTANCES)) in torso lengths, NaN where a point is missing."""
    xy = normalised_coordinates(landmarks, aspect)[..., :2]
    out = np.full((xy.shape[0], len(DISTANCES)), np.nan)
    for j, (a, b, kind) in enumerate(DISTANCES.values()):
        d = _point(xy, a) - _point(xy, b)
        out[:, j] = np.hypot(*d.T) if kind == "distance" else -d[:, 1]
    return out


def time_derivative(x: np.ndarray, fps: float) -> np.ndarray:
    """Per-second rate of change along axis 0 of (T, ...) values, NaN-safe.

    Central difference where both neighbours exist, a one-sided difference at an edge or beside a gap,
    NaN where the frame itself is missing or has no neighbour at all (so T=1 gives NaN: one frame has no
    speed).
    """
    a = np.asarray(x, dtype=np.float64)
    back = np.full_like(a, np.nan)
    fwd = np.full_like(a, np.nan)
    if a.shape[0] >= 2:
        step = np.diff(a, axis=0)
        back[1:] = step
        fwd[:-1] = step
    central = (back + fwd) / 2
    one_sided = np.where(np.isnan(back), fwd, back)
    return np.where(np.isnan(central), one_sided, central) * float(fps)


def angular_velocity(angles: np.ndarray, fps: float) -> np.ndarray:
    """(T, n) angular velocity of (T, n) angles in degrees per second (time_derivative: NaN-safe)."""
    return time_derivative(angles, fps)


def moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average along axis 0 over `window` frames, ignoring NaN; NaN frames stay NaN."""
    x = np.asarray(x, dtype=np.float64)
    if window <= 1 or x.shape[0] == 0:
        return x.copy()
    finite = np.isfinite(x)
    before = (window - 1) // 2
    after = window - 1 - before

    def window_sum(v: np.ndarray) -> np.ndarray:
        padded = np.concatenate([np.zeros((before + 1, *v.shape[1:])), v, np.zeros((after, *v.shape[1:]))])
        c = np.cumsum(padded, axis=0)
        return c[window:] - c[:-window]

    counts = window_sum(finite.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = window_sum(np.where(finite, x, 0.0)) / counts
    out[~finite] = np.nan
    return out


def frame_features(landmarks: np.ndarray, fps: float, aspect: float = 1.0) -> tuple[np.ndarray, list[str]]:
    """Per-frame model inputs: float32 (T, F) and the F column names.

    Columns: normalised x, y of the BODY landmarks ("x_<name>", "y_<name>"), joint angles ("angle_<name>"),
    distances ("dist_<name>") and angular velocities ("vel_<name>", deg/s). NaN where unknown.
    """
    coords = normalised_coordinates(landmarks, aspect)[:, [INDEX[n] for n in BODY], :2]
    angles = joint_angles(landmarks, aspect)
    parts = [
        coords.reshape(coords.shape[0], 2 * len(BODY)),
        angles,
        distances(landmarks, aspect),
        angular_velocity(angles, fps),
    ]
    names = [f"{axis}_{n}" for n in BODY for axis in ("x", "y")]
    names += [f"angle_{n}" for n in ANGLES] + [f"dist_{n}" for n in DISTANCES] + [f"vel_{n}" for n in ANGLES]
    return np.concatenate(parts, axis=1).astype(np.float32), names


# The four components of the complexity index, as clips and label events store them, with their titles.
COMPONENTS: dict[str, str] = {
    "joints_engaged": "Joints engaged",
    "angular_sensitivity": "Angular sensitivity",
    "range_of_motion": "Range of motion",
    "balance_demand": "Balance demand",
}


@dataclass
class Complexity:
    """The biomechanical complexity components of one clip, each in [0, 1] (NaN when not measurable).

    joints_engaged: share of the MAJOR_JOINTS seen in the clip whose robust angle range (5th to 95th
        percentile of the smoothed angle) reaches ENGAGED_DEGREES.
    angular_sensitivity: how fast the body's effective position changes through its joints. For each major
        joint, its peak angular speed (95th percentile, rad/s) times its lever (mean length of the two
        segments meeting at it, in torso lengths: the displacement one radian of that joint makes), summed
        over the joints (torso lengths per second) and mapped by 1 - exp(-v / SENSITIVITY_SCALE). More joints
        moving, faster, or with longer levers all score higher. A single frame counts as no speed.
    range_of_motion: mean over the engaged joints of range / typical full range of that joint (capped at 1);
        0 when no joint is engaged.
    balance_demand: mean over frames of 1 - stability margin, where margin = 1 - |centre of mass x - base
        centre x| / base half-width, clipped to 0..1 (1 = centre of mass over the middle of the base, 0 = at
        or past its edge). The base of support spans horizontally the seen (visibility >= 0.5) points of the
        feet on the ground plus hands, elbows or knees within 0.3 torso lengths of the lowest foot (a plank's
        forearms); the centre of mass is centre_of_mass. Standing on one leg (one foot more than 0.3 torso
        lengths above its own lowest position within a second, the other not) halves the margin. NaN when
        no foot is seen.
    index: mean of the four (of those that are measurable).
    """

    joints_engaged: float
    angular_sensitivity: float
    range_of_motion: float
    balance_demand: float
    index: float


def _nan_percentile(x: np.ndarray, q: float) -> np.ndarray:
    """Column percentiles ignoring NaN (numpy's default linear interpolation between the closest ranks); NaN
    for an all-NaN column. One sort of the whole array: np.nanpercentile handles NaN column by column and was
    most of the cost of importing a clip."""
    out = np.full(x.shape[1], np.nan)
    n = (~np.isnan(x)).sum(axis=0)
    cols = np.flatnonzero(n)
    if cols.size:
        ranked = np.sort(x[:, cols], axis=0)  # NaN sorts last
        pos = (n[cols] - 1) * (q / 100)
        below = np.floor(pos).astype(int)
        above = np.minimum(below + 1, n[cols] - 1)
        a, b = ranked[below, np.arange(cols.size)], ranked[above, np.arange(cols.size)]
        out[cols] = a + (b - a) * (pos - below)
    return out


def _com(xy: np.ndarray) -> np.ndarray:
    """(T, 2) segment-mass-weighted centre of mass of (T, 33, 2) points, in the same coordinates."""
    total = np.zeros((xy.shape[0], 2))
    weight = np.zeros((xy.shape[0], 1))
    for a, b, mass, along in _SEGMENTS:
        p = _point(xy, a) + along * (_point(xy, b) - _point(xy, a))
        ok = np.isfinite(p).all(axis=1, keepdims=True)
        total += np.where(ok, p * mass, 0.0)
        weight += ok * mass
    com = total / np.where(weight > 0, weight, np.nan)
    trunk = np.isfinite(_point(xy, "mid_shoulder") - _point(xy, "mid_hip")).all(axis=1)
    com[~trunk] = np.nan
    return com


def centre_of_mass(landmarks: np.ndarray, aspect: float = 1.0) -> np.ndarray:
    """(T, 2) whole-body centre of mass in the coordinates of normalised_coordinates (torso lengths).

    Segment masses from Winter's anthropometric table; a missing segment is left out and the others
    reweighted; NaN where the trunk is missing.
    """
    return _com(normalised_coordinates(landmarks, aspect)[..., :2])


def _rolling_max(x: np.ndarray, half: int) -> np.ndarray:
    """Centred rolling maximum over 2 * half + 1 frames, ignoring NaN (NaN where the window has nothing)."""
    if x.size == 0:
        return x.copy()
    padded = np.pad(x, half, constant_values=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmax(np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1), axis=1)


def _balance_demand(landmarks: np.ndarray, fps: float, aspect: float) -> float:
    arr = _check(landmarks)
    # Image coordinates in torso lengths, not hip-centred: a planted foot stays put in them.
    xy = _xy(arr, aspect) / body_scale(arr, aspect)
    com = _com(xy)[:, 0]
    # Where a part of the base is (feet out of the picture, MediaPipe guessing) only counts when it is seen.
    unseen = arr[..., 3] < _MIN_VISIBILITY  # NaN visibility (a source without it) compares False: seen
    xy[unseen] = np.nan
    feet = {side: [INDEX[f"{side}_{p}"] for p in ("ankle", "heel", "foot_index")]
            for side in ("left", "right")}
    others = [INDEX[n] for n in ("left_wrist", "right_wrist", "left_elbow", "right_elbow", "left_knee",
                                 "right_knee")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN frames and feet become NaN, handled below
        # A foot is lifted when it is clearly above its own lowest position within a second either side
        # (the floor under it): comparing the two feet with each other would mistake camera perspective for
        # a lifted foot, and a whole-clip floor breaks when the person walks.
        lifted = {}
        for side, idx in feet.items():
            low = np.nanmax(xy[:, idx, 1], axis=1)
            lifted[side] = _rolling_max(low, max(1, int(round(fps)))) - low > _SINGLE_LEG_LIFT
            xy[lifted[side][:, None] & np.isin(np.arange(33), idx)[None, :]] = np.nan
        feet_xy = xy[:, feet["left"] + feet["right"]]
        ground = np.nanmax(feet_xy[..., 1], axis=1)
        near = xy[:, others, 1] >= ground[:, None] - _SUPPORT_TOLERANCE  # hands, elbows, knees on the floor
        support_x = np.concatenate([feet_xy[..., 0], np.where(near, xy[:, others, 0], np.nan)], axis=1)
        lo, hi = np.nanmin(support_x, axis=1), np.nanmax(support_x, axis=1)
    half = np.maximum((hi - lo) / 2, _MIN_HALF_BASE)
    margin = np.clip(1 - np.abs(com - (lo + hi) / 2) / half, 0, 1)
    single_leg = lifted["left"] ^ lifted["right"]
    margin = np.where(single_leg, margin / 2, margin)
    margin = margin[np.isfinite(margin)]
    return float(1 - margin.mean()) if margin.size else float("nan")


def complexity_components(landmarks: np.ndarray, fps: float, aspect: float = 1.0) -> Complexity:
    """The Complexity of one clip (see Complexity for the definitions); NaN components for an all-NaN clip."""
    arr = _check(landmarks)
    names = list(ANGLES)
    cols = [names.index(j) for j in MAJOR_JOINTS]
    window = max(1, int(round(COMPLEXITY_SMOOTH_SECONDS * fps)))
    angles = moving_average(joint_angles(arr, aspect)[:, cols], window)
    seen = np.isfinite(angles).any(axis=0)
    balance = _balance_demand(arr, fps, aspect)
    if not seen.any():
        nan = float("nan")
        return Complexity(nan, nan, nan, balance, balance)

    ranges = _nan_percentile(angles, 95) - _nan_percentile(angles, 5)
    engaged = seen & (ranges >= ENGAGED_DEGREES)
    joints_engaged = float(engaged[seen].mean())
    full = np.array(list(MAJOR_JOINTS.values()))
    range_of_motion = float(np.minimum(ranges[engaged] / full[engaged], 1).mean()) if engaged.any() else 0.0

    speed = np.abs(np.radians(angular_velocity(angles, fps)))
    peak = np.nan_to_num(_nan_percentile(speed, 95))  # no speed sample (T=1, isolated frames) = still
    xy = _xy(arr, aspect)
    scale = body_scale(arr, aspect)
    levers = np.zeros(len(cols))
    for k, j in enumerate(MAJOR_JOINTS):
        a, v, c = ANGLES[j]
        vertex = _point(xy, v)
        seg = (np.hypot(*(_point(xy, a) - vertex).T) + np.hypot(*(_point(xy, c) - vertex).T)) / 2
        seg = seg[np.isfinite(seg)]
        levers[k] = np.median(seg) / scale if seg.size and np.isfinite(scale) else 0.0
    angular_sensitivity = float(1 - np.exp(-(peak * levers)[seen].sum() / SENSITIVITY_SCALE))

    parts = np.array([joints_engaged, angular_sensitivity, range_of_motion, balance])
    index = float(np.nanmean(parts))  # balance alone may be NaN; the other three are measured here
    return Complexity(joints_engaged, angular_sensitivity, range_of_motion, balance, index)


def complexity_row(landmarks: np.ndarray, fps: float, aspect: float = 1.0) -> dict[str, float | None]:
    """The complexity components and index of a clip as stored on its row (None where not measurable)."""
    c = complexity_components(landmarks, fps, aspect)
    values = {name: getattr(c, name) for name in COMPONENTS} | {"complexity": c.index}
    return {k: float(v) if v is not None and np.isfinite(v) else None for k, v in values.items()}
