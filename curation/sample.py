"""Sample project: synthetic pose clips with known faults, for a first run offline."""

from __future__ import annotations

import csv
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from curation.dataset import CRITERION_PREFIX, ImportResult, import_folder
from curation.landmarks import INDEX, N_LANDMARKS
from curation.project import Project

SOURCE = "synthetic sample"
FPS = 30.0
ATHLETES = 4  # synthetic athletes per exercise: the groups of a grouped split
DURATION = (1.5, 3.0)  # seconds of one repetition
UNLABELLED_SHARE = 1 / 3  # of each exercise's clips of each class, left for a coach to label
NOISE = (0.002, 0.004)  # sd of landmark jitter in image heights (MediaPipe on a steady clip: a few 0.001)
VISIBILITY_NEAR = (0.92, 0.98)  # the side facing the camera
VISIBILITY_FAR = (0.80, 0.90)  # the hidden side: MediaPipe is less sure of it in a side view

# The picture is taken as square (aspect 1): pose dataset folders carry no frame size, so angles measured
# on the normalised coordinates as they are must be the true angles of the stick figure.


class SampleError(ValueError):
    """A sample that cannot be made (a folder already in use, a count below 1)."""


@dataclass(frozen=True)
class Body:
    """One synthetic athlete's segment lengths in metres (side view, a 1.75 m adult scaled)."""

    shank: float = 0.43
    thigh: float = 0.43
    trunk: float = 0.50  # hip to shoulder
    neck: float = 0.22  # shoulder to nose
    upper_arm: float = 0.30
    forearm: float = 0.27
    hand: float = 0.08  # wrist to index knuckle
    ankle_height: float = 0.08

    @classmethod
    def random(cls, rng: np.random.Generator) -> "Body":
        """An athlete 0.9-1.1 times the reference size, each segment within 5 % of that proportion."""
        size = rng.uniform(0.9, 1.1)
        return cls(**{f.name: f.default * size * rng.uniform(0.95, 1.05) for f in fields(cls)})


# Body-frame points by name: (T, 2) metres, x forward, y up, ankles at x = 0; plus "forearm_deg" (T,), the
# forearm's direction, which places the hand.
Points = dict[str, np.ndarray]


def _direction(degrees: np.ndarray) -> np.ndarray:
    """(T, 2) unit vectors at these angles (counter-clockwise from +x, y up)."""
    rad = np.radians(degrees)
    return np.stack([np.cos(rad), np.sin(rad)], axis=-1)


def _arm(shoulder: np.ndarray, upper_deg: np.ndarray, elbow_deg: np.ndarray, body: Body) -> Points:
    """Elbow and wrist from the upper arm's direction and the elbow angle (180 = straight, bending forward)."""
    elbow = shoulder + body.upper_arm * _direction(upper_deg)
    forearm_deg = upper_deg + 180 - elbow_deg  # from the elbow: back towards the shoulder, then opened
    return {"elbow": elbow, "wrist": elbow + body.forearm * _direction(forearm_deg), "forearm_deg": forearm_deg}


def _squat(u: np.ndarray, fault: str | None, body: Body, rng: np.random.Generator) -> tuple[Points, np.ndarray]:
    """Bodyweight squat, arms held forward. Faults: depth (stops high), trunk_lean (chest drops forward)."""
    # Knee angle at the bottom: below 90 is a full-depth bodyweight squat; a shallow one stops near 120-130.
    knee_min = rng.uniform(117, 135) if fault == "depth" else rng.uniform(72, 90)
    knee = 178 - u * (178 - knee_min)
    shin = 0.38 * (180 - knee)  # forward shin lean grows with depth (~35 degrees at full depth)
    # In a full squat the trunk leans about as far as the shins (the centre of mass stays over the feet). A
    # shallow squat is mostly a hip hinge: the chest drops as far while the knees barely bend. The
    # trunk_lean fault folds the chest well past the shins.
    if fault == "trunk_lean":
        lean_bottom = rng.uniform(68, 80)
    elif fault == "depth":
        lean_bottom = rng.uniform(34, 46)
    else:
        lean_bottom = shin[np.argmax(u)] + rng.uniform(0, 6)
    lean = 3 + u * (lean_bottom - 3)
    ankle = np.zeros((u.size, 2)) + [0.0, body.ankle_height]
    knee_at = ankle + body.shank * _direction(90 - shin)
    hip = knee_at + body.thigh * _direction(-90 - shin - knee)  # the thigh opens backwards from the shin
    shoulder = hip + body.trunk * _direction(90 - lean)
    arm = _arm(shoulder, np.zeros_like(u), np.full_like(u, 175.0), body)
    points = {"ankle": ankle, "knee": knee_at, "hip": hip, "shoulder": shoulder, **arm}
    return points, 0.6 * lean  # the head stays more upright than the trunk


