"""The seed catalogue: keys that labels and exports can use for good, joints the kinematics know."""

from __future__ import annotations

import re

from curation.catalogue import EXERCISES
from curation.kinematics import ANGLES


def test_criterion_keys_are_unique_per_exercise_and_fit_the_key_rule():
    for exercise in EXERCISES:
        keys = [c.name for c in exercise.criteria]
        assert len(keys) == len(set(keys)), exercise.name
        assert all(re.fullmatch(r"[a-z0-9_]{1,40}", k) for k in keys), exercise.name
        assert all(c.description for c in exercise.criteria), exercise.name


def test_every_joint_of_interest_is_an_angle_the_kinematics_measure():
    assert all(j in ANGLES for exercise in EXERCISES for j in exercise.joints)
