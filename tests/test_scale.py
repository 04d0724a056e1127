"""What keeps the project fast at 100,000 clips (issue 13) changes no answer: the queue table kept by triggers, the
counts, and the project-wide reads kept until a write."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from curation import store
from curation.project import Project
from tests.conftest import add_video_and_imports

# The queue and progress queries as they were before m009 (a count over every label event, a sort of every
# clip): the reference the faster ones must agree with.
_OLD_QUEUE_SQL = f"""
    SELECT c.*, coalesce(n.coaches, 0) AS coaches FROM clips c
    LEFT JOIN (SELECT e.clip_id, count(DISTINCT e.annotator) AS coaches FROM label_events e
               JOIN clips j ON j.id = e.clip_id
               WHERE e.kind = 'verdict' AND e.verdict != 'skip' AND {store._on_frames("e", "j")}
               GROUP BY e.clip_id) n ON n.clip_id = c.id
    WHERE c.active AND (:exercise IS NULL OR c.exercise = :exercise)
      AND c.id NOT IN (SELECT clip_id FROM excluded_clips)
      AND c.id NOT IN ({store._JUDGED_BY_ME})
    ORDER BY c.id IN (SELECT clip_id FROM claims WHERE annotator != :me AND expires_at >= :now),
             coaches, c.video_id, c.start_frame, c.id
