"""m015's derived label tables (label_current, clip_labels), m016's dataset_rows and what reads them
(current_labels, stats, the Dataset page's aggregates) always equal a recomputation from the label events, the clips
and the exclusions, after any sequence of writes, whoever writes (issue 13)."""

from __future__ import annotations

import json
import random

import pytest

from curation import agreement, store
from curation.project import Project
from tests.conftest import add_video_and_imports


def _reference(conn) -> tuple[list[tuple], list[tuple]]:
    """label_current and clip_labels recomputed from scratch: the ranking query over every event, the
    adjudications query, and consensus_labels' rule (adjudication, else majority, else None)."""
    current = store._rows(conn, store._CURRENT_SQL)
    ids = sorted((r["id"], r["clip_id"], r["annotator"], r["verdict"]) for r in current)
    adjudicated = {r["clip_id"]: r["verdict"] for r in store._rows(
        conn, "SELECT * FROM label_events WHERE id IN (SELECT max(e.id) FROM label_events e JOIN clips c ON c.id = "
              f"e.clip_id WHERE e.kind = 'adjudication' AND e.{store._NOT_UNDONE} AND {store._on_frames('e', 'c')} "
              "GROUP BY e.clip_id)")}
    rows = []
    for (clip_id,) in conn.execute("SELECT id FROM clips ORDER BY id"):
        votes = [r["verdict"] for r in current if r["clip_id"] == clip_id]
        correct, incorrect = votes.count("correct"), votes.count("incorrect")
        label = (adjudicated[clip_id] if clip_id in adjudicated else
                 "correct" if correct > incorrect else "incorrect" if incorrect > correct else None)
        rows.append((clip_id, correct, incorrect, int(clip_id in adjudicated), label))
    return ids, rows


def _reference_consensus(current: list[dict], adjudicated: dict[str, dict]) -> dict[str, dict]:
    """consensus_labels as it was computed before m015: from every current label."""
    by_clip: dict[str, list[dict]] = {}
    for row in current:
        by_clip.setdefault(row["clip_id"], []).append({**row, "criteria": json.loads(row["criteria"])})
    out = {}
    for clip_id, rows in by_clip.items():
        votes = {lab: sum(r["verdict"] == lab for r in rows) for lab in store.LABELS}
        label = None if votes["correct"] == votes["incorrect"] else max(votes, key=votes.get)
        criteria = {}
        for name in sorted({n for r in rows for n in r["criteria"]}):
            marks = [r["criteria"][name] for r in rows if r["criteria"].get(name) in ("pass", "fail")]
            if marks and marks.count("pass") != marks.count("fail"):
                criteria[name] = max(("pass", "fail"), key=marks.count)
        out[clip_id] = {"label": label, "votes": votes, "criteria": criteria, "source": "majority"}
    for clip_id, event in adjudicated.items():
        votes = out.get(clip_id, {}).get("votes", {lab: 0 for lab in store.LABELS})
        out[clip_id] = {"label": event["verdict"], "votes": votes, "criteria": event["criteria"],
                        "source": "adjudication"}
    return out


# m016's dataset_rows recomputed from the clips, clip_labels and the excluded_clips view; and the aggregates as they
# were computed before m016 (over clips or clip_queue, clip_labels and the view): the references of the faster ones.
_DATASET_ROWS_SQL = (f"SELECT c.id, CASE WHEN c.active THEN 1 ELSE 0 END, c.id IN (SELECT clip_id FROM excluded_clips), "
                     f"c.exercise, {store._STATE_SQL}, CASE WHEN l.correct + l.incorrect > 0 OR l.adjudicated THEN 1 "
                     "ELSE 0 END, c.end_frame - c.start_frame, (c.end_frame - c.start_frame) / c.fps, c.complexity "
                     "FROM clips c LEFT JOIN clip_labels l ON l.clip_id = c.id ORDER BY c.id")
_OLD_KEPT = "q.active = 1 AND q.clip_id NOT IN (SELECT clip_id FROM excluded_clips)"
_OLD_COUNTS_SQL = ("SELECT q.exercise, count(*), coalesce(sum(l.correct + l.incorrect > 0 OR l.adjudicated), 0) "
                   f"FROM clip_queue q LEFT JOIN clip_labels l ON l.clip_id = q.clip_id WHERE {_OLD_KEPT} "
                   "GROUP BY q.exercise")
