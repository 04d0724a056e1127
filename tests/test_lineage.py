"""Labels follow their frames: bounds edits, splits, merges, exercise changes, exclusions, coach complexity."""

from __future__ import annotations

import math

import numpy as np
import pytest

from curation import lineage, store
from curation.dataset import load_clip_landmarks, set_clip_bounds
from curation.kinematics import complexity_row
from curation.project import Project
from curation.sample import sample_project
from tests.conftest import add_two_clip_video


@pytest.fixture
def sample(data_dir) -> Project:
    project = Project.open(data_dir)
    sample_project(project, clips_per_class=2)
    return project


def _unlabelled(project: Project, exercise: str = "squat") -> list[dict]:
    """Active clips of an exercise that no one has labelled (the sample labels some on import)."""
    labelled = {r["clip_id"] for r in store.current_labels(project)}
    return [c for c in store.list_clips(project, exercise=exercise) if c["id"] not in labelled]


def _label(project: Project, clip_id: str, who: str, verdict: str, **extra) -> int:
    return store.add_label_event(project, {"clip_id": clip_id, "annotator": who, "verdict": verdict, **extra})


def _events_table(project: Project) -> list[tuple]:
    with store.connect(project) as db:
        return db.conn.execute("SELECT * FROM label_events ORDER BY id").fetchall()


def test_a_label_on_frames_that_changed_needs_a_second_look_and_comes_back_to_the_queue(sample):
    clip = _unlabelled(sample)[0]
    _label(sample, clip["id"], "kim", "incorrect", criteria={"depth": "fail"})
    assert store.next_clip(sample, "kim", "squat")["id"] != clip["id"]
    set_clip_bounds(sample, clip, clip["start_frame"] + 3, clip["end_frame"], "kim")
    # The old verdict judged other frames: not the current label any more (old code kept it) ...
    assert clip["id"] not in {r["clip_id"] for r in store.current_labels(sample)}
    assert clip["id"] not in store.consensus_labels(sample)
    # ... but shown as needing a second look, and kept in the history.
    [look] = store.second_looks(sample)[clip["id"]]
    assert (look["annotator"], look["verdict"], look["from_clip"]) == ("kim", "incorrect", None)
    assert (look["start_frame"], look["end_frame"]) == (clip["start_frame"], clip["end_frame"])
    states = [h["state"] for h in store.clip_history(sample, clip["id"]) if h["kind"] == "verdict"]
    assert states == ["needs a second look"]
    # The clip is back in kim's queue; a new verdict on the new frames settles it.
    queue = {c["id"] for c in store.upcoming_clips(sample, "kim", "squat", limit=100)}
    assert clip["id"] in queue
    _label(sample, clip["id"], "kim", "correct")
    assert clip["id"] not in store.second_looks(sample)
    assert store.consensus_labels(sample)[clip["id"]]["label"] == "correct"
    # Moved back to the frames first judged, the first verdict counts again for what it judged.
    moved = store.get_clip(sample, clip["id"])
    set_clip_bounds(sample, moved, clip["start_frame"], clip["end_frame"], "kim")
    assert [r["verdict"] for r in store.current_labels(sample) if r["clip_id"] == clip["id"]] == ["incorrect"]


def test_a_verdict_given_on_frames_shown_before_an_edit_does_not_count_for_the_new_frames(sample):
    clip = _unlabelled(sample)[0]
    set_clip_bounds(sample, clip, clip["start_frame"], clip["end_frame"] - 2, "lee")  # while kim was watching
    _label(sample, clip["id"], "kim", "correct", start_frame=clip["start_frame"], end_frame=clip["end_frame"],
           exercise=clip["exercise"])
    assert clip["id"] not in store.consensus_labels(sample)
    assert clip["id"] in store.second_looks(sample)


