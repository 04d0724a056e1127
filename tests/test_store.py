"""The SQLite store: schema, pragmas, append-only labels, consensus, atomic writes, concurrent writers."""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading

import pytest

from curation import catalogue, store
from curation.project import Project, UnsafePath
from tests.conftest import start_python


@pytest.fixture
def project(data_dir) -> Project:
    return Project.open(data_dir)


def _clip(clip_id: str, exercise: str = "squat", **extra) -> dict:
    return {"id": clip_id, "video_id": None, "exercise": exercise, "start_frame": 0, "end_frame": 30, "fps": 30.0,
            "method": "imported", "pose_path": f"poses/{clip_id}.npy", **extra}


def test_connection_uses_wal_busy_timeout_and_foreign_keys(project):
    with store.connect(project) as db:
        assert db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
        assert db.conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_migrations_apply_once_and_seed_the_catalogue(project):
    with store.connect(project) as db:
        assert store.migrate(db) == len(store.MIGRATIONS)  # a second run changes nothing
        versions = [r[0] for r in db.conn.execute("SELECT version FROM _migrations")]
    assert versions == list(range(1, len(store.MIGRATIONS) + 1))
    exercises = {e["name"]: e for e in store.list_exercises(project)}
    assert len(exercises) == len(catalogue.EXERCISES) >= 10
    for name in ("squat", "deadlift", "push-up", "lunge", "bicep curl", "shoulder press", "plank", "pull-up",
                 "crunch", "hip thrust"):
        assert exercises[name]["criteria"], name
        assert exercises[name]["joints"], name
    assert {"depth", "knee_valgus", "heel_lift", "trunk_lean"} <= {c["name"] for c in exercises["squat"]["criteria"]}


def test_a_double_click_with_one_request_id_records_one_event(project):
    store.add_clips(project, [_clip("a")], [])
    event = {"clip_id": "a", "annotator": "kim", "verdict": "correct", "request_id": "click-1"}
    first = store.add_label_event(project, event)
    second = store.add_label_event(project, event)
    assert first is not None and second is None
    with store.connect(project) as db:
        assert db["label_events"].count == 1


def test_labels_are_appended_and_undo_restores_the_previous_verdict(project):
    store.add_clips(project, [_clip("a")], [])
    first = store.add_label_event(project, {"clip_id": "a", "annotator": "kim", "verdict": "correct"})
    second = store.add_label_event(project, {"clip_id": "a", "annotator": "kim", "verdict": "incorrect",
                                             "criteria": {"depth": "fail"}})
    assert [r["verdict"] for r in store.current_labels(project)] == ["incorrect"]
    store.add_label_event(project, {"clip_id": "a", "annotator": "kim", "kind": "undo", "undoes": second})
    current = store.current_labels(project)
    assert [(r["id"], r["verdict"]) for r in current] == [(first, "correct")]
    with store.connect(project) as db:
        assert db["label_events"].count == 3  # nothing overwritten or deleted


def test_consensus_is_the_majority_and_a_tie_is_undecided(project):
    store.add_clips(project, [_clip("a"), _clip("b")], [])
    for who, verdict in (("kim", "incorrect"), ("lee", "incorrect"), ("max", "correct")):
        store.add_label_event(project, {"clip_id": "a", "annotator": who, "verdict": verdict,
                                        "criteria": {"depth": "fail" if verdict == "incorrect" else "pass"}})
    for who, verdict in (("kim", "correct"), ("lee", "incorrect")):
        store.add_label_event(project, {"clip_id": "b", "annotator": who, "verdict": verdict})
    consensus = store.consensus_labels(project)
    assert consensus["a"]["label"] == "incorrect"
    assert consensus["a"]["votes"] == {"correct": 1, "incorrect": 2}
    assert consensus["a"]["criteria"] == {"depth": "fail"}
    assert consensus["b"]["label"] is None


def test_skip_is_not_a_label(project):
    store.add_clips(project, [_clip("a")], [])
    store.add_label_event(project, {"clip_id": "a", "annotator": "kim", "verdict": "skip"})
    assert store.current_labels(project) == []
    assert store.stats(project)["labelled"] == 0


