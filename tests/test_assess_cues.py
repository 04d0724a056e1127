"""Cues as data: a coaching cue per criterion, shipped for the ten exercises, edited as rubric events, exported."""

from __future__ import annotations

import numpy as np
import pytest

from curation import store
from curation.catalogue import EXERCISES
from curation.dataset import export_folder, import_folder
from curation.project import Project
from tests.test_dataset import write_folder


def test_every_shipped_criterion_has_a_short_cue():
    assert len(EXERCISES) == 10
    for exercise in EXERCISES:
        for c in exercise.criteria:
            assert c.cue and len(c.cue) <= store.CUE_LIMIT and c.cue != c.description, (exercise.name, c.name)


def test_a_new_project_has_the_shipped_cues_recorded_in_the_rubric_history(project):
    for exercise in EXERCISES:
        assert store.cues_of(project, exercise.name) == {c.name: c.cue for c in exercise.criteria}
    cue_events = [e for e in store.rubric_events(project, "squat") if "cue" in e["detail"]]
    assert {e["criterion"] for e in cue_events} == {c.name for c in EXERCISES[0].criteria}
    assert all(e["annotator"] == "catalogue" and e["action"] == "describe" for e in cue_events)


def test_editing_a_cue_is_one_undoable_rubric_event_and_keeps_the_description(project):
    before = store.criteria_of(project, "squat")[0]
    event = store.set_cue(project, "squat", "depth", "  Hips   below\nknees  ", "lead")
    after = store.criteria_of(project, "squat")[0]
    assert after["cue"] == "Hips below knees" and after["description"] == before["description"]
    assert store.set_cue(project, "squat", "depth", "Hips below knees", "lead") is None  # unchanged: no event
    assert store.rubric_at(project, "squat")["criteria"][0]["cue"] == "Hips below knees"
    store.edit_criterion(project, "squat", "depth", "lead", description="Hip crease below the knee top")
    assert store.criteria_of(project, "squat")[0]["cue"] == "Hips below knees"  # a description edit keeps the cue
    store.undo_rubric_event(project, event, "lead")
    assert store.criteria_of(project, "squat")[0]["cue"] == before["cue"]
    assert store.criteria_of(project, "squat")[0]["description"] == "Hip crease below the knee top"
    assert len(store.set_cue(project, "squat", "depth", "x" * 500, "lead") and
               store.criteria_of(project, "squat")[0]["cue"]) == store.CUE_LIMIT
    with pytest.raises(store.StoreError, match="no criterion"):
        store.set_cue(project, "squat", "nope", "cue", "lead")


def test_an_added_criterion_has_no_cue_until_one_is_written(project):
    key = store.add_criterion(project, "squat", "bar_path", "Bar over mid-foot", annotator="lead")
    assert store.cues_of(project, "squat")[key] == ""
    store.set_cue(project, "squat", key, "Keep the bar over your mid-foot", "lead")
    assert store.cues_of(project, "squat")[key] == "Keep the bar over your mid-foot"


def test_cues_survive_the_lossless_export_and_import(project, tmp_path):
    rows = [{"clip_id": "c0", "exercise": "squat", "label": "correct", "fps": "30"}]
    import_folder(project, write_folder(tmp_path / "ds", rows, {"c0": np.zeros((5, 33, 4), np.float32)}))
    store.set_cue(project, "squat", "heel_lift", "=HYPERLINK(\"x\") heels down", "lead")
    export_folder(project, tmp_path / "out")
    assert "'=HYPERLINK" in (tmp_path / "out" / "tables" / "criteria.csv").read_text()
    other = Project.open(tmp_path / "other")
    import_folder(other, tmp_path / "out")
    assert store.cues_of(other, "squat") == store.cues_of(project, "squat")
    assert store.cues_of(other, "squat")["heel_lift"].startswith("=HYPERLINK")  # neutralised in the CSV only
    assert store.rubric_events(other, "squat") == store.rubric_events(project, "squat")
