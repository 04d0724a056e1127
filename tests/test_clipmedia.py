"""Tests of curation.clipmedia: cut clips of a real video, cached, safe under concurrent callers."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from curation.clipmedia import MissingVideo, clear_stale, clip_path, clip_video, prefetch
from curation.project import Project
from curation.video import BadVideo, inspect_video

ROOT = Path(__file__).resolve().parents[1]


def _video_row(project: Project, source: Path, video_id: str = "v1") -> dict:
    """A videos row built by hand for a real video copied into the project (what ingest would store)."""
    dst = project.videos / f"{video_id}.mp4"
    shutil.copy(source, dst)
    info = inspect_video(dst)
    return {"id": video_id, "video_path": f"videos/{video_id}.mp4", "fps": info.fps, "width": info.width,
            "height": info.height, "frames": info.frames}


@pytest.fixture
def project(data_dir: Path) -> Project:
    return Project.open(data_dir)


@pytest.fixture
def squat(project: Project, videos: Path) -> dict:
    return _video_row(project, videos / "twix" / "knee_squat.mp4")


def _clip(video: dict, start: int, end: int, clip_id: str = "c1") -> dict:
    return {"id": clip_id, "video_id": video["id"], "start_frame": start, "end_frame": end, "fps": video["fps"]}


def _wait_for(path: Path, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.1)
    return False


@pytest.mark.slow
def test_cut_clip_has_the_clips_frames_and_bounds_in_its_name(project, squat):
    clip = _clip(squat, 40, 115)
    path = clip_video(project, clip, squat)
    assert path is not None and path.parent == project.clips
    assert path.name == "c1_40_115.mp4"
    info = inspect_video(path)
    assert info.frames == 115 - 40
    assert info.codec == "h264" and info.pix_fmt == "yuv420p"
    assert info.fps == squat["fps"]


@pytest.mark.slow
def test_cached_clip_is_returned_without_cutting_again(project, squat):
    clip = _clip(squat, 10, 40)
    first = clip_video(project, clip, squat)
    stamp = first.stat().st_mtime_ns
    time.sleep(0.05)  # a re-cut would get a later modification time
    second = clip_video(project, clip, squat)
    assert second == first
    assert second.stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_nudged_clip_gets_a_fresh_file(project, squat):
    old = clip_video(project, _clip(squat, 10, 40), squat)
    new = clip_video(project, _clip(squat, 12, 40), squat)
    assert new != old and old.exists()
    assert inspect_video(new).frames == 28


@pytest.mark.slow
def test_two_threads_cutting_one_clip_leave_one_whole_file(project, squat):
    clip = _clip(squat, 0, 50)
    barrier = threading.Barrier(2)
    results: list[Path] = []
    errors: list[BaseException] = []

    def cut() -> None:
        barrier.wait()
        try:
            results.append(clip_video(project, clip, squat))
        except BaseException as exc:  # handed to the main thread, which fails the test with it
            errors.append(exc)

    threads = [threading.Thread(target=cut) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results[0] == results[1]
    assert inspect_video(results[0]).frames == 50
    assert [p.name for p in project.clips.iterdir()] == [results[0].name]  # no temporary file left


@pytest.mark.slow
def test_two_processes_cutting_one_clip_leave_one_whole_file(project, squat):
    # Separate processes share no lock: only the unique temporary name and the atomic rename protect the file.
    code = (
        "import sys; from curation.project import Project; from curation.clipmedia import clip_video\n"
        f"video = {squat!r}\n"
        "clip = {'id': 'c1', 'video_id': 'v1', 'start_frame': 5, 'end_frame': 60}\n"
        "print(clip_video(Project.open(sys.argv[1]), clip, video))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(project.root)], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outs]
    assert {out.strip() for out, _ in outs} == {str(project.clips / "c1_5_60.mp4")}
    assert inspect_video(project.clips / "c1_5_60.mp4").frames == 55
    assert [p.name for p in project.clips.iterdir()] == ["c1_5_60.mp4"]


def test_imported_clip_has_no_video(project):
    clip = {"id": "imp1", "video_id": None, "start_frame": 0, "end_frame": 30, "pose_path": "poses/imp1.npy"}
    assert clip_video(project, clip, None) is None


def test_clip_of_a_missing_video_row_is_refused(project):
    with pytest.raises(MissingVideo, match="not in the project"):
        clip_video(project, {"id": "c1", "video_id": "gone", "start_frame": 0, "end_frame": 5}, None)


def test_clip_of_a_missing_video_file_is_refused(project):
    video = {"id": "v1", "video_path": "videos/v1.mp4", "fps": 25.0, "width": 352, "height": 640}
    with pytest.raises(MissingVideo, match="missing"):
        clip_video(project, _clip(video, 0, 5), video)
    assert list(project.clips.iterdir()) == []


@pytest.mark.slow
def test_clip_past_the_videos_end_is_refused_and_leaves_nothing(project, squat):
    with pytest.raises((BadVideo, ValueError), match="past"):
        clip_video(project, _clip(squat, squat["frames"] - 5, squat["frames"] + 5), squat)
    assert list(project.clips.iterdir()) == []


def test_unsafe_clip_id_is_refused(project):
    with pytest.raises(ValueError, match="safe file name"):
        clip_path(project, {"id": "../../etc/x", "start_frame": 0, "end_frame": 5})
    with pytest.raises(ValueError, match="safe file name"):
        clear_stale(project, "../x")


def test_clear_stale_removes_only_that_clips_files(project):
    names = ["c1_0_50.mp4", "c1_3_50.mp4", "c1_2_0_10.mp4", "c10_0_50.mp4", "c1_0_50.mp4.bak"]
    for name in names:
        (project.clips / name).write_bytes(b"x")
    assert clear_stale(project, "c1") == 2
    assert sorted(p.name for p in project.clips.iterdir()) == ["c10_0_50.mp4", "c1_0_50.mp4.bak", "c1_2_0_10.mp4"]
    assert clear_stale(project, "c1") == 0


@pytest.mark.slow
def test_prefetch_cuts_in_the_background_and_logs_a_clip_it_cannot_cut(project, squat, caplog):
    bad = _clip(squat, squat["frames"] - 5, squat["frames"] + 5, "bad")
    good = [_clip(squat, 0, 20, "n1"), _clip(squat, 20, 45, "n2")]
    with caplog.at_level(logging.ERROR, logger="curation.clipmedia"):
        assert prefetch(project, [(bad, squat), (good[0], squat), ({"id": "imp", "video_id": None}, None),
                                  (good[1], squat)]) is None
        assert _wait_for(clip_path(project, good[1]))
    assert inspect_video(clip_path(project, good[0])).frames == 20
    assert inspect_video(clip_path(project, good[1])).frames == 25
    assert any("bad" in r.getMessage() for r in caplog.records)
    assert not clip_path(project, bad).exists()


@pytest.mark.slow
def test_720p_clip_is_scaled_to_480_on_its_shorter_side(project, videos):
    video = _video_row(project, videos / "kaiakol" / "demo_wrong.mp4", "v720")
    assert min(video["width"], video["height"]) > 480  # the premise: a source above the cap
    path = clip_video(project, _clip(video, 0, 10), video)
    info = inspect_video(path)
    assert min(info.width, info.height) <= 480
    assert abs(info.width / info.height - video["width"] / video["height"]) < 0.01
