"""Batch ingest on a local Ray (`python -m curation batch`): real short videos, a bad source among them, a rerun
that adds nothing, a batch killed half way and resumed, the Ingest page's batch job."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from curation import jobs, store
from curation.batch import ManifestError, Row, read_manifest, run_batch
from curation.jobs import Cancelled
from curation.project import Project
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
FIELDS = {"source", "video_id", "frames", "fps", "person_share", "trimmed_share", "clips", "error", "existing",
          "exercise", "athlete", "group", "note"}
# Short real videos (34-90 frames each), so a batch takes seconds of pose tracking.
SHORT = ["kaiakol/squat/correct/squat_correct_003.mp4", "kaiakol/squat/correct/squat_correct_004.mp4",
         "kaiakol/pushup/pushup_correct_001.mp4", "kaiakol/squat/correct/squat_correct_011.mp4"]


@pytest.fixture(scope="module")
def local_ray():
    """Ray on this machine for the in-process tests (never a remote cluster)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()


def write_manifest(path, rows: list[tuple[str, ...]]) -> None:
    path.write_text("source,exercise,athlete,group,note\n" + "".join(",".join(r) + "\n" for r in rows))


def batch(data_dir, manifest, *extra: str, wait: bool = True):
    out = data_dir.parent / "batch.json"
    cmd = [sys.executable, "-m", "curation", "batch", str(manifest), "--data", str(data_dir), "--json", str(out),
           *extra]
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    return proc, json.loads(out.read_text()) if out.exists() else None


def test_a_batch_ingests_each_row_a_bad_source_fails_alone_and_a_rerun_adds_nothing(videos, data_dir, tmp_path):
    truncated = tmp_path / "truncated.mp4"  # found and sent to a worker, where decoding fails
    truncated.write_bytes((videos / "twix" / "knee_squat.mp4").read_bytes()[:20_000])
    manifest = tmp_path / "manifest.csv"
    write_manifest(manifest, [
        (str(videos / SHORT[0]), "squat", "Ann", "gym A", "first"),
        (str(truncated), "squat", "", "", ""),
        (str(videos / SHORT[2]), "push-up", "", "", ""),
        (str(tmp_path / "missing.mp4"), "squat", "", "", ""),
        (str(videos / SHORT[1]), "squat", "", "", ""),
    ])
    proc, results = batch(data_dir, manifest, "--workers", "2")
    assert proc.returncode == 1, proc.stderr  # some rows failed
    assert "Traceback" not in proc.stderr
    assert [r["source"] for r in results] == [line.split(",")[0] for line in manifest.read_text().splitlines()[1:]]
    assert all(FIELDS <= r.keys() for r in results)
    errors = [r["error"] for r in results]
    assert errors[0] is None and errors[2] is None and errors[4] is None
    assert errors[1] and errors[3] and "not found" in errors[3] and all("\n" not in e for e in (errors[1], errors[3]))
    assert all(r["clips"] >= 1 and r["frames"] > 0 for r in (results[0], results[2], results[4]))
    project = Project.open(data_dir)
    videos_in = {v["id"]: v for v in store.list_videos(project)}
    assert set(videos_in) == {results[i]["video_id"] for i in (0, 2, 4)}
    first = store.find_video(project, videos_in[results[0]["video_id"]]["source_key"])
    assert (first["athlete"], first["group_name"], first["exercise"]) == ("Ann", "gym A", "squat")
    assert first["source"] == str(videos / SHORT[0])  # as the manifest gave it, not the worker's copy
    assert sorted(p.name for p in project.videos.iterdir()) == sorted(f"{i}.mp4" for i in videos_in)
    assert sorted(p.name for p in project.poses.iterdir()) == sorted(f"{i}.npz" for i in videos_in)
    assert list(project.work.glob("ingest-*")) == []  # the driver's and the workers' scratch folders are gone
    counts = store.stats(project)

    proc, again = batch(data_dir, manifest)
    assert [r["existing"] for r in again] == [True, False, True, False, True]
    assert [r["video_id"] for r in again] == [r["video_id"] for r in results]
    after = store.stats(Project.open(data_dir))
    assert (after["videos"], after["clips"]) == (counts["videos"], counts["clips"])


def test_a_batch_stores_what_the_single_video_ingest_stores(local_ray, videos, data_dir, tmp_path):
    from curation.pipeline import ingest_source

    source = str(videos / SHORT[3])
    [batched] = run_batch(Project.open(data_dir), [Row(source, "squat")])
    single = Project.open(tmp_path / "single")
    alone = ingest_source(single, source, "squat")
    assert batched["video_id"] == alone["video_id"]
    assert {k: batched[k] for k in alone} == alone
    project = Project.open(data_dir)
    bounds = [[(c["start_frame"], c["end_frame"], c["method"]) for c in store.list_clips(p, video_id=alone["video_id"])]
              for p in (project, single)]
    assert bounds[0] == bounds[1]
    spans = [[(r["start_frame"], r["end_frame"]) for r in store.removed_spans(p, alone["video_id"])]
             for p in (project, single)]
    assert spans[0] == spans[1]


