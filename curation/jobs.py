"""Jobs: long work (ingest, training) in background worker processes, with progress, heartbeat, cancel and recovery.

A job's files live in its own folder, work/jobs/<job id>/: `inputs/` (an uploaded video) and `tmp/` (every
temporary file: the process's temp dir points there while the job runs, so pose chunks and ffmpeg's files land
there too). The folder goes when the job ends in any way, including a killed worker found by `tend`.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

from curation import store
from curation.project import Project, UnsafePath

MAX_WORKERS = 2  # one per core on the reference machine
HEARTBEAT_SECONDS = 1.0  # a worker's heartbeat thread writes this often, whatever its job is doing
# A running job silent this long is taken for dead even if a process with its pid lives (pid reused, worker
# frozen). Heartbeats are 1 s apart; writes can wait up to store.BUSY_TIMEOUT_MS (10 s) behind other writers.
STALE_SECONDS = 15.0
CANCEL_GRACE_SECONDS = 10.0  # a job still running this long after Cancel is ended by stopping its worker
MAX_ATTEMPTS = 2  # a job whose worker died is run once more, then marked failed
# A job submitted with a worker started for it is claimed within about a second; one that waits this long with a
# worker slot free has no worker coming.
QUEUE_GRACE_SECONDS = 5.0


class Cancelled(RuntimeError):
    """Long work stopped because the caller's `cancelled()` returned True (the user pressed Cancel)."""

    def __init__(self, message: str = "cancelled") -> None:
        super().__init__(message)


class JobFailed(Exception):
    """A job's own, expected failure (bad input): its message is shown to the user as is."""


def job_dir(project: Project, job_id: str) -> Path:
    """The folder of one job's files (inputs/ and tmp/), removed when the job ends."""
    return project.work / "jobs" / job_id


def submit(project: Project, kind: str, params: dict, spawn: bool = True,
           upload: tuple[str, bytes | memoryview] | None = None) -> str:
    """Queue a job and make sure a worker process will run it; returns the job id.

    `upload` (file name made by the caller, content): a file the job owns, saved in its inputs/ folder; its
    path is given to the job as params["upload"] (relative to the project) and params["source"].
    """
    job_id = f"j{datetime.now(timezone.utc):%Y%m%d%H%M%S}{uuid.uuid4().hex[:6]}"
    if upload is not None:
        name, data = upload
        path = job_dir(project, job_id) / "inputs" / Path(name).name
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        params = {**params, "upload": project.relative(path), "source": str(path)}
    try:
        store.create_job(project, job_id, kind, params)
    except BaseException:
        shutil.rmtree(job_dir(project, job_id), ignore_errors=True)
        raise
    if spawn:
        spawn_worker(project)
    return job_id


def cancel(project: Project, job_id: str) -> str | None:
    """Cancel a job, whatever state its worker is in: a queued job ends at once, a running one at its worker's
    next heartbeat (within seconds), one whose worker is gone at once. Returns the job's status."""
    status = store.request_cancel(project, job_id)
    tend(project)
    job = store.get_job(project, job_id)
    if job and job["status"] == "cancelled":
        discard_files(project, job)
    return job["status"] if job else status


def spawn_worker(project: Project) -> subprocess.Popen:
    """Start a detached worker process; it exits at once when all worker slots are taken."""
    log = open(project.work / "worker.log", "ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "curation", "worker", "--data", str(project.root)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # survives a Streamlit rerun or a page closed in the browser
            cwd=Path(__file__).resolve().parents[1],
        )
    finally:
        log.close()


@contextmanager
def _worker_slot(project: Project) -> Iterator[int | None]:
    """Hold one of MAX_WORKERS lock files for the life of this worker; None when all are held."""
    for slot in range(MAX_WORKERS):
        fh = open(project.work / f"worker-{slot}.lock", "w")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            continue
        try:
            yield slot
        finally:
            fh.close()  # closing releases the lock; a killed process releases it too
        return
    yield None


def _slot_free(project: Project) -> bool:
    with _worker_slot(project) as slot:
        return slot is not None


def _alive(pid: int | None) -> bool:
    return store.pid_alive(pid)


def _stamp(seconds_ago: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)).isoformat(timespec="microseconds")


def recover_stale(project: Project) -> list[tuple[str, str]]:
    """Running jobs whose worker is gone or silent: queued again once, else failed with the reason (cancelled
    when Cancel was asked); their temporary files are removed. Returns (job id, new status) pairs."""
    out, silent_since = [], _stamp(STALE_SECONDS)
    for job in store.running_jobs(project):
        if job["pid"] == os.getpid():
            continue  # run by this very process (an in-process worker): it is not dead
        alive = _alive(job["pid"])
        if alive and (job["heartbeat_at"] or "") >= silent_since:
            continue
        if alive:
            reason = f"the worker stopped unexpectedly (no heartbeat for over {STALE_SECONDS:g} s)"
        else:
            reason = "the worker stopped unexpectedly (killed, or the server restarted)"
        status = store.requeue_or_fail(project, job["id"], MAX_ATTEMPTS, reason)
        if status != "gone":
            discard_files(project, job, keep_inputs=status == "queued")
            out.append((job["id"], status))
    return out


def discard_files(project: Project, job: dict, keep_inputs: bool = False) -> None:
    """Remove a job's temporary files, and with them its inputs (an upload) unless it will run again."""
    folder = job_dir(project, job["id"])
    shutil.rmtree(folder / "tmp" if keep_inputs else folder, ignore_errors=True)
    upload = job["params"].get("upload")
    if upload and not keep_inputs:
        try:
            project.path(upload).unlink(missing_ok=True)
        except UnsafePath:
            pass  # not a file this job owns


