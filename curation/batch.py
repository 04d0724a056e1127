"""Batch ingest on Ray: one Ray task per manifest row runs the compute stages of the pipeline (fetch, normalise,
pose, trim, segment, kinematics); the finished videos come back to this process, the driver, the only writer of
the project store.

Safe to run again: sources already in the project are skipped before any task starts, and each finished video is
stored in one transaction as soon as its task returns, so a batch killed half way and started again ingests
every video exactly once. A task's user-caused failure (bad link, no person...) is that row's one-line error; a
crashed or killed Ray worker is too; neither stops the other rows.

Where the bytes travel: a local file of the manifest is read by the driver and sent through Ray's object store
(workers on other machines cannot see the driver's disk); a link is downloaded by the worker that runs it. The
normalised video and pose track come back as bytes in the task's result, so workers need no shared storage.
Without an address Ray starts on this machine for the length of the batch; `address` joins a running cluster.
"""

from __future__ import annotations

import csv
import io
import os
import resource
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from curation import store
from curation.ingest import UnsupportedSource, clean_text, is_url, source_key
from curation.jobs import Cancelled, JobFailed
from curation.pipeline import (
    USER_ERRORS,
    PipelineOptions,
    Progress,
    _result,
    process_source,
    store_result,
)
from curation.project import Project

# Memory one task may use, declared to Ray so that a node never runs more pose processes than fit in its memory:
# a Ray worker tracking pose on a 720p video peaked at 0.72 GB resident (MediaPipe, OpenCV, the decoded frames in
# flight; tests/benchmarks/bench_batch.py prints the measured peak); 1 GB leaves room for a long video's
# landmarks and the result's bytes.
TASK_MEMORY = 2**30
# Ray's shared-memory object store on a local run: holds the inputs and results of the tasks in flight (a few
# MB per video), not the whole batch, since at most `workers` tasks are submitted at a time.
LOCAL_OBJECT_STORE = 512 * 2**20
COLUMNS = ("source", "exercise", "athlete", "group", "note")
MAX_ROWS = 100_000


class ManifestError(ValueError):
    """The manifest cannot be read as a batch (missing columns, no rows, not CSV)."""


class ClusterUnavailable(RuntimeError):
    """Ray is missing, or the cluster at --address cannot be joined."""


@dataclass(frozen=True)
class Row:
    """One manifest row: a video to ingest and what the project should know about it."""
    source: str
    exercise: str
    athlete: str = ""
    group: str = ""
    note: str = ""


def read_manifest(text: str, base: Path | None = None) -> list[Row]:
    """Rows of a manifest CSV (header: source, exercise, and optionally athlete, group, note; other columns are
    ignored). A relative file path is taken relative to `base` (the manifest's folder). Raises ManifestError."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    header = [(h or "").strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in ("source", "exercise") if c not in header]
    if missing:
        raise ManifestError(f"the manifest needs a header with the columns source and exercise "
                            f"(missing: {', '.join(missing)})")
    reader.fieldnames = header
    rows = []
    for record in reader:
        # One plain line each; a source keeps its full length (links up to 2048 characters, long paths), an
        # athlete's name the length the Dataset page allows.
        cells = {c: clean_text(str(record.get(c) or ""), {"source": 4096, "athlete": 80}.get(c, 200))
                 for c in COLUMNS}
        if not cells["source"]:
            continue
        if base is not None and not is_url(cells["source"]) and not Path(cells["source"]).is_absolute():
            cells["source"] = str(base / cells["source"])
        rows.append(Row(**cells))
        if len(rows) > MAX_ROWS:
            raise ManifestError(f"the manifest has more than {MAX_ROWS} rows: split it into several batches")
    if not rows:
        raise ManifestError("the manifest has no rows with a source")
    return rows


def read_manifest_file(path: Path) -> list[Row]:
    """read_manifest of a file, relative paths in it taken from the file's folder."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read the manifest {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return read_manifest(text, base=Path(path).resolve().parent)


def _error(row: Row, message: str) -> dict:
    return {"source": row.source, "video_id": None, "frames": 0, "fps": None, "person_share": None,
            "trimmed_share": None, "clips": 0, "existing": False, "error": message}


