"""The lossless dataset exchange: export A, import into an empty project B, export B gives identical files and
the same joint angles (design.md 4.3), on the synthetic sample and on real ingested videos."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from curation import store
from curation.dataset import (
    EXCHANGE_TABLES, README, DatasetError, clip_aspect, export_folder, import_folder, load_clip_landmarks, neutralise,
    set_clip_bounds, unneutralise,
)
from curation.kinematics import joint_angles
from curation.project import Project
from curation.sample import sample_project
from tests.test_dataset import write_folder

FORMULA = "=HYPERLINK(\"http://127.0.0.1/x\",\"click\")"


def label_like_coaches(project: Project, clip_ids: list[str]) -> None:
    """Several coaches' verdicts with criteria, notes, complexity values and seconds; an undo; a lead's
    adjudication; a text that would be a spreadsheet formula; a moved boundary and a split."""
    first, second, third = clip_ids[:3]
    store.add_annotator(project, "ana")
    store.add_annotator(project, "lead li", role="lead")
    complexity = {"joints_engaged": 0.25, "angular_sensitivity": 1 / 3, "range_of_motion": 0.7,
                  "balance_demand": 0.1}
    for n, (clip_id, coach, verdict) in enumerate([(first, "ana", "incorrect"), (first, "bo", "correct"),
                                                   (second, "ana", "correct"), (second, "@bo", "incorrect")]):
        store.add_label_event(project, {"clip_id": clip_id, "annotator": coach, "verdict": verdict,
                                        "criteria": {"depth": "fail" if verdict == "incorrect" else "pass"},
                                        "note": f"{FORMULA}\nsecond line, n={n}" if n == 0 else "-tight\tknees",
                                        "seconds": 3.1 + n, "request_id": f"r{n}", **complexity})
    mistaken = store.add_label_event(project, {"clip_id": third, "annotator": "ana", "verdict": "incorrect",
                                               "request_id": "r-mistake"})
    store.add_label_event(project, {"clip_id": third, "annotator": "ana", "kind": "undo", "undoes": mistaken,
                                    "request_id": "r-undo"})
    store.add_label_event(project, {"clip_id": first, "annotator": "lead li", "kind": "adjudication",
                                    "verdict": "incorrect", "criteria": {"depth": "fail"}, "note": "'quoted",
                                    "request_id": "r-adj"})


def edit_clips(project: Project, clip_ids: list[str]) -> None:
    """Bounds, a split, an exclusion and a rubric change: the history the exchange must carry."""
    clip = store.get_clip(project, clip_ids[3])
    set_clip_bounds(project, clip, clip["start_frame"] + 1, clip["end_frame"] - 1, "ana")
    clip = store.get_clip(project, clip_ids[4])
    store.split_clip(project, clip["id"], (clip["start_frame"] + clip["end_frame"]) // 2, "ana")
    store.set_excluded(project, "ana", True, reason="+ camera moved", clip_id=clip_ids[5])
    exercise = store.get_clip(project, clip_ids[0])["exercise"]
    key = store.add_criterion(project, exercise, "elbow flare", "=1+1")
    store.edit_criterion(project, exercise, key, "lead li", title="Elbows flare out")


def synthetic_video(project: Project, video_id: str = "vtall", width: int = 352, height: int = 640,
                    frames: int = 120) -> list[str]:
    """A portrait video as ingest leaves it (track .npz, video row, repetition clips), without MediaPipe: random
    landmarks, a few frames with nobody. Returns its clip ids."""
    from curation.pose import PoseTrack, save_track

    rng = np.random.default_rng(7)
    landmarks = rng.uniform(0.2, 0.8, (frames, 33, 4)).astype(np.float32)
    landmarks[:5] = np.nan
    save_track(PoseTrack(landmarks, np.arange(frames) / 25.0, np.arange(frames) >= 5,
                         rng.random(frames).astype(np.float32), 25.0, width, height), project.poses / f"{video_id}.npz")
    cuts = np.linspace(0, frames, 5).astype(int)
    clips = [{"id": f"{video_id}_{i:03d}", "video_id": video_id, "exercise": "squat", "start_frame": int(a),
              "end_frame": int(b), "fps": 25.0, "method": "repetition", "group_name": video_id,
              "source": f"=cmd|' /C calc'!{video_id}"} for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:]))]
    store.add_video(project, {"id": video_id, "source_key": video_id, "source": f"{video_id}.mp4",
                              "title": "-1+1 squats", "video_path": f"videos/{video_id}.mp4",
                              "pose_path": f"poses/{video_id}.npz", "frames": frames, "fps": 25.0, "width": width,
                              "height": height, "person_share": 0.96, "trimmed_share": 0.0}, clips)
    return [c["id"] for c in clips]


def test_a_portrait_video_project_round_trips_with_its_track_and_angles(data_dir, tmp_path):
    project = Project.open(data_dir)
    ids = synthetic_video(project) + synthetic_video(project, "vwide", 640, 360, 90)
    label_like_coaches(project, ids)
    edit_clips(project, ids)
    store.set_athlete(project, ["vtall"], "@anna", "lead li")
    other, export_a, export_b = round_trip(project, tmp_path)
    assert_same_exports(export_a, export_b)
    assert_same_angles(angles_by_clip(project), angles_by_clip(other))
    assert (export_a / "files/poses/vtall.npz").read_bytes() == (other.poses / "vtall.npz").read_bytes()
    assert store.list_videos(other) == store.list_videos(project)
    row = next(r for r in csv.DictReader((export_a / "clips.csv").open()) if r["clip_id"] == ids[0])
    assert (row["width"], row["height"]) == ("352", "640")


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as fh:
        header, *rows = list(csv.reader(fh))
    return header, sorted(rows)


def assert_same_exports(a: Path, b: Path) -> None:
    """Same files; CSV files with the same header and rows (sorted); arrays equal with NaN in the same places."""
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        if rel.suffix == ".csv":
            assert read_rows(a / rel) == read_rows(b / rel), rel
        elif rel.suffix == ".npy":
            np.testing.assert_array_equal(np.load(a / rel), np.load(b / rel), err_msg=str(rel))
        else:
            assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def angles_by_clip(project: Project) -> dict[str, np.ndarray]:
    """Every joint angle of every active clip, measured as the app measures them (frame size included)."""
    out = {}
    for clip in store.list_clips(project):
        video = store.get_video(project, clip["video_id"]) if clip["video_id"] else None
        out[clip["id"]] = joint_angles(load_clip_landmarks(project, clip), clip_aspect(clip, video))
    return out


def assert_same_angles(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for clip_id in a:
        np.testing.assert_array_equal(a[clip_id], b[clip_id], err_msg=clip_id)


def round_trip(project: Project, tmp_path: Path) -> tuple[Project, Path, Path]:
    export_a, export_b = tmp_path / "export_a", tmp_path / "export_b"
    export_folder(project, export_a)
    other = Project.open(tmp_path / "project_b")
    result = import_folder(other, export_a)
    assert result.mode == "full"
    export_folder(other, export_b)
    return other, export_a, export_b


def test_the_sample_project_round_trips_with_every_event_identical(data_dir, tmp_path):
    project = Project.open(data_dir)
    sample_project(project, clips_per_class=2)
    ids = [c["id"] for c in store.list_clips(project)]
    label_like_coaches(project, ids)
    edit_clips(project, ids)
    other, export_a, export_b = round_trip(project, tmp_path)
    assert_same_exports(export_a, export_b)
    assert (export_a / "tables/label_events.csv").read_bytes() == (export_b / "tables/label_events.csv").read_bytes()
    assert_same_angles(angles_by_clip(project), angles_by_clip(other))
    # What the exchange carries, seen through the store of the new project.
    assert store.consensus_labels(other) == store.consensus_labels(project)
    event = next(e for e in store.label_history(other, ids[0]) if e["request_id"] == "r0")
    assert event["note"].startswith(FORMULA) and event["seconds"] == 3.1 and event["annotator"] == "ana"
    assert event["angular_sensitivity"] == 1 / 3 and event["criteria"] == {"depth": "fail"}
    assert store.excluded_clip_ids(other) == store.excluded_clip_ids(project) == {ids[5]}
    assert store.list_exercises(other) == store.list_exercises(project)
    assert store.rubric_events(other) == store.rubric_events(project)
    assert [c["id"] for c in store.list_clips(other)] == [c["id"] for c in store.list_clips(project)]
    # Text cells that would start a formula are neutralised in every CSV file.
    for path in export_a.rglob("*.csv"):
        for row in csv.reader(path.open(newline="", encoding="utf-8")):
            assert not any(cell.startswith(("=", "+", "@", "\t", "\r")) for cell in row), (path, row)
    header, rows = read_rows(export_a / "tables/label_events.csv")
    assert any(row[header.index("note")].startswith("'" + FORMULA) for row in rows)


def test_an_export_into_a_project_with_clips_adds_the_new_clips_only(data_dir, tmp_path):
    project = Project.open(data_dir)
    sample_project(project, clips_per_class=1)
    export_folder(project, tmp_path / "export")
    other = Project.open(tmp_path / "other")
    write_folder(tmp_path / "mine", [{"clip_id": "mine", "exercise": "squat", "label": "", "fps": "30"}],
                 {"mine": np.zeros((3, 33, 4), dtype=np.float32)})
    import_folder(other, tmp_path / "mine")
    result = import_folder(other, tmp_path / "export")
    assert result.mode == "clips" and result.added == len(store.list_clips(project))
    assert store.consensus_labels(other).keys() == store.consensus_labels(project).keys()


def test_excluded_clips_leave_the_export_unless_kept_and_then_come_back_excluded(data_dir, tmp_path):
    project = Project.open(data_dir)
    sample_project(project, clips_per_class=1)
    junk, kept = store.list_clips(project)[:2]
    store.set_excluded(project, "lead", True, "=camera fell over", clip_id=junk["id"])
    export_folder(project, tmp_path / "plain")
    with open(tmp_path / "plain" / "clips.csv", newline="", encoding="utf-8") as f:
        plain = list(csv.DictReader(f))
    assert junk["id"] not in {r["clip_id"] for r in plain} and "excluded" not in plain[0]
    export_folder(project, tmp_path / "marked", include_excluded=True)
    with open(tmp_path / "marked" / "clips.csv", newline="", encoding="utf-8") as f:
        marked = {r["clip_id"]: r for r in csv.DictReader(f)}
    assert marked[junk["id"]]["excluded"] == "'=camera fell over"  # a reason is text, never a formula
    assert marked[kept["id"]]["excluded"] == ""
    other = Project.open(tmp_path / "other")
    write_folder(tmp_path / "mine", [{"clip_id": "mine", "exercise": "squat", "label": "", "fps": "30"}],
                 {"mine": np.zeros((3, 33, 4), dtype=np.float32)})
    import_folder(other, tmp_path / "mine")  # not empty: clips mode reads clips.csv
    import_folder(other, tmp_path / "marked")
    assert store.excluded_clip_ids(other) == {junk["id"]}
    assert [e["reason"] for e in store.exclusions(other)] == ["=camera fell over"]


def test_frame_size_keeps_the_angles_of_a_portrait_clip_imported_without_its_video(data_dir, tmp_path):
    # The issue's case: a 352x640 clip exported as clips.csv + poses/ and imported as arrays gave a knee angle
    # of 73.4 deg instead of 93.1 (the frame taken as square).
    rng = np.random.default_rng(3)
    arr = rng.uniform(0.2, 0.8, (6, 33, 4)).astype(np.float32)
    rows = [{"clip_id": "tall", "exercise": "squat", "label": "correct", "fps": "25", "width": "352",
             "height": "640"}]
    project = Project.open(data_dir)
    import_folder(project, write_folder(tmp_path / "tall", rows, {"tall": arr}))
    clip = store.get_clip(project, "tall")
    assert (clip["width"], clip["height"]) == (352, 640)
    np.testing.assert_array_equal(joint_angles(load_clip_landmarks(project, clip), clip_aspect(clip, None)),
                                  joint_angles(arr, 352 / 640))
    export_folder(project, tmp_path / "out")
    row = next(csv.DictReader((tmp_path / "out/clips.csv").open()))
    assert (row["width"], row["height"]) == ("352", "640")
    np.testing.assert_array_equal(np.load(tmp_path / "out/poses/tall.npy"), arr)  # bp33 arrays stay normalised


def test_importing_clip_x_leaves_clip_x_tmp_alone_and_export_still_works(data_dir, tmp_path):
    # On main, clip x was written through x.tmp.npy, the array of an existing clip x.tmp.
    project = Project.open(data_dir)
    keep = np.full((4, 33, 4), 0.25, dtype=np.float32)
    import_folder(project, write_folder(tmp_path / "a", [{"clip_id": "x.tmp", "exercise": "squat", "fps": "30"}],
                                        {"x.tmp": keep}))
    import_folder(project, write_folder(tmp_path / "b", [{"clip_id": "x", "exercise": "squat", "fps": "30"}],
                                        {"x": np.full((9, 33, 4), 0.75, dtype=np.float32)}))
    np.testing.assert_array_equal(load_clip_landmarks(project, store.get_clip(project, "x.tmp")), keep)
    assert export_folder(project, tmp_path / "out") == 2
    assert list(project.work.iterdir()) == []  # no staging folder left behind


def test_a_clips_csv_saved_with_a_byte_order_mark_is_read(data_dir, tmp_path):
    folder = write_folder(tmp_path / "bom", [{"clip_id": "c1", "exercise": "squat", "label": "correct",
                                              "fps": "30"}], {"c1": np.zeros((2, 33, 4), dtype=np.float32)})
    table = folder / "clips.csv"
    table.write_bytes(b"\xef\xbb\xbf" + table.read_bytes())
    project = Project.open(data_dir)
    assert import_folder(project, folder).added == 1


def test_formula_text_is_neutralised_in_clips_csv_and_read_back_as_it_was(data_dir, tmp_path):
    rows = [{"clip_id": "c1", "exercise": "squat", "label": "correct", "fps": "30", "group": "@SUM(A1)",
             "source": FORMULA}]
    project = Project.open(data_dir)
    import_folder(project, write_folder(tmp_path / "f", rows, {"c1": np.zeros((2, 33, 4), dtype=np.float32)}))
    export_folder(project, tmp_path / "out")
    row = next(csv.DictReader((tmp_path / "out/clips.csv").open()))
    assert (row["group"], row["source"]) == ("'@SUM(A1)", "'" + FORMULA)
    other = Project.open(tmp_path / "other")
    shutil.rmtree(tmp_path / "out/tables")  # read as a plain 4.1 folder
    import_folder(other, tmp_path / "out")
    clip = store.get_clip(other, "c1")
    assert (clip["group_name"], clip["source"]) == ("@SUM(A1)", FORMULA)


@pytest.mark.parametrize("text", ["", "plain", "=1+1", "-3", "+x", "@me", "\tx", "\rx", "'", "'=x", "\\N", "\\"])
def test_neutralise_round_trips_every_text(text):
    assert unneutralise(neutralise(text)) == text
    assert not neutralise(text).startswith(("=", "+", "-", "@", "\t", "\r"))


# Tables that hold no project data to exchange: bookkeeping, short-lived claims, background jobs, sign-in
# accounts and the admin audit (security records stay with their deployment), runs (their models are not
# exported, so neither are their promotions, names and notes: they would name run folders the importing project
# does not have), tables derived from the others (kept by triggers: clip_queue, change_counter, label_current,
# clip_labels).
NOT_EXCHANGED = {"_migrations", "sqlite_sequence", "claims", "jobs", "source_claims", "accounts", "audit",
                 "run_promotions", "run_names", "clip_queue", "change_counter", "label_current", "clip_labels",
                 "dataset_rows"}


def test_every_table_is_exchanged_or_left_out_on_purpose_and_documented(data_dir):
    project = Project.open(data_dir)
    with store.connect(project) as db:
        tables = {r[0] for r in db.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables - NOT_EXCHANGED == set(EXCHANGE_TABLES)
    assert all(f"`{table}`" in README for table in EXCHANGE_TABLES)


def test_export_refuses_a_folder_in_use(data_dir, tmp_path):
    project = Project.open(data_dir)
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not empty"):
        export_folder(project, tmp_path / "used")


# ---------------------------------------------------------------- real videos (MediaPipe)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, videos) -> Project:
    """A portrait (352x640) and a landscape (640x360) real video ingested, labelled and edited."""
    from curation.pipeline import PipelineOptions, ingest_source

    project = Project.open(tmp_path_factory.mktemp("real") / "project")
    ingest_source(project, str(videos / "twix" / "knee_squat.mp4"), "squat")
    # Its second half shows the first again (a replay, curation.replay, cut into no clip by default): kept as
    # clips here so that there are six clips to label and edit.
    ingest_source(project, str(videos / "kaiakol" / "pushup" / "pushup_incorrect_001.mp4"), "push-up",
                  PipelineOptions(replays=False))
    ids = [c["id"] for c in store.list_clips(project)]
    assert len(ids) >= 6
    label_like_coaches(project, ids)
    edit_clips(project, ids)
    store.set_athlete(project, [store.get_clip(project, ids[0])["video_id"]], "=athlete one", "ana")
    return project


@pytest.mark.slow
def test_real_videos_round_trip_with_identical_files_and_angles(ingested, tmp_path):
    sizes = {(v["width"], v["height"]) for v in store.list_videos(ingested)}
    assert (352, 640) in sizes and any(w > h for w, h in sizes)  # portrait and landscape
    other, export_a, export_b = round_trip(ingested, tmp_path)
    assert_same_exports(export_a, export_b)
    assert_same_angles(angles_by_clip(ingested), angles_by_clip(other))
    assert [v["athlete"] for v in store.list_videos(other)] == [v["athlete"] for v in store.list_videos(ingested)]
    # Bounds can still move after the import: the whole pose track came along.
    clip = store.list_clips(other)[0]
    moved = set_clip_bounds(other, clip, max(clip["start_frame"] - 2, 0), clip["end_frame"], "ana")
    assert load_clip_landmarks(other, moved).shape[0] == moved["end_frame"] - moved["start_frame"]


@pytest.mark.slow
def test_real_clips_imported_as_arrays_keep_their_angles(ingested, tmp_path):
    # clips.csv + poses/ alone (design.md 4.1) into a project with clips: the frame size comes with each clip.
    export_folder(ingested, tmp_path / "export")
    shutil.rmtree(tmp_path / "export/tables")
    other = Project.open(tmp_path / "other")
    import_folder(other, tmp_path / "export")
    assert_same_angles(angles_by_clip(ingested), angles_by_clip(other))


@pytest.mark.slow
def test_the_label_page_shows_a_restored_clip_without_its_video_file(ingested, tmp_path, monkeypatch):
    from tests.test_label import LABEL, page

    other, _a, _b = round_trip(ingested, tmp_path)
    monkeypatch.setenv("FORMCHECK_DATA", str(other.root))
    at = page(LABEL, coach="kim")
    assert at.session_state["label_clip"] in {c["id"] for c in store.list_clips(other)}
    assert any("video file is missing" in w.value for w in at.warning)
