"""Saliency over features mapped to the skeleton's landmarks."""

import numpy as np
import pytest

from curation.landmarks import INDEX
from model.explain import feature_landmarks, joint_saliency


def test_features_map_to_the_landmarks_they_describe():
    assert feature_landmarks("x_left_knee") == ("left_knee",)
    assert feature_landmarks("angle_left_knee") == ("left_knee",)  # the vertex
    assert feature_landmarks("vel_trunk_lean") == ("left_hip", "right_hip")  # vertex mid_hip
    assert feature_landmarks("dist_knee_to_knee") == ("left_knee", "right_knee")
    assert feature_landmarks("mask_left_knee") == ()


def test_saliency_sums_to_one_and_lands_on_the_right_joint():
    names = ["x_left_knee", "angle_right_elbow", "dist_knee_to_knee", "mask_nose"]
    sal = np.array([[1.0, 0.0, 2.0, 50.0], [-1.0, 4.0, 0.0, 50.0]])  # sign does not matter; mask ignored
    w = joint_saliency(sal, names)
    assert w.sum() == pytest.approx(1.0)
    assert w[INDEX["left_knee"]] == pytest.approx(3 / 8)  # 2 of its own + half of the 2 of knee_to_knee
    assert w[INDEX["right_elbow"]] == pytest.approx(4 / 8)
    assert w[INDEX["nose"]] == 0


def test_nothing_mapped_gives_zeros_and_a_mismatch_is_refused():
    assert not joint_saliency(np.ones(1), ["mask_nose"]).any()
    with pytest.raises(ValueError):
        joint_saliency(np.ones((3, 2)), ["x_nose"])
