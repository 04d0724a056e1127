"""Jobs: long work (ingest) in background worker processes, with progress, heartbeat, cancel and recovery."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import traceback
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from curation import store
from curation.project import Project

MAX_WORKERS = 2  # one per core on the reference machine
STALE_SECONDS = 300  # a running job silent this long is taken for dead even if its pid lives
MAX_ATTEMPTS = 2  # a job whose worker died is run once more, then marked failed


class Cancelled(RuntimeError):
    """Long work stopped because the caller's `cancelled()` returned True (the user pressed Cancel)."""

    def __init__(self, message: str = "cancelled") -> None:
        super().__init__(message)


class JobFailed(Exception):
    """A job's own, expected failure (bad input): its message is shown to the user as is."""


def submit(project: Project, kind: str, params: dict, spawn: bool = True) -> str:
    """Queue a job and make sure a worker process will run it; returns the job id."""
    job_id = f"j{datetime.now(timezone.utc):%Y%m%d%H%M%S}{uuid.uuid4().hex[:6]}"
    store.create_job(project, job_id, kind, params)
    if spawn:
        spawn_worker(project)
    return job_id


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


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] not in "ZX"  # a zombie has exited
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True


def recover_stale(project: Project) -> list[tuple[str, str]]:
    """Jobs marked running whose worker is gone: queued again once, else failed. Returns (job id, new status)."""
    out = []
    cutoff = datetime.now(timezone.utc).timestamp() - STALE_SECONDS
    for job in store.running_jobs(project):
        beat = datetime.fromisoformat(job["heartbeat_at"]).timestamp() if job["heartbeat_at"] else 0
        if job["pid"] == os.getpid():
            continue
        if not _alive(job["pid"]) or beat < cutoff:
            out.append((job["id"], store.requeue_or_fail(project, job["id"], MAX_ATTEMPTS)))
    return out


def run_worker(project: Project, runners: dict[str, Callable] | None = None) -> int:
    """Worker loop: take queued jobs one by one until none is left. Returns how many jobs it ran."""
    runners = runners or default_runners()
    with _worker_slot(project) as slot:
        if slot is None:
            return 0
        recover_stale(project)
        ran = 0
        while (job := store.claim_job(project, os.getpid())) is not None:
            run_job(project, job, runners)
            ran += 1
        return ran


def run_job(project: Project, job: dict, runners: dict[str, Callable]) -> None:
    """Run one claimed job, reporting progress; always leaves it done, failed or cancelled."""
    cancel_seen = False

    def progress(fraction: float, message: str = "") -> None:
        nonlocal cancel_seen
        cancel_seen = store.heartbeat(project, job["id"], fraction, message) or cancel_seen

    def cancelled() -> bool:
        return cancel_seen

    try:
        runner = runners[job["kind"]]
        result = runner(project, job["params"], progress=progress, cancelled=cancelled)
    except Cancelled:
        store.finish_job(project, job["id"], "cancelled")
    except JobFailed as exc:
        store.finish_job(project, job["id"], "failed", error=str(exc))
    except Exception as exc:  # an unexpected failure still ends the job, with its trace in the worker log
        traceback.print_exc()
        store.finish_job(project, job["id"], "failed", error=f"{type(exc).__name__}: {exc}")
    else:
        store.finish_job(project, job["id"], "done", result=result)


# Job kinds and the function that runs each, imported only in the worker that needs it (MediaPipe, torch).
RUNNERS = {"ingest": "curation.pipeline:ingest_job", "train": "model.train:train_job"}


def default_runners() -> dict[str, Callable]:
    """Each kind's runner, its module imported on first use."""
    import importlib

    def lazy(target: str) -> Callable:
        def run(*args, **kwargs):
            module, name = target.split(":")
            return getattr(importlib.import_module(module), name)(*args, **kwargs)

        return run

    return {kind: lazy(target) for kind, target in RUNNERS.items()}
