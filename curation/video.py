"""Video files: probe, check, normalise to browser-playable H.264, cut clips."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import cv2
import imageio_ffmpeg

from curation.jobs import Cancelled  # one cancellation for every stage: the worker turns it into a cancelled job

ProgressFn = Callable[[float], None]
CancelledFn = Callable[[], bool]

# Sanity bounds for any video the tool accepts (source or output).
MIN_FPS = 5.0
MAX_FPS = 240.0
MIN_SIDE = 64
MAX_SIDE = 7680  # 8K UHD
# A stream whose average rate is off its nominal rate by more than this share has a variable frame rate.
CFR_TOLERANCE = 0.01


class BadVideo(ValueError):
    """A file that is not a usable video; the message is one line a user can act on."""


@dataclass
class VideoInfo:
    """What a video holds, as the tool checked it.

    width, height: the stored frame size, i.e. what OpenCV decodes (before rotation).
    rotation: clockwise degrees (0, 90, 180, 270) a player turns the frames by, from the container's
    display matrix (OpenCV's CAP_PROP_ORIENTATION_META convention); 0 if none.
    constant_fps: False when the stream's average rate differs from its nominal rate (variable frame rate).
    container: ffmpeg's demuxer name (e.g. "mov,mp4,m4a,3gp,3g2,mj2", "avi").
    """

    frames: int
    fps: float
    width: int
    height: int
    duration: float
    codec: str
    rotation: int = 0
    pix_fmt: str | None = None
    constant_fps: bool = True
    container: str = ""

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as shown upright, after the rotation metadata is applied."""
        if self.rotation in (90, 270):
            return self.height, self.width
        return self.width, self.height


@dataclass(frozen=True)
class NormaliseOptions:
    """How videos are made browser-playable; also used for the encoder settings of cut clips."""

    max_short_side: int = 720  # scale down (keeping aspect) so the shorter side is at most this
    min_fps: float = 15.0  # a constant source rate within [min_fps, max_fps] is kept ...
    max_fps: float = 60.0
    fallback_fps: int = 30  # ... otherwise (variable or out of range) frames are resampled to this rate
    crf: int = 23  # x264 quality: 23 is its default, visually fine for pose review
    preset: str = "veryfast"  # encode speed matters more than file size here


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped by imageio-ffmpeg (with libx264; no ffprobe is shipped)."""
    return imageio_ffmpeg.get_ffmpeg_exe()


def inspect_video(path: str | os.PathLike) -> VideoInfo:
    """ffmpeg's view of a video, without OpenCV's decode check: what `normalise_video` can convert.

    Same checks as `probe_video` except that OpenCV need not decode it (AV1, VP9 in odd containers ...).
    The frame count comes from one stream-copy pass over the packets (fast, no decoding).
    """
    path = Path(path)
    if not path.exists():
        raise BadVideo(f"file not found: {path.name}")
    if not path.is_file():
        raise BadVideo(f"not a regular file: {path.name}")
    if path.stat().st_size == 0:
        raise BadVideo("file is empty")
    # -map 0:V (capital V) skips cover-art pictures; -c copy counts packets without decoding (fast).
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:V:0", "-c", "copy", "-f", "null", "-"]
    err = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=600).stderr
    head = err.split("Stream mapping:")[0]
    if "misdetection possible" in head and "Stream #" not in head:
        raise BadVideo("not a video file (ffmpeg cannot read it)")
    if "moov atom not found" in head:
        raise BadVideo("not a complete video file (no index: moov atom not found; truncated download?)")
    container = re.search(r"Input #0, (.+?), from ", head)
    if not container:
        raise BadVideo("not a video file (ffmpeg cannot read it)")
    stream = None
    for block in re.split(r"\n(?=\s*Stream #)", head):
        m = re.match(r"\s*Stream #0:\d+\S*: Video: (.*)", block)
        if m and "(attached pic)" not in m.group(1):
            stream = block
            break
    if stream is None:
        raise BadVideo("not a video file (no video stream)")
    desc = stream.splitlines()[0].split(": Video: ", 1)[1]
    parts = _split_top(desc)
    codec = parts[0].split()[0]
    size, pix_fmt = None, None
    for i, part in enumerate(parts[1:], 1):
        if m := re.match(r"(\d+)x(\d+)\b", part):
            size = int(m.group(1)), int(m.group(2))
            if i > 1:
                pix_fmt = re.match(r"[\w]+", parts[1]).group(0)
            break
    if size is None:
        raise BadVideo("video stream has no frame size (unsupported or broken file)")
    rot = re.search(r"rotation of (-?[\d.]+) degrees", stream, re.I)
    # ffmpeg states the display matrix counter-clockwise; report clockwise, as OpenCV does.
    rotation = int(round(-float(rot.group(1)) / 90) * 90 % 360) if rot else 0
    avg, nominal = _rate(desc, "fps"), _rate(desc, "tbr")
    fps = avg or nominal or 0.0
    counts = re.findall(r"frame=\s*(\d+)", err.split("Stream mapping:")[-1])
    frames = int(counts[-1]) if counts else 0
    if "partial file" in err:
        raise BadVideo(f"video file is truncated (only {frames} frames readable; incomplete download or copy?)")
    if frames == 0:
        raise BadVideo("video has 0 frames")
    if frames == 1:
        raise BadVideo("video has only 1 frame (a still image?)")
    if not MIN_FPS <= fps <= MAX_FPS:
        raise BadVideo(f"frame rate {fps:g} fps is not usable (must be {MIN_FPS:g}-{MAX_FPS:g})")
    w, h = size
    if min(w, h) < MIN_SIDE or max(w, h) > MAX_SIDE:
        raise BadVideo(f"video size {w}x{h} is not usable (sides must be {MIN_SIDE}-{MAX_SIDE} px)")
    constant = bool(avg and nominal and abs(avg - nominal) <= CFR_TOLERANCE * nominal)
    fps = float(_exact_rate(fps))
    return VideoInfo(frames=frames, fps=fps, width=w, height=h, duration=frames / fps, codec=codec,
                     rotation=rotation, pix_fmt=pix_fmt, constant_fps=constant, container=container.group(1))


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Check that a file is a video the tool can use and describe it; raise BadVideo otherwise.

    OpenCV fails silently (0 frames, no error, e.g. for AV1 or a truncated file), so each property is
    checked explicitly: the file exists and is not empty, ffmpeg finds a video stream, the frame count
    is counted from the stream's packets, frame rate and size are sane, and OpenCV decodes the first frame.
    """
    info = inspect_video(Path(path))
    _check_opencv_decodes(Path(path), info)
    return info


def reencode_reason(info: VideoInfo, options: NormaliseOptions = NormaliseOptions()) -> str | None:
    """Why `normalise_video` must re-encode this video, or None when a stream copy is enough."""
    if info.codec != "h264":
        return f"codec {info.codec} is not H.264"
    if info.pix_fmt != "yuv420p":
        return f"pixel format {info.pix_fmt} is not yuv420p"
    if info.rotation:
        return f"rotated {info.rotation} degrees by metadata"
    if not info.constant_fps:
        return "variable frame rate"
    if not options.min_fps <= info.fps <= options.max_fps:
        return f"frame rate {info.fps:g} fps outside {options.min_fps:g}-{options.max_fps:g}"
    if min(info.width, info.height) > options.max_short_side:
        return f"size {info.width}x{info.height} above the {options.max_short_side} px cap"
    if info.width % 2 or info.height % 2:
        return f"odd size {info.width}x{info.height}"
    return None


def target_fps(info: VideoInfo, options: NormaliseOptions = NormaliseOptions()) -> Fraction:
    """The constant rate the normalised video gets: the source's when constant and in range, else the fallback."""
    if info.constant_fps and options.min_fps <= info.fps <= options.max_fps:
        return _exact_rate(info.fps)
    return Fraction(options.fallback_fps)


def target_size(info: VideoInfo, options: NormaliseOptions = NormaliseOptions()) -> tuple[int, int]:
    """Upright (width, height) of the normalised video: shorter side capped, aspect kept, both even."""
    w, h = info.display_size
    scale = min(1.0, options.max_short_side / min(w, h))
    return max(2, round(w * scale / 2) * 2), max(2, round(h * scale / 2) * 2)


def normalise_video(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    options: NormaliseOptions = NormaliseOptions(),
    progress: ProgressFn | None = None,
    cancelled: CancelledFn | None = None,
) -> VideoInfo:
    """Write `dst` as constant-fps H.264 yuv420p MP4 (+faststart, no audio) that browsers and OpenCV play.

    Rotation metadata is applied to the pixels. When the source already complies (see `reencode_reason`)
    the video stream is copied, not re-encoded. Sources OpenCV cannot decode (e.g. AV1) are re-encoded
    since ffmpeg can decode them. The output is written under a temporary name and renamed once
    `probe_video` accepts it, so `dst` is never a half-written file. Raises BadVideo or Cancelled.
    """
    src, dst = Path(src), Path(dst)
    info = inspect_video(src)
    dst.parent.mkdir(parents=True, exist_ok=True)
    reason = reencode_reason(info, options)
    with _temp_output(dst) as tmp:
        out = None
        if reason is None:
            # A remux can fail or lose frames on odd timestamps (e.g. H.264 from some AVI writers); the
            # re-encode below is the fallback, so such a BadVideo is not the user's error.
            try:
                _run_ffmpeg(["-i", str(src), "-map", "0:V:0", "-c:v", "copy", *_MP4_OUT, str(tmp)],
                            info.duration, progress, cancelled)
                out = inspect_video(tmp)
            except BadVideo:
                out = None
            if out is not None and out.frames != info.frames:
                out = None
        if out is None:
            w, h = target_size(info, options)
            vf = f"fps={target_fps(info, options)},scale={w}:{h},setsar=1"
            _run_ffmpeg(["-i", str(src), "-map", "0:V:0", "-vf", vf, *_x264(options), *_MP4_OUT, str(tmp)],
                        info.duration, progress, cancelled)
        out = probe_video(tmp)
        os.replace(tmp, dst)
    if progress:
        progress(1.0)
    return out


def cut_clip(
    video_path: str | os.PathLike,
    dst: str | os.PathLike,
    start_frame: int,
    end_frame: int,
    fps: float | None = None,
    options: NormaliseOptions = NormaliseOptions(),
) -> Path:
    """Write frames [start_frame, end_frame) of a (normalised, constant-fps) video as an H.264 clip.

    Re-encodes (clips are short) so the boundaries are frame-accurate; `fps` defaults to the video's
    rate. Written under a temporary name and renamed, so `dst` is never half-written.
    """
    video_path, dst = Path(video_path), Path(dst)
    if not 0 <= start_frame < end_frame:
        raise ValueError(f"clip frames [{start_frame}, {end_frame}) are not a non-empty range from 0")
    info = inspect_video(video_path)
    if end_frame > info.frames:
        raise ValueError(f"clip end {end_frame} is past the video's {info.frames} frames")
    fps = fps or info.fps
    size = target_size(info, options)  # the options' cap on the shorter side, even sides
    if fps <= 0:
        raise ValueError(f"fps must be positive, not {fps}")
    n = end_frame - start_frame
    # Seek half a frame before the first wanted frame: ffmpeg's input seeking decodes from the previous
    # key frame and drops frames stamped before the seek point, so rounding cannot skip or add a frame.
    seek = ["-ss", f"{(start_frame - 0.5) / fps:.6f}"] if start_frame else []
    dst.parent.mkdir(parents=True, exist_ok=True)
    with _temp_output(dst) as tmp:
        _run_ffmpeg([*seek, "-i", str(video_path), "-map", "0:V:0", "-frames:v", str(n),
                     "-vf", f"scale={size[0]}:{size[1]},setsar=1", *_x264(options), *_MP4_OUT, str(tmp)],
                    n / fps, None, None)
        got = inspect_video(tmp).frames
        if got != n:
            raise BadVideo(f"clip has {got} frames instead of {n}")
        os.replace(tmp, dst)
    return dst


# --- internals -------------------------------------------------------------------------------------

_MP4_OUT = ["-an", "-sn", "-dn", "-map_metadata", "-1", "-movflags", "+faststart", "-f", "mp4"]


def _x264(options: NormaliseOptions) -> list[str]:
    return ["-c:v", "libx264", "-preset", options.preset, "-crf", str(options.crf), "-pix_fmt", "yuv420p"]


@contextmanager
def _temp_output(dst: Path) -> Iterator[Path]:
    """A temporary file beside `dst` (same filesystem, so os.replace is atomic), removed unless renamed."""
    tmp = dst.with_name(f".{dst.stem}.{uuid.uuid4().hex[:8]}.part")
    try:
        yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def _exact_rate(fps: float) -> Fraction:
    """ffmpeg prints rates with 2 decimals; recover NTSC rates (30000/1001, ...) exactly."""
    k = round(fps * 1.001)
    if abs(fps - round(fps)) > 0.005 and abs(fps - k / 1.001) < 0.006:
        return Fraction(k * 1000, 1001)
    return Fraction(fps).limit_denominator(1001)


def _split_top(s: str) -> list[str]:
    """Split ffmpeg's stream description on commas outside parentheses and brackets."""
    parts, depth, cur = [], 0, ""
    for ch in s:
        depth += ch in "(["
        depth -= ch in ")]"
        if ch == "," and depth == 0:
            parts.append(cur.strip())
            cur = ""
        else:
            cur += ch
    parts.append(cur.strip())
    return parts


def _rate(text: str, unit: str) -> float | None:
    m = re.search(rf"([\d.]+)(k?) {unit}\b", text)
    if not m:
        return None
    return float(m.group(1)) * (1000 if m.group(2) else 1)


def _check_opencv_decodes(path: Path, info: VideoInfo) -> None:
    """OpenCV (which the pose stage reads with) must decode the first frame at the size ffmpeg reports."""
    cap = cv2.VideoCapture(str(path))
    try:
        ok, frame = cap.read() if cap.isOpened() else (False, None)
    finally:
        cap.release()
    if not ok or frame is None:
        raise BadVideo(f"video has 0 decodable frames (truncated or unsupported codec such as {info.codec.upper()})"
                       if info.codec != "h264" else "video has 0 decodable frames (truncated or corrupt file)")
    # Either orientation: some OpenCV builds apply the rotation metadata themselves.
    if frame.shape[:2] not in ((info.height, info.width), (info.width, info.height)):
        raise BadVideo(f"decoded frame size {frame.shape[1]}x{frame.shape[0]} differs from {info.width}x{info.height}")


def _run_ffmpeg(args: list[str], duration: float, progress: ProgressFn | None, cancelled: CancelledFn | None) -> None:
    """Run ffmpeg, report progress from `-progress pipe:1`, kill it when `cancelled()` turns True."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
           "-progress", "pipe:1", "-nostats", "-stats_period", "0.5", *args]
    with tempfile.TemporaryFile() as errf:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf, text=True)
        try:
            for line in proc.stdout:
                if cancelled and cancelled():
                    raise Cancelled()
                key, _, value = line.strip().partition("=")
                if progress and key == "out_time_us" and value.isdigit() and duration > 0:
                    progress(min(1.0, int(value) / 1e6 / duration))
            proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            proc.stdout.close()
        if proc.returncode != 0:
            errf.seek(0)
            lines = errf.read().decode(errors="replace").strip().splitlines()
            raise BadVideo(f"ffmpeg failed: {lines[-1] if lines else f'exit status {proc.returncode}'}")