def test_a_batch_killed_half_way_and_started_again_ingests_every_video_once(videos, data_dir, tmp_path):
    manifest = tmp_path / "manifest.csv"
    write_manifest(manifest, [(str(videos / v), "squat", "", "", "") for v in SHORT])
    Project.open(data_dir)  # the database exists before the batch, so it can be watched
    proc = batch(data_dir, manifest, "--workers", "1", wait=False)  # one at a time: a kill lands between videos
    deadline = time.monotonic() + 600
    try:
        while store.stats(Project.open(data_dir))["videos"] < 1:
            assert proc.poll() is None and time.monotonic() < deadline, "the batch ended before any video was stored"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
        proc.wait()
    stored = store.stats(Project.open(data_dir))["videos"]
    assert 1 <= stored < len(SHORT), "the kill came too late to test a resume"

    done, results = batch(data_dir, manifest, "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert sum(r["existing"] for r in results) == stored and not any(r["error"] for r in results)
    project = Project.open(data_dir)
    listed = store.list_videos(project)
    assert len(listed) == len(SHORT) == len({v["source_key"] for v in listed})
    assert sum(v["clips"] for v in listed) == len(store.list_clips(project))
    assert sorted(p.name for p in project.videos.iterdir()) == sorted(f"{v['id']}.mp4" for v in listed)


def test_the_batch_job_of_the_ingest_page_downloads_links_in_the_workers(local_ray, video_server, data_dir,
                                                                          monkeypatch):
    monkeypatch.setenv("FORMCHECK_ALLOWED_HOSTS", "127.0.0.1")
    project = Project.open(data_dir)
    rows = [{"source": f"{video_server}/{SHORT[0]}", "exercise": "squat"},
            {"source": f"{video_server}/no-such-video.mp4", "exercise": "squat"}]
    job_id = jobs.submit(project, "batch", {"rows": rows, "title": "batch of 2 videos"}, spawn=False)
    assert jobs.run_worker(project) == 1
    job = store.get_job(project, job_id)
    assert job["status"] == "done", job["error"]
    result = job["result"]
    assert (result["added"], result["failed"], result["existing"]) == (1, 1, 0)
    assert result["videos"][0]["clips"] >= 1 and result["videos"][1]["error"]
    assert [v["id"] for v in store.list_videos(project)] == [result["videos"][0]["video_id"]]
    assert not jobs.job_dir(project, job_id).exists()


def test_a_cancelled_batch_keeps_the_videos_it_finished(local_ray, videos, data_dir):
    project = Project.open(data_dir)
    rows = [Row(str(videos / v), "squat") for v in SHORT]
    seen = []
    with pytest.raises(Cancelled):
        run_batch(project, rows, workers=1, progress=lambda f, m="": seen.append(f),
                  cancelled=lambda: len(seen) >= 2)  # the start report and one finished video
    kept = store.list_videos(project)
    assert 1 <= len(kept) < len(SHORT)
    assert sorted(p.name for p in project.videos.iterdir()) == sorted(f"{v['id']}.mp4" for v in kept)


def test_a_manifest_needs_source_and_exercise_columns(tmp_path):
    with pytest.raises(ManifestError, match="exercise"):
        read_manifest("source,athlete\na.mp4,Ann\n")
    with pytest.raises(ManifestError, match="no rows"):
        read_manifest("source,exercise\n,\n")
    rows = read_manifest("\ufeffSource,Exercise,Extra\nclip.mp4,squat,x\nhttps://youtu.be/abc,push-up,y\n",
                         base=tmp_path)
    assert rows == [Row(str(tmp_path / "clip.mp4"), "squat"), Row("https://youtu.be/abc", "push-up")]


def test_a_bad_manifest_or_cluster_is_one_line_and_exit_2(data_dir, tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("video,label\nx.mp4,correct\n")
    proc = subprocess.run([sys.executable, "-m", "curation", "batch", str(manifest), "--data", str(data_dir)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    manifest.write_text(f"source,exercise\n{tmp_path / 'x.mp4'},squat\n")
    (tmp_path / "x.mp4").write_bytes(b"not really a video")
    with socket.socket() as s:  # a loopback port with nothing listening on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run([sys.executable, "-m", "curation", "batch", str(manifest), "--data", str(data_dir),
                           "--address", f"127.0.0.1:{port}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "nothing answers at 127.0.0.1" in proc.stderr and "Traceback" not in proc.stderr


def test_the_ingest_page_runs_pasted_links_as_one_batch_with_a_card_of_results(video_server, data_dir,
                                                                               monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("FORMCHECK_DATA", str(data_dir))
    monkeypatch.setenv("FORMCHECK_ALLOWED_HOSTS", "127.0.0.1")
    project = Project.open(data_dir)
    at = AppTest.from_file(str(ROOT / "pages/1_Ingest.py"), default_timeout=60)
    at.run()
    links = f"{video_server}/{SHORT[0]}\n{video_server}/{SHORT[2]}\n/etc/passwd"
    at.text_area(key="batch_links").input(links)
    at.button[1].click()  # the batch form's submit (the first is the single-video form's)
    at.run()
    assert not at.exception, at.exception
    assert any("Batch of 2" in s.value for s in at.success)
    assert any("files go in a batch from the command line" in e.value for e in at.error)
    deadline = time.monotonic() + 600
    while (job := store.list_jobs(project)[0])["status"] in ("queued", "running"):
        assert time.monotonic() < deadline
        time.sleep(1)
    assert (job["kind"], job["status"]) == ("batch", "done"), job["error"]
    assert (job["result"]["added"], job["result"]["failed"]) == (2, 0)
    at = AppTest.from_file(str(ROOT / "pages/1_Ingest.py"), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert any("2 added" in t.value for t in at.text)
    assert len(at.dataframe[0].value) == 2  # the batch card's per-video table