def _curl(u: np.ndarray, fault: str | None, body: Body, rng: np.random.Generator) -> tuple[Points, np.ndarray]:
    """Standing bicep curl with both arms. Faults: elbow_fixed (elbows drift forward), no_swing (trunk swing)."""
    elbow_top = rng.uniform(35, 50)
    elbow = 165 - u * (165 - elbow_top)
    # Upper arm angle forward of the trunk line: a few degrees in a strict curl; 30-45 when the elbows drift.
    drift = rng.uniform(30, 45) if fault == "elbow_fixed" else rng.uniform(0, 6)
    upper = rng.uniform(0, 5) + u * drift
    # Swinging: the lifter leans back as the weight comes up (the lean is backwards, a negative angle).
    swing = rng.uniform(14, 22) if fault == "no_swing" else rng.uniform(0, 3)
    lean = rng.uniform(-1, 2) - u * swing
    ankle = np.zeros((u.size, 2)) + [0.0, body.ankle_height]
    knee = ankle + body.shank * _direction(np.full_like(u, 88.0))  # knees soft, not locked
    hip = knee + body.thigh * _direction(np.full_like(u, 92.0))
    shoulder = hip + body.trunk * _direction(90 - lean)
    arm = _arm(shoulder, -90 - lean + upper, elbow, body)
    return {"ankle": ankle, "knee": knee, "hip": hip, "shoulder": shoulder, **arm}, lean


def _push_up(u: np.ndarray, fault: str | None, body: Body, rng: np.random.Generator) -> tuple[Points, np.ndarray]:
    """Push-up on the toes, hands under the shoulders. Faults: body_line (hips sag), depth (stops high)."""
    upper_arm, forearm, wrist_height = body.upper_arm, body.forearm, 0.03
    # Arms nearly straight at the top (elbow 170 degrees: shoulder-wrist distance by the law of cosines).
    top = wrist_height + np.sqrt(upper_arm**2 + forearm**2 - 2 * upper_arm * forearm * np.cos(np.radians(170)))
    # Shoulder height above the floor at the bottom: chest near the floor, or a half push-up.
    bottom = rng.uniform(0.40, 0.46) if fault == "depth" else rng.uniform(0.20, 0.25)
    height = top - u * (top - bottom)
    # Bend at the hip between the leg line and the trunk line: ~0 in a plank, 14-26 with sagging hips.
    bend = rng.uniform(14, 20) + u * rng.uniform(0, 6) if fault == "body_line" else np.full_like(u, rng.uniform(0, 3))
    # Leg angle such that ankle -> hip -> shoulder reaches the shoulder height: a sin g + b cos g = rise.
    leg, trunk = body.shank + body.thigh, body.trunk
    a, b = leg + trunk * np.cos(np.radians(bend)), trunk * np.sin(np.radians(bend))
    ankle_height = 0.10  # on the toes
    g = np.degrees(np.arcsin((height - ankle_height) / np.hypot(a, b)) - np.arctan2(b, a))
    ankle = np.zeros((u.size, 2)) + [0.0, ankle_height]
    knee = ankle + body.shank * _direction(g)
    hip = knee + body.thigh * _direction(g)
    shoulder = hip + trunk * _direction(g + bend)
    # Hands planted for the whole repetition, under the shoulders of the top position (or a little ahead).
    wrist = np.zeros_like(shoulder) + [shoulder[0, 0] + rng.uniform(0, 0.04), wrist_height]
    reach = wrist - shoulder
    d = np.clip(np.hypot(*reach.T), abs(upper_arm - forearm) + 1e-3, upper_arm + forearm - 1e-3)
    # Elbow by the law of cosines, bending back towards the feet (the elbows travel back, not forward).
    at_shoulder = np.degrees(np.arccos((upper_arm**2 + d**2 - forearm**2) / (2 * upper_arm * d)))
    elbow_deg = np.degrees(np.arccos((upper_arm**2 + forearm**2 - d**2) / (2 * upper_arm * forearm)))
    upper = np.degrees(np.arctan2(reach[:, 1], reach[:, 0])) - at_shoulder
    arm = _arm(shoulder, upper, elbow_deg, body)
    # The head continues the trunk line: its "up" points along the body, towards where the person faces.
    return {"ankle": ankle, "knee": knee, "hip": hip, "shoulder": shoulder, **arm}, 90 - (g + bend)


