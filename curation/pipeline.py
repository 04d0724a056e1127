"""Pipeline: one source (URL or file) through fetch, normalise, pose, trim, segment and kinematics into the store."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


from curation import store
from curation.ingest import DownloadFailed, IngestOptions, UnsupportedSource, download, fetch_local, is_url, source_key
from curation.jobs import Cancelled, JobFailed
from curation.kinematics import complexity_row
from curation.pose import PoseOptions, UnreadableVideo, extract_pose_parallel, save_track
from curation.project import Project
from curation.segment import SegmentOptions, segment_repetitions
from curation.trim import TrimOptions, find_movement
from curation.video import BadVideo, NormaliseOptions, normalise_video

Progress = Callable[[float, str], None]


class NoPersonDetected(ValueError):
    """MediaPipe found a person in too few frames of the video."""


class NoMovement(ValueError):
    """The video has no span of movement long enough to make a clip."""


# Failures a user can cause: reported as the source's one-line error, never as a crash.
USER_ERRORS = (UnsupportedSource, DownloadFailed, BadVideo, UnreadableVideo, NoPersonDetected, NoMovement)


@dataclass(frozen=True)
class PipelineOptions:
    ingest: IngestOptions = field(default_factory=IngestOptions.from_env)
    normalise: NormaliseOptions = field(default_factory=NormaliseOptions)
    pose: PoseOptions = field(default_factory=PoseOptions)
    trim: TrimOptions = field(default_factory=TrimOptions)
    segment: SegmentOptions = field(default_factory=SegmentOptions)
    min_person_share: float = 0.2  # below this the video is refused: no usable athlete in it
    # Pose processes for one long video (short ones run in one): one per core when this job runs alone.
    pose_workers: int = 2


def video_id_for(key: str) -> str:
    """Tool-made video id: stable for a source, so ingesting it twice finds the first."""
    return "v" + hashlib.sha256(key.encode()).hexdigest()[:12]


def _result(source: str, video: dict, clips: int, existing: bool) -> dict:
    return {
        "source": source,
        "video_id": video["id"],
        "title": video["title"],
        "frames": video["frames"],
        "fps": video["fps"],
        "person_share": round(video["person_share"], 4),
        "trimmed_share": round(video["trimmed_share"], 4),
        "clips": clips,
        "existing": existing,
        "error": None,
    }


def ingest_source(
    project: Project,
    source: str,
    exercise: str | None = None,
    options: PipelineOptions | None = None,
    progress: Progress | None = None,
    cancelled: Callable[[], bool] | None = None,
    title: str | None = None,
) -> dict:
    """Ingest one source; returns the result of design.md 4.2 (`error` None). Raises USER_ERRORS or Cancelled.

    Idempotent: a source ingested before returns its existing video with `existing` true and adds nothing.
    Files are written atomically and all rows in one transaction at the end, so an interrupted run leaves
    no rows and at most files that the next run for the same source overwrites.
    """
    options = options or PipelineOptions()
    report = progress or (lambda fraction, message="": None)
    stop = cancelled or (lambda: False)

    def check() -> None:
        if stop():
            raise Cancelled()

    key = source_key(source, options.ingest) if is_url(source) else source_key(source)
    existing = store.find_video(project, key)
    if existing is not None:
        return _result(source, existing, existing["clips"], existing=True)

    video_id = video_id_for(key)
    scratch = project.work / f"{video_id}.part"
    video_path = project.videos / f"{video_id}.mp4"
    pose_path = project.poses / f"{video_id}.npz"
    done = False
    try:
        scratch.mkdir(parents=True, exist_ok=True)
        report(0.0, "fetching")
        if is_url(source):
            fetched = download(
                source, scratch, options.ingest,
                progress=lambda f: report(0.2 * f, "downloading"), cancelled=stop,
            )
        else:
            fetched = fetch_local(Path(source), scratch)
        check()
        report(0.2, "normalising video")
        info = normalise_video(fetched.path, video_path, options.normalise)
        check()
        report(0.3, "tracking pose")
        track = extract_pose_parallel(
            video_path, options.pose, workers=options.pose_workers,
            progress=lambda d, t: report(0.3 + 0.6 * d / max(t, 1), f"tracking pose: frame {d} of {t}"),
            cancelled=stop,
        )
        if track.person_share < options.min_person_share:
            raise NoPersonDetected(
                f"a person was found in only {track.person_share:.0%} of the frames "
                f"(at least {options.min_person_share:.0%} needed): is an athlete in full view?"
            )
        save_track(track, pose_path)
        report(0.9, "finding repetitions")
        aspect = info.width / info.height
        trim = find_movement(track.landmarks, track.fps, motion=track.motion, options=options.trim, aspect=aspect)
        bounds = segment_repetitions(track.landmarks, track.fps, trim.spans, options=options.segment, aspect=aspect)
        if not bounds:
            raise NoMovement("no movement long enough for a clip was found (the athlete stays still or out of view)")
        clips = []
        for i, b in enumerate(bounds):
            clips.append({
                "id": f"{video_id}_{i:03d}",
                "video_id": video_id,
                "exercise": exercise or "unknown",
                "start_frame": int(b.start),
                "end_frame": int(b.end),
                "fps": float(track.fps),
                "method": b.method,
                "group_name": video_id,
                "source": source,
                **complexity_row(track.landmarks[b.start:b.end], track.fps, aspect),
            })
        video = {
            "id": video_id,
            "source_key": key,
            "source": source,
            "title": (title or fetched.title or "")[:300],
            "uploader": (fetched.uploader or "")[:200],
            "exercise": exercise or "unknown",
            "video_path": project.relative(video_path),
            "pose_path": project.relative(pose_path),
            "frames": track.frames,
            "fps": float(track.fps),
            "width": int(info.width),
            "height": int(info.height),
            "person_share": float(track.person_share),
            "trimmed_share": float(trim.trimmed_share),
            "group_name": video_id,
        }
        check()
        store.add_video(project, video, clips)
        done = True
        report(1.0, f"{len(clips)} clips")
        return _result(source, video, len(clips), existing=False)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        if not done and store.find_video(project, key) is None:
            video_path.unlink(missing_ok=True)
            pose_path.unlink(missing_ok=True)


def ingest_job(project: Project, params: dict, progress: Progress, cancelled: Callable[[], bool]) -> dict:
    """The background job of the Ingest page: one source; user errors end the job with their message."""
    # Another job running at the same time already has the second core.
    workers = 1 if len(store.running_jobs(project)) > 1 else 2
    try:
        return ingest_source(
            project, params["source"], params.get("exercise"), options=PipelineOptions(pose_workers=workers),
            progress=progress, cancelled=cancelled, title=params.get("title"),
        )
    except USER_ERRORS as exc:
        raise JobFailed(str(exc)) from exc
    finally:
        upload = params.get("upload")
        if upload:  # the page saved this file for the job alone
            project.path(upload).unlink(missing_ok=True)