_OLD_EXCLUDED_SQL = "SELECT count(*) FROM clips WHERE active AND id IN (SELECT clip_id FROM excluded_clips)"
_OLD_BALANCE_SQL = (f"SELECT q.exercise, {store._STATE_SQL} AS label, count(*) AS clips FROM clip_queue q "
                    f"LEFT JOIN clip_labels l ON l.clip_id = q.clip_id WHERE {_OLD_KEPT} GROUP BY 1, 2 ORDER BY 1, 2")
_OLD_EXERCISES_SQL = ("SELECT name FROM exercises e WHERE EXISTS (SELECT 1 FROM clip_queue q WHERE q.exercise = e.name "
                      f"AND {_OLD_KEPT}) ORDER BY name")
_OLD_GROUPS_SQL = ("SELECT c.exercise, l.label, count(*), sum(c.end_frame - c.start_frame), "
                   "sum((c.end_frame - c.start_frame) / c.fps), sum(c.complexity), count(c.complexity) "
                   "FROM clips c LEFT JOIN clip_labels l ON l.clip_id = c.id "
                   "WHERE c.active AND c.id NOT IN (SELECT clip_id FROM excluded_clips) GROUP BY 1, 2")
_OLD_SECONDS_SQL = ("SELECT (c.end_frame - c.start_frame) / c.fps FROM clips c "
                    "WHERE c.active AND c.id NOT IN (SELECT clip_id FROM excluded_clips)")


def _dataset_rows(conn) -> tuple[list[tuple], list[tuple]]:
    """dataset_rows as kept by the triggers, and recomputed."""
    return (conn.execute("SELECT * FROM dataset_rows ORDER BY clip_id").fetchall(),
            conn.execute(_DATASET_ROWS_SQL).fetchall())


def assert_dataset_aggregates_agree(project: Project) -> None:
    """dataset_rows equals its recomputation, and every aggregate read from it equals its definition before m016."""
    with store.connect(project) as db:
        kept, recomputed = _dataset_rows(db.conn)
        assert kept == recomputed
        per = {e: {"clips": n, "labelled": k} for e, n, k in db.conn.execute(_OLD_COUNTS_SQL)}
        excluded = db.conn.execute(_OLD_EXCLUDED_SQL).fetchone()[0]
        balance = store._rows(db.conn, _OLD_BALANCE_SQL)
        exercises = [r[0] for r in db.conn.execute(_OLD_EXERCISES_SQL)]
        groups = db.conn.execute(_OLD_GROUPS_SQL).fetchall()
        seconds = [r[0] for r in db.conn.execute(_OLD_SECONDS_SQL)]
    counts = store.project_counts.__wrapped__(project)
    assert counts["per_exercise"] == dict(sorted(per.items())) and counts["excluded"] == excluded
    assert (counts["clips"], counts["labelled"]) == (sum(e["clips"] for e in per.values()),
                                                     sum(e["labelled"] for e in per.values()))
    assert store.label_balance(project) == balance
    assert store.dataset_exercises(project) == exercises
    assert store.clip_table(project, limit=0)[1] == counts["clips"]
    # The Train page's counts (label_balance's) are those of consensus_labels over dataset_clip_ids, as it read them.
    consensus, trainable = store.consensus_labels.__wrapped__(project), store.dataset_clip_ids(project)
    labels = [c["label"] for clip_id, c in consensus.items() if c["label"] and clip_id in trainable]
    assert sum(r["clips"] for r in balance if r["label"] not in ("disputed", "unlabelled")) == len(labels)
    for lab in store.LABELS:
        assert sum(r["clips"] for r in balance if r["label"] == lab) == labels.count(lab)
    figures = store.dataset_statistics(project)
    for exercise, e in figures["exercises"].items():
        mine = [g for g in groups if g[0] == exercise]
        assert (e["clips"], e["frames"]) == (sum(g[2] for g in mine), sum(g[3] for g in mine))
        assert e["seconds"] == pytest.approx(sum(g[4] for g in mine))
        for lab in store.LABELS:
            assert e["per_class"][lab] == {"clips": sum(g[2] for g in mine if g[1] == lab),
                                           "frames": sum(g[3] for g in mine if g[1] == lab)}
        rated = sum(g[6] for g in mine)
        assert e["complexity_auto"] == (pytest.approx(sum(g[5] or 0.0 for g in mine) / rated) if rated else None)
    assert set(figures["exercises"]) == {g[0] for g in groups} | {v["exercise"] or "unknown"
                                                                    for v in store.list_videos(project)}
    old = store._summary(seconds)
    new = figures["clip_seconds"]
    assert {k: new[k] for k in ("n", "median", "min", "max")} == {k: old[k] for k in ("n", "median", "min", "max")}
    assert (new["total"], new["mean"]) == (pytest.approx(old["total"]), pytest.approx(old["mean"]))