def test_bad_label_requests_are_refused_with_a_reason(project):
    store.add_clips(project, [_clip("a")], [])
    with pytest.raises(store.StoreError, match="annotator"):
        store.add_label_event(project, {"clip_id": "a", "annotator": "  ", "verdict": "correct"})
    with pytest.raises(store.StoreError, match="verdict"):
        store.add_label_event(project, {"clip_id": "a", "annotator": "kim", "verdict": "maybe"})
    with pytest.raises(store.StoreError, match="no clip"):
        store.add_label_event(project, {"clip_id": "zzz", "annotator": "kim", "verdict": "correct"})
    with store.connect(project) as db:
        assert db["label_events"].count == 0


def test_a_video_and_its_clips_are_written_all_or_nothing(project):
    video = {"id": "v1", "source_key": "k1", "source": "s", "title": "t", "uploader": "", "exercise": "squat",
             "video_path": "videos/v1.mp4", "pose_path": "poses/v1.npz", "frames": 90, "fps": 30.0, "width": 640,
             "height": 360, "person_share": 1.0, "trimmed_share": 0.1, "group_name": "v1"}
    good = {**_clip("v1_000"), "video_id": "v1", "method": "repetition", "pose_path": None}
    broken = {**good, "id": "v1_001", "start_frame": 40, "end_frame": 40}  # violates end > start
    with pytest.raises(sqlite3.IntegrityError):
        store.add_video(project, video, [good, broken])
    assert store.list_videos(project) == [] and store.list_clips(project) == []
    store.add_video(project, video, [good])
    assert store.find_video(project, "k1")["clips"] == 1


def test_stats_count_videos_clips_and_labelled_per_exercise(project):
    store.add_clips(project, [_clip("a"), _clip("b"), _clip("c", "plank")],
                    [{"clip_id": "a", "annotator": "import", "verdict": "correct"}])
    counts = store.stats(project)
    # issue 9 adds keys (dataset statistics, excluded); these keep their meaning
    assert {k: counts[k] for k in ("videos", "clips", "labelled")} == {"videos": 0, "clips": 3, "labelled": 1}
    assert {ex: {k: v[k] for k in ("clips", "labelled")} for ex, v in counts["per_exercise"].items()} == {
        "plank": {"clips": 1, "labelled": 0}, "squat": {"clips": 2, "labelled": 1}}


def test_paths_outside_the_project_are_refused(project):
    assert project.path("videos/x.mp4") == project.root / "videos" / "x.mp4"
    for bad in ("../x", "/etc/passwd", "videos/../../x"):
        with pytest.raises(UnsafePath):
            project.path(bad)


def _label_many(root: str, worker: int, n: int) -> None:
    project = Project.open(root)
    for i in range(n):
        store.add_label_event(project, {"clip_id": f"c{i % 20}", "annotator": f"coach{worker}",
                                        "verdict": "correct" if i % 2 else "incorrect",
                                        "request_id": f"{worker}-{i}"})


def test_concurrent_writers_lose_and_double_nothing(project):
    store.add_clips(project, [_clip(f"c{i}") for i in range(20)], [])
    workers, per_worker = 4, 150
    procs = [start_python(f"from tests.test_store import _label_many; _label_many({str(project.root)!r}, {w}, "
                          f"{per_worker})") for w in range(workers)]
    outcomes = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * workers, outcomes
    with store.connect(project) as db:
        assert db["label_events"].count == workers * per_worker
        assert db.conn.execute("SELECT count(DISTINCT request_id) FROM label_events").fetchone()[0] == workers * per_worker
    assert len(store.current_labels(project)) == workers * 20


def test_a_listed_queue_keeps_its_order_and_passes_over_judged_inactive_and_held_clips(project):
    store.add_clips(project, [_clip(c) for c in "abcde"], [])
    ranked = ["d", "b", "e", "a"]
    assert store.next_listed_clip(project, "kim", ranked)["id"] == "d"  # the list's order, not the table's
    store.add_label_event(project, {"clip_id": "d", "annotator": "kim", "verdict": "skip"})
    store.add_label_event(project, {"clip_id": "b", "annotator": "kim", "verdict": "correct"})
    assert store.next_listed_clip(project, "kim", ranked)["id"] == "e"  # skipped and judged ones passed over
    assert store.next_listed_clip(project, "lee", ranked)["id"] == "d"  # another coach: d is not kim's
    assert store.next_listed_clip(project, "max", ranked)["id"] == "b"  # kim holds e, lee holds d
    # a re-check list may hand a coach a clip they judged themselves
    assert store.next_listed_clip(project, "kim", ["b"], skip_judged=False)["id"] == "b"
    store.split_clip(project, "a", 10, "kim")  # a is retired, replaced by two new clips
    assert store.next_listed_clip(project, "zoe", ["a"]) is None
    assert store.next_listed_clip(project, "zoe", []) is None


