"""Shared fixtures: the real data in ../shared/data (skipped when absent) and throw-away projects."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FORMCHECK_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, the third-party videos and keypoints read in place."""
    if not (SHARED_DATA / "videos" / "manifest.csv").exists():
        pytest.skip(f"real test data not found at {SHARED_DATA} (../shared/data beside the project)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def videos(shared_data: Path) -> Path:
    return shared_data / "videos"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An empty project folder."""
    d = tmp_path / "project"
    d.mkdir()
    return d


@pytest.fixture(scope="session")
def video_server(videos: Path):
    """A real HTTP server on 127.0.0.1 serving ../shared/data/videos in place; yields its base URL."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(videos)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def start_python(call: str):
    """Start a fresh interpreter running `call` (a Python expression) from the project root.

    Used instead of multiprocessing: its "spawn" start re-runs the parent's __main__, which inside pytest
    can be a Streamlit page left there by AppTest.
    """
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", call], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def ingest_cli(data_dir: Path, *sources: str, exercise: str = "squat", env: dict | None = None
               ) -> tuple[int, list[dict]]:
    """`python -m curation ingest SOURCES --json` run for real in a fresh interpreter: (exit status, its JSON: one
    object per source, the reason in "error" when one failed)."""
    import json
    import subprocess
    import sys

    out = data_dir / "result.json"
    proc = subprocess.run([sys.executable, "-m", "curation", "ingest", *sources, "--exercise", exercise, "--data",
                           str(data_dir), "--json", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=env)
    assert out.exists(), proc.stderr
    return proc.returncode, json.loads(out.read_text())


def add_video_and_imports(project, repetitions: int, imported: int) -> None:
    """A squat video "v1" (no files) cut into `repetitions` clips of 30 frames (v1_0, v1_1, ...) and `imported`
    pose-only clips i0, i1, ... alternating lunge and squat, i0 labelled correct by the import."""
    from curation import store

    video = {"id": "v1", "source_key": "k1", "source": "file", "exercise": "squat", "video_path": "videos/v1.mp4",
             "pose_path": "poses/v1.npz", "frames": 50 * repetitions, "fps": 30.0, "width": 640, "height": 480,
             "person_share": 1.0, "trimmed_share": 0.0}
    store.add_video(project, video, [
        {"id": f"v1_{i}", "video_id": "v1", "exercise": "squat", "start_frame": 30 * i, "end_frame": 30 * i + 30,
         "fps": 30.0, "method": "repetition"} for i in range(repetitions)])
    store.add_clips(project, [{"id": f"i{i}", "exercise": ("lunge", "squat")[i % 2], "start_frame": 0,
                               "end_frame": 30, "fps": 30.0, "method": "imported", "pose_path": f"poses/i{i}.npy"}
                              for i in range(imported)],
                    [{"clip_id": "i0", "annotator": "import", "verdict": "correct"}])


def add_two_clip_video(project) -> None:
    """A 90-frame squat video "v1" (no files) with two repetition clips, v1_000 (frames 0-40) and v1_001 (40-85)."""
    from curation import store

    video = {"id": "v1", "source_key": "k1", "source": "s", "title": "t", "uploader": "", "exercise": "squat",
             "video_path": "videos/v1.mp4", "pose_path": "poses/v1.npz", "frames": 90, "fps": 30.0, "width": 640,
             "height": 360, "person_share": 1.0, "trimmed_share": 0.0, "group_name": "v1"}
    clip = {"video_id": "v1", "exercise": "squat", "fps": 30.0, "method": "repetition", "pose_path": None}
    store.add_video(project, video, [{**clip, "id": "v1_000", "start_frame": 0, "end_frame": 40},
                                     {**clip, "id": "v1_001", "start_frame": 40, "end_frame": 85}])


@pytest.fixture
def project(data_dir: Path, monkeypatch):
    """An empty project that the pages open (FORMCHECK_DATA points at it); test files may define their own."""
    from curation.project import Project

    monkeypatch.setenv("FORMCHECK_DATA", str(data_dir))
    return Project.open(data_dir)


def open_page(page: str, who: str | None = None, **state):
    """An app page (path from the project root) run once under Streamlit's AppTest, signed in as `who` when given
    (as after the sign-in form), with these session-state values; fails on any exception the page raised."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / page), default_timeout=120)
    if who:
        at.session_state["auth_account"] = who
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def flip_labels(project, n: int) -> None:
    """Make the first n labelled clips' consensus clearly wrong by a lead's adjudication (queues of doubtful
    labels and error galleries then have clips to show)."""
    from curation import store

    labels = store.consensus_labels(project)
    for clip_id in [c for c, v in labels.items() if v["label"]][:n]:
        wrong = "incorrect" if labels[clip_id]["label"] == "correct" else "correct"
        store.add_label_event(project, {"clip_id": clip_id, "annotator": "lead", "kind": "adjudication",
                                        "verdict": wrong})