"""
_OLD_PROGRESS_SQL = (f"SELECT count(*), coalesce(sum(c.id IN ({store._JUDGED_BY_ME})), 0) FROM clips c "
                     "WHERE c.active AND c.id NOT IN (SELECT clip_id FROM excluded_clips) "
                     "AND (:exercise IS NULL OR c.exercise = :exercise)")


@pytest.fixture
def project(data_dir) -> Project:
    project = Project.open(data_dir)
    add_video_and_imports(project, repetitions=6, imported=6)
    return project


def _queue_state(project: Project) -> dict:
    """Every coach's queue order and progress, by the old queries and by the store's."""
    with store.connect(project) as db:
        derived = db.conn.execute(f"SELECT {store._queue_row('c')} FROM clips c ORDER BY c.id").fetchall()
        assert derived == db.conn.execute("SELECT * FROM clip_queue ORDER BY clip_id").fetchall()
        out = {}
        for me in ("ann", "bob", "kim"):
            for exercise in (None, "squat", "lunge"):
                params = {"me": me, "exercise": exercise, "now": 0.0}
                old = [(r[0], r[-1]) for r in db.conn.execute(_OLD_QUEUE_SQL, params)]
                new = [(r["id"], r["coaches"]) for r in store._queue(db.conn, me, exercise, 0.0, 1000)]
                assert new == old, (me, exercise)
                total, judged = db.conn.execute(_OLD_PROGRESS_SQL, params).fetchone()
                assert store.progress_of(project, me, exercise) == {"clips": total, "judged": judged}
                out[me, exercise] = old
    return out


def test_the_queue_and_progress_agree_with_the_full_queries_after_every_kind_of_write(project):
    steps = [
        lambda: store.add_label_event(project, {"clip_id": "v1_0", "annotator": "ann", "verdict": "correct"}),
        lambda: store.add_label_event(project, {"clip_id": "v1_0", "annotator": "bob", "verdict": "incorrect"}),
        lambda: store.add_label_event(project, {"clip_id": "v1_1", "annotator": "kim", "verdict": "skip"}),
        lambda: store.add_label_event(project, {"clip_id": "v1_2", "annotator": "ann", "verdict": "correct"}),
        lambda: store.add_label_event(project, {"clip_id": "v1_2", "annotator": "ann", "kind": "undo",
                                                "undoes": store.last_event(project, "v1_2", "ann")["id"]}),
        lambda: store.add_label_event(project, {"clip_id": "v1_3", "annotator": "lead", "kind": "adjudication",
                                                "verdict": "incorrect"}),
        lambda: store.set_bounds(project, "v1_0", 5, 30, "lead"),
        lambda: store.set_bounds(project, "v1_0", 0, 30, "lead"),  # back: the labels count again
        lambda: store.change_exercise(project, "lunge", "lead", clip_id="v1_3"),
        lambda: store.split_clip(project, "v1_4", 135, "lead"),
        lambda: store.merge_clips(project, "v1_4-a", "v1_4-b", "lead"),
        lambda: store.undo_edit(project, store.undoable_edit(project, "v1_4-a-m")["id"], "lead"),
        lambda: store.undo_edit(project, store.undoable_edit(project, "v1_3")["id"], "lead"),
        lambda: store.set_excluded(project, "lead", True, "two people", clip_id="i2"),
        lambda: store.set_excluded(project, "lead", True, "camera cut", video_id="v1"),
        lambda: store.set_excluded(project, "lead", False, video_id="v1"),
        lambda: store.next_clip(project, "bob"),  # a claim: ann gets another clip first
        lambda: store.set_complexity(project, {"i1": {"complexity": 0.5}}),
    ]
    _queue_state(project)
    for step in steps:
        step()
        _queue_state(project)
    assert store.next_clip(project, "ann")["id"] != store.next_clip(project, "bob")["id"]


def test_a_label_made_before_m003_stops_counting_in_the_queue_once_its_clip_is_edited(project):
    with store.connect(project) as db, store.transaction(db) as conn:  # an event without frames, as before m003
        conn.execute("INSERT INTO label_events (clip_id, annotator, kind, verdict, created_at) "
                     "VALUES ('v1_5', 'ann', 'verdict', 'correct', '2020-01-01T00:00:00+00:00')")
    assert _queue_state(project)["bob", None][-1] == ("v1_5", 1)
    store.set_bounds(project, "v1_5", 150, 170, "lead")
    assert ("v1_5", 0) in _queue_state(project)["bob", None]


def test_the_exercises_with_clips_are_those_of_active_clips(project):
    assert store.clip_exercises(project) == ["lunge", "squat"]
    for i in (0, 2, 4):
        store.set_excluded(project, "lead", True, "x", clip_id=f"i{i}")  # excluded clips still count, as before
    with store.connect(project) as db, store.transaction(db) as conn:
        conn.execute("UPDATE clips SET active = 0 WHERE exercise = 'lunge'")
    assert store.clip_exercises(project) == ["squat"]


@pytest.mark.parametrize("write", [
    lambda p: store.add_label_event(p, {"clip_id": "i1", "annotator": "ann", "verdict": "incorrect"}),
    lambda p: store.set_bounds(p, "v1_1", 31, 60, "lead"),
    lambda p: store.set_excluded(p, "lead", True, "two people", clip_id="i1"),
    lambda p: store.set_complexity(p, {"i1": {"complexity": 0.9}}),
    lambda p: store.set_athlete(p, ["v1"], "Ann", "lead"),
], ids=["label", "bounds", "exclusion", "complexity", "athlete"])
def test_kept_project_reads_are_recomputed_after_a_write(project, write):
    reads = {"stats": store.stats, "current_labels": store.current_labels, "consensus": store.consensus_labels,
             "list_clips": store.list_clips, "second_looks": store.second_looks,
             "coach_complexity": store.coach_complexity, "adjudications": store.adjudications}
    for read in reads.values():
        read(project)  # kept
    write(project)
    fresh = {name: read.__wrapped__(project) for name, read in reads.items()}  # computed now, nothing kept
    assert {name: read(project) for name, read in reads.items()} == fresh


def test_a_write_by_another_process_makes_kept_reads_stale(project):
    assert store.current_labels(project)[0]["verdict"] == "correct"
    conn = sqlite3.connect(project.db_path)  # not through store: as another process would, with triggers
    with conn:
        conn.execute("INSERT INTO label_events (clip_id, annotator, kind, verdict, created_at, start_frame, "
                     "end_frame, exercise) VALUES ('i0', 'import', 'verdict', 'incorrect', 'z', 0, 30, 'lunge')")
    conn.close()
    assert store.current_labels(project)[0]["verdict"] == "incorrect"


def test_kept_reads_hand_out_copies(project):
    store.list_clips(project)[0]["exercise"] = "changed by a caller"
    store.stats(project)["clips"] = -1
    assert store.list_clips(project)[0]["exercise"] != "changed by a caller"
    assert store.stats(project)["clips"] == 12


def test_the_data_version_moves_with_writes_to_clips_and_labels_not_with_reads(project):
    before = store.data_version(project)
    store.stats(project)
    store.add_criterion(project, "squat", "bar path")  # the rubric: no kept read depends on it
    assert store.data_version(project) == before
    store.add_label_event(project, {"clip_id": "i1", "annotator": "ann", "verdict": "correct"})
    assert store.data_version(project) > before


def test_the_dataset_page_shows_a_clip_added_after_its_table_was_kept(project, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("FORMCHECK_DATA", str(project.root))

    def shown() -> int:
        at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "pages" / "3_Dataset.py"),
                               default_timeout=120)
        at.run()
        assert not at.exception, at.exception
        return len(at.dataframe[0].value)

    assert shown() == 12
    store.add_clips(project, [{"id": "late", "exercise": "squat", "start_frame": 0, "end_frame": 30, "fps": 30.0,
                               "method": "imported", "pose_path": "poses/late.npy"}], [])
    assert shown() == 13


def test_the_dataset_page_pages_its_clip_table_and_filters_the_whole_project(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.benchmarks.bench_scale import build_project

    project = build_project(tmp_path / "p", 600)
    monkeypatch.setenv("FORMCHECK_DATA", str(project.root))
    total = store.project_counts(project)["clips"]
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "pages" / "3_Dataset.py"), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    assert len(at.dataframe[0].value) == 200 and at.number_input(key="dataset_page").value == 1
    at.number_input(key="dataset_page").set_value(3).run()
    last = at.dataframe[0].value
    assert len(last) == total - 400 and last.clip_id.iloc[-1] == store.list_clips(project)[-1]["id"]
    at.multiselect(key="dataset_label").set_value(["disputed"]).run()  # fewer clips: its last page, not an error
    assert not at.exception, at.exception
    disputed = store.clip_table(project, states=["disputed"], limit=1000)[0]
    shown = at.dataframe[0].value
    assert 0 < len(shown) <= 200 and set(shown.label) == {"disputed"}
    assert shown.clip_id.tolist() == [r["clip_id"] for r in disputed][-len(shown):]
