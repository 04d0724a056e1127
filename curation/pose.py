"""Pose: MediaPipe Pose over a video, streamed frame by frame, into a PoseTrack saved as .npz."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from curation.jobs import Cancelled
from curation.people import PeopleChecker, PeopleChecks, PeopleOptions, empty_checks
from curation.shots import CutOptions, CutTracker, detect_cuts, shots

# Call progress() and cancelled() this often: about one second of 30 fps video, about 0.4 s of work.
PROGRESS_EVERY = 30
# Longer side of the grey image the motion signal is computed on: small enough to cost ~0.3 ms a 720p
# frame (2-3 % of the pose step) and to ignore sensor noise, large enough to see a person move.
MOTION_SIDE = 64
# A file whose decoding stops before this share of the frames its container announces is truncated or
# damaged. Videos reaching this stage are ffmpeg-normalised H.264 whose frame count is exact; the margin
# is for raw inputs (.avi, .webm) whose count OpenCV estimates from duration x fps.
MIN_DECODED_SHARE = 0.9
# extract_pose_parallel: each chunk after the first starts tracking this many frames before its first
# frame and drops them. Measured on the twix squats, a cold start at the boundary differs from the
# sequential track by a per-frame median of 0.002-0.004 (x, y) over the next second; with this warm-up,
# by 0.0005-0.0015 (about 1 px at 720p): MediaPipe's tracker and smoothing never quite forget where they
# started. 45 frames (1.5 s at 30 fps) cost 2.5 % of a 60 s video's chunk.
CHUNK_WARMUP = 45


class UnreadableVideo(ValueError):
    """The file cannot be opened or decoded as a video (missing, not a video, truncated, no frames)."""


# Cancelling is one exception across the stages (curation.jobs.Cancelled); this name is kept for readers of
# this module.
PoseCancelled = Cancelled


class PoseWorkerFailed(RuntimeError):
    """A worker process of extract_pose_parallel died without a result (killed, out of memory, crashed)."""


@dataclass(frozen=True)
class PoseOptions:
    """How MediaPipe Pose is run and how its raw output is cleaned."""

    # The mediapipe 0.10.21 wheel ships only the complexity-1 ("full") landmark model; 0 and 2 would be
    # downloaded at run time, which cannot work offline, so only 1 is accepted.
    model_complexity: int = 1
    # MediaPipe's own thresholds for finding a person and for keeping the track from frame to frame.
    min_detection_confidence: float = 0.5
    min_tracking_confidence: float = 0.5
    # A frame whose mean visibility over the 33 landmarks is below this is masked to NaN (the method's 0.6).
    # On the shared reference videos this masks at most 6 % of the frames of any full-body view, and a
    # third of a close-up bicep curl whose legs are out of the picture.
    min_visibility: float = 0.6
    # Runs of at most this many NaN frames between two tracked frames are filled by linear
    # interpolation: 5 frames = 0.2 s at 25 fps, 0.17 s at 30 fps, shorter than any repetition phase.
    # Leading and trailing runs, and longer gaps, stay NaN. 0 disables interpolation.
    max_gap_frames: int = 5
    # When set, frames whose longer side exceeds this are shrunk (INTER_AREA) before MediaPipe sees them.
    # Off by default: measured here, Pose.process costs about the same at 360p, 720p and 1080p (13-14 ms a
    # frame, 15 ms at 4K) since MediaPipe resizes to 256 px itself, and shrinking first was no faster at
    # any of these sizes while it changes results (720p->640: median x/y change 0.0014, the pull-up's
    # detected share 0.761->0.752).
    max_side: int | None = None
    # Seconds between searches for people besides the tracked one (curation.people; 0: never). Costs about
    # 4 % of the pass at 0.5 s.
    people_every_seconds: float = PeopleOptions().every_seconds

    def __post_init__(self) -> None:
        if self.model_complexity != 1:
            raise ValueError("model_complexity must be 1: the mediapipe wheel ships no other Pose model")
        if self.max_gap_frames < 0:
            raise ValueError("max_gap_frames must be >= 0")
        if self.max_side is not None and self.max_side < 64:
            raise ValueError("max_side must be at least 64 pixels (or None)")


@dataclass
class PoseTrack:
    """Landmarks of one video.

    landmarks: float32 (T, 33, 4) = x, y (normalised image coords), z, visibility; NaN where no person
    (or a frame masked for low visibility and not interpolated).
    timestamps: float64 (T,) seconds of each frame.
    detected: bool (T,) whether MediaPipe found a person in that frame (before masking / interpolation).
    motion: float32 (T,) mean absolute grey-level difference to the previous frame (0..1), computed in the
    same pass; the frame-differencing signal the trim stage uses beside pose motion. motion[0] = 0.
    cuts: int (K,) first frames of the shots after hard camera cuts (curation.shots.detect_cuts); MediaPipe's
    tracker restarted at each, and no gap is interpolated across one.
    thumbs: uint8 (T, h, w) the small grey frames the motion signal comes from (64 px on the long side), for
    replays (curation.replay) and split screens (curation.people); kept in memory only, not saved.
    people: the people checks of curation.people (frames checked, the boxes of the people found); saved.
    """

    landmarks: np.ndarray
    timestamps: np.ndarray
    detected: np.ndarray
    motion: np.ndarray
    fps: float
    width: int
    height: int
    cuts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    thumbs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.uint8))
    people: PeopleChecks = field(default_factory=empty_checks)

    @property
    def frames(self) -> int:
        return int(self.landmarks.shape[0])

    @property
    def person_share(self) -> float:
        """Share of frames in which a person was detected."""
        return float(self.detected.mean()) if self.frames else 0.0


def save_track(track: PoseTrack, path: Path) -> None:
    """Write a track to .npz atomically (temp file then rename) so a killed worker leaves no half file."""
    path = Path(path)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp,
        landmarks=track.landmarks.astype(np.float32),
        timestamps=track.timestamps.astype(np.float64),
        detected=track.detected.astype(bool),
        motion=track.motion.astype(np.float32),
        fps=np.float64(track.fps),
        width=np.int64(track.width),
        height=np.int64(track.height),
        cuts=np.asarray(track.cuts, dtype=np.int64),
        people_frames=track.people.frames.astype(np.int64),
        people_boxes=track.people.boxes.astype(np.float32),
    )
    tmp.replace(path)


def load_track(path: Path) -> PoseTrack:
    """Read a track written by save_track."""
    with np.load(Path(path)) as d:
        return PoseTrack(
            landmarks=d["landmarks"],
            timestamps=d["timestamps"],
            detected=d["detected"],
            motion=d["motion"],
            fps=float(d["fps"]),
            width=int(d["width"]),
            height=int(d["height"]),
            # Tracks saved before shot cuts were found have none.
            cuts=d["cuts"] if "cuts" in d.files else np.zeros(0, np.int64),
            # ... and before people were looked for, none.
            people=PeopleChecks(d["people_frames"], d["people_boxes"]) if "people_frames" in d.files
            else empty_checks(),
        )


# ---------------------------------------------------------------------------------------------- reading


def _open_capture(video_path: Path | str) -> tuple[cv2.VideoCapture, float, int]:
    """Open a video; return the capture, its frame rate and the frame count its container announces."""
    path = Path(video_path)
    if not path.is_file():
        raise UnreadableVideo(f"{path.name}: no such file")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        cap.release()
        raise UnreadableVideo(f"{path.name}: not a video OpenCV can open (damaged, truncated or not a video)")
    fps = cap.get(cv2.CAP_PROP_FPS)
    if not (math.isfinite(fps) and fps > 0):
        cap.release()
        raise UnreadableVideo(f"{path.name}: the container gives no frame rate")
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    return cap, float(fps), int(count) if math.isfinite(count) and count > 0 else 0


def _read_rgb(cap: cv2.VideoCapture, start: int, stop: int | None) -> Iterator[np.ndarray]:
    """Yield frames start..stop-1 of an open capture as RGB, one at a time, and release it at the end."""
    try:
        # grab() without retrieve() skips the colour conversion; decoding from the start is slower than a
        # seek but exact, where OpenCV's seek can land a few frames off in streams with B-frames.
        for _ in range(start):
            if not cap.grab():
                return
        index = start
        while stop is None or index < stop:
            ok, bgr = cap.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        cap.release()


def iter_frames(video_path: Path | str, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
    """Stream a video's frames as RGB uint8 arrays (H, W, 3), never holding more than one.

    Frames start..stop-1 (stop None = to the end). The file is opened at once, so a missing or unreadable
    file raises UnreadableVideo here rather than at the first next().
    """
    cap, _fps, _count = _open_capture(video_path)
    return _read_rgb(cap, start, stop)


# ------------------------------------------------------------------------------------------- extraction


@dataclass
class _RawPose:
    """MediaPipe's output for a contiguous run of frames, before cleaning."""

    landmarks: np.ndarray  # float32 (n, 33, 4), NaN rows where no person
    detected: np.ndarray  # bool (n,)
    motion: np.ndarray  # float32 (n,)
    fps: float
    width: int
    height: int
    announced: int  # the container's frame count (0 = unknown)
    thumbs: np.ndarray  # uint8 (n, h, w) the grey frames of the motion signal
    people: PeopleChecks