def assert_derived_tables_agree(project: Project) -> None:
    assert_dataset_aggregates_agree(project)
    with store.connect(project) as db:
        ids, rows = _reference(db.conn)
        assert db.conn.execute("SELECT * FROM label_current ORDER BY event_id").fetchall() == ids
        assert db.conn.execute("SELECT * FROM clip_labels ORDER BY clip_id").fetchall() == rows
        full = store._rows(db.conn, store._CURRENT_SQL)
    assert store.current_labels.__wrapped__(project) == [
        {**{k: v for k, v in r.items() if k != "rn"}, "criteria": json.loads(r["criteria"])} for r in full]
    current = store.current_labels.__wrapped__(project)
    assert store.current_label_count(project) == len(current)
    assert store.judged_clip_ids(project) == {r["clip_id"] for r in current}
    assert agreement.disagreements(store.disputed_labels(project)) == agreement.disagreements(current)
    settled = store.adjudications.__wrapped__(project)
    coaches = [r for r in current if r["annotator"] != "import"]
    waiting = [d for d in agreement.disagreements(coaches) if d["clip_id"] not in settled]
    for limit in (1, 2, 1000):
        labels, total = store.open_disagreement_labels(project, limit=limit)
        assert (agreement.disagreements(labels), total) == (waiting[:limit], len(waiting))
    assert store.open_disagreements(project) == sum(d["clip_id"] not in settled
                                                    for d in agreement.disagreements(current))
    consensus = store.consensus_labels.__wrapped__(project)
    assert consensus == _reference_consensus(full, store.adjudications.__wrapped__(project))
    counts = store.stats.__wrapped__(project)
    active = store.list_clips.__wrapped__(project)
    assert store.dataset_clip_ids(project) == {c["id"] for c in active}
    assert store.dataset_exercise_of(project) == {c["id"]: c["exercise"] for c in active}
    assert store.dataset_clip_order(project) == [c["id"] for c in active]
    assert store.dataset_clip_order(project, "lunge") == [c["id"] for c in active if c["exercise"] == "lunge"]
    some = {c["id"] for c in active[::3]}
    assert store.clips_in_order(project, some) == [c for c in active if c["id"] in some]
    assert (agreement.disagreements([r for r in store.disputed_labels(project) if r["annotator"] != "import"])
            == agreement.disagreements(coaches))
    assert counts["clips"] == len(active)
    assert counts["labelled"] == sum(c["id"] in consensus for c in active)
    for exercise, entry in counts["per_exercise"].items():
        mine = [c for c in active if c["exercise"] == exercise]
        assert entry == {"clips": len(mine), "labelled": sum(c["id"] in consensus for c in mine)}
    for label in store.LABELS:
        assert counts["per_class"][label]["clips"] == sum(consensus.get(c["id"], {}).get("label") == label
                                                          for c in active)


@pytest.fixture
def project(data_dir) -> Project:
    project = Project.open(data_dir)
    add_video_and_imports(project, repetitions=8, imported=4)
    return project


def _active(project: Project) -> list[dict]:
    return store.list_clips.__wrapped__(project, include_excluded=True)