@dataclass(frozen=True)
class Movement:
    exercise: str  # as in curation/catalogue.py
    # (phase (T,) 0..1, failed criterion or None, athlete, rng) -> (points, head tilt (T,): degrees the head's
    # up direction is turned forward from vertical)
    draw: Callable[[np.ndarray, str | None, Body, np.random.Generator], tuple[Points, np.ndarray]]
    faults: tuple[str, ...]  # catalogue criteria an incorrect clip fails (one each); the others pass
    scale: tuple[float, float]  # image heights per metre of body
    ground: tuple[float, float]  # image y of the floor
    start: float  # image x of the ankles when facing right (mirrored when facing left)
    standing: bool  # feet flat (squat, curl) or on the toes (push-up)


MOVEMENTS: tuple[Movement, ...] = (
    Movement("squat", _squat, ("depth", "trunk_lean"), (0.38, 0.45), (0.88, 0.95), 0.45, True),
    Movement("bicep curl", _curl, ("elbow_fixed", "no_swing"), (0.40, 0.46), (0.88, 0.95), 0.45, True),
    Movement("push-up", _push_up, ("body_line", "depth"), (0.45, 0.52), (0.72, 0.82), 0.10, False),
)

# Face points in the head's frame (forward, up), metres from the nose; hand points from the wrist along
# the forearm (share of the hand's length, degrees off the forearm).
_FACE = {
    "eye_inner": (-0.01, 0.035), "eye": (-0.02, 0.037), "eye_outer": (-0.03, 0.035),
    "ear": (-0.10, 0.02), "mouth": (-0.01, -0.04),
}
_HAND = {"index": (1.0, 0.0), "pinky": (0.85, -10.0), "thumb": (0.55, 25.0)}


def _landmarks(points: Points, head_tilt: np.ndarray, movement: Movement, body: Body,
               rng: np.random.Generator) -> np.ndarray:
    """The (T, 33, 4) BlazePose array of a side view of `points`, placed, jittered and with visibility."""
    pts = dict(points)
    tilt = np.radians(head_tilt)[:, None]
    up, forward = np.hstack([np.sin(tilt), np.cos(tilt)]), np.hstack([np.cos(tilt), -np.sin(tilt)])
    pts["nose"] = pts["shoulder"] + body.neck * up + 0.07 * forward
    for name, (f, v) in _FACE.items():
        pts[name] = pts["nose"] + f * forward + v * up
    for name, (share, off) in _HAND.items():
        pts[name] = pts["wrist"] + share * body.hand * _direction(pts["forearm_deg"] + off)
    if movement.standing:
        pts["heel"] = pts["ankle"] + [-0.06, -body.ankle_height + 0.01]
        pts["foot_index"] = pts["ankle"] + [0.16, -body.ankle_height]
    else:
        pts["heel"] = pts["ankle"] + [-0.05, 0.04]
        pts["foot_index"] = pts["ankle"] * [1.0, 0.0] + [0.03, 0.0]  # toes on the floor

    facing = rng.choice([-1.0, 1.0])
    scale = rng.uniform(*movement.scale)
    x0 = 0.5 + facing * (movement.start - 0.5) + rng.uniform(-0.05, 0.05)
    ground = rng.uniform(*movement.ground)
    near = "right" if facing > 0 else "left"  # facing the picture's right, the right side is towards us
    far_shift = np.array([-facing * rng.uniform(0.008, 0.015), -rng.uniform(0.004, 0.01)])

    T = head_tilt.size
    out = np.full((T, N_LANDMARKS, 4), np.nan)
    for name, index in INDEX.items():
        if name == "nose":
            part, side = name, near
        elif name.startswith("mouth_"):
            part, side = "mouth", name.removeprefix("mouth_")
        else:
            side, part = name.split("_", 1)
        xy = pts[part]
        image = np.stack([x0 + facing * scale * xy[:, 0], ground - scale * xy[:, 1]], axis=-1)
        if side != near:
            image = image + far_shift  # a pure shift: the far side's angles equal the near side's
        out[:, index, :2] = image
        out[:, index, 3] = rng.uniform(*(VISIBILITY_NEAR if side == near else VISIBILITY_FAR), size=T)
    out[..., :2] += rng.normal(0, rng.uniform(*NOISE), size=(T, N_LANDMARKS, 2))
    return out.astype(np.float32)  # z stays NaN: a 2D source has no depth (design.md 4.1)