def test_clips_labelled_since_counts_live_verdicts_and_adjudications_only(project):
    store.add_clips(project, [_clip(c) for c in "abc"], [])
    store.add_label_event(project, {"clip_id": "a", "annotator": "kim", "verdict": "correct"})
    since = store.now()
    assert store.clips_labelled_since(project, since) == set()
    undone = store.add_label_event(project, {"clip_id": "b", "annotator": "kim", "verdict": "incorrect"})
    store.add_label_event(project, {"clip_id": "c", "annotator": "lee", "kind": "adjudication",
                                    "verdict": "correct"})
    assert store.clips_labelled_since(project, since) == {"b", "c"}
    store.add_label_event(project, {"clip_id": "b", "annotator": "kim", "kind": "undo", "undoes": undone})
    assert store.clips_labelled_since(project, since) == {"c"}
    # a run's created_at has whole seconds and a +00:00 offset: same instant, other spelling
    assert store.clips_labelled_since(project, "2000-01-01T00:00:00+00:00") == {"a", "c"}


# ---------------------------------------------------------------- kept connections (one per thread and database)


def test_a_thread_keeps_one_connection_per_database_and_other_threads_their_own(project):
    with store.connect(project) as a, store.connect(project) as b:
        assert a.conn is b.conn
    other = []
    thread = threading.Thread(target=lambda: other.append(store.list_annotators(project) is not None
                                                          and store._kept.conns[str(project.db_path)][2]))
    thread.start()
    thread.join()
    assert other and other[0] is not a.conn


def test_a_thread_keeps_at_most_a_few_connections_and_closes_the_rest(tmp_path):
    projects = [Project.open(tmp_path / f"p{i}") for i in range(store._KEPT_PER_THREAD + 2)]
    conns = []
    for p in projects:
        with store.connect(p) as db:
            conns.append(db.conn)
    assert len(store._kept.conns) == store._KEPT_PER_THREAD
    for conn in conns[:2]:  # the least recently used were closed
        with pytest.raises(sqlite3.ProgrammingError):
            conn.execute("SELECT 1")
    assert conns[-1].execute("SELECT 1").fetchone() == (1,)


def test_a_project_made_anew_at_the_same_path_is_migrated_and_read_afresh(data_dir):
    store.add_annotator(Project.open(data_dir), "ann")
    shutil.rmtree(data_dir)
    project = Project.open(data_dir)
    assert store.list_annotators(project) == []  # not the old file's rows, not "no such table"
    assert store.stats(project)["clips"] == 0


def test_a_read_during_a_write_sees_only_committed_rows(project):
    store.add_annotator(project, "ann")
    with store.connect(project) as db, store.transaction(db) as conn:
        conn.execute("INSERT INTO annotators (name, role, created_at) VALUES ('bob', 'coach', ?)", (store.now(),))
        assert [a["name"] for a in store.list_annotators(project)] == ["ann"]
    assert [a["name"] for a in store.list_annotators(project)] == ["ann", "bob"]


def test_another_process_write_is_seen_at_once_by_a_kept_connection(project):
    assert store.list_annotators(project) == []
    version = store.data_version(project)
    proc = start_python(f"from pathlib import Path; from curation import store; from curation.project import "
                        f"Project; p = Project.open(Path({str(project.root)!r})); store.add_annotator(p, 'kim'); "
                        f"store.add_clips(p, [{{'id': 'c1', 'exercise': 'squat', 'start_frame': 0, 'end_frame': 30, "
                        f"'fps': 30.0, 'method': 'imported', 'pose_path': 'poses/c1.npy'}}], [])")
    assert proc.wait(timeout=120) == 0
    assert [a["name"] for a in store.list_annotators(project)] == ["kim"]
    assert store.data_version(project) != version and store.stats(project)["clips"] == 1


def test_a_forked_child_never_uses_its_parent_connection(project):
    store.add_annotator(project, "ann")
    parent = store._kept.conns[str(project.db_path)][2]
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its own connection, the parent's left alone
        try:
            store.add_annotator(project, "kid")
            ok = store._kept.conns[str(project.db_path)][2] is not parent and parent in store._forked
            os.write(writer, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(writer)
    assert os.read(reader, 1) == b"1"
    os.waitpid(pid, 0)
    assert parent.execute("SELECT count(*) FROM annotators").fetchone()[0] == 2  # still usable here