def _random_write(project: Project, rng: random.Random, step: int) -> None:
    """One write of a kind a coach, a lead or an import makes, on a random clip."""
    clips = _active(project)
    clip = rng.choice(clips)
    coach = rng.choice(("ann", "bob", "kim", "lead"))
    kind = rng.choice(("verdict",) * 6 + ("undo", "undo", "adjudication", "bounds", "exercise", "exclude", "include",
                                           "split", "merge", "undo_edit", "import", "old_event", "raw_bounds",
                                           "exclude_video", "include_video", "raw_clip", "raw_exclusion",
                                           "raw_delete"))
    if kind == "verdict":
        store.add_label_event(project, {"clip_id": clip["id"], "annotator": coach,
                                        "verdict": rng.choice(store.VERDICTS),
                                        "criteria": rng.choice(({}, {"depth": "pass"}, {"depth": "fail"},
                                                               {"depth": "pass", "knees": "fail"}))})
    elif kind == "adjudication":
        store.add_label_event(project, {"clip_id": clip["id"], "annotator": "lead", "kind": "adjudication",
                                        "verdict": rng.choice(store.LABELS)})
    elif kind == "undo":  # someone's latest verdict or adjudication on a clip they labelled
        with store.connect(project) as db:
            labelled = db.conn.execute("SELECT DISTINCT clip_id, annotator FROM label_events "
                                       "WHERE kind IN ('verdict', 'adjudication') ORDER BY 1, 2").fetchall()
        if labelled:
            clip_id, who = rng.choice(labelled)
            last = store.last_event(project, clip_id, who)
            if last is not None:
                store.add_label_event(project, {"clip_id": clip_id, "annotator": who, "kind": "undo",
                                                "undoes": last["id"]})
    elif kind == "bounds":
        limit = clip["end_frame"] if clip["video_id"] is None else 400
        start = rng.randrange(0, limit - 1) if clip["video_id"] else 0
        end = rng.randrange(start + 1, limit + 1) if clip["video_id"] else clip["end_frame"] - rng.choice((0, 1))
        if end > start:
            store.set_bounds(project, clip["id"], start, end, "lead", pose_frames=clip["end_frame"])
    elif kind == "exercise":
        store.change_exercise(project, rng.choice(("squat", "lunge")), "lead", clip_id=clip["id"])
    elif kind in ("exclude", "include"):
        store.set_excluded(project, "lead", kind == "exclude", "test", clip_id=clip["id"])
    elif kind in ("exclude_video", "include_video"):
        store.set_excluded(project, "lead", kind == "exclude_video", "test", video_id="v1")
    elif kind == "raw_clip":  # another writer changing what the Dataset page counts, without an edit
        change = rng.choice(("active = 1 - active", "complexity = random() % 100 / 100.0", "fps = 25.0",
                             "fps = 30.0", "complexity = NULL"))
        with store.connect(project) as db, store.transaction(db) as conn:
            conn.execute(f"UPDATE clips SET {change} WHERE id = ?", (clip["id"],))
    elif kind == "raw_exclusion":  # an exclusion event taken back or turned round by hand
        with store.connect(project) as db, store.transaction(db) as conn:
            events = [r[0] for r in conn.execute("SELECT id FROM exclusions ORDER BY id")]
            if events:
                conn.execute(rng.choice(("DELETE FROM exclusions WHERE id = ?", "UPDATE exclusions SET action = CASE "
                                         "action WHEN 'exclude' THEN 'restore' ELSE 'exclude' END WHERE id = ?")),
                             (rng.choice(events),))
    elif kind == "raw_delete":  # a clip nothing refers to, deleted by hand
        with store.connect(project) as db, store.transaction(db) as conn:
            free = [r[0] for r in conn.execute(
                "SELECT id FROM clips WHERE id NOT IN (SELECT clip_id FROM label_events) AND id NOT IN (SELECT "
                "clip_id FROM clip_edits) AND id NOT IN (SELECT clip_id FROM clip_parents) AND id NOT IN (SELECT "
                "parent_id FROM clip_parents) AND id NOT IN (SELECT clip_id FROM exclusions WHERE clip_id IS NOT "
                "NULL) AND id NOT IN (SELECT clip_id FROM claims) ORDER BY id")]
            if free:
                conn.execute("DELETE FROM clips WHERE id = ?", (rng.choice(free),))
    elif kind == "split" and clip["end_frame"] - clip["start_frame"] > 1:
        store.split_clip(project, clip["id"], (clip["start_frame"] + clip["end_frame"]) // 2, "lead")
    elif kind == "merge" and clip["video_id"]:
        pair = [c for c in clips if c["video_id"] == clip["video_id"] and c["exercise"] == clip["exercise"]
                and c["id"] != clip["id"]]
        if pair:
            store.merge_clips(project, clip["id"], rng.choice(pair)["id"], "lead")
    elif kind == "undo_edit":
        edit = store.undoable_edit(project, clip["id"])
        if edit is not None:
            try:
                store.undo_edit(project, edit["id"], "lead")
            except store.StoreError:
                pass  # refused (a later edit depends on it): nothing written
    elif kind == "import":
        new = f"n{step}"
        store.add_clips(project, [{"id": new, "exercise": "squat", "start_frame": 0, "end_frame": 20, "fps": 30.0,
                                   "method": "imported", "pose_path": f"poses/{new}.npy"}],
                        [{"clip_id": new, "annotator": a, "verdict": rng.choice(store.LABELS)}
                         for a in rng.sample(("import", "ann", "bob"), rng.randrange(0, 3))])
    elif kind == "raw_bounds":  # another writer moving frames without recording an edit
        with store.connect(project) as db, store.transaction(db) as conn:
            conn.execute("UPDATE clips SET end_frame = end_frame + ? WHERE id = ? AND end_frame - start_frame > 1",
                         (rng.choice((-1, 1)), clip["id"]))
    elif kind == "old_event":  # as recorded before m003: no frames, counted until the clip is edited
        with store.connect(project) as db, store.transaction(db) as conn:
            conn.execute("INSERT INTO label_events (clip_id, annotator, kind, verdict, created_at) "
                         "VALUES (?, ?, 'verdict', ?, ?)", (clip["id"], coach, rng.choice(store.LABELS), store.now()))


@pytest.mark.parametrize("seed", range(4))
def test_the_derived_label_tables_equal_a_recomputation_after_random_writes(project, seed):
    rng = random.Random(seed)
    assert_derived_tables_agree(project)
    for step in range(70):
        _random_write(project, rng, step)
        assert_derived_tables_agree(project)
    with store.connect(project) as db:  # the walk reached the cases that matter
        kinds = {r[0] for r in db.conn.execute("SELECT kind FROM label_events")}
        assert {"verdict", "undo"} <= kinds
        assert db.conn.execute("SELECT count(*) FROM clip_labels WHERE correct + incorrect > 0").fetchone()[0] > 3


def test_each_trigger_of_dataset_rows_is_needed_a_random_walk_finds_the_write_it_keeps_right(tmp_path):
    with store.connect(Project.open(tmp_path / "names")) as db:
        names = [r[0] for r in db.conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                                               "AND name LIKE 'dataset_rows_%' ORDER BY name")]
    assert len(names) == 6
    for name in names:
        project = Project.open(tmp_path / name)
        add_video_and_imports(project, repetitions=8, imported=4)
        with store.connect(project) as db:
            db.conn.execute(f"DROP TRIGGER {name}")
        rng = random.Random(0)
        for step in range(400):
            _random_write(project, rng, step)
            with store.connect(project) as db:
                kept, recomputed = _dataset_rows(db.conn)
            if kept != recomputed:
                break
        else:
            pytest.fail(f"no write of the walk needed {name}")