_NO_PERSON = np.full((33, 4), np.nan, dtype=np.float32)
_NO_PERSON.flags.writeable = False  # one shared row for every frame without a person


def _motion_image(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = MOTION_SIDE / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), size, interpolation=cv2.INTER_AREA)


def _fit(rgb: np.ndarray, max_side: int | None) -> np.ndarray:
    h, w = rgb.shape[:2]
    if max_side is None or max(h, w) <= max_side:
        return rgb
    scale = max_side / max(h, w)
    return cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)


def _extract_raw(
    video_path: Path | str,
    options: PoseOptions,
    start: int = 0,
    stop: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    warmup: int = 0,
) -> _RawPose:
    """Run MediaPipe over frames start..stop-1.

    With start > 0, tracking begins `warmup` frames (at least 1) earlier and those frames are dropped, so
    that the tracker and the motion signal have settled by frame `start` as in one sequential pass.
    """
    # Imported here so that importing curation.pose (for PoseTrack, load_track) stays light.
    import mediapipe as mp

    cap, fps, announced = _open_capture(video_path)
    width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
    height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    end = stop if stop is not None else announced
    if announced:
        end = min(end, announced)
    total = max(0, end - start)  # for progress only; 0 when the container gives no count
    first = max(start - max(warmup, 1), 0)
    rows: list[np.ndarray] = []
    detected: list[bool] = []
    motion: list[float] = []
    previous: np.ndarray | None = None
    # Restart the tracker at a possible cut, at once (no look-ahead): landmarks of the shot before must not
    # seed or smooth the next one. A false alarm only costs one fresh detection.
    shot_change = CutTracker(fps, CutOptions())
    thumbs: list[np.ndarray] = []
    checker = PeopleChecker(fps, PeopleOptions(every_seconds=options.people_every_seconds)) \
        if options.people_every_seconds > 0 else None
    frames = _read_rgb(cap, first, stop)
    with closing(frames), closing(checker or _Nothing()), mp.solutions.pose.Pose(
        static_image_mode=False,
        model_complexity=options.model_complexity,
        smooth_landmarks=True,
        min_detection_confidence=options.min_detection_confidence,
        min_tracking_confidence=options.min_tracking_confidence,
    ) as pose:
        for index, rgb in enumerate(frames, start=first):
            grey = _motion_image(rgb)
            change = 0.0 if previous is None else cv2.absdiff(grey, previous).mean() / 255.0
            previous = grey
            image = _fit(rgb, options.max_side)
            if shot_change.update(change) and index > first:
                # A black frame loses the person: MediaPipe then detects afresh on the next frame and its
                # landmark smoothing resets on the empty result. Measured on a joined video (tests/test_shots.py)
                # this gives the same landmarks after the cut as Pose.reset() (0.0008 from the shot tracked
                # alone, 0.0047 without a restart) at the cost of one frame instead of about 0.25 s.
                pose.process(np.zeros_like(image))
            result = pose.process(image)
            if index < start:
                continue
            if not rows:
                height, width = rgb.shape[:2]  # what MediaPipe's normalised coordinates refer to
            motion.append(change)
            thumbs.append(grey)
            if checker is not None and checker.due(index):
                checker.check(index, image, result.pose_landmarks)
            found = result.pose_landmarks is not None
            detected.append(found)
            rows.append(
                np.array([(p.x, p.y, p.z, p.visibility) for p in result.pose_landmarks.landmark], np.float32)
                if found else _NO_PERSON
            )
            if len(rows) % PROGRESS_EVERY == 0:
                if cancelled is not None and cancelled():
                    raise PoseCancelled("pose extraction cancelled")
                if progress is not None:
                    progress(len(rows), max(total, len(rows)))
    if progress is not None:
        progress(len(rows), len(rows))
    return _RawPose(
        landmarks=np.stack(rows) if rows else np.empty((0, 33, 4), np.float32),
        detected=np.array(detected, dtype=bool),
        motion=np.array(motion, dtype=np.float32),
        fps=fps,
        width=width,
        height=height,
        announced=announced,
        thumbs=np.stack(thumbs) if thumbs else np.zeros((0, 0, 0), np.uint8),
        people=checker.result() if checker is not None else empty_checks(),
    )