def test_split_parts_show_the_history_they_came_from_and_need_a_second_look(sample):
    clip = _unlabelled(sample)[0]
    _label(sample, clip["id"], "kim", "incorrect")
    before = _events_table(sample)
    a, b = lineage.split(sample, clip["id"], (clip["start_frame"] + clip["end_frame"]) // 2, "kim")
    for part in (a, b):
        assert part not in store.consensus_labels(sample)  # not silently labelled on new frames
        [look] = store.second_looks(sample)[part]
        assert (look["annotator"], look["verdict"], look["from_clip"]) == ("kim", "incorrect", clip["id"])
        history = store.clip_history(sample, part)
        assert [(h["kind"], h["state"]) for h in history] == [
            ("verdict", f"inherited from {clip['id']}"), ("split", "edit")]
    assert _events_table(sample) == before  # nothing rewritten, nothing lost


def test_a_merged_clip_is_not_left_unlabelled_while_its_part_keeps_its_verdict(data_dir):
    project = Project.open(data_dir)
    add_two_clip_video(project)
    _label(project, "v1_001", "kim", "incorrect")
    merged = store.merge_clips(project, "v1_000", "v1_001", "kim")
    [look] = store.second_looks(project)[merged]
    assert (look["verdict"], look["from_clip"]) == ("incorrect", "v1_001")
    assert [h["state"] for h in store.clip_history(project, merged) if h["kind"] == "verdict"] == [
        "inherited from v1_001"]
    # The inactive part's verdict is history, not a label anyone trains on or counts.
    assert "v1_001" not in {c["id"] for c in store.list_clips(project)}
    assert store.stats(project)["labelled"] == 0
    # Undone: both parts come back, the part's verdict counts again; the merged clip leaves the lists.
    result = store.undo_edit(project, store.undoable_edit(project, merged)["id"], "kim")
    assert [c["id"] for c in store.list_clips(project)] == ["v1_000", "v1_001"] and result["clip_id"] == "v1_000"
    assert store.consensus_labels(project)["v1_001"]["label"] == "incorrect"
    # A second merge after the undo gets a new id: the first merged clip and its history stay.
    again = store.merge_clips(project, "v1_000", "v1_001", "kim")
    assert again != merged and store.get_clip(project, merged) is not None


def test_complexity_is_recomputed_after_a_bounds_edit_and_for_split_parts(sample):
    clip = _unlabelled(sample)[0]
    moved = set_clip_bounds(sample, clip, clip["start_frame"] + 10, clip["end_frame"], "kim")
    stored = store.get_clip(sample, clip["id"])
    expected = complexity_row(load_clip_landmarks(sample, stored), stored["fps"])
    assert stored["complexity"] == pytest.approx(expected["complexity"])
    assert moved["complexity"] == pytest.approx(expected["complexity"])
    assert stored["complexity"] != pytest.approx(clip["complexity"])  # old code kept the old value
    a, b = lineage.split(sample, clip["id"], stored["start_frame"] + 12, "kim")
    parts = [store.get_clip(sample, i) for i in (a, b)]
    for part in parts:
        assert part["complexity"] == pytest.approx(
            complexity_row(load_clip_landmarks(sample, part), part["fps"])["complexity"])
    assert parts[0]["complexity"] != pytest.approx(stored["complexity"])  # old code copied the parent's


def test_every_clip_edit_is_undoable_in_order(sample):
    clip = _unlabelled(sample)[0]
    start, end = clip["start_frame"], clip["end_frame"]
    set_clip_bounds(sample, clip, start + 2, end, "kim")
    set_clip_bounds(sample, store.get_clip(sample, clip["id"]), start + 2, end - 3, "kim")
    for expected in ((start + 2, end), (start, end)):
        lineage.undo_edit(sample, store.undoable_edit(sample, clip["id"])["id"], "kim")
        now = store.get_clip(sample, clip["id"])
        assert (now["start_frame"], now["end_frame"]) == expected
    assert now["complexity"] == pytest.approx(clip["complexity"])
    assert store.undoable_edit(sample, clip["id"]) is None
    a, _ = lineage.split(sample, clip["id"], start + 5, "kim")
    with pytest.raises(store.StoreError, match="undone already"):
        edit = store.undoable_edit(sample, a)["id"]
        lineage.undo_edit(sample, edit, "kim")
        lineage.undo_edit(sample, edit, "kim")
    assert store.get_clip(sample, clip["id"])["active"] and not store.get_clip(sample, a)["active"]


def test_an_exercise_change_keeps_the_criteria_verdicts_in_the_history(sample):
    clip = _unlabelled(sample)[0]
    _label(sample, clip["id"], "kim", "incorrect", criteria={"depth": "fail", "heel_lift": "pass"})
    assert store.change_exercise(sample, "lunge", "kim", clip_id=clip["id"]) == [clip["id"]]
    assert store.get_clip(sample, clip["id"])["exercise"] == "lunge"
    assert clip["id"] not in store.consensus_labels(sample)  # squat criteria do not judge a lunge
    [old] = [h for h in store.clip_history(sample, clip["id"]) if h["kind"] == "verdict"]
    assert (old["exercise"], old["criteria"], old["state"]) == (
        "squat", {"depth": "fail", "heel_lift": "pass"}, "needs a second look")
    with pytest.raises(store.StoreError, match="no exercise"):
        store.change_exercise(sample, "juggling", "kim", clip_id=clip["id"])
    store.undo_edit(sample, store.undoable_edit(sample, clip["id"])["id"], "kim")
    assert store.consensus_labels(sample)[clip["id"]]["criteria"] == {"depth": "fail", "heel_lift": "pass"}


def test_a_video_changes_exercise_with_all_its_clips(data_dir):
    project = Project.open(data_dir)
    add_two_clip_video(project)
    assert store.change_exercise(project, "lunge", "kim", video_id="v1") == ["v1_000", "v1_001"]
    assert store.get_video(project, "v1")["exercise"] == "lunge"
    assert {c["exercise"] for c in store.list_clips(project)} == {"lunge"}
    store.undo_edit(project, store.undoable_edit(project, "v1_001")["id"], "kim")  # undone whole, from any clip
    assert store.get_video(project, "v1")["exercise"] == "squat"
    assert {c["exercise"] for c in store.list_clips(project)} == {"squat"}


def test_excluded_clips_and_videos_leave_every_queue_and_training_until_restored(sample):
    from model.features import load_clipset
    from model.suggest import suggest

    clip = _unlabelled(sample)[0]
    labelled = next(c for c in store.list_clips(sample) if c["id"] in store.consensus_labels(sample))
    before = store.stats(sample)
    with pytest.raises(store.StoreError, match="why"):
        store.set_excluded(sample, "kim", True, "  ", clip_id=clip["id"])
    for target in (clip, labelled):
        assert store.set_excluded(sample, "kim", True, "camera fell over", clip_id=target["id"]) is not None
    assert store.set_excluded(sample, "kim", True, "again", clip_id=clip["id"]) is None  # a double click
    gone = {clip["id"], labelled["id"]}
    assert store.excluded_clip_ids(sample) == gone
    assert not gone & {c["id"] for c in store.list_clips(sample)}
    assert gone <= {c["id"] for c in store.list_clips(sample, include_excluded=True)}
    assert not gone & {c["id"] for c in store.upcoming_clips(sample, "kim", limit=1000)}
    assert store.next_listed_clip(sample, "kim", [clip["id"]]) is None
    assert labelled["id"] not in load_clipset(sample).clip_ids
    assert clip["id"] not in suggest(sample, k=1000).pool_ids
    counts = store.stats(sample)
    assert (counts["clips"], counts["labelled"], counts["excluded"]) == (
        before["clips"] - 2, before["labelled"] - 1, 2)
    assert store.progress_of(sample, "kim")["clips"] == before["clips"] - 2
    [row] = [x for x in store.exclusions(sample) if x["clip_id"] == clip["id"]]
    assert (row["reason"], row["annotator"]) == ("camera fell over", "kim")
    store.set_excluded(sample, "kim", False, "fine after all", clip_id=clip["id"])
    assert store.excluded_clip_ids(sample) == {labelled["id"]}
    assert [x["action"] for x in store.exclusion_history(sample) if x["clip_id"] == clip["id"]] == [
        "exclude", "restore"]


def test_a_whole_video_is_excluded_and_restored_except_clips_excluded_alone(data_dir):
    project = Project.open(data_dir)
    add_two_clip_video(project)
    store.set_excluded(project, "kim", True, "blurry", clip_id="v1_001")
    store.set_excluded(project, "kim", True, "not a squat video", video_id="v1")
    assert store.list_clips(project) == [] and store.next_clip(project, "kim") is None
    store.set_excluded(project, "kim", False, video_id="v1")
    assert [c["id"] for c in store.list_clips(project)] == ["v1_000"]


def test_coach_complexity_is_the_median_of_coaches_values_on_the_present_frames(sample):
    clip = _unlabelled(sample)[0]
    _label(sample, clip["id"], "kim", "correct", joints_engaged=0.2, balance_demand=0.9)
    _label(sample, clip["id"], "lee", "correct", joints_engaged=0.4)
    _label(sample, clip["id"], "max", "incorrect", joints_engaged=0.9)
    _label(sample, clip["id"], "max", "incorrect")  # a second look without touching the sliders keeps max's value
    values = store.coach_complexity(sample)[clip["id"]]
    assert values["joints_engaged"] == pytest.approx(0.4) and values["balance_demand"] == pytest.approx(0.9)
    assert values["range_of_motion"] is None and values["coaches"] == 3
    assert values["complexity"] == pytest.approx((0.4 + 0.9) / 2)
    set_clip_bounds(sample, clip, clip["start_frame"] + 1, clip["end_frame"], "kim")
    assert clip["id"] not in store.coach_complexity(sample)  # judged other frames


def test_labels_made_before_frames_were_recorded_follow_the_edits_made_after_them(sample):
    clip = _unlabelled(sample)[0]
    with store.connect(sample) as db, store.transaction(db) as conn:  # an event as main wrote it: no frames
        conn.execute("INSERT INTO label_events (clip_id, annotator, kind, verdict, created_at) "
                     "VALUES (?, 'old', 'verdict', 'correct', ?)", (clip["id"], store.now()))
    assert store.consensus_labels(sample)[clip["id"]]["label"] == "correct"
    set_clip_bounds(sample, clip, clip["start_frame"] + 1, clip["end_frame"], "kim")
    assert clip["id"] not in store.consensus_labels(sample)
    assert [x["annotator"] for x in store.second_looks(sample)[clip["id"]]] == ["old"]


def test_no_edit_updates_or_deletes_a_label_event(sample):
    clip = _unlabelled(sample)[0]
    _label(sample, clip["id"], "kim", "incorrect", criteria={"depth": "fail"})
    before = _events_table(sample)
    set_clip_bounds(sample, clip, clip["start_frame"] + 1, clip["end_frame"], "kim")
    store.change_exercise(sample, "lunge", "kim", clip_id=clip["id"])
    store.set_excluded(sample, "kim", True, "junk", clip_id=clip["id"])
    store.set_excluded(sample, "kim", False, clip_id=clip["id"])
    lineage.split(sample, clip["id"], clip["start_frame"] + 8, "kim")
    assert _events_table(sample) == before
    assert not math.isnan(np.nanmean([c["complexity"] for c in store.list_clips(sample)]))


@pytest.mark.slow
def test_the_train_page_plots_f1_against_the_coaches_complexity(data_dir, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from model.train import RunConfig, train_run
    from tests.conftest import ROOT

    monkeypatch.setenv("FORMCHECK_DATA", str(data_dir))
    project = Project.open(data_dir)
    sample_project(project, clips_per_class=4)
    level = {"squat": 0.2, "bicep curl": 0.5, "push-up": 0.8}
    exercise_of = {c["id"]: c["exercise"] for c in store.list_clips(project)}
    for clip_id, entry in store.consensus_labels(project).items():
        if entry["label"]:  # kim agrees with the label and sets every component to the exercise's level
            _label(project, clip_id, "kim", entry["label"], **dict.fromkeys(
                ("joints_engaged", "angular_sensitivity", "range_of_motion", "balance_demand"),
                level[exercise_of[clip_id]]))
    train_run(project, RunConfig(model="baseline", folds=3))
    at = AppTest.from_file(str(ROOT / "pages/4_Train.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    at.radio(key="train_complexity_by").set_value("coaches").run()
    assert not at.exception, at.exception
    [chart] = [c for c in at.get("plotly_chart") if "train_complexity" in str(c.proto.id)]
    spec = chart.proto.spec
    assert all(f"{v}" in spec for v in level.values())  # the coaches' levels are the x values


def test_the_train_page_counts_only_the_labels_a_run_would_train_on(sample, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    monkeypatch.setenv("FORMCHECK_DATA", str(sample.root))
    labelled = [c for c, e in store.consensus_labels(sample).items() if e["label"]]
    store.set_excluded(sample, "kim", True, "junk", clip_id=labelled[0])
    at = AppTest.from_file(str(ROOT / "pages/4_Train.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    assert next(m.value for m in at.metric if m.label == "Labelled clips") == str(len(labelled) - 1)