def sweep(project: Project) -> None:
    """Remove leftovers: folders of jobs that have ended (a worker killed between finishing and cleaning up) and
    scratch folders of command-line ingests whose process is gone (pipeline's "ingest-<pid>-...")."""
    root = project.work / "jobs"
    active = store.active_job_ids(project) if root.is_dir() else set()
    for folder in root.iterdir() if root.is_dir() else ():
        if folder.name not in active:
            shutil.rmtree(folder, ignore_errors=True)
    for folder in project.work.glob("ingest-*-*"):
        pid = folder.name.split("-")[1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def tend(project: Project) -> list[tuple[str, str]]:
    """Keep the queue moving; cheap enough for every page poll: recover jobs of dead or silent workers, and start
    a worker when a job has waited QUEUE_GRACE_SECONDS while a worker slot is free (a worker that died left
    its queue behind). Returns the recovered jobs as recover_stale does."""
    recovered = recover_stale(project)
    sweep(project)
    waiting_since = store.oldest_queued_at(project)
    if waiting_since and (recovered or waiting_since < _stamp(QUEUE_GRACE_SECONDS)) and _slot_free(project):
        spawn_worker(project)
    return recovered


def run_worker(project: Project, runners: dict[str, Callable] | None = None) -> int:
    """Worker loop: take queued jobs one by one until none is left. Returns how many jobs it ran."""
    runners = runners or default_runners()
    with _worker_slot(project) as slot:
        if slot is None:
            return 0
        recover_stale(project)
        sweep(project)
        ran = 0
        while (job := store.claim_job(project, os.getpid())) is not None:
            run_job(project, job, runners)
            ran += 1
        return ran


class _Heartbeat(threading.Thread):
    """Beats for one running job every HEARTBEAT_SECONDS, sees Cancel, and ends a job that ignores it."""

    def __init__(self, project: Project, job: dict) -> None:
        super().__init__(name=f"heartbeat-{job['id']}", daemon=True)
        self.project, self.job, self.pid = project, job, os.getpid()
        self.stopped = threading.Event()
        self.cancel = threading.Event()

    def run(self) -> None:
        cancel_since = None
        while not self.stopped.wait(HEARTBEAT_SECONDS):
            try:
                state = store.beat(self.project, self.job["id"], self.pid)
            except sqlite3.Error:
                continue  # the database was busy for longer than its timeout: beat again next second
            if state is None:  # taken from this worker (it stalled and was recovered): stop working on it
                self.cancel.set()
                return
            if state:
                self.cancel.set()
                cancel_since = cancel_since or time.monotonic()
                if time.monotonic() - cancel_since > CANCEL_GRACE_SECONDS:
                    self._end_unresponsive()
                    return

    def _end_unresponsive(self) -> None:
        """The job did not stop within the grace time (a call that never checks for Cancel): mark it cancelled
        and, when this worker runs in its own process group (as spawned), stop the group, children included;
        a replacement worker takes the rest of the queue."""
        store.finish_job(self.project, self.job["id"], "cancelled", pid=self.pid)
        discard_files(self.project, self.job)
        if os.getpgid(0) == os.getpid():
            if store.count_queued(self.project):
                spawn_worker(self.project)
            os.killpg(0, signal.SIGKILL)


@contextmanager
def temp_dir(path: Path) -> Iterator[None]:
    """Point this process's and its children's temporary files at `path` (the worker runs one job at a time)."""
    saved_dir, saved_env = tempfile.tempdir, os.environ.get("TMPDIR")
    tempfile.tempdir, os.environ["TMPDIR"] = str(path), str(path)
    try:
        yield
    finally:
        tempfile.tempdir = saved_dir
        if saved_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = saved_env


def run_job(project: Project, job: dict, runners: dict[str, Callable]) -> None:
    """Run one claimed job, reporting progress; always leaves it done, failed or cancelled, its files removed."""
    pid, cancel_seen = os.getpid(), False
    heart = _Heartbeat(project, job)

    def progress(fraction: float, message: str = "") -> None:
        nonlocal cancel_seen
        cancel_seen = store.heartbeat(project, job["id"], fraction, message) or cancel_seen

    def cancelled() -> bool:
        return cancel_seen or heart.cancel.is_set()

    tmp = job_dir(project, job["id"]) / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    heart.start()
    status, result, error = "done", None, None
    try:
        with temp_dir(tmp):
            result = runners[job["kind"]](project, job["params"], progress=progress, cancelled=cancelled)
    except Cancelled:
        status = "cancelled"
    except JobFailed as exc:
        status, error = "failed", str(exc)
    except Exception as exc:  # an unexpected failure still ends the job, with its trace in the worker log
        traceback.print_exc()
        status, error = "failed", f"{type(exc).__name__}: {exc}"
    finally:
        heart.stopped.set()
        heart.join()
    if store.finish_job(project, job["id"], status, result=result, error=error, pid=pid):
        discard_files(project, job)  # else the job was recovered from this worker and its files are no longer ours


# Job kinds and the function that runs each, imported only in the worker that needs it (MediaPipe, torch).
RUNNERS = {"ingest": "curation.pipeline:ingest_job", "batch": "curation.batch:batch_job", "train": "model.train:train_job",
           "simulate": "model.simulate:simulate_job", "assess": "model.assess:assess_job"}


def default_runners() -> dict[str, Callable]:
    """Each kind's runner, its module imported on first use."""
    import importlib

    def lazy(target: str) -> Callable:
        def run(*args, **kwargs):
            module, name = target.split(":")
            return getattr(importlib.import_module(module), name)(*args, **kwargs)

        return run

    return {kind: lazy(target) for kind, target in RUNNERS.items()}