class _Nothing:
    def close(self) -> None:
        pass


def _finish(video_path: Path | str, parts: list[_RawPose], options: PoseOptions) -> PoseTrack:
    """Join the raw parts of one video, check that it decoded, and clean its landmarks."""
    name = Path(video_path).name
    landmarks = np.concatenate([p.landmarks for p in parts])
    n, announced = len(landmarks), parts[0].announced
    if n == 0:
        raise UnreadableVideo(f"{name}: no frame could be decoded")
    if announced and n < MIN_DECODED_SHARE * announced:
        raise UnreadableVideo(
            f"{name}: only {n} of the {announced} frames could be decoded (truncated or damaged file)"
        )
    first = next(p for p in parts if len(p.landmarks))
    motion = np.concatenate([p.motion for p in parts])
    cuts = detect_cuts(motion, first.fps)
    thumbs = [p.thumbs for p in parts if len(p.thumbs)]
    return PoseTrack(
        landmarks=clean_landmarks(landmarks, options, cuts),
        timestamps=np.arange(n, dtype=np.float64) / first.fps,
        detected=np.concatenate([p.detected for p in parts]),
        motion=motion,
        fps=first.fps,
        width=first.width,
        height=first.height,
        cuts=np.asarray(cuts, dtype=np.int64),
        thumbs=np.concatenate(thumbs) if thumbs else np.zeros((0, 0, 0), np.uint8),
        people=PeopleChecks(np.concatenate([p.people.frames for p in parts]),
                            np.concatenate([p.people.boxes for p in parts])),
    )


