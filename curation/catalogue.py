"""Exercise catalogue: the exercises, their biomechanical criteria with coaching cues and the joints that matter
(seed data)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Criterion:
    name: str  # short key, [a-z_]+, used in exports as criterion:<name>
    description: str  # what a coach checks, in the words a coach uses
    cue: str = ""  # what a coach says to the athlete when it fails (short, imperative; shown by Assess)


@dataclass(frozen=True)
class Exercise:
    name: str  # key, as in clips.csv's `exercise` column
    description: str
    joints: tuple[str, ...]  # angle names of curation.kinematics.ANGLES that carry the movement
    criteria: tuple[Criterion, ...] = field(default_factory=tuple)


def _c(name: str, description: str, cue: str = "") -> Criterion:
    return Criterion(name, description, cue)


# Seeded into the database by the first migration; from then on the database is the truth (coaches edit it).
EXERCISES: tuple[Exercise, ...] = (
    Exercise(
        "squat", "Bodyweight or barbell back squat",
        ("left_knee", "right_knee", "left_hip", "right_hip", "left_ankle", "right_ankle", "trunk_lean"),
        (
            _c("depth", "Hip crease reaches knee height or below",
               "Sit down between your heels until your hips reach knee height"),
            _c("knee_valgus", "Knees track over the toes, no caving in",
               "Push your knees out over your toes"),
            _c("heel_lift", "Heels stay on the floor",
               "Keep your weight on your heels, whole foot down"),
            _c("trunk_lean", "Trunk stays braced, no excessive forward lean",
               "Chest up, brace your core"),
            _c("knees_forward", "Knees do not travel far past the toes",
               "Sit your hips back, knees stay near the toes"),
        ),
    ),
    Exercise(
        "deadlift", "Conventional deadlift from the floor",
        ("left_hip", "right_hip", "left_knee", "right_knee", "trunk_lean"),
        (
            _c("neutral_spine", "Back stays neutral, no rounding",
               "Keep a long, flat back from head to hips"),
            _c("bar_path", "Bar stays close to the legs",
               "Drag the bar up your legs"),
            _c("hip_hinge", "Movement starts as a hinge at the hip, hips and shoulders rise together",
               "Push the floor away, hips and chest rise together"),
            _c("lockout", "Full hip extension at the top without leaning back",
               "Squeeze your glutes to stand tall, do not lean back"),
        ),
    ),
    Exercise(
        "push-up", "Push-up on hands and toes",
        ("left_elbow", "right_elbow", "left_shoulder", "right_shoulder", "left_hip", "right_hip"),
        (
            _c("body_line", "Straight line from shoulders to ankles, no sagging or piking hips",
               "Squeeze glutes and abs, body in one straight line"),
            _c("depth", "Chest comes close to the floor",
               "Lower until your chest nearly touches the floor"),
            _c("elbow_flare", "Elbows about 45 degrees from the body, not flared",
               "Tuck your elbows to about 45 degrees"),
            _c("lockout", "Arms fully extended at the top",
               "Press all the way up to straight arms"),
        ),
    ),
    Exercise(
        "lunge", "Forward or reverse lunge",
        ("left_knee", "right_knee", "left_hip", "right_hip", "trunk_lean"),
        (
            _c("knee_over_toe", "Front knee does not travel far past the toes",
               "Step longer, front shin closer to vertical"),
            _c("depth", "Back knee comes close to the floor",
               "Drop your back knee towards the floor"),
            _c("trunk_upright", "Trunk stays upright",
               "Stay tall, shoulders over hips"),
            _c("knee_valgus", "Front knee tracks over the foot",
               "Front knee in line with your middle toes"),
        ),
    ),
    Exercise(
        "bicep curl", "Dumbbell or barbell biceps curl",
        ("left_elbow", "right_elbow", "left_shoulder", "right_shoulder"),
        (
            _c("elbow_fixed", "Upper arm stays by the side, elbows do not drift forward",
               "Pin your elbows to your sides"),
            _c("no_swing", "No leaning back or swinging the trunk",
               "Stand still, no swinging: lighter weight if needed"),
            _c("full_range", "Full extension at the bottom, full flexion at the top",
               "Straighten fully at the bottom, squeeze at the top"),
        ),
    ),
    Exercise(
        "shoulder press", "Standing or seated overhead press",
        ("left_elbow", "right_elbow", "left_shoulder", "right_shoulder", "trunk_lean"),
        (
            _c("lockout", "Arms fully extended overhead",
               "Press until your arms are straight overhead"),
            _c("no_arch", "No excessive lower-back arch",
               "Ribs down, squeeze your glutes"),
            _c("symmetry", "Both arms move together",
               "Press both arms up together"),
        ),
    ),
    Exercise(
        "plank", "Front plank hold",
        ("left_hip", "right_hip", "left_shoulder", "right_shoulder", "trunk_lean"),
        (
            _c("hips_low", "Hips do not sag below the shoulder-ankle line",
               "Lift your hips in line with shoulders and ankles"),
            _c("hips_high", "Hips are not piked above the line",
               "Lower your hips into one straight line"),
            _c("head_neutral", "Head in line with the spine",
               "Look at the floor just ahead of your hands"),
        ),
    ),
    Exercise(
        "pull-up", "Pull-up or chin-up from a dead hang",
        ("left_elbow", "right_elbow", "left_shoulder", "right_shoulder"),
        (
            _c("full_range", "Dead hang at the bottom, chin above the bar at the top",
               "Start from straight arms, finish chin over the bar"),
            _c("no_kipping", "No swinging or kipping",
               "Keep your legs still, pull with your back"),
            _c("symmetry", "Both arms pull evenly",
               "Pull evenly with both arms"),
        ),
    ),
    Exercise(
        "crunch", "Abdominal crunch",
        ("left_hip", "right_hip", "trunk_lean"),
        (
            _c("neck_neutral", "No pulling on the neck",
               "Hands light on your head, look at the ceiling"),
            _c("controlled", "Controlled up and down, no momentum",
               "Slow up, slower down"),
            _c("lower_back_down", "Lower back stays on the floor",
               "Press your lower back into the floor"),
        ),
    ),
    Exercise(
        "hip thrust", "Barbell or bodyweight hip thrust",
        ("left_hip", "right_hip", "left_knee", "right_knee"),
        (
            _c("full_extension", "Hips reach full extension at the top",
               "Drive your hips all the way up, squeeze at the top"),
            _c("no_hyperextension", "No arching of the lower back at the top",
               "Ribs down, tuck your chin at the top"),
            _c("shin_vertical", "Shins roughly vertical at the top",
               "Move your feet so your shins are vertical at the top"),
        ),
    ),
)
