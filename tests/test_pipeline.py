"""The whole ingest pipeline through `python -m curation ingest`: real videos to clips, bad inputs refused."""

from __future__ import annotations

import subprocess

import imageio_ffmpeg
import pytest

from curation import store
from curation.project import Project
from tests.conftest import ingest_cli

pytestmark = pytest.mark.slow
FIELDS = {"source", "video_id", "frames", "fps", "person_share", "trimmed_share", "clips", "error"}


def test_a_multi_rep_video_becomes_one_clip_per_repetition(videos, data_dir):
    # twix/correct-squat.mp4 shows four squats (counted by eye on a contact sheet, see tests/test_segment.py).
    status, [result] = ingest_cli(data_dir, str(videos / "twix" / "correct-squat.mp4"))
    assert status == 0 and FIELDS <= result.keys()
    assert result["error"] is None
    assert (result["frames"], result["fps"], result["clips"]) == (382, 25.0, 4)
    assert 0.95 <= result["person_share"] <= 1.0
    assert 0.0 < result["trimmed_share"] < 0.2  # he stands still before the first squat
    project = Project.open(data_dir)
    clips = store.list_clips(project)
    assert len(clips) == 4 and all(c["method"] == "repetition" for c in clips)
    assert all(c["end_frame"] > c["start_frame"] for c in clips)
    assert all(0 <= c["complexity"] <= 1 for c in clips)
    assert (project.root / "videos" / f"{result['video_id']}.mp4").exists()
    assert (project.root / "poses" / f"{result['video_id']}.npz").exists()


def test_the_same_source_twice_adds_nothing(videos, data_dir):
    source = str(videos / "twix" / "knee_squat.mp4")
    ingest_cli(data_dir, source)
    status, [again] = ingest_cli(data_dir, source)
    assert status == 0 and again["existing"] is True
    counts = store.stats(Project.open(data_dir))
    assert (counts["videos"], counts["clips"]) == (1, again["clips"])


def test_bad_sources_fail_alone_with_a_reason_and_leave_nothing(videos, data_dir, tmp_path):
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes((videos / "twix" / "knee_squat.mp4").read_bytes()[:20_000])
    no_person = tmp_path / "pattern.mp4"  # a moving test pattern: a real video with nobody in it
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc=size=640x360:rate=25:duration=3", "-pix_fmt", "yuv420p", str(no_person)], check=True)
    empty = tmp_path / "empty.mp4"
    empty.touch()
    status, results = ingest_cli(data_dir, str(truncated), str(no_person), str(empty), str(tmp_path / "missing.mp4"),
                             "https://example.com/watch.mp4", str(videos / "twix" / "knee_squat.mp4"))
    assert status != 0
    errors = [r["error"] for r in results]
    assert all(errors[:5]) and errors[5] is None
    assert "person" in errors[1]
    assert "empty" in errors[2]
    assert "allowed" in errors[4]
    assert all("\n" not in e for e in errors[:5])  # one line each
    project = Project.open(data_dir)
    assert store.stats(project)["videos"] == 1  # only the good one
    assert sorted(p.name for p in project.videos.iterdir()) == [f"{results[5]['video_id']}.mp4"]
    assert list(project.work.glob("*.part")) == []


def test_a_link_is_downloaded_with_yt_dlp_and_ingested(video_server, data_dir):
    import os

    env = {**os.environ, "FORMCHECK_ALLOWED_HOSTS": "127.0.0.1"}
    status, [result] = ingest_cli(data_dir, f"{video_server}/twix/knee_squat.mp4", env=env)
    assert status == 0, result["error"]
    assert result["clips"] >= 3 and result["frames"] == 243
    status, [refused] = ingest_cli(data_dir, f"{video_server}/twix/knee_squat.mp4")  # 127.0.0.1 not allowed here
    assert status != 0 and "allowed" in refused["error"]
