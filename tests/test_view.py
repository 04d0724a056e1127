"""Camera view per clip from the pose: front, side or oblique; in the metrics as F1 per view."""

from __future__ import annotations

import numpy as np
import pytest

from curation.view import FRONT, OBLIQUE, SIDE, estimate_view, yaw_degrees
from model.metrics import evaluate

# Views judged by eye on the shared videos (the thresholds of ViewOptions were set on these).
JUDGED = {
    "kaiakol/squat/correct/squat_correct_015.mp4": FRONT,
    "kaiakol/squat/correct/squat_correct_009.avi": FRONT,
    "kaiakol/jumpingjack/correct/jumpingjack_correct_005.mp4": FRONT,
    "kaiakol/squat/correct/squat_correct_001.avi": OBLIQUE,
    "kaiakol/squat/correct/squat_correct_012.mp4": OBLIQUE,
    "twix/correct-squat.mp4": OBLIQUE,
    "kaiakol/squat/correct/squat_correct_010.mp4": SIDE,
    "kaiakol/squat/correct/squat_correct_016.mp4": SIDE,
    "kaiakol/plank/correct/plank_correct_001.mp4": SIDE,
    "kaiakol/pushup/pushup_correct_001.mp4": SIDE,
}


def reference(videos, name: str) -> tuple[np.ndarray, float]:
    """The shared reference MediaPipe landmarks of a video and its aspect ratio."""
    import csv

    row = next(r for r in csv.DictReader(open(videos / "manifest.csv")) if r["video"] == name)
    with np.load(videos / row["poses_bp33"]) as d:
        return d["landmarks"], float(row["width"]) / float(row["height"])


@pytest.mark.parametrize("name", list(JUDGED))
def test_the_view_of_a_shared_video_is_the_one_judged_by_eye(videos, name):
    landmarks, aspect = reference(videos, name)
    assert estimate_view(landmarks, aspect) == JUDGED[name]


def test_a_clip_without_a_torso_has_no_view(videos):
    landmarks, aspect = reference(videos, "twix/knee_squat.mp4")
    assert estimate_view(np.full_like(landmarks[:30], np.nan), aspect) is None
    yaw = yaw_degrees(landmarks, aspect)
    assert yaw.shape == (len(landmarks),) and np.nanmin(yaw) >= 0 and np.nanmax(yaw) <= 90


def test_the_view_does_not_depend_on_where_the_athlete_stands(videos):
    landmarks, aspect = reference(videos, "kaiakol/squat/correct/squat_correct_010.mp4")
    moved = landmarks.copy()
    moved[..., 0] = moved[..., 0] * 0.5 + 0.3  # smaller, further right
    moved[..., 1] = moved[..., 1] * 0.5 + 0.2
    moved[..., 2] *= 0.5
    assert estimate_view(moved, aspect) == estimate_view(landmarks, aspect) == SIDE


def test_metrics_give_f1_per_view():
    y = [0, 1, 0, 1, 0, 1]
    p = [0.1, 0.9, 0.2, 0.3, 0.8, 0.7]
    m = evaluate(y, p, ["squat"] * 6, views=["front", "front", "side", "side", None, None])
    assert set(m["per_view"]) == {"front", "side", "unknown"}
    assert m["per_view"]["front"] == {"macro_f1": 1.0, "accuracy": 1.0, "n": 2, "n_incorrect": 1}
    assert m["per_view"]["side"]["accuracy"] == 0.5
    assert "per_view" not in evaluate(y, p, ["squat"] * 6)
    with pytest.raises(ValueError):
        evaluate(y, p, ["squat"] * 6, views=["front"])
