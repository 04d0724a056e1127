"""Hostile ingest (issue 10): redirects off the allowlist, over-long files, the same source twice, split clashes.

Every case was reproduced on the old code first: the redirect cases made requests to the host that is not
allowed, the 22-minute file went on to pose tracking, the second copy of a file ran the whole pipeline.
"""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from curation import store
from curation import ingest
from curation.ingest import IngestOptions, UnsupportedSource, download, fetch_local
from curation.project import Project
from curation.video import ffmpeg_exe

VIDEO = "twix/correct-squat.mp4"
ALLOWED, OTHER = "127.0.0.1", "127.0.0.2"  # only these two loopback addresses are ever contacted


class _Recorder(http.server.SimpleHTTPRequestHandler):
    """Serves a folder, records every request, and redirects as its server's `routes` say."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        target = self.server.redirect(self.path, len(self.server.requests))
        if target:
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        super().do_GET()


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # yt-dlp closes a connection after sniffing the content type: a reset, not a failure


@pytest.fixture
def two_servers(videos: Path) -> Iterator[tuple[_Server, _Server]]:
    """An allowed server on 127.0.0.1 and one on 127.0.0.2 that is not on the allowlist."""
    servers = []
    for host in (ALLOWED, OTHER):
        server = _Server((host, 0), functools.partial(_Recorder, directory=str(videos)))
        server.requests = []
        server.redirect = lambda path, n: None
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    yield tuple(servers)
    for server in servers:
        server.shutdown()
        server.server_close()


def base(server: _Server) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


@pytest.fixture
def project(data_dir: Path, monkeypatch) -> Project:
    monkeypatch.setenv("FORMCHECK_ALLOWED_HOSTS", ALLOWED)
    return Project.open(data_dir)


def files_in(project: Project) -> list[str]:
    """Every file of the project except the database (and its WAL files)."""
    return sorted(str(p.relative_to(project.root)) for p in project.root.rglob("*")
                  if p.is_file() and not p.name.startswith("formcheck.db"))


def assert_nothing_written(project: Project) -> None:
    assert store.list_videos(project) == [] and store.list_clips(project) == []
    assert files_in(project) == []


@pytest.mark.slow
def test_a_redirect_to_a_host_off_the_allowlist_is_never_followed(two_servers, project):
    allowed, other = two_servers
    allowed.redirect = lambda path, n: f"{base(other)}/{VIDEO}" if path == "/go" else None
    from curation.pipeline import ingest_source

    with pytest.raises(UnsupportedSource, match=r"redirect \(302\) from 127\.0\.0\.1 goes to 127\.0\.0\.2, "
                                                r"which is not an allowed host"):
        ingest_source(project, f"{base(allowed)}/go", "squat")
    assert other.requests == []  # not one request reached the host that is not allowed
    assert allowed.requests == ["/go"]
    assert_nothing_written(project)


@pytest.mark.slow
def test_a_redirect_that_only_happens_at_download_time_is_never_followed(two_servers, project):
    allowed, other = two_servers
    # The metadata request is served the video; from then on the same link redirects to the other host.
    allowed.redirect = lambda path, n: f"{base(other)}/{VIDEO}" if n > 1 else None
    from curation.pipeline import ingest_source

    with pytest.raises(UnsupportedSource, match=r"goes to 127\.0\.0\.2, which is not an allowed host"):
        ingest_source(project, f"{base(allowed)}/{VIDEO}", "squat")
    assert other.requests == []
    assert len(allowed.requests) >= 2  # the metadata request and the media request that redirected
    assert_nothing_written(project)


@pytest.mark.slow
def test_a_redirect_within_the_allowed_host_is_followed(two_servers, tmp_path):
    allowed, other = two_servers
    allowed.redirect = lambda path, n: f"/{VIDEO}" if path == "/moved" else None
    fetched = download(f"{base(allowed)}/moved", tmp_path, IngestOptions(allowed_hosts=(ALLOWED,)))
    assert fetched.path.stat().st_size > 0 and other.requests == []


def test_the_connection_guard_refuses_hosts_and_addresses_off_the_allowlist():
    guard = ingest._RequestGuard(IngestOptions())  # YouTube's hosts only
    with pytest.raises(UnsupportedSource, match="127.0.0.2, which is not an allowed host"):
        guard.connect((OTHER, 80))
    with pytest.raises(UnsupportedSource, match="localhost, which is not an allowed host"):
        guard.connect(("localhost", 80))
    with pytest.raises(UnsupportedSource, match=r"ftp scheme, not http\(s\)"):
        guard.check_url("ftp://www.youtube.com/x")
    assert guard.refused == "a connection to 127.0.0.2, which is not an allowed host; refused"  # the first one


# --- the duration limit holds for files as for links --------------------------------------------------

@pytest.fixture(scope="module")
def long_video(tmp_path_factory) -> Path:
    """22 minutes of a small moving pattern at 5 fps (6,600 frames): over the 20-minute limit."""
    path = tmp_path_factory.mktemp("long") / "long.mp4"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=96x64:rate=5:duration=1320", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def test_an_over_long_local_file_is_refused_before_it_is_copied(long_video, tmp_path):
    with pytest.raises(UnsupportedSource, match=r"^video is 22\.0 min long; the limit is 20\.0 min$"):
        fetch_local(long_video, tmp_path / "in")
    assert not (tmp_path / "in").exists() or not any((tmp_path / "in").iterdir())


@pytest.mark.slow
def test_an_over_long_local_file_never_reaches_pose_tracking(long_video, project):
    from curation.pipeline import ingest_source

    stages: list[str] = []
    with pytest.raises(UnsupportedSource, match=r"video is 22\.0 min long; the limit is 20\.0 min"):
        ingest_source(project, str(long_video), "squat", progress=lambda f, m="": stages.append(m))
    assert not any(m.startswith(("normalising", "tracking pose")) for m in stages), stages
    assert_nothing_written(project)


# --- the same source twice, and split ids that exist ---------------------------------------------------

def test_a_source_being_added_by_another_ingest_is_refused_at_once(videos, project):
    """Two uploads of one file, run by two workers: the second stops before any work, with a clear line."""
    from curation.ingest import source_key
    from curation.pipeline import DuplicateSource, ingest_source

    source = str(videos / VIDEO)
    assert store.claim_source(project, source_key(source), "job j-first")  # the first job is at work on it
    stages: list[str] = []
    with pytest.raises(DuplicateSource, match=r"^this video is already being added by another job; it appears in "
                                              r"the project when that job ends$"):
        ingest_source(project, source, "squat", progress=lambda f, m="": stages.append(m))
    assert stages == []
    assert_nothing_written(project)


@pytest.mark.slow
def test_the_same_file_ingested_twice_at_once_is_added_once_without_a_database_error(videos, project, tmp_path):
    """As two workers ran two uploads of one file: the old code ran both pipelines, the second then failed with
    "UNIQUE constraint failed"."""
    from tests.conftest import ROOT

    copies = []
    for name in ("a", "b"):  # two uploads of one file: different paths, one content
        copies.append(tmp_path / f"{name}.mp4")
        shutil.copy(videos / "twix" / "knee_squat.mp4", copies[-1])
    procs = [subprocess.Popen([sys.executable, "-m", "curation", "ingest", str(c), "--exercise", "squat", "--data",
                               str(project.root), "--json", str(tmp_path / f"{c.stem}.json")],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in copies]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all("Traceback" not in err and "UNIQUE" not in out + err for out, err in outputs), outputs
    results = [json.loads((tmp_path / f"{c.stem}.json").read_text())[0] for c in copies]
    added = [r for r in results if r["error"] is None and not r.get("existing")]
    assert len(added) == 1 and added[0]["clips"] >= 1
    [other] = [r for r in results if r is not added[0]]
    assert other.get("existing") or other["error"] == ("this video is already being added by another job; it "
                                                      "appears in the project when that job ends")
    assert store.stats(project)["videos"] == 1


def test_a_claim_of_a_dead_process_is_taken_over(project):
    assert store.claim_source(project, "sha256:x", "job a", pid=2 ** 22 + 12345)  # above pid_max: no process
    assert store.claim_source(project, "sha256:x", "job b")
    assert not store.claim_source(project, "sha256:x", "job c")
    store.release_source(project, "sha256:x", "job b")
    assert store.claim_source(project, "sha256:x", "job c")


def test_splitting_a_clip_whose_new_id_exists_raises_no_database_error(project):
    video = {"id": "v1", "source_key": "k", "source": "s", "title": "t", "exercise": "squat",
             "video_path": "videos/v1.mp4", "pose_path": "poses/v1.npz", "frames": 100, "fps": 25.0,
             "width": 64, "height": 64, "person_share": 1.0, "trimmed_share": 0.0, "group_name": "v1"}
    clip = {"video_id": "v1", "exercise": "squat", "start_frame": 0, "end_frame": 50, "fps": 25.0,
            "method": "repetition", "group_name": "v1", "source": "s"}
    store.add_video(project, video, [{**clip, "id": "c"}, {**clip, "id": "c-a", "start_frame": 50, "end_frame": 90}])
    # The old code inserted "c-a" again and raised sqlite3.IntegrityError; the parts now get free ids.
    first, second = store.split_clip(project, "c", 20, "coach")
    assert "c-a" not in (first, second)
    assert {c["id"] for c in store.list_clips(project)} == {"c-a", first, second}



# --- the Ingest page -----------------------------------------------------------------------------------

def test_streamlit_started_in_the_project_folder_takes_the_500_mb_uploads_the_page_promises(data_dir, monkeypatch):
    from tests.conftest import ROOT
    from tests.test_app import open_page

    cap = subprocess.run([sys.executable, "-c", "from streamlit import config; print(config.get_option("
                          "'server.maxUploadSize'))"], cwd=ROOT, capture_output=True, text=True, check=True)
    assert cap.stdout.strip() == "500"  # .streamlit/config.toml; Streamlit's default is 200
    monkeypatch.setenv("FORMCHECK_DATA", str(data_dir))
    monkeypatch.chdir(ROOT)
    at = open_page("pages/1_Ingest.py")
    assert "…or upload video files (up to 500 MB each)" in [u.proto.label for u in at.get("file_uploader")]


def test_the_page_says_a_link_is_already_in_the_project_and_queues_nothing(data_dir, monkeypatch):
    from tests.test_app import open_page, submit

    monkeypatch.setenv("FORMCHECK_DATA", str(data_dir))
    project = Project.open(data_dir)
    url = "https://www.youtube.com/watch?v=dQw4w9WgXcQ"
    store.add_video(project, {"id": "v1", "source_key": url, "source": url, "title": "t", "exercise": "squat",
                              "video_path": "videos/v1.mp4", "pose_path": "poses/v1.npz", "frames": 100, "fps": 25.0,
                              "width": 64, "height": 64, "person_share": 1.0, "trimmed_share": 0.0}, [])
    at = submit(open_page("pages/1_Ingest.py"), "https://youtu.be/dQw4w9WgXcQ")
    [error] = [e.value.replace("\\", "") for e in at.error]  # shown Markdown-escaped (untrusted text)
    assert error.startswith("Not added: https") and error.endswith(
        "//youtu.be/dQw4w9WgXcQ: this video is already in the project (video v1)")
    assert store.list_jobs(project) == []


def test_the_page_says_a_malformed_allowlist_in_one_line(data_dir, monkeypatch):
    from tests.test_app import open_page, submit

    monkeypatch.setenv("FORMCHECK_DATA", str(data_dir))
    monkeypatch.setenv("FORMCHECK_ALLOWED_HOSTS", "127.0.0.1:8000")
    at = submit(open_page("pages/1_Ingest.py"), "http://127.0.0.1:8000/squat.mp4")
    [error] = [e.value.replace("\\", "") for e in at.error]
    assert "FORMCHECK_ALLOWED_HOSTS: allowed hosts are bare host names" in error
    assert store.list_jobs(Project.open(data_dir)) == []
