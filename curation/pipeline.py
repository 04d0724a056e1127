"""Pipeline: one source (URL or file) through fetch, normalise, pose, trim, segment and kinematics into the store."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from curation import store
from curation.ingest import DownloadFailed, IngestOptions, UnsupportedSource, download, fetch_local, is_url, source_key
from curation.jobs import Cancelled, JobFailed
from curation.kinematics import complexity_row
from curation.people import RULES, SEVERAL_PEOPLE, SIDES, PeopleChecks, chosen_boxes, find_split, \
    several_people_spans, sides_with_people
from curation.pose import PoseOptions, PoseTrack, UnreadableVideo, clean_landmarks, extract_pose_crop, \
    extract_pose_parallel, save_track
from curation.replay import REPLAY, find_replays, without
from curation.project import Project
from curation.segment import SegmentOptions, segment_repetitions
from curation.trim import TrimOptions, find_movement
from curation.video import BadVideo, NormaliseOptions, ffmpeg_exe, normalise_video, probe_video
from curation.view import estimate_view

Progress = Callable[[float, str], None]


class NoPersonDetected(ValueError):
    """MediaPipe found a person in too few frames of the video."""


class NoMovement(ValueError):
    """The video has no span of movement long enough to make a clip."""


class DuplicateSource(ValueError):
    """The source is being ingested right now by another job or command."""


# Failures a user can cause: reported as the source's one-line error, never as a crash.
USER_ERRORS = (UnsupportedSource, DownloadFailed, BadVideo, UnreadableVideo, NoPersonDetected, NoMovement,
               DuplicateSource)


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
    # Find replays (curation.replay): flagged "replay" and never cut into clips. False: as before issue 15.
    replays: bool = True
    # Which person is the athlete where several are in the picture (curation.people.RULES; "click" takes
    # athlete_point, x and y in 0..1 of the frame). "tracked" keeps the one MediaPipe follows; any other rule
    # tracks the chosen person again on a crop around them over the spans with several people.
    athlete: str = "tracked"
    athlete_point: tuple[float, float] | None = None
    # Ingest one side of a split screen ("left", "right", "top", "bottom": that half of the picture) as its
    # own video; None: the whole picture.
    side: str | None = None

    def __post_init__(self) -> None:
        if self.athlete not in RULES:
            raise ValueError(f"athlete rule must be one of {', '.join(RULES)}")
        if self.athlete == "click" and self.athlete_point is None:
            raise ValueError("the click rule needs athlete_point")
        if self.side is not None and self.side not in SIDES:
            raise ValueError(f"side must be one of {', '.join(SIDES)}")


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
    work_dir: Path | None = None,
) -> dict:
    """Ingest one source; returns the result of design.md 4.2 (`error` None). Raises USER_ERRORS or Cancelled.

    Idempotent: a source ingested before returns its existing video with `existing` true and adds nothing, and
    a source another ingest is working on is refused at once (DuplicateSource). Every intermediate file
    (download, normalised video, pose track) is written in a scratch folder under `work_dir` (default
    project/work; a job passes its own folder) and moved into videos/ and poses/ just before the one
    transaction that adds the rows, so an interrupted run leaves no rows and nothing outside that folder.
    """
    options = options or PipelineOptions()
    report = progress or (lambda fraction, message="": None)
    stop = cancelled or (lambda: False)

    def check() -> None:
        if stop():
            raise Cancelled()

    key = source_key(source, options.ingest) if is_url(source) else source_key(source)
    if options.side:  # each side of a split screen is a video of its own
        key = f"{key}#{options.side}"
    existing = store.find_video(project, key)
    if existing is not None:
        return _result(source, existing, existing["clips"], existing=True)
    owner = f"pid {os.getpid()}"  # a worker runs one job at a time, so its process stands for the job
    if not store.claim_source(project, key, owner):
        raise DuplicateSource("this video is already being added by another job; it appears in the project "
                              "when that job ends")
    try:
        existing = store.find_video(project, key)  # added by an ingest that ended between the two looks
        if existing is not None:
            return _result(source, existing, existing["clips"], existing=True)
        return _ingest_new(project, source, key, exercise, options, report, check, stop, title,
                           work_dir or project.work)
    finally:
        store.release_source(project, key, owner)


def _ingest_new(project: Project, source: str, key: str, exercise: str | None, options: PipelineOptions,
                report: Progress, check: Callable[[], None], stop: Callable[[], bool], title: str | None,
                work_dir: Path) -> dict:
    work_dir.mkdir(parents=True, exist_ok=True)
    # "ingest-<pid>-": a folder whose process is gone is a leftover (jobs.sweep removes it).
    scratch = Path(tempfile.mkdtemp(prefix=f"ingest-{os.getpid()}-", dir=work_dir))
    try:
        processed = process_source(source, key, exercise, options, scratch, report, stop, title)
        check()
        result = store_result(project, processed)
        report(1.0, f"{result['clips']} clips")
        return result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@dataclass
class Processed:
    """One source through the compute stages, not yet in the project: what a batch task hands to the driver."""
    source: str
    key: str
    video: dict  # the videos row, without its paths (store_result sets them)
    clips: list[dict]
    removed: list[tuple[int, int, str]]  # spans the trim removed (start, end, reason)
    video_file: Path  # the normalised video and the pose track, in the caller's scratch folder
    pose_file: Path
    cuts: list[int] = field(default_factory=list)  # first frames of new shots (hard camera cuts)
    # Spans kept but marked (start, end, reason), a replay with the span it repeats (start, end, reason,
    # source_start, source_end).
    flagged: list[tuple] = field(default_factory=list)
    people: dict | None = None  # the video_people row: athlete rule, split screen found, side ingested


def process_source(source: str, key: str, exercise: str | None, options: PipelineOptions, scratch: Path,
                   progress: Progress | None = None, cancelled: Callable[[], bool] | None = None,
                   title: str | None = None) -> Processed:
    """Fetch, normalise, track pose, trim, segment and measure one source into `scratch`; touches no project.

    The part of an ingest that needs CPU, run in the ingest's own process or in a Ray worker (curation/batch);
    raises USER_ERRORS or Cancelled. `key` is the source's source_key, from which the video id is made.
    """
    report = progress or (lambda fraction, message="": None)
    stop = cancelled or (lambda: False)

    def check() -> None:
        if stop():
            raise Cancelled()

    video_id = video_id_for(key)
    report(0.0, "fetching")
    if is_url(source):
        fetched = download(
            source, scratch, options.ingest,
            progress=lambda f: report(0.2 * f, "downloading"), cancelled=stop,
        )
    else:
        fetched = fetch_local(Path(source), scratch, options.ingest)
    check()
    report(0.2, "normalising video")
    info = normalise_video(fetched.path, scratch / ("whole.mp4" if options.side else "video.mp4"), options.normalise,
                           cancelled=stop)
    if options.side:
        info = crop_side(scratch / "whole.mp4", scratch / "video.mp4", options.side, options.normalise)
    check()
    report(0.3, "tracking pose")
    track = extract_pose_parallel(
        scratch / "video.mp4", options.pose, workers=options.pose_workers,
        progress=lambda d, t: report(0.3 + 0.6 * d / max(t, 1), f"tracking pose: frame {d} of {t}"),
        cancelled=stop,
    )
    if track.person_share < options.min_person_share:
        raise NoPersonDetected(
            f"a person was found in only {track.person_share:.0%} of the frames "
            f"(at least {options.min_person_share:.0%} needed): is an athlete in full view?"
        )
    report(0.9, "finding repetitions")
    aspect = info.width / info.height
    # Each shot on its own: no span, smoothing or clip crosses a camera cut.
    cuts = [int(c) for c in track.cuts]
    several = several_people_spans(track.people, track.frames, track.fps, cuts=cuts)
    if options.athlete != "tracked" and several:
        report(0.9, "tracking the chosen athlete")
        follow_athlete(scratch / "video.mp4", track, several, options)
    save_track(track, scratch / "pose.npz")
    replays = find_replays(track.thumbs, track.fps, cuts=cuts) if options.replays else []
    trim = find_movement(track.landmarks, track.fps, motion=track.motion, options=options.trim, aspect=aspect,
                         cuts=cuts)
    # A replay is never cut into clips: its repetitions are counted once, and slowed frames feed no velocity.
    spans = without(trim.spans, [(r.start, r.end) for r in replays])
    bounds = segment_repetitions(track.landmarks, track.fps, spans, options=options.segment, aspect=aspect,
                                 cuts=cuts)
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
            "view": estimate_view(track.landmarks[b.start:b.end], aspect),
            **complexity_row(track.landmarks[b.start:b.end], track.fps, aspect),
        })
    video = {
        "id": video_id,
        "source_key": key,
        "source": source,
        "title": (title or fetched.title or "")[:300],
        "uploader": (fetched.uploader or "")[:200],
        # Provenance as the source reports it (cleaned by ingest); a file's is its name and sha256 (source
        # and source_key).
        "channel": fetched.channel,
        "channel_id": fetched.channel_id,
        "upload_date": fetched.upload_date,
        "duration": fetched.duration if fetched.duration is not None else track.frames / track.fps,
        "license": fetched.license,
        "webpage_url": fetched.webpage_url,
        "exercise": exercise or "unknown",
        "frames": track.frames,
        "fps": float(track.fps),
        "width": int(info.width),
        "height": int(info.height),
        "person_share": float(track.person_share),
        "trimmed_share": float(trim.trimmed_share),
        "group_name": video_id,
    }
    flagged = sorted([(a, b, SEVERAL_PEOPLE) for a, b in several]
                     + [(r.start, r.end, REPLAY, r.source_start, r.source_end) for r in replays])
    split = None if options.side else find_split(track.thumbs)
    if split is not None and not sides_with_people(split, track.people):
        split = None  # a seam with nobody on one side is a picture's edge, not two views
    people = {"athlete_rule": options.athlete,
              "athlete_x": options.athlete_point[0] if options.athlete_point else None,
              "athlete_y": options.athlete_point[1] if options.athlete_point else None,
              "split": split[0] if split else None, "split_at": round(split[1], 4) if split else None,
              "side": options.side}
    return Processed(source, key, video, clips, list(trim.removed), scratch / "video.mp4", scratch / "pose.npz",
                     cuts=cuts, flagged=flagged, people=people)


def crop_side(src: Path, dst: Path, side: str, options: NormaliseOptions):
    """Write one half of a normalised video (a split screen's side) as its own H.264 video; returns its info."""
    crop = {"left": "crop=trunc(iw/4)*2:ih:0:0", "right": "crop=trunc(iw/4)*2:ih:iw-trunc(iw/4)*2:0",
            "top": "crop=iw:trunc(ih/4)*2:0:0", "bottom": "crop=iw:trunc(ih/4)*2:0:ih-trunc(ih/4)*2"}[side]
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", "-i", str(src),
                    "-vf", f"{crop},setsar=1", "-c:v", "libx264", "-preset", options.preset, "-crf",
                    str(options.crf), "-pix_fmt", "yuv420p", "-an", "-movflags", "+faststart", str(dst)],
                   check=True, capture_output=True)
    return probe_video(dst)