def extract_pose(
    video_path: Path | str,
    options: PoseOptions = PoseOptions(),
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> PoseTrack:
    """Run MediaPipe Pose (video mode) over a video streamed frame by frame; return the cleaned track.

    progress(done_frames, total_frames) is called every PROGRESS_EVERY frames and once at the end (total
    is the container's count, so it can be slightly off before the end). cancelled() is polled as often;
    when it returns True, PoseCancelled is raised. A file that cannot be opened, yields no frame or stops
    well short of its announced length raises UnreadableVideo. A video without a person is not an error:
    its landmarks are all NaN and its person_share is 0.
    """
    raw = _extract_raw(video_path, options, progress=progress, cancelled=cancelled)
    return _finish(video_path, [raw], options)


def extract_pose_crop(video_path: Path | str, start: int, stop: int, box: tuple[float, float, float, float],
                      options: PoseOptions = PoseOptions()) -> np.ndarray:
    """Landmarks (stop - start, 33, 4) of the person inside `box` (x0, y0, x1, y1, normalised) over frames
    start..stop-1: MediaPipe runs on the crop (so it follows that person and no other) and the landmarks are
    mapped back to the whole frame's normalised coordinates (z, relative to the image width, scaled with it).
    Raw, not cleaned (clean_landmarks)."""
    import mediapipe as mp

    x0, y0, x1, y1 = (float(v) for v in box)
    rows: list[np.ndarray] = []
    with mp.solutions.pose.Pose(static_image_mode=False, model_complexity=options.model_complexity,
                                smooth_landmarks=True, min_detection_confidence=options.min_detection_confidence,
                                min_tracking_confidence=options.min_tracking_confidence) as pose:
        for rgb in iter_frames(video_path, start, stop):
            h, w = rgb.shape[:2]
            a, b = int(x0 * w), max(int(x0 * w) + 1, int(np.ceil(x1 * w)))
            c, d = int(y0 * h), max(int(y0 * h) + 1, int(np.ceil(y1 * h)))
            result = pose.process(np.ascontiguousarray(_fit(rgb[c:d, a:b], options.max_side)))
            if result.pose_landmarks is None:
                rows.append(_NO_PERSON)
                continue
            p = np.array([(q.x, q.y, q.z, q.visibility) for q in result.pose_landmarks.landmark], np.float32)
            p[:, 0] = (a + p[:, 0] * (b - a)) / w
            p[:, 1] = (c + p[:, 1] * (d - c)) / h
            p[:, 2] *= (b - a) / w
            rows.append(p)
    return np.stack(rows) if rows else np.empty((0, 33, 4), np.float32)


# --------------------------------------------------------------------------------------------- parallel


def _chunk_main(argv: list[str]) -> int:
    """Entry point of one extract_pose_parallel worker: `python -m curation.pose --chunk ...`."""
    video, start, stop, out_dir, options_json, parent_pid = argv
    out = Path(out_dir)
    options = PoseOptions(**json.loads(options_json))

    def set_done(d: int, _total: int) -> None:
        # Atomic replace, so the parent never reads a half-written number.
        (out / "progress.tmp").write_text(str(d))
        (out / "progress.tmp").replace(out / "progress")

    def orphaned() -> bool:
        # An orphan (parent killed) stops instead of running its chunk to the end for nobody.
        return os.getppid() != int(parent_pid)

    try:
        raw = _extract_raw(
            video, options, int(start), None if stop == "end" else int(stop), set_done, orphaned, CHUNK_WARMUP
        )
    except (UnreadableVideo, PoseCancelled) as exc:
        (out / "error.json").write_text(json.dumps({"type": type(exc).__name__, "message": str(exc)}))
        return 2
    np.savez(
        out / "raw.tmp.npz", landmarks=raw.landmarks, detected=raw.detected, motion=raw.motion,
        thumbs=raw.thumbs, people_frames=raw.people.frames, people_boxes=raw.people.boxes,
        meta=np.array([raw.fps, raw.width, raw.height, raw.announced], np.float64),
    )
    (out / "raw.tmp.npz").replace(out / "raw.npz")
    return 0


def _read_chunk(out: Path) -> _RawPose:
    with np.load(out / "raw.npz") as d:
        fps, width, height, announced = d["meta"]
        return _RawPose(
            landmarks=d["landmarks"], detected=d["detected"], motion=d["motion"],
            fps=float(fps), width=int(width), height=int(height), announced=int(announced),
            thumbs=d["thumbs"], people=PeopleChecks(d["people_frames"], d["people_boxes"]),
        )


def _chunk_done(out: Path) -> int:
    try:
        return int((out / "progress").read_text())
    except FileNotFoundError:  # the worker has not finished its first PROGRESS_EVERY frames yet
        return 0


def extract_pose_parallel(
    video_path: Path | str,
    options: PoseOptions = PoseOptions(),
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
    min_chunk_frames: int = 300,
) -> PoseTrack:
    """extract_pose split over `workers` processes, each tracking one contiguous chunk of the frames.

    For one long video on several cores: MediaPipe keeps about one core busy, so on 2 cores two chunks
    take about 0.6 of the sequential time (60 s of 720p: 16.7 s against 27.8 s; see
    tests/benchmarks/bench_pose.py). Each chunk after the first starts tracking CHUNK_WARMUP frames
    early and drops them, so the result matches a sequential pass closely, but not bit for bit just
    after a chunk boundary. Videos shorter than workers x min_chunk_frames frames (10 s at 30 fps by
    default: below that, starting the processes costs more than it saves) and containers without a
    frame count run sequentially in this process. The workers are plain subprocesses
    (`python -m curation.pose --chunk ...`), so this works whatever the caller's __main__ is. Same
    progress, cancellation and errors as extract_pose; PoseWorkerFailed if a worker dies without a result.
    """
    cap, _fps, announced = _open_capture(video_path)
    cap.release()
    if workers < 2 or announced < workers * min_chunk_frames:
        return extract_pose(video_path, options, progress, cancelled)

    bounds = [round(announced * k / workers) for k in range(workers + 1)]
    env = dict(os.environ)
    # The worker imports this package from wherever this process found it.
    package_root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    options_json = json.dumps(asdict(options))
    with tempfile.TemporaryDirectory(prefix="pose-chunks-") as tmp:
        outs = [Path(tmp) / str(k) for k in range(workers)]
        procs: list[subprocess.Popen[bytes]] = []
        parts: dict[int, _RawPose] = {}
        try:
            for k, out in enumerate(outs):
                out.mkdir()
                stop = str(bounds[k + 1]) if k < workers - 1 else "end"
                with open(out / "stderr.log", "wb") as log:
                    procs.append(subprocess.Popen(
                        [sys.executable, "-m", "curation.pose", "--chunk", str(video_path), str(bounds[k]),
                         stop, str(out), options_json, str(os.getpid())],
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, env=env,
                    ))
            reported = -1
            while any(p.poll() is None for p in procs):
                if cancelled is not None and cancelled():
                    raise PoseCancelled("pose extraction cancelled")
                done = sum(_chunk_done(out) for out in outs)
                if progress is not None and done != reported:
                    progress(done, announced)
                    reported = done
                # Fail fast: a dead worker makes the other's work useless.
                if any(p.returncode not in (None, 0) for p in procs):
                    break
                time.sleep(0.2)
            # A failed worker's error first, without waiting for the others to finish.
            for k in sorted(range(workers), key=lambda k: procs[k].returncode in (None, 0)):
                parts[k] = _collect_chunk(k, procs[k], outs[k])
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
                    p.wait()
    track = _finish(video_path, [parts[k] for k in range(workers)], options)
    if progress is not None and reported != track.frames:
        progress(track.frames, track.frames)
    return track


def _collect_chunk(k: int, proc: subprocess.Popen[bytes], out: Path) -> _RawPose:
    """The result of worker k, or the error it reported, raised here."""
    code = proc.wait()
    if (out / "error.json").exists():
        error = json.loads((out / "error.json").read_text())
        raise {"UnreadableVideo": UnreadableVideo, "PoseCancelled": PoseCancelled}[error["type"]](error["message"])
    if code != 0 or not (out / "raw.npz").exists():
        log = (out / "stderr.log").read_text(errors="replace").strip().splitlines()
        raise PoseWorkerFailed(f"pose worker {k} failed (exit code {code}): {log[-1] if log else 'no output'}")
    return _read_chunk(out)


# --------------------------------------------------------------------------------------------- cleaning


def _fill_short_gaps(series: np.ndarray, max_gap: int) -> np.ndarray:
    """Linearly fill NaN runs of at most max_gap between finite values in each column of a (T, K) array."""
    out = series.copy()
    for col in out.T:  # views: writing into col writes into out
        missing = np.isnan(col)
        if not missing.any() or missing.all():
            continue
        known = np.flatnonzero(~missing)
        holes = np.flatnonzero(missing)
        after = np.searchsorted(known, holes)  # index in known of the next finite value
        inside = (after > 0) & (after < len(known))
        holes, after = holes[inside], after[inside]
        before_t, after_t = known[after - 1], known[after]
        short = after_t - before_t - 1 <= max_gap
        holes, before_t, after_t = holes[short], before_t[short], after_t[short]
        w = (holes - before_t) / (after_t - before_t)
        col[holes] = col[before_t] * (1 - w) + col[after_t] * w
    return out


def clean_landmarks(landmarks: np.ndarray, options: PoseOptions = PoseOptions(),
                    cuts: list[int] | np.ndarray = ()) -> np.ndarray:
    """Mask frames of low mean visibility to NaN, then fill short NaN gaps by linear interpolation.

    landmarks: (T, 33, 4) x, y, z, visibility, NaN rows where no person. A frame whose mean visibility
    over its landmarks is below options.min_visibility becomes all NaN. Then each value's runs of at most
    options.max_gap_frames NaN frames lying between two known frames are interpolated linearly in time
    (visibility too); leading and trailing runs and longer gaps stay NaN. Gaps are filled within each shot
    (frames between two `cuts`): a gap at a camera cut stays NaN. Returns a new float32 array.
    """
    out = np.array(landmarks, dtype=np.float32, copy=True)
    if out.ndim != 3 or out.shape[2] != 4:
        raise ValueError(f"landmarks must be (T, N, 4), got {out.shape}")
    if len(out) == 0:
        return out
    with np.errstate(invalid="ignore"):
        low = out[:, :, 3].mean(axis=1) < options.min_visibility  # NaN frames compare False: already NaN
    out[low] = np.nan
    if options.max_gap_frames > 0:
        t, n, c = out.shape
        flat = out.reshape(t, n * c)
        for a, b in shots(t, [int(x) for x in cuts]):
            flat[a:b] = _fill_short_gaps(flat[a:b], options.max_gap_frames)
        out = flat.reshape(t, n, c)
    return out


if __name__ == "__main__" and sys.argv[1:2] == ["--chunk"]:
    sys.exit(_chunk_main(sys.argv[2:]))