def _task(source: str, key: str, exercise: str, options: PipelineOptions, data: bytes | None, title: str | None,
          scratch_root: str | None) -> dict:
    """Body of one Ray task, run in a worker process: the compute stages in a scratch folder, the two files
    returned as bytes. A user-caused failure is returned as {"error": ...}, never raised."""
    started, cpu_before = time.perf_counter(), _cpu_seconds()
    if scratch_root:
        Path(scratch_root).mkdir(parents=True, exist_ok=True)
    # "ingest-<pid>-": a folder left by a killed worker is swept like a killed single ingest's (jobs.sweep).
    scratch = Path(tempfile.mkdtemp(prefix=f"ingest-{os.getpid()}-", dir=scratch_root))
    try:
        fetch_from = source
        if data is not None:  # a file of the driver's machine, sent through the object store
            fetch_from = str(scratch / ("input" + Path(source).suffix.lower()[:6]))
            Path(fetch_from).write_bytes(data)
        try:
            p = process_source(fetch_from, key, exercise, options, scratch, title=title)
        except USER_ERRORS as exc:
            return {"error": str(exc)}
        # Every field of the processed source travels (whatever the pipeline adds), the two files as bytes.
        return {"processed": replace(p, video_file=None, pose_file=None),
                "video_bytes": p.video_file.read_bytes(), "pose_bytes": p.pose_file.read_bytes(),
                "seconds": time.perf_counter() - started, "cpu_seconds": _cpu_seconds() - cpu_before,
                "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (ffmpeg): a task's cost whatever else the machine runs."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _start_ray(address: str | None, workers: int | None) -> bool:
    """Join the cluster at `address`, or start Ray on this machine; True when this call started it."""
    try:
        import ray
    except ImportError:
        raise ClusterUnavailable("Ray is not installed: pip install 'ray==2.60.*'") from None
    if ray.is_initialized():  # the caller (a test, a notebook) set Ray up itself
        return False
    try:
        if address:
            _check_reachable(address)
            ray.init(address=address, logging_level="WARNING", log_to_driver=False)
        else:
            # "local": a new Ray on this machine, never a cluster found through RAY_ADDRESS; on the loopback
            # address only, so nothing of it is reachable from the network. Its session files outside a job's
            # temp folder (TMPDIR in a job): socket paths must stay short.
            ray.init(address="local", num_cpus=workers or os.cpu_count(), include_dashboard=False,
                     object_store_memory=LOCAL_OBJECT_STORE, logging_level="WARNING", log_to_driver=False,
                     _node_ip_address="127.0.0.1", _temp_dir=os.environ.get("RAY_TMPDIR", "/tmp/ray"))
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterUnavailable(f"cannot join the Ray cluster at {address or 'this machine'}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    return True


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Refuse at once a HOST:PORT where nothing answers (Ray itself would wait minutes for it)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # "auto" and other forms Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ClusterUnavailable(f"nothing answers at {address} ({exc.strerror or type(exc).__name__}): is "
                                 f"`ray start --head` running there, and the port open?") from None


def _describe(exc: BaseException) -> str:
    """One line for a task that ended without a result (its worker crashed, ran out of memory, was killed)."""
    import ray.exceptions as rex

    if isinstance(exc, rex.OutOfMemoryError):
        return "the Ray worker ran out of memory on this video"
    if isinstance(exc, (rex.WorkerCrashedError, rex.NodeDiedError, rex.LocalRayletDiedError)):
        return "the Ray worker running this video stopped unexpectedly"
    if isinstance(exc, rex.RayTaskError):
        cause = exc.cause if getattr(exc, "cause", None) is not None else exc
        return f"the Ray task failed: {type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
    return f"the Ray task failed: {type(exc).__name__}"


def _eta(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def run_batch(project: Project, rows: list[Row], address: str | None = None, workers: int | None = None,
              options: PipelineOptions | None = None, progress: Progress | None = None,
              cancelled: Callable[[], bool] | None = None, stats: dict | None = None) -> list[dict]:
    """Ingest every row on Ray; returns one result per row, in order, with the fields of `curation ingest --json`
    plus exercise, athlete, group, note. `workers` caps the tasks running at once (default: the cluster's CPUs).

    Raises Cancelled when `cancelled()` turns true (the videos finished so far are kept), ClusterUnavailable.
    `stats`, when given, receives per-task figures (compute seconds, peak memory of each worker) for benchmarks.
    """
    options = options or PipelineOptions(pose_workers=1)  # one core per task: Ray runs tasks side by side
    report = progress or (lambda fraction, message="": None)
    stop = cancelled or (lambda: False)
    results: list[dict | None] = [None] * len(rows)
    todo: dict[str, list[int]] = {}  # source key -> its rows (the first one is run, the others follow it)
    for i, row in enumerate(rows):
        try:
            key = source_key(row.source, options.ingest)
        except USER_ERRORS as exc:
            results[i] = _error(row, str(exc))
            continue
        if key in todo:
            todo[key].append(i)
        elif (video := store.find_video(project, key)) is not None:
            results[i] = _result(row.source, video, video["clips"], existing=True)
        else:
            todo[key] = [i]
    owner = f"batch pid {os.getpid()}"
    claimed = []
    for key in list(todo):
        if store.claim_source(project, key, owner):
            claimed.append(key)
        else:
            for i in todo.pop(key):
                results[i] = _error(rows[i], "this video is already being added by another job; it appears in "
                                             "the project when that job ends")
    try:
        if todo:
            _run_tasks(project, rows, todo, results, address, workers, options, report, stop, stats)
    finally:
        for key in claimed:
            store.release_source(project, key, owner)
    return [{**r, "exercise": row.exercise, "athlete": row.athlete, "group": row.group, "note": row.note}
            for r, row in zip(results, rows)]


def _run_tasks(project: Project, rows: list[Row], todo: dict[str, list[int]], results: list, address: str | None,
               workers: int | None, options: PipelineOptions, report: Progress, stop: Callable[[], bool],
               stats: dict | None) -> None:
    started_ray = _start_ray(address, workers)
    import ray

    try:
        task = ray.remote(num_cpus=1, memory=TASK_MEMORY, max_retries=1)(_task)
        window = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        # A local Ray works in the project's work/ folder; a cluster's workers in their own temp dirs.
        scratch_root = None if address else str(project.work)
        waiting = list(todo.items())
        running: dict = {}  # object ref -> source key
        total, finished, failed, began = len(waiting), 0, 0, time.monotonic()
        scratch = Path(tempfile.mkdtemp(prefix=f"ingest-{os.getpid()}-", dir=project.work))
        report(0.0, f"0 of {total} videos")
        try:
            while waiting or running:
                while waiting and len(running) < window:
                    key, indices = waiting.pop(0)
                    try:
                        running[_submit(task, rows[indices[0]], key, options, scratch_root)] = key
                    except (OSError, UnsupportedSource) as exc:  # too big, or gone since it was hashed
                        reason = str(exc) if isinstance(exc, UnsupportedSource) else f"cannot read the file: {exc}"
                        for i in indices:
                            results[i] = _error(rows[i], reason)
                        finished, failed = finished + 1, failed + 1
                if not running:
                    continue
                done, _ = ray.wait(list(running), num_returns=1, timeout=0.5)
                if stop():
                    for ref in running:
                        ray.cancel(ref, force=True)
                    raise Cancelled()
                for ref in done:
                    key = running.pop(ref)
                    failed += not _finish(project, ray, ref, rows, todo[key], results, scratch, stats)
                    finished += 1
                    rate = (time.monotonic() - began) / finished
                    report(finished / total, f"{finished} of {total} videos ({failed} failed), "
                                             f"ETA {_eta(rate * (total - finished))}")
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    finally:
        if started_ray:
            ray.shutdown()


def _submit(task, row: Row, key: str, options: PipelineOptions, scratch_root: str | None):
    """Start one row's task; a local file goes with it as bytes (read here, at submission, so only the files of
    the tasks in flight are held). Raises OSError, UnsupportedSource (over the size limit)."""
    if is_url(row.source):
        return task.remote(row.source, key, row.exercise, options, None, None, scratch_root)
    path = Path(row.source).expanduser()
    if path.stat().st_size > options.ingest.max_bytes:  # refused here rather than after a trip to a worker
        raise UnsupportedSource(f"the file is over the limit of {options.ingest.max_bytes / 2**20:.0f} MB")
    data = path.read_bytes()
    return task.remote(row.source, key, row.exercise, options, data, clean_text(Path(row.source).stem),
                       scratch_root)


def _finish(project: Project, ray, ref, rows: list[Row], indices: list[int], results: list, scratch: Path,
            stats: dict | None) -> bool:
    """Store one finished task's video (one transaction) and fill in the results of its rows; True if stored."""
    row = rows[indices[0]]
    try:
        out = ray.get(ref)
    except Exception as exc:  # the task's worker died or Ray failed it: that row's error, the batch goes on
        out = {"error": _describe(exc)}
    if out.get("error"):
        for i in indices:
            results[i] = _error(rows[i], out["error"])
        return False
    processed = out["processed"]
    if stats is not None:
        stats.setdefault("tasks", []).append({"seconds": out["seconds"], "cpu_seconds": out["cpu_seconds"],
                                              "peak_rss": out["peak_rss"], "frames": processed.video["frames"]})
    video_file, pose_file = scratch / "video.mp4", scratch / "pose.npz"
    video_file.write_bytes(out["video_bytes"])
    pose_file.write_bytes(out["pose_bytes"])
    # Recorded as the manifest gave them: the worker saw a copy of a local file under another name.
    group = row.group or processed.video["id"]
    video = {**processed.video, "source": row.source, "athlete": row.athlete, "group_name": group}
    clips = [{**c, "source": row.source, "group_name": group} for c in processed.clips]
    processed = replace(processed, source=row.source, video=video, clips=clips, video_file=video_file,
                        pose_file=pose_file)
    first = store_result(project, processed)
    results[indices[0]] = first
    for i in indices[1:]:  # the same video named twice in the manifest: stored once
        results[i] = {**first, "source": rows[i].source, "existing": True}
    return True


def batch_job(project: Project, params: dict, progress: Progress, cancelled: Callable[[], bool]) -> dict:
    """The background job of the Ingest page's batch: params["rows"] (dicts of Row's fields), on a local Ray."""
    rows = [Row(**{c: str(r.get(c) or "") for c in COLUMNS}) for r in params["rows"]]
    try:
        videos = run_batch(project, rows, workers=params.get("workers"), progress=progress, cancelled=cancelled)
    except ClusterUnavailable as exc:
        raise JobFailed(str(exc)) from exc
    return summary(videos)


def summary(videos: list[dict]) -> dict:
    """A batch's totals and its per-video results (the job's result)."""
    return {"videos": videos, "added": sum(not v["error"] and not v.get("existing") for v in videos),
            "existing": sum(bool(v.get("existing")) for v in videos),
            "failed": sum(bool(v["error"]) for v in videos),
            "clips": sum(v["clips"] for v in videos if not v["error"] and not v.get("existing"))}