def test_an_undo_takes_a_label_out_of_the_counts_and_a_second_verdict_replaces_the_first(project):
    first = store.add_label_event(project, {"clip_id": "v1_0", "annotator": "ann", "verdict": "incorrect"})
    store.add_label_event(project, {"clip_id": "v1_0", "annotator": "bob", "verdict": "correct"})
    assert store.stats(project)["per_class"]["correct"]["clips"] == 1  # i0 (import); v1_0 is a tie
    assert store.stats(project)["labelled"] == 2
    store.add_label_event(project, {"clip_id": "v1_0", "annotator": "ann", "kind": "undo", "undoes": first})
    assert store.stats(project)["per_class"]["correct"]["clips"] == 2
    store.add_label_event(project, {"clip_id": "v1_0", "annotator": "bob", "verdict": "incorrect"})
    assert store.stats(project)["per_class"]["incorrect"]["clips"] == 1
    assert [(r["clip_id"], r["annotator"], r["verdict"]) for r in store.current_labels(project)] == [
        ("i0", "import", "correct"), ("v1_0", "bob", "incorrect")]
    store.set_bounds(project, "v1_0", 2, 30, "lead")  # other frames: the label needs a second look
    assert store.stats(project)["labelled"] == 1
    assert_derived_tables_agree(project)