def _phase(rng: np.random.Generator) -> np.ndarray:
    """(T,) position in one repetition, 0 at the start and end, 1 at the turning point, at a random tempo."""
    frames = int(round(FPS * rng.uniform(*DURATION)))
    s = np.linspace(0, 1, frames) ** rng.uniform(0.8, 1.25)  # uneven down and up speeds
    return (1 - np.cos(2 * np.pi * s)) / 2


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def make_sample(folder: Path, clips_per_class: int = 12, seed: int = 0) -> Path:
    """Write a pose dataset folder (design.md 4.1) of synthetic side-view clips with known faults.

    Per exercise of MOVEMENTS: clips_per_class correct and as many incorrect clips, each one repetition at
    30 fps, spread over ATHLETES synthetic athletes (the `group`); an incorrect clip shows one of the
    exercise's faults and fails that criterion (criterion:<name> columns, the others pass). About a third of
    each class is left unlabelled (empty label and criteria). Same seed, same folder. Returns `folder`.
    """
    if clips_per_class < 1:
        raise SampleError(f"clips_per_class must be at least 1, not {clips_per_class}")
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise SampleError(f"{folder} is not empty; the sample needs a folder of its own")
    (folder / "poses").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    criteria = sorted({c for m in MOVEMENTS for c in m.faults})
    rows = []
    for movement in MOVEMENTS:
        athletes = [Body.random(rng) for _ in range(ATHLETES)]
        plan = []  # (athlete, fault or None for a correct clip, labelled)
        hidden = round(clips_per_class * UNLABELLED_SHARE)
        for incorrect in (False, True):
            for labelled, count in ((True, clips_per_class - hidden), (False, hidden)):
                # Faults dealt evenly within the labelled and within the unlabelled clips, athletes at random.
                faults = [None] * count
                if incorrect:
                    faults = [str(f) for f in rng.permutation(np.resize(movement.faults, count))]
                who = rng.permutation(np.resize(np.arange(ATHLETES), count))
                plan += [(int(a), f, labelled) for a, f in zip(who, faults)]
        # Shuffled before numbering, so clip order tells a coach nothing about the answer.
        for number, k in enumerate(rng.permutation(len(plan)), start=1):
            athlete, fault, labelled = plan[k]
            points, tilt = movement.draw(_phase(rng), fault, athletes[athlete], rng)
            clip_id = f"sample-{_slug(movement.exercise)}-{number:03d}"
            np.save(folder / "poses" / f"{clip_id}.npy", _landmarks(points, tilt, movement, athletes[athlete], rng))
            marks = {c: ("fail" if c == fault else "pass") for c in movement.faults} if labelled else {}
            rows.append({
                "clip_id": clip_id,
                "exercise": movement.exercise,
                "label": ("incorrect" if fault else "correct") if labelled else "",
                "fps": FPS,
                "group": f"synthetic-{_slug(movement.exercise)}-athlete-{athlete + 1}",
                "source": SOURCE,
                **{CRITERION_PREFIX + c: marks.get(c, "") for c in criteria},
            })
    with (folder / "clips.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


def sample_project(project: Project, clips_per_class: int = 12, seed: int = 0) -> ImportResult:
    """Make the sample and import it into the project like any dataset folder (a second call adds nothing)."""
    with tempfile.TemporaryDirectory(dir=project.work) as tmp:
        return import_folder(project, make_sample(Path(tmp) / "sample", clips_per_class, seed))
