"""Video probing, checks, normalisation and clip cutting on real shared videos and ffmpeg-made inputs."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from curation.video import (
    BadVideo,
    Cancelled,
    NormaliseOptions,
    cut_clip,
    ffmpeg_exe,
    normalise_video,
    probe_video,
    reencode_reason,
)

pytestmark = pytest.mark.slow  # every test runs ffmpeg and OpenCV on video files

TWIX = "twix/correct-squat.mp4"  # portrait 352x640, H.264 yuv420p, 25 fps
AVI = "kaiakol/squat/correct/squat_correct_001.avi"  # MPEG-4 part 2 in AVI
NTSC = "kaiakol/plank/correct/plank_correct_001.mp4"  # 29.97 fps H.264


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def synthetic(path: Path, rate: float, seconds: float, size: str = "320x240", codec: str = "libx264") -> Path:
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}",
           "-c:v", codec, "-pix_fmt", "yuv420p", str(path))
    return path


def count_frames(path: Path) -> int:
    """Frames OpenCV actually decodes (what the pose stage will see)."""
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.grab():
        n += 1
    cap.release()
    return n


def frames_at(path: Path, indices: set[int]) -> dict[int, np.ndarray]:
    """The decoded frames at the given indices, as float32 (read in order, the others skipped)."""
    cap = cv2.VideoCapture(str(path))
    out: dict[int, np.ndarray] = {}
    for i in range(max(indices) + 1):
        ok, frame = cap.read()
        if not ok:
            break
        if i in indices:
            out[i] = frame.astype(np.float32)
    cap.release()
    return out


def packet_hashes(path: Path) -> list[str]:
    """MD5 of each coded video packet (no decoding): equal lists mean the stream was copied, not re-encoded."""
    out = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(path), "-map", "0:V:0",
                          "-c", "copy", "-f", "framemd5", "-"], capture_output=True, text=True, check=True).stdout
    return [line.rsplit(",", 1)[1].strip() for line in out.splitlines() if line and not line.startswith("#")]


def manifest(videos: Path) -> dict[str, dict[str, str]]:
    with open(videos / "manifest.csv", newline="") as f:
        return {row["video"]: row for row in csv.DictReader(f)}


# --- probe -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [TWIX, AVI, NTSC, "pose_trainer/sample_bicep_curl.mp4", "kaiakol/demo_wrong.mp4"])
def test_probe_matches_manifest_frames_fps_and_size(videos: Path, name: str) -> None:
    row = manifest(videos)[name]
    info = probe_video(videos / name)
    assert info.frames == int(row["frames"])
    assert info.fps == pytest.approx(float(row["fps"]), abs=0.01)
    assert (info.width, info.height) == (int(row["width"]), int(row["height"]))
    assert info.duration == pytest.approx(info.frames / info.fps)


def test_probe_frame_count_equals_frames_opencv_decodes(videos: Path) -> None:
    # CAP_PROP_FRAME_COUNT can lie; the probe counts packets, which must match a full decode.
    for name in (TWIX, AVI):
        assert probe_video(videos / name).frames == count_frames(videos / name)


def test_probe_portrait_h264_is_unrotated_constant_yuv420p(videos: Path) -> None:
    info = probe_video(videos / TWIX)
    assert (info.codec, info.pix_fmt, info.rotation, info.constant_fps) == ("h264", "yuv420p", 0, True)
    assert info.height > info.width


def test_probe_ntsc_rate_is_exact(videos: Path) -> None:
    assert probe_video(videos / NTSC).fps == pytest.approx(30000 / 1001, abs=1e-9)


def test_probe_reads_rotation_metadata(videos: Path, tmp_path: Path) -> None:
    rotated = tmp_path / "rotated.mp4"
    # -display_rotation states counter-clockwise degrees; players then turn the frames 270 clockwise.
    ffmpeg("-display_rotation", "90", "-i", str(videos / TWIX), "-t", "1", "-c", "copy", str(rotated))
    info = probe_video(rotated)
    assert info.rotation == 270
    assert info.display_size == (640, 352)


# --- bad inputs --------------------------------------------------------------------------------------

def test_empty_file_is_bad_video(tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").touch()
    with pytest.raises(BadVideo, match="file is empty"):
        probe_video(tmp_path / "empty.mp4")


def test_missing_file_is_bad_video(tmp_path: Path) -> None:
    with pytest.raises(BadVideo, match="file not found"):
        probe_video(tmp_path / "nowhere.mp4")


def test_text_file_renamed_mp4_is_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("squat: keep knees behind toes\n" * 20)
    with pytest.raises(BadVideo, match="not a video file"):
        probe_video(path)


def test_first_20kb_of_real_mp4_is_reported_truncated(videos: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.mp4"
    path.write_bytes((videos / TWIX).read_bytes()[:20_000])
    with pytest.raises(BadVideo, match="truncated"):
        probe_video(path)


def test_half_of_faststart_mp4_is_reported_truncated(videos: Path, tmp_path: Path) -> None:
    # With the index at the front, ffmpeg opens the file and finds the data missing part-way.
    whole = tmp_path / "faststart.mp4"
    ffmpeg("-i", str(videos / TWIX), "-c", "copy", "-movflags", "+faststart", str(whole))
    half = tmp_path / "half.mp4"
    half.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    with pytest.raises(BadVideo, match="truncated"):
        probe_video(half)


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "voice.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:duration=1", "-c:a", "aac", str(path))
    with pytest.raises(BadVideo, match=r"not a video file \(no video stream\)"):
        probe_video(path)


def test_still_image_renamed_mp4_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "photo.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240", "-frames:v", "1", "-f", "mjpeg", str(path))
    with pytest.raises(BadVideo, match="only 1 frame"):
        probe_video(path)


def test_tiny_frames_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BadVideo, match="video size 32x32 is not usable"):
        probe_video(synthetic(tmp_path / "tiny.mp4", 25, 1, size="32x32"))


def test_two_fps_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadVideo, match="frame rate 2 fps is not usable"):
        probe_video(synthetic(tmp_path / "slideshow.mp4", 2, 3))


@pytest.fixture(scope="module")
def av1_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    encoders = subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True).stdout
    codec = next((c for c in ("libsvtav1", "libaom-av1") if c in encoders), None)
    if codec is None:
        pytest.skip("the ffmpeg of imageio-ffmpeg has no AV1 encoder (libsvtav1 / libaom-av1)")
    path = tmp_path_factory.mktemp("av1") / "av1.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=1", "-c:v", codec,
           *(["-preset", "12"] if codec == "libsvtav1" else ["-cpu-used", "8"]), "-pix_fmt", "yuv420p", str(path))
    return path


def test_av1_is_refused_because_opencv_cannot_decode_it(av1_video: Path) -> None:
    with pytest.raises(BadVideo, match="0 decodable frames .*AV1"):
        probe_video(av1_video)


# --- normalise ---------------------------------------------------------------------------------------

def test_normalise_avi_gives_h264_with_same_frames_and_fps(videos: Path, tmp_path: Path) -> None:
    src = probe_video(videos / AVI)
    out = normalise_video(videos / AVI, tmp_path / "v.mp4")
    assert (out.codec, out.pix_fmt, out.constant_fps) == ("h264", "yuv420p", True)
    assert abs(count_frames(tmp_path / "v.mp4") - src.frames) <= 1
    assert cv2.VideoCapture(str(tmp_path / "v.mp4")).get(cv2.CAP_PROP_FPS) == pytest.approx(src.fps, abs=0.01)
    assert out.fps == pytest.approx(src.fps, abs=0.01)


def test_normalise_compliant_h264_copies_the_stream(videos: Path, tmp_path: Path) -> None:
    assert reencode_reason(probe_video(videos / NTSC)) is None
    out = normalise_video(videos / NTSC, tmp_path / "v.mp4")
    assert packet_hashes(tmp_path / "v.mp4") == packet_hashes(videos / NTSC)
    assert out.frames == 77 and out.fps == pytest.approx(30000 / 1001)
    # No audio kept: the copy holds the video stream only.
    assert (tmp_path / "v.mp4").stat().st_size < (videos / NTSC).stat().st_size


@pytest.mark.parametrize("rate", [90, 7])
def test_odd_fps_is_resampled_to_30(tmp_path: Path, rate: int) -> None:
    src = probe_video(synthetic(tmp_path / "odd.mp4", rate, 3))
    assert reencode_reason(src) == f"frame rate {rate} fps outside 15-60"
    out = normalise_video(tmp_path / "odd.mp4", tmp_path / "v.mp4")
    assert out.fps == 30 and out.constant_fps
    assert abs(out.frames - round(src.duration * 30)) <= 1


def test_variable_frame_rate_becomes_constant(tmp_path: Path) -> None:
    vfr = tmp_path / "vfr.mp4"
    # Every third frame is held twice as long: 90 frames over 4 s, nominal rate 30.
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30:duration=3",
           "-vf", "setpts='(N+floor(N/3))/30/TB'", "-fps_mode", "vfr", "-c:v", "libx264", str(vfr))
    src = probe_video(vfr)
    assert not src.constant_fps
    out = normalise_video(vfr, tmp_path / "v.mp4")
    assert out.constant_fps and out.fps == 30
    assert abs(out.frames - round(src.duration * 30)) <= 1


def test_rotation_metadata_is_applied_to_pixels(videos: Path, tmp_path: Path) -> None:
    rotated = tmp_path / "rotated.mp4"
    ffmpeg("-display_rotation", "90", "-i", str(videos / TWIX), "-t", "1", "-c", "copy", str(rotated))
    out = normalise_video(rotated, tmp_path / "v.mp4")
    assert (out.width, out.height, out.rotation) == (640, 352, 0)
    stored = frames_at(rotated, {0})[0]
    upright = frames_at(tmp_path / "v.mp4", {0})[0]
    # 270 degrees clockwise = 90 counter-clockwise; the other direction must be clearly worse.
    ccw = np.abs(cv2.rotate(stored, cv2.ROTATE_90_COUNTERCLOCKWISE) - upright).mean()
    cw = np.abs(cv2.rotate(stored, cv2.ROTATE_90_CLOCKWISE) - upright).mean()
    assert ccw < 5 < cw


def test_downscale_keeps_portrait_and_even_sides(videos: Path, tmp_path: Path) -> None:
    out = normalise_video(videos / TWIX, tmp_path / "v.mp4", NormaliseOptions(max_short_side=240))
    assert out.width == 240 and out.height % 2 == 0
    assert out.height == pytest.approx(640 * 240 / 352, abs=2)


def test_odd_sized_video_gets_even_sides(tmp_path: Path) -> None:
    out = normalise_video(synthetic(tmp_path / "odd.mkv", 25, 1, size="321x241", codec="libx264rgb"),
                          tmp_path / "v.mp4")
    assert (out.width % 2, out.height % 2, out.pix_fmt) == (0, 0, "yuv420p")


def test_av1_is_reencoded_to_h264_opencv_can_read(av1_video: Path, tmp_path: Path) -> None:
    out = normalise_video(av1_video, tmp_path / "v.mp4")
    assert out.codec == "h264"
    assert count_frames(tmp_path / "v.mp4") == out.frames == 30


def test_progress_rises_to_one(videos: Path, tmp_path: Path) -> None:
    seen: list[float] = []
    normalise_video(videos / AVI, tmp_path / "v.mp4", progress=seen.append)
    assert seen and seen[-1] == 1.0
    assert all(0 <= a <= b <= 1 for a, b in zip(seen, seen[1:]))


def test_cancel_stops_ffmpeg_and_leaves_no_file(videos: Path, tmp_path: Path) -> None:
    with pytest.raises(Cancelled):
        normalise_video(videos / AVI, tmp_path / "v.mp4", cancelled=lambda: True)
    assert list(tmp_path.iterdir()) == []


def test_bad_source_leaves_no_output(tmp_path: Path) -> None:
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(BadVideo):
        normalise_video(tmp_path / "notes.mp4", tmp_path / "out" / "v.mp4")
    assert not (tmp_path / "out" / "v.mp4").exists()


# --- clips -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("start", "end"), [(0, 10), (100, 160), (370, 382)])
def test_cut_clip_has_exact_frames(videos: Path, tmp_path: Path, start: int, end: int) -> None:
    src = videos / TWIX
    clip = cut_clip(src, tmp_path / "clip.mp4", start, end, 25.0)
    assert count_frames(clip) == probe_video(clip).frames == end - start
    got = frames_at(clip, {0, end - start - 1})
    source = frames_at(src, set(range(max(0, start - 1), end + 1)))
    # The clip's first and last frames are nearest to source frames start and end-1, not their neighbours.
    for frame, index in ((got[0], start), (got[end - start - 1], end - 1)):
        near = [j for j in (index - 1, index, index + 1) if j in source]
        assert min(near, key=lambda j: np.abs(source[j] - frame).mean()) == index


def test_cut_clip_refuses_bad_ranges(videos: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="non-empty range"):
        cut_clip(videos / TWIX, tmp_path / "c.mp4", 10, 10)
    with pytest.raises(ValueError, match="past the video's 382 frames"):
        cut_clip(videos / TWIX, tmp_path / "c.mp4", 300, 400)
    assert list(tmp_path.iterdir()) == []