def test_a_project_restored_from_its_tables_has_the_same_derived_tables(project, tmp_path):
    from curation.dataset import EXCHANGE_TABLES

    rng = random.Random(7)
    for step in range(40):
        _random_write(project, rng, step)
    dumped = store.dump_tables(project, EXCHANGE_TABLES)
    copy = Project.open(tmp_path / "copy")
    store.restore_tables(copy, {t: (cols, list(enumerate(rows))) for t, (cols, rows) in dumped.items()})
    assert_derived_tables_agree(copy)
    with store.connect(project) as a, store.connect(copy) as b:
        for table in ("label_current", "clip_labels"):
            assert (a.conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
                    == b.conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall())


FILTERS = [{}, {"exercises": ["lunge"]}, {"states": ["correct", "disputed"]}, {"states": ["unlabelled"]},
           {"coach": "ann"}, {"disagreement": True}, {"views": ["unknown"]}, {"complexity": (0.2, 0.6)},
           {"complexity": (0.0, 0.5), "complexity_by": "coaches"}, {"exercises": ["squat"], "coach": "bob"}]


def _kept(row: dict, f: dict) -> bool:
    """The Dataset page's filters as they were, in Python over clip_overview's rows."""
    lo, hi = f.get("complexity") or (0.0, 1.0)
    value = row["complexity" if f.get("complexity_by", "automatic") == "automatic" else "coach_complexity"]
    return ((not f.get("exercises") or row["exercise"] in f["exercises"])
            and (not f.get("states") or row["label"] in f["states"])
            and (f.get("coach") is None or f["coach"] in row["coaches"].split(", "))
            and (not f.get("disagreement") or row["disagreement"])
            and (not f.get("views") or (row["view"] or "unknown") in f["views"])
            and (f.get("complexity") is None or (value is not None and lo <= value <= hi)))


def test_the_paged_clip_table_equals_the_whole_overview_filtered(project):
    from curation.dataset import clip_overview

    rng = random.Random(3)
    store.set_complexity(project, {f"i{i}": {"complexity": i / 4} for i in range(4)})
    for step in range(60):
        _random_write(project, rng, step)
        if step % 20 == 19:
            store.add_label_event(project, {"clip_id": "v1_1", "annotator": "ann", "verdict": "correct",
                                            "joints_engaged": 0.3, "range_of_motion": 0.5})
    overview = clip_overview(project)
    for f in FILTERS:
        expected = [r for r in overview if _kept(r, f)]
        rows, total = store.clip_table(project, **f, limit=1000)
        assert (rows, total) == (expected, len(expected)), f
        paged = [r for offset in range(0, total + 3, 3) for r in store.clip_table(project, **f, offset=offset,
                                                                                    limit=3)[0]]
        assert paged == expected, f
    assert any(store.clip_table(project, **f)[1] for f in FILTERS[1:])  # the filters keep something
    balance = {(r["exercise"], r["label"]): r["clips"] for r in store.label_balance(project)}
    assert balance == {k: sum((r["exercise"], r["label"]) == k for r in overview) for k in balance}
    assert sum(balance.values()) == len(overview) == store.project_counts(project)["clips"]


def test_a_cold_start_scores_a_sample_of_a_large_pool_and_counts_all_of_it(tmp_path, monkeypatch):
    from model import suggest
    from tests.benchmarks.bench_scale import build_project

    project = build_project(tmp_path / "p", 400)
    unlabelled = store.dataset_clip_ids(project) - store.judged_clip_ids(project)
    monkeypatch.setattr(suggest, "COLD_SAMPLE", 40)
    monkeypatch.setattr(suggest, "COLD_LABELLED", 20)
    read = []
    real = suggest.clip_landmarks
    monkeypatch.setattr(suggest, "clip_landmarks", lambda p, clip, *a: read.append(clip["id"]) or real(p, clip, *a))
    first = suggest.suggest(project, k=5)
    assert first.pool == len(unlabelled) > 200 and first.run_id is None
    assert len(first.pool_ids) == 40 and set(first.pool_ids) <= unlabelled
    assert suggest.suggest(project, k=5).items == first.items  # the same sample, the same batch
    assert len(read) == 40 + 20  # the poses of the sample alone were read, once (the second batch reused them)
    assert {s.clip_id for s in first.items} <= set(first.pool_ids) and len(first.items) == 5
    assert any("sample of 40" in note for note in first.notes)
