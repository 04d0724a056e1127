"""Exercise catalogue: the exercises, their biomechanical criteria and the joints that matter (seed data)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Criterion:
    name: str  # short key, [a-z_]+, used in exports as criterion:<name>
    description: str  # what a coach checks, in the words a coach uses


@dataclass(frozen=True)
class Exercise:
    name: str  # key, as in clips.csv's `exercise` column
    description: str
    joints: tuple[str, ...]  # angle names of curation.kinematics.ANGLES that carry the movement
    criteria: tuple[Criterion, ...] = field(default_factory=tuple)


def _c(name: str, description: str) -> Criterion:
    return Criterion(name, description)


# Seeded into the database by the first migration; from then on the database is the truth (coaches edit it).
EXERCISES: tuple[Exercise, ...] = (
    Exercise(
        "squat", "Bodyweight or barbell back squat",
        ("left_knee", "right_knee", "left_hip", "right_hip", "left_ankle", "right_ankle", "trunk_lean"),
        (
            _c("depth", "Hip crease reaches knee height or below"),
            _c("knee_valgus", "Knees track over the toes, no caving in"),
            _c("heel_lift", "Heels stay on the floor"),
            _c("trunk_lean", "Trunk stays braced, no excessive forward lean"),
            _c("knees_forward", "Knees do not travel far past the toes"),
        ),
    ),
    Exercise(
        "deadlift", "Conventional deadlift from the floor",
        ("left_hip", "right_hip", "left_knee", "right_knee", "trunk_lean"),
        (
            _c("neutral_spine", "Back stays neutral, no rounding"),
            _c("bar_path", "Bar stays close to the legs"),
            _c("hip_hinge", "Movement starts as a hinge at the hip, hips and shoulders rise together"),
            _c("lockout", "Full hip extension at the top without leaning back"),
        ),
    ),
    Exercise(
        "push-up", "Push-up on hands and toes",
        ("left_elbow", "right_elbow", "left_shoulder", "right_shoulder", "left_hip", "right_hip"),
        (
            _c("body_line", "Straight line from shoulders to ankles, no sagging or piking hips"),
            _c("depth", "Chest comes close to the floor"),
            _c("elbow_flare", "Elbows about 45 degrees from the body, not flared"),
            _c("lockout", "Arms fully extended at the top"),
        ),
    ),
    Exercise(
        "lunge", "Forward or reverse lunge",
        ("left_knee", "right_knee", "left_hip", "right_hip", "trunk_lean"),
        (
            _c("knee_over_toe", "Front knee does not travel far past the toes"),
            _c("depth", "Back knee comes close to the floor"),
            _c("trunk_upright", "Trunk stays upright"),
            _c("knee_valgus", "Front knee tracks over the foot"),
        ),
    ),
    Exercise(
        "bicep curl", "Dumbbell or barbell biceps curl",
        ("left_elbow", "right_elbow", "left_shoulder", "right_shoulder"),
        (
            _c("elbow_fixed", "Upper arm stays by the side, elbows do not drift forward"),
            _c("no_swing", "No leaning back or swinging the trunk"),
            _c("full_range", "Full extension at the bottom, full flexion at the top"),
        ),
    ),
    Exercise(
        "shoulder press", "Standing or seated overhead press",
        ("left_elbow", "right_elbow", "left_shoulder", "right_shoulder", "trunk_lean"),
        (
            _c("lockout", "Arms fully extended overhead"),
            _c("no_arch", "No excessive lower-back arch"),
            _c("symmetry", "Both arms move together"),
        ),
    ),
    Exercise(
        "plank", "Front plank hold",
        ("left_hip", "right_hip", "left_shoulder", "right_shoulder", "trunk_lean"),
        (
            _c("hips_low", "Hips do not sag below the shoulder-ankle line"),
            _c("hips_high", "Hips are not piked above the line"),
            _c("head_neutral", "Head in line with the spine"),
        ),
    ),
    Exercise(
        "pull-up", "Pull-up or chin-up from a dead hang",
        ("left_elbow", "right_elbow", "left_shoulder", "right_shoulder"),
        (
            _c("full_range", "Dead hang at the bottom, chin above the bar at the top"),
            _c("no_kipping", "No swinging or kipping"),
            _c("symmetry", "Both arms pull evenly"),
        ),
    ),
    Exercise(
        "crunch", "Abdominal crunch",
        ("left_hip", "right_hip", "trunk_lean"),
        (
            _c("neck_neutral", "No pulling on the neck"),
            _c("controlled", "Controlled up and down, no momentum"),
            _c("lower_back_down", "Lower back stays on the floor"),
        ),
    ),
    Exercise(
        "hip thrust", "Barbell or bodyweight hip thrust",
        ("left_hip", "right_hip", "left_knee", "right_knee"),
        (
            _c("full_extension", "Hips reach full extension at the top"),
            _c("no_hyperextension", "No arching of the lower back at the top"),
            _c("shin_vertical", "Shins roughly vertical at the top"),
        ),
    ),
)
