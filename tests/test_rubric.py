"""The rubric editor: add, rename, describe, reorder, retire criteria and set joints, as undoable versioned events."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import sqlite_utils

from curation import store
from curation.dataset import import_folder
from curation.project import Project
from tests.test_dataset import write_folder


@pytest.fixture
def project(data_dir) -> Project:
    return Project.open(data_dir)


@pytest.fixture
def labelled(project, tmp_path) -> Project:
    """Two imported squat clips without labels (the tests label them)."""
    rows = [{"clip_id": f"s{i}", "exercise": "squat", "label": "", "fps": "30"} for i in range(2)]
    arrays = {r["clip_id"]: np.random.default_rng(i).random((8, 33, 4)).astype(np.float32) for i, r in enumerate(rows)}
    import_folder(project, write_folder(tmp_path / "ds", rows, arrays))
    return project


def keys(project: Project, exercise: str = "squat", include_retired: bool = False) -> list[str]:
    return [c["name"] for c in store.criteria_of(project, exercise, include_retired)]


def test_seeded_criteria_come_in_catalogue_order_with_readable_titles(project):
    assert keys(project) == ["depth", "knee_valgus", "heel_lift", "trunk_lean", "knees_forward"]
    assert store.criteria_of(project, "squat")[1]["title"] == "knee valgus"
    squat = next(e for e in store.list_exercises(project) if e["name"] == "squat")
    assert [c["name"] for c in squat["criteria"]] == keys(project)


def test_a_rename_changes_the_title_not_the_key_and_an_old_label_shows_the_old_rubric(labelled):
    before = store.add_label_event(labelled, {"clip_id": "s0", "annotator": "ann", "verdict": "incorrect",
                                              "criteria": {"depth": "fail"}})
    store.edit_criterion(labelled, "squat", "depth", "lead", title="Hip below knee", description="crease under")
    after = store.add_label_event(labelled, {"clip_id": "s1", "annotator": "ann", "verdict": "incorrect",
                                             "criteria": {"depth": "fail"}})
    depth = store.criteria_of(labelled, "squat")[0]
    assert (depth["name"], depth["title"], depth["description"]) == ("depth", "Hip below knee", "crease under")
    old, new = store.label_rubric(labelled, before), store.label_rubric(labelled, after)
    assert old["criteria"][0]["title"] == "depth" and new["criteria"][0]["title"] == "Hip below knee"
    assert old["version"] < new["version"]
    assert store.consensus_labels(labelled)["s0"]["criteria"] == {"depth": "fail"}  # the label is untouched


def test_retired_criteria_leave_the_label_page_but_labels_keep_them(labelled):
    store.add_label_event(labelled, {"clip_id": "s0", "annotator": "ann", "verdict": "incorrect",
                                     "criteria": {"heel_lift": "fail"}})
    store.edit_criterion(labelled, "squat", "heel_lift", "lead", retired=True)
    assert "heel_lift" not in keys(labelled)
    squat = next(e for e in store.list_exercises(labelled) if e["name"] == "squat")
    assert "heel_lift" not in [c["name"] for c in squat["criteria"]]  # what the Label page offers
    everything = store.criteria_of(labelled, "squat", include_retired=True)
    assert (everything[2]["name"], everything[2]["retired"]) == ("heel_lift", True)
    assert store.consensus_labels(labelled)["s0"]["criteria"] == {"heel_lift": "fail"}
    with pytest.raises(store.StoreError, match="retired: restore it"):
        store.add_criterion(labelled, "squat", "heel_lift")
    store.edit_criterion(labelled, "squat", "heel_lift", "lead", retired=False)
    assert keys(labelled)[2] == "heel_lift"


def test_reorder_puts_the_listed_criteria_first(project):
    store.reorder_criteria(project, "squat", ["knees_forward", "depth"], "lead")
    assert keys(project) == ["knees_forward", "depth", "knee_valgus", "heel_lift", "trunk_lean"]
    with pytest.raises(store.StoreError, match="no criterion 'nope'"):
        store.reorder_criteria(project, "squat", ["nope"], "lead")


def test_joints_and_descriptions_are_rubric_events_and_unknown_joints_are_refused(project):
    store.set_exercise(project, "plank", "lead", joints=["left_hip", "right_hip"], description="Front plank, 30 s")
    plank = next(e for e in store.list_exercises(project) if e["name"] == "plank")
    assert (plank["joints"], plank["description"]) == (["left_hip", "right_hip"], "Front plank, 30 s")
    assert [e["action"] for e in store.rubric_events(project, "plank")[:2]] == ["describe", "joints"]
    with pytest.raises(store.StoreError, match="unknown joint 'tail'"):
        store.set_exercise(project, "plank", "lead", joints=["tail"])


def test_every_rubric_change_can_be_undone_once(project):
    key = store.add_criterion(project, "squat", "Bar Path", "bar over mid-foot", annotator="lead")
    assert keys(project)[-1] == "bar_path"
    store.edit_criterion(project, "squat", key, "lead", title="Bar over mid-foot")
    rename, add = store.rubric_events(project, "squat")[:2]
    store.undo_rubric_event(project, rename["id"], "lead")
    assert store.criteria_of(project, "squat")[-1]["title"] == "bar path"
    store.undo_rubric_event(project, add["id"], "lead")  # an undone add retires: an old label may name it
    assert "bar_path" not in keys(project) and "bar_path" in keys(project, include_retired=True)
    with pytest.raises(store.StoreError, match="undone already"):
        store.undo_rubric_event(project, add["id"], "lead")
    history = store.rubric_events(project, "squat")
    assert [e["action"] for e in history[:4]] == ["undo", "undo", "rename", "add"]
    assert history[2]["undone"] and history[3]["undone"]


def test_two_criteria_of_an_exercise_cannot_read_the_same(project):
    with pytest.raises(store.StoreError, match="called 'depth' already"):
        store.edit_criterion(project, "squat", "heel_lift", "lead", title="Depth")
    with pytest.raises(store.StoreError, match="needs a name"):
        store.edit_criterion(project, "squat", "heel_lift", "lead", title="   ")


def test_imported_criteria_join_the_rubric_history(labelled, tmp_path):
    rows = [{"clip_id": "w0", "exercise": "wall sit", "label": "correct", "fps": "30",
             "criterion:thighs_level": "pass"}]
    import_folder(labelled, write_folder(tmp_path / "ws", rows, {"w0": np.zeros((4, 33, 4), np.float32)}))
    assert keys(labelled, "wall sit") == ["thighs_level"]
    assert [e["action"] for e in store.rubric_events(labelled, "wall sit")] == ["add"]


def test_labels_made_before_the_rubric_was_versioned_find_the_seeded_rubric(project, monkeypatch):
    db = sqlite_utils.Database(sqlite3.connect(project.db_path, isolation_level=None))
    monkeypatch.setattr(store, "MIGRATIONS", store.MIGRATIONS[:3])  # a project made before m004
    store.migrate(db)
    db.conn.execute("INSERT INTO clips (id, exercise, start_frame, end_frame, fps, method, created_at) "
                    "VALUES ('c', 'squat', 0, 5, 30, 'imported', '2025-01-01T00:00:00+00:00')")
    db.conn.execute("INSERT INTO label_events (clip_id, annotator, kind, verdict, criteria, created_at) "
                    "VALUES ('c', 'ann', 'verdict', 'incorrect', '{\"depth\": \"fail\"}', '2025-01-02T00:00:00+00:00')")
    db.conn.close()
    monkeypatch.undo()  # the next connection applies m004 and later
    label_id = store.label_history(project, "c")[0]["id"]
    rubric = store.label_rubric(project, label_id)
    assert [c["name"] for c in rubric["criteria"]][:2] == ["depth", "knee_valgus"]
    assert rubric["joints"][:2] == ["left_knee", "right_knee"]
