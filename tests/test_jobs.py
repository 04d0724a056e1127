"""Background jobs: queue, progress, cancel, failure messages, worker slots, recovery of a killed worker."""

from __future__ import annotations

import os
import shutil
import signal
import time

import pytest

from curation import jobs, store
from curation.project import Project


@pytest.fixture
def project(data_dir) -> Project:
    return Project.open(data_dir)


def count(project: Project, params: dict, progress, cancelled) -> dict:
    for i in range(params["n"]):
        progress(i / params["n"], f"step {i}")
    return {"counted": params["n"]}


def stop_midway(project: Project, params: dict, progress, cancelled) -> dict:
    for i in range(100):
        if i == 3:  # the user presses Cancel while the job runs
            store.request_cancel(project, params["job"])
        progress(i / 100, f"step {i}")
        if cancelled():
            raise jobs.Cancelled()
    return {"finished": True}


def refuse(project: Project, params: dict, progress, cancelled) -> dict:
    raise jobs.JobFailed("the video has no person in it")


def crash(project: Project, params: dict, progress, cancelled) -> dict:
    raise RuntimeError("unexpected")


RUNNERS = {"count": count, "stop": stop_midway, "refuse": refuse, "crash": crash}


def test_a_worker_runs_every_queued_job_and_records_its_result(project):
    ids = [jobs.submit(project, "count", {"n": n}, spawn=False) for n in (3, 5)]
    assert jobs.run_worker(project, RUNNERS) == 2
    for job_id, n in zip(ids, (3, 5)):
        job = store.get_job(project, job_id)
        assert (job["status"], job["progress"], job["result"]) == ("done", 1.0, {"counted": n})
        assert job["pid"] is None and job["finished_at"]


def test_cancel_stops_a_running_job_at_its_next_heartbeat(project):
    job_id = jobs.submit(project, "stop", {}, spawn=False)
    with store.connect(project) as db, store.transaction(db) as conn:  # the runner needs its own id
        conn.execute("UPDATE jobs SET params = ? WHERE id = ?", (f'{{"job": "{job_id}"}}', job_id))
    jobs.run_worker(project, RUNNERS)
    job = store.get_job(project, job_id)
    assert job["status"] == "cancelled" and job["result"] is None
    assert job["message"] == "step 3"


def test_a_cancelled_queued_job_never_runs(project):
    job_id = jobs.submit(project, "count", {"n": 1}, spawn=False)
    store.request_cancel(project, job_id)
    assert jobs.run_worker(project, RUNNERS) == 0
    assert store.get_job(project, job_id)["status"] == "cancelled"


def test_failures_end_the_job_with_a_message_and_the_queue_goes_on(project):
    refused = jobs.submit(project, "refuse", {}, spawn=False)
    crashed = jobs.submit(project, "crash", {}, spawn=False)
    fine = jobs.submit(project, "count", {"n": 2}, spawn=False)
    jobs.run_worker(project, RUNNERS)
    assert store.get_job(project, refused)["error"] == "the video has no person in it"
    assert store.get_job(project, crashed)["error"] == "RuntimeError: unexpected"
    assert store.get_job(project, fine)["status"] == "done"


def test_no_more_than_max_workers_run_at_once(project):
    jobs.submit(project, "count", {"n": 1}, spawn=False)
    with jobs._worker_slot(project) as a, jobs._worker_slot(project) as b:
        assert {a, b} == set(range(jobs.MAX_WORKERS))
        assert jobs.run_worker(project, RUNNERS) == 0  # every slot held: this worker leaves at once
    assert jobs.run_worker(project, RUNNERS) == 1


def test_a_running_job_whose_process_is_gone_is_queued_again_then_failed(project):
    job_id = jobs.submit(project, "count", {"n": 1}, spawn=False)
    dead_pid = 2 ** 22 + 12345  # above pid_max: no such process
    for expected in ("queued", "failed"):
        store.claim_job(project, dead_pid)
        assert jobs.recover_stale(project) == [(job_id, expected)]
    job = store.get_job(project, job_id)
    assert "stopped unexpectedly" in job["error"]


@pytest.mark.slow
def test_a_killed_worker_leaves_no_rows_and_its_job_runs_again(project, videos):
    source = project.work / "upload.mp4"
    shutil.copy(videos / "twix" / "correct-squat.mp4", source)
    job_id = jobs.submit(project, "ingest", {"source": str(source), "exercise": "squat"})
    deadline = time.time() + 120
    while time.time() < deadline:
        job = store.get_job(project, job_id)
        if job["status"] == "running" and job["message"].startswith("tracking pose: frame"):
            break
        time.sleep(0.2)
    assert job["status"] == "running", job
    os.kill(job["pid"], signal.SIGKILL)
    while jobs._alive(job["pid"]):
        time.sleep(0.1)
    assert jobs.recover_stale(project) == [(job_id, "queued")]
    assert store.list_videos(project) == [] and store.list_clips(project) == []
    assert jobs.run_worker(project) == 1
    job = store.get_job(project, job_id)
    assert job["status"] == "done", job["error"]
    assert len(store.list_videos(project)) == 1
    assert len(store.list_clips(project)) == job["result"]["clips"] > 1
