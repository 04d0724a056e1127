"""Clip media: the cut H.264 file a coach watches, cached in the project's clips/."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

from curation.project import Project
from curation.video import NormaliseOptions, cut_clip

log = logging.getLogger(__name__)

# Encoder settings of the clips a coach watches. Measured on 3 s (75-frame) cuts of the shared videos at
# crf 23: 40-65 KB at 480 px on the shorter side against 65-110 KB at 720 px; the player embeds the file as
# base64 in its page, so small files load fast and 480 px is plenty to judge a joint angle.
CLIP_ENCODING = NormaliseOptions(
    max_short_side=480,  # shorter side at most this (aspect kept)
    crf=23,  # x264 default quality: no visible blocking on moving limbs
    preset="veryfast",  # a clip must be ready before the coach finishes the previous one
)

_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


class MissingVideo(ValueError):
    """A clip whose source video is gone (row or file), so there is nothing to cut."""


def clip_path(project: Project, clip: dict) -> Path:
    """Where the cut file of a clip lives: clips/<id>_<start>_<end>.mp4 (a nudged clip gets a new name)."""
    clip_id = str(clip["id"])
    if not _ID.match(clip_id):
        raise ValueError(f"clip id {clip_id!r} is not a safe file name")
    return project.path(Path("clips") / f"{clip_id}_{int(clip['start_frame'])}_{int(clip['end_frame'])}.mp4")


def clip_video(project: Project, clip: dict, video: dict | None,
               options: NormaliseOptions = CLIP_ENCODING) -> Path | None:
    """The H.264 file of a clip of an ingested video, cut on first use and cached; None for imported clips.

    `video` is the clip's row of the videos table (video_path relative to the project root, fps). The file
    is written under a unique temporary name and renamed, so concurrent callers (threads or processes)
    never see or leave a half-written file; within one process a second caller waits for the first cut
    instead of cutting the same clip again. Raises MissingVideo when the source video is gone, and
    BadVideo or ValueError when the bounds do not fit the video.
    """
    if not clip.get("video_id"):
        return None
    if video is None:
        raise MissingVideo(f"clip {clip['id']} points to video {clip['video_id']}, which is not in the project")
    if video["id"] != clip["video_id"]:
        raise ValueError(f"clip {clip['id']} belongs to video {clip['video_id']}, not {video['id']}")
    dst = clip_path(project, clip)
    if dst.exists():
        return dst
    with _lock_for(dst):
        if dst.exists():  # cut by another thread while this one waited
            return dst
        source = project.path(video["video_path"])
        if not source.is_file():
            raise MissingVideo(f"video file of clip {clip['id']} is missing: {video['video_path']}")
        cut_clip(source, dst, int(clip["start_frame"]), int(clip["end_frame"]), fps=float(video["fps"]),
                 options=options)
    return dst


def prefetch(project: Project, clips_and_videos: list[tuple[dict, dict | None]]) -> None:
    """Cut these clips (in order) in a background daemon thread, so the next clip is ready when needed.

    Returns at once and never raises: a clip that cannot be cut is logged and skipped. A new call replaces
    the clips still waiting from the previous one (the coach has moved on), without stopping a cut in
    progress.
    """
    _prefetcher.submit(project, list(clips_and_videos))


def clear_stale(project: Project, clip_id: str) -> int:
    """Remove every cached file of a clip (after its bounds changed). Returns how many were removed."""
    if not _ID.match(clip_id):
        raise ValueError(f"clip id {clip_id!r} is not a safe file name")
    # An exact pattern: clip "a" must not take the files of clip "a_b".
    name = re.compile(re.escape(clip_id) + r"_\d+_\d+\.mp4")
    removed = 0
    for path in project.clips.glob(f"{clip_id}_*.mp4"):
        if name.fullmatch(path.name):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


# --- internals -------------------------------------------------------------------------------------

_locks_guard = threading.Lock()
_locks: dict[Path, threading.Lock] = {}


def _lock_for(path: Path) -> threading.Lock:
    """One lock per destination file. Locks are few (one per clip watched in this process) and tiny."""
    with _locks_guard:
        return _locks.setdefault(path, threading.Lock())


class _Prefetcher:
    """One daemon thread per process working through the latest list of clips to cut."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._pending: list[tuple[Project, dict, dict | None]] = []
        self._thread: threading.Thread | None = None

    def submit(self, project: Project, items: list[tuple[dict, dict | None]]) -> None:
        with self._guard:
            self._pending = [(project, clip, video) for clip, video in items]
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="clipmedia-prefetch", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._guard:
                if not self._pending:
                    self._thread = None  # under the guard: a concurrent submit starts a fresh thread
                    return
                project, clip, video = self._pending.pop(0)
            try:
                clip_video(project, clip, video)
            except Exception:  # noqa: BLE001 - a background thread has no caller to raise to: log and go on
                log.exception("prefetch of clip %s failed", clip.get("id"))


_prefetcher = _Prefetcher()