def follow_athlete(video: Path, track: PoseTrack, spans: list[tuple[int, int]], options: PipelineOptions) -> None:
    """Over each span with several people, replace the track's landmarks by those of the person the athlete
    rule picks, tracked on a crop around them (the union of their boxes over the span, grown by a tenth and
    widened to 3/4 of its height), when that is not the person MediaPipe followed at most of the span's checks.
    The other spans keep MediaPipe's person: where one person is in the picture, that is the athlete."""
    for a, b in spans:
        inside = (track.people.frames >= a) & (track.people.frames < b)
        checks = PeopleChecks(track.people.frames[inside], track.people.boxes[inside])
        picked = chosen_boxes(checks, options.athlete, options.athlete_point)
        found = picked >= 0
        if not found.any() or np.mean(picked[found] == 0) > 0.5:
            continue
        # Where the chosen one was missed, the rule fell back on the tracked person: not their box.
        boxes = np.stack([checks.boxes[k, p] for k, p in enumerate(picked) if p > 0])
        x0, y0 = boxes[:, 0].min(), boxes[:, 1].min()
        x1, y1 = boxes[:, 2].max(), boxes[:, 3].max()
        dx, dy = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
        x0, y0, x1, y1 = max(0.0, x0 - dx), max(0.0, y0 - dy), min(1.0, x1 + dx), min(1.0, y1 + dy)
        # MediaPipe finds a body in a crop of about its own shape or wider, not in a sliver: at least 3/4 of the
        # crop's height wide (in pixels), around the person's centre.
        half = max(x1 - x0, 0.75 * (y1 - y0) * track.height / max(track.width, 1)) / 2
        centre = (x0 + x1) / 2
        box = (max(0.0, centre - half), y0, min(1.0, centre + half), y1)
        raw = extract_pose_crop(video, a, b, box, options.pose)
        track.landmarks[a:a + len(raw)] = clean_landmarks(raw, options.pose)
        track.detected[a:a + len(raw)] = np.isfinite(raw[:, 0, 0])


