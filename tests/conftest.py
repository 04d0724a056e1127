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
