"""Hostile job handling (issue 10): killed and frozen workers, Cancel on any job, the queue, leftover files.

On the old code a worker killed with kill -9 left its job "running" for ever (Cancel did nothing, the jobs
behind it never started), a worker only beat when its job reported progress, and a cancelled upload's file
stayed in the project.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from curation import jobs, store
from curation.project import Project
from tests.conftest import ROOT


@pytest.fixture
def project(data_dir: Path) -> Project:
    return Project.open(data_dir)


def sleeper(project: Project, params: dict, progress, cancelled) -> dict:
    """A job that writes temporary files (as pose chunks and downloads do) and then works quietly: it never
    reports progress; it checks for Cancel unless told to ignore it."""
    tmp = Path(tempfile.gettempdir())
    (tmp / "pose-chunks-x").mkdir()
    (tmp / "pose-chunks-x" / "raw.tmp.npz").write_bytes(b"0" * 1000)
    (tmp / "download.part").write_bytes(b"0" * 1000)
    for _ in range(params.get("seconds", 600) * 10):
        if cancelled() and not params.get("ignore_cancel"):
            raise jobs.Cancelled()
        time.sleep(0.1)
    return {"slept": True}


def work(data: str, **settings: float) -> None:
    """A worker process running `sleeper` jobs (started by the tests below)."""
    for name, value in settings.items():
        setattr(jobs, name, value)
    jobs.run_worker(Project.open(data), {"sleep": sleeper})


def start_worker(project: Project, own_group: bool = False, **settings: float) -> subprocess.Popen:
    call = f"from tests.test_hostile_jobs import work; work({str(project.root)!r}, **{settings!r})"
    return subprocess.Popen([sys.executable, "-c", call], cwd=ROOT, start_new_session=own_group,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for(condition, timeout: float = 60.0, step: float = 0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if value := condition():
            return value
        time.sleep(step)
    raise AssertionError(f"not within {timeout} s")


def running(project: Project, job_id: str) -> dict | None:
    job = store.get_job(project, job_id)
    tmp = jobs.job_dir(project, job_id) / "tmp"
    return job if job["status"] == "running" and (tmp / "download.part").exists() else None


def test_a_killed_workers_job_is_cancelled_at_once_and_the_queue_goes_on(project):
    stuck = jobs.submit(project, "sleep", {}, spawn=False)
    behind = jobs.submit(project, "ingest", {"source": str(project.root / "missing.mp4")}, spawn=False)
    worker = start_worker(project)
    job = wait_for(lambda: running(project, stuck))
    os.kill(job["pid"], signal.SIGKILL)
    worker.wait()
    assert jobs.cancel(project, stuck) == "cancelled"  # the old code left it running, with cancel_requested set
    assert not jobs.job_dir(project, stuck).exists()  # its temporary files went with it
    # The job behind it gets a worker without anyone submitting another job (a real one: the default runners).
    done = wait_for(lambda: (j := store.get_job(project, behind))["status"] not in ("queued", "running") and j,
                    timeout=120)
    assert (done["status"], done["error"]) == ("failed", f"file not found: {project.root / 'missing.mp4'}")


def test_a_killed_worker_is_noticed_within_seconds_and_its_job_requeued(project):
    job_id = jobs.submit(project, "sleep", {}, spawn=False)
    worker = start_worker(project)
    job = wait_for(lambda: running(project, job_id))
    worker.kill()
    worker.wait()
    started = time.time()
    assert jobs.recover_stale(project) == [(job_id, "queued")]
    assert time.time() - started < 5
    job = store.get_job(project, job_id)
    assert (job["status"], job["message"], job["pid"]) == ("queued", "recovered after the worker stopped", None)
    assert not (jobs.job_dir(project, job_id) / "tmp").exists()


def test_a_frozen_worker_is_found_by_its_missing_heartbeat_and_cannot_overwrite_its_job(project, monkeypatch):
    job_id = jobs.submit(project, "sleep", {}, spawn=False)
    worker = start_worker(project)
    try:
        job = wait_for(lambda: running(project, job_id))
        # It beats although its job never reports progress.
        first = job["heartbeat_at"]
        wait_for(lambda: store.get_job(project, job_id)["heartbeat_at"] > first, timeout=10)
        os.kill(worker.pid, signal.SIGSTOP)  # alive but silent: a pid check alone would trust it for ever
        monkeypatch.setattr(jobs, "STALE_SECONDS", 2.0)
        assert wait_for(lambda: jobs.recover_stale(project), timeout=20) == [(job_id, "queued")]
        (jobs.job_dir(project, job_id) / "inputs").mkdir()
        os.kill(worker.pid, signal.SIGCONT)
        # Woken up, it sees that the job is no longer its own, drops it without writing over its row or removing
        # its files, and then takes it from the queue like any worker (its second attempt).
        again = wait_for(lambda: (j := store.get_job(project, job_id))["attempts"] == 2 and j, timeout=30)
        assert again["status"] == "running" and again["error"] is None
        assert (jobs.job_dir(project, job_id) / "inputs").is_dir()
    finally:
        worker.kill()
        worker.wait()


def test_cancel_ends_a_job_that_never_checks_for_it(project):
    job_id = jobs.submit(project, "sleep", {"ignore_cancel": True}, spawn=False)
    worker = start_worker(project, own_group=True, CANCEL_GRACE_SECONDS=1.0)
    try:
        wait_for(lambda: running(project, job_id))
        assert jobs.cancel(project, job_id) == "running"  # asked; its worker is alive
        wait_for(lambda: store.get_job(project, job_id)["status"] == "cancelled", timeout=20)
        assert worker.wait(timeout=20) == -signal.SIGKILL  # the worker stopped itself and its children
        assert not jobs.job_dir(project, job_id).exists()
    finally:
        worker.kill()
        worker.wait()


def test_a_cancelled_upload_leaves_no_file(project):
    job_id = jobs.submit(project, "ingest", {"exercise": "squat", "title": "squat.mp4"}, spawn=False,
                         upload=("upload.mp4", b"\x00" * 1000))
    upload = project.path(store.get_job(project, job_id)["params"]["upload"])
    assert upload.is_file() and upload.parent.parent == jobs.job_dir(project, job_id)
    assert jobs.cancel(project, job_id) == "cancelled"
    assert not upload.exists() and not jobs.job_dir(project, job_id).exists()


def test_leftovers_of_ended_jobs_and_killed_ingests_are_swept(project):
    ended = jobs.submit(project, "sleep", {}, spawn=False)
    store.request_cancel(project, ended)
    (jobs.job_dir(project, ended) / "tmp").mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leftover = project.work / f"ingest-{dead.stdout.strip()}-abc"
    mine = project.work / f"ingest-{os.getpid()}-abc"  # an ingest of a live process: kept
    for folder in (leftover, mine):
        folder.mkdir()
        (folder / "video.mp4").write_bytes(b"0")
    jobs.sweep(project)
    assert not jobs.job_dir(project, ended).exists() and not leftover.exists() and mine.exists()


@pytest.mark.slow
def test_a_worker_killed_during_pose_tracking_leaves_no_file(project, videos):
    import shutil

    source = project.root.parent / "clip.mp4"
    shutil.copy(videos / "twix" / "correct-squat.mp4", source)
    job_id = jobs.submit(project, "ingest", {"source": str(source), "exercise": "squat"})
    job = wait_for(lambda: (j := store.get_job(project, job_id))["message"].startswith("tracking pose: frame") and j,
                   timeout=180)
    scratch = list((jobs.job_dir(project, job_id) / "tmp").glob("ingest-*/video.mp4"))
    assert scratch, "the normalised video is written in the job's own folder"
    os.killpg(os.getpgid(job["pid"]), signal.SIGKILL)  # the worker and its pose processes
    wait_for(lambda: not store.pid_alive(job["pid"]))
    store.request_cancel(project, job_id)
    assert jobs.recover_stale(project) == [(job_id, "cancelled")]
    left = [p for p in project.root.rglob("*") if p.is_file() and not p.name.startswith("formcheck.db")
            and p.suffix not in (".lock", ".log")]
    assert left == [] and store.list_videos(project) == []


@pytest.mark.slow
def test_a_killed_command_line_ingest_leaves_nothing_after_the_next_one(project, videos):
    proc = subprocess.Popen([sys.executable, "-m", "curation", "ingest", str(videos / "twix" / "correct-squat.mp4"),
                             "--data", str(project.root)], cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # killed once the normalised video is written, while the pose is tracked
        wait_for(lambda: list(project.work.glob("ingest-*/**/video.mp4")), timeout=180)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert list(project.work.glob("ingest-*"))  # the old code left work/<video>.part and videos/<video>.mp4
    jobs.sweep(project)  # what the next ingest or worker does first
    left = [p for p in project.root.rglob("*") if p.is_file() and not p.name.startswith("formcheck.db")]
    assert left == [] and store.list_videos(project) == []