def store_result(project: Project, processed: Processed) -> dict:
    """Move a processed source's files into videos/ and poses/ and add its rows in one transaction; returns the
    result of design.md 4.2. Only the process that owns the project store calls this (the batch driver)."""
    video_id = processed.video["id"]
    video_path = project.videos / f"{video_id}.mp4"
    pose_path = project.poses / f"{video_id}.npz"
    video = {**processed.video, "video_path": project.relative(video_path), "pose_path": project.relative(pose_path)}
    done = False
    try:
        os.replace(processed.video_file, video_path)
        os.replace(processed.pose_file, pose_path)
        store.add_video(project, video, processed.clips, removed=processed.removed, cuts=processed.cuts,
                        flagged=processed.flagged, people=processed.people)
        done = True
        return _result(processed.source, video, len(processed.clips), existing=False)
    finally:
        if not done and store.find_video(project, processed.key) is None:
            video_path.unlink(missing_ok=True)
            pose_path.unlink(missing_ok=True)


def ingest_job(project: Project, params: dict, progress: Progress, cancelled: Callable[[], bool]) -> dict:
    """The background job of the Ingest page: one source; user errors end the job with their message."""
    # Another job running at the same time already has the second core.
    workers = 1 if len(store.running_jobs(project)) > 1 else 2
    try:
        # The worker points the temp dir at the job's own folder (jobs.run_job), removed when the job ends.
        return ingest_source(
            project, params["source"], params.get("exercise"),
            options=PipelineOptions(pose_workers=workers, athlete=params.get("athlete") or "tracked",
                                    athlete_point=tuple(params["athlete_point"]) if params.get("athlete_point")
                                    else None, side=params.get("side")),
            progress=progress, cancelled=cancelled, title=params.get("title"), work_dir=Path(tempfile.gettempdir()),
        )
    except USER_ERRORS as exc:
        raise JobFailed(str(exc)) from exc
