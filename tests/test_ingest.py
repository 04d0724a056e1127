"""Ingest: link checks and canonical forms without network, real yt-dlp downloads from a server on 127.0.0.1."""

from __future__ import annotations

import csv
import functools
import hashlib
import http.server
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yt_dlp

from curation.ingest import (
    PLAYLIST_REFUSED,
    YOUTUBE_HOSTS,
    Cancelled,
    DownloadFailed,
    IngestOptions,
    UnsupportedSource,
    canonical_url,
    check_host_addresses,
    clean_text,
    download,
    fetch_local,
    is_url,
    source_key,
    ytdlp_params,
)
from curation.video import BadVideo, ffmpeg_exe, probe_video

VIDEO = "twix/correct-squat.mp4"
LOCAL = IngestOptions(allowed_hosts=(*YOUTUBE_HOSTS, "127.0.0.1"))
ID = "dQw4w9WgXcQ"  # any 11-character id; nothing is fetched from YouTube


# --- canonical links (no network) --------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    f"https://www.youtube.com/watch?v={ID}",
    f"https://www.youtube.com/watch?v={ID}&list=PL590L5WQmH8fJ54F369BLDSqIwcs-TCfs&index=3&t=42s",
    f"http://youtube.com/watch?feature=share&v={ID}",
    f"https://m.youtube.com/watch?v={ID}",
    f"https://youtu.be/{ID}?si=abc",
    f"https://www.youtube.com/shorts/{ID}",
    f"https://www.youtube.com/embed/{ID}?start=3",
    f"https://www.youtube-nocookie.com/embed/{ID}",
    f"https://www.youtube.com/live/{ID}",
    f"youtu.be/{ID}",
    f"www.youtube.com/watch?v={ID}",
    f"  HTTPS://WWW.YOUTUBE.COM/watch?v={ID}#t=1  ",
])
def test_youtube_links_become_one_watch_url(url: str) -> None:
    assert canonical_url(url) == f"https://www.youtube.com/watch?v={ID}"


@pytest.mark.parametrize(("url", "message"), [
    ("file:///etc/passwd", r"only http\(s\) links are accepted, not file:"),
    ("ftp://ftp.example.com/squat.mp4", r"only http\(s\) links are accepted, not ftp:"),
    ("data:video/mp4;base64,AAAA", r"not data:"),
    ("javascript:alert(1)", r"not javascript:"),
    ("http://10.0.0.1/x.mp4", r"10\.0\.0\.1 is a private address, not an allowed video site"),
    ("http://169.254.169.254/", r"169\.254\.169\.254 is a link-local address"),
    ("http://[::1]:8000/x.mp4", r"::1 is a loopback address"),
    ("http://127.0.0.1/x.mp4", r"127\.0\.0\.1 is a loopback address"),
    ("http://localhost/", r"localhost is not an allowed video site .*FORMCHECK_ALLOWED_HOSTS"),
    ("https://videos.example.com/squat.mp4", r"videos\.example\.com is not an allowed video site"),
    ("https://www.youtube.com.evil.example/watch?v=" + ID, r"is not an allowed video site"),
    ("https://www.youtube.com/playlist?list=PL590L5WQmH8fJ54F369BLDSqIwcs-TCfs", re.escape(PLAYLIST_REFUSED)),
    ("https://www.youtube.com/watch?list=PL590L5WQmH8fJ54F369BLDSqIwcs-TCfs", re.escape(PLAYLIST_REFUSED)),
    ("https://www.youtube.com/@somecoach", r"not a YouTube video link \(no video id\)"),
    ("https://youtu.be/tooshort", r"not a valid YouTube video id: 'tooshort'"),
    (f"https://www.youtube.com/watch?v={ID}x", r"not a valid YouTube video id"),
    (f"https://coach:secret@www.youtube.com/watch?v={ID}", r"user name or password"),
    ("squat video please", r"not a link: 'squat video please'"),
    ("", r"not a link"),
])
def test_refused_links_say_why(url: str, message: str) -> None:
    # None of these resolves a name: the allowlist decides first and canonical_url has no network code.
    with pytest.raises(UnsupportedSource, match=message):
        canonical_url(url)


def test_allowlisted_host_keeps_path_query_and_port() -> None:
    url = "http://127.0.0.1:8123/clips/a.mp4?x=1#frag"
    assert canonical_url(url, LOCAL) == "http://127.0.0.1:8123/clips/a.mp4?x=1"
    assert canonical_url("HTTP://127.0.0.1:80/a.mp4", LOCAL) == "http://127.0.0.1/a.mp4"


def test_env_hosts_are_added_to_youtube_and_trusted() -> None:
    options = IngestOptions.from_env({"FORMCHECK_ALLOWED_HOSTS": " 127.0.0.1, Media.Example.org. ,"})
    assert options.allowed_hosts == (*YOUTUBE_HOSTS, "127.0.0.1", "media.example.org")
    assert options.trusted_hosts == {"127.0.0.1", "media.example.org"}
    assert canonical_url("http://media.example.org/a.mp4", options) == "http://media.example.org/a.mp4"
    assert IngestOptions.from_env({}).allowed_hosts == YOUTUBE_HOSTS


@pytest.mark.parametrize("entry", ["127.0.0.1:8000", "http://127.0.0.1", "example.com/videos", "*.example.com"])
def test_allowlist_entries_are_bare_hosts(entry: str) -> None:
    with pytest.raises(ValueError, match="bare host names"):
        IngestOptions.from_env({"FORMCHECK_ALLOWED_HOSTS": entry})


def test_media_url_on_untrusted_loopback_is_refused() -> None:
    # An IP literal resolves locally (no DNS): the check used for the media URLs yt-dlp finds.
    with pytest.raises(UnsupportedSource, match=r"127\.0\.0\.1 resolves to a loopback address"):
        check_host_addresses("http://127.0.0.1/x.mp4", IngestOptions())
    check_host_addresses("http://127.0.0.1/x.mp4", LOCAL)  # explicitly allowed: no error


@pytest.mark.parametrize(("source", "expected"), [
    (f"https://youtu.be/{ID}", True),
    (f"youtu.be/{ID}", True),
    ("file:///etc/passwd", True),
    ("ftp://x/y", True),
    ("videos/squat.mp4", False),
    ("squat video please", False),
    ("C:\\videos\\squat.mp4", False),
])
def test_is_url(source: str, expected: bool) -> None:
    assert is_url(source) is expected


def test_clean_text_removes_controls_and_bidi_and_caps_length() -> None:
    assert clean_text("Squat\n\tform \x1b[31mred\x1b[0m \u202egnp.exe") == "Squat form [31mred [0m gnp.exe"
    long = clean_text("a" * 500, limit=50)
    assert len(long) == 50 and long.endswith("…")
    assert clean_text(None) == ""


# --- local files ------------------------------------------------------------------------------------

def test_source_key_of_file_is_its_content_hash(videos: Path, tmp_path: Path) -> None:
    copy = tmp_path / "renamed.mp4"
    shutil.copyfile(videos / VIDEO, copy)
    expected = "sha256:" + hashlib.sha256((videos / VIDEO).read_bytes()).hexdigest()
    assert source_key(str(videos / VIDEO)) == source_key(str(copy)) == expected
    assert source_key(str(videos / "twix/knee_squat.mp4")) != expected


def test_source_key_of_link_is_its_canonical_url() -> None:
    assert source_key(f"https://youtu.be/{ID}?si=1") == source_key(f"https://m.youtube.com/watch?v={ID}&t=3")


def test_fetch_local_copies_under_a_tool_made_name(videos: Path, tmp_path: Path) -> None:
    fetched = fetch_local(videos / VIDEO, tmp_path / "in")
    assert fetched.path.parent == tmp_path / "in"
    assert re.fullmatch(r"[0-9a-f]{12}\.mp4", fetched.path.name)
    assert fetched.path.read_bytes() == (videos / VIDEO).read_bytes()
    assert (fetched.title, fetched.extractor) == ("correct-squat", "local")
    assert list((tmp_path / "in").iterdir()) == [fetched.path]


def test_fetch_local_refuses_missing_directory_empty_and_oversized(videos: Path, tmp_path: Path) -> None:
    (tmp_path / "empty.mp4").touch()
    with pytest.raises(UnsupportedSource, match="file not found"):
        fetch_local(tmp_path / "nowhere.mp4", tmp_path / "in")
    with pytest.raises(UnsupportedSource, match="not a regular file"):
        fetch_local(tmp_path, tmp_path / "in")
    with pytest.raises(UnsupportedSource, match="file is empty"):
        fetch_local(tmp_path / "empty.mp4", tmp_path / "in")
    with pytest.raises(UnsupportedSource, match=r"file is 3\.8 MB; the limit is 1\.0 MB"):
        fetch_local(videos / VIDEO, tmp_path / "in", IngestOptions(max_bytes=1_000_000))
    assert not (tmp_path / "in").exists() or not any((tmp_path / "in").iterdir())


# --- yt-dlp configuration ----------------------------------------------------------------------------

class _Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def debug(self, msg: str) -> None:
        self.lines.append(msg)

    info = warning = error = debug


def test_ytdlp_finds_imageio_ffmpeg_and_deno(tmp_path: Path) -> None:
    log = _Lines()
    with yt_dlp.YoutubeDL({**ytdlp_params(tmp_path, "x", logger=log), "verbose": True}):
        pass
    header = "\n".join(log.lines)
    assert re.search(r"exe versions: .*ffmpeg \S+", header), header
    # deno solves YouTube's player challenges with the scripts of yt-dlp-ejs (no remote download).
    assert re.search(r"JS runtimes: deno-\d+\.\d+\.\d+(?! \(unsupported\))", header), header
    assert "yt_dlp_ejs-" in header


# --- downloads from a real HTTP server on 127.0.0.1 --------------------------------------------------

class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder in place, plus an HTML page, an HTML page that claims to be an MP4, and
    /unsized/<file>: the file without a Content-Length (the size shows only while downloading)."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path in ("/page.html", "/fake.mp4"):
            body = b"<!doctype html><html><body><p>Squat tips</p></body></html>" * 50
            self.send_response(200)
            self.send_header("Content-Type", "text/html" if self.path == "/page.html" else "video/mp4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path.startswith("/unsized/"):
            data = (Path(self.directory) / self.path.removeprefix("/unsized/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
            self.close_connection = True
            return
        super().do_GET()


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # yt-dlp closes the first connection after sniffing the content type: a reset, not a failure.
        pass


@pytest.fixture
def serve() -> Iterator:
    servers = []

    def start(directory: Path) -> str:
        server = _Server(("127.0.0.1", 0), functools.partial(_Handler, directory=str(directory)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def manifest_frames(videos: Path, name: str) -> int:
    with open(videos / "manifest.csv", newline="") as f:
        return next(int(r["frames"]) for r in csv.DictReader(f) if r["video"] == name)


@pytest.mark.slow
def test_download_direct_mp4_with_env_allowlist(videos: Path, tmp_path: Path, serve, monkeypatch) -> None:
    monkeypatch.setenv("FORMCHECK_ALLOWED_HOSTS", "127.0.0.1")
    url = f"{serve(videos)}/{VIDEO}"
    seen: list[float] = []
    fetched = download(url, tmp_path / "dl", IngestOptions.from_env(), progress=seen.append)
    assert fetched.path.parent == tmp_path / "dl" and re.fullmatch(r"[0-9a-f]{12}\.mp4", fetched.path.name)
    assert list((tmp_path / "dl").iterdir()) == [fetched.path]  # no work folder or .part left
    assert fetched.path.read_bytes() == (videos / VIDEO).read_bytes()
    assert probe_video(fetched.path).frames == manifest_frames(videos, VIDEO)
    assert (fetched.title, fetched.webpage_url, fetched.extractor) == ("correct-squat", url, "Generic")
    assert fetched.duration == pytest.approx(382 / 25)
    assert seen[-1] == 1.0 and all(0 <= a <= b <= 1 for a, b in zip(seen, seen[1:]))
    assert source_key(url, IngestOptions.from_env()) == source_key(url + "#again", IngestOptions.from_env()) == url


@pytest.mark.slow
def test_missing_file_gives_download_failed_with_404(videos: Path, tmp_path: Path, serve) -> None:
    with pytest.raises(DownloadFailed, match=r"download failed: .*HTTP Error 404"):
        download(f"{serve(videos)}/nothing-here.mp4", tmp_path, LOCAL)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_nothing_listening_gives_download_failed(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free once closed: nothing listens there
    with pytest.raises(DownloadFailed, match="download failed: .*refused"):
        download(f"http://127.0.0.1:{port}/x.mp4", tmp_path, LOCAL)


@pytest.mark.slow
def test_html_page_is_not_a_video(videos: Path, tmp_path: Path, serve) -> None:
    with pytest.raises(UnsupportedSource, match=r"no video found at http://127\.0\.0\.1:\d+/page\.html"):
        download(f"{serve(videos)}/page.html", tmp_path, LOCAL)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_html_labelled_as_mp4_is_bad_video_and_removed(videos: Path, tmp_path: Path, serve) -> None:
    with pytest.raises(BadVideo, match="not a video file"):
        download(f"{serve(videos)}/fake.mp4", tmp_path, LOCAL)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_file_over_max_bytes_is_refused_and_leaves_nothing(videos: Path, tmp_path: Path, serve) -> None:
    options = IngestOptions(allowed_hosts=("127.0.0.1",), max_bytes=1_000_000)
    with pytest.raises(UnsupportedSource, match=r"video is larger than the 1\.0 MB limit"):
        download(f"{serve(videos)}/{VIDEO}", tmp_path, options)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_unsized_download_is_stopped_at_max_bytes(videos: Path, tmp_path: Path, serve) -> None:
    # No Content-Length: yt-dlp cannot refuse up front, the progress hook counts the bytes.
    options = IngestOptions(allowed_hosts=("127.0.0.1",), max_bytes=1_000_000)
    with pytest.raises(UnsupportedSource, match=r"video is larger than the 1\.0 MB limit"):
        download(f"{serve(videos)}/unsized/{VIDEO}", tmp_path, options)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_unsized_download_under_the_cap_completes(videos: Path, tmp_path: Path, serve) -> None:
    fetched = download(f"{serve(videos)}/unsized/{VIDEO}", tmp_path, LOCAL)
    assert fetched.path.read_bytes() == (videos / VIDEO).read_bytes()


@pytest.mark.slow
def test_cancel_during_download_leaves_nothing(videos: Path, tmp_path: Path, serve) -> None:
    started: list[float] = []
    with pytest.raises(Cancelled):
        download(f"{serve(videos)}/{VIDEO}", tmp_path, LOCAL, progress=started.append, cancelled=lambda: bool(started))
    assert started  # cancelled mid-download, not before it
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_format_choice_prefers_h264_720p_and_merges_aac(tmp_path: Path, serve) -> None:
    media = tmp_path / "media"
    media.mkdir()

    def make(name: str, *args: str) -> None:
        subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", *args, str(media / name)], check=True)

    make("video.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=1", "-c:v", "libx264",
         "-pix_fmt", "yuv420p")
    make("audio.m4a", "-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac")
    base = serve(media)
    # What a YouTube extraction offers, in yt-dlp's info-dict form: AV1 and VP9 would be picked by default.
    fmt = {"protocol": "http"}
    info = {
        "id": "local", "title": "offered formats", "webpage_url": f"{base}/", "extractor": "generic",
        "extractor_key": "Generic",
        "formats": [
            {**fmt, "format_id": "av1-720", "url": f"{base}/missing-av1.mp4", "ext": "mp4", "vcodec": "av01.0.05M.08",
             "acodec": "none", "height": 720, "width": 1280, "tbr": 900},
            {**fmt, "format_id": "vp9-1080", "url": f"{base}/missing-vp9.webm", "ext": "webm", "vcodec": "vp9",
             "acodec": "none", "height": 1080, "width": 1920, "tbr": 2000},
            {**fmt, "format_id": "avc-1080", "url": f"{base}/missing-1080.mp4", "ext": "mp4",
             "vcodec": "avc1.640028", "acodec": "none", "height": 1080, "width": 1920, "tbr": 3000},
            {**fmt, "format_id": "avc-720", "url": f"{base}/video.mp4", "ext": "mp4", "vcodec": "avc1.64001F",
             "acodec": "none", "height": 720, "width": 1280, "tbr": 1500},
            {**fmt, "format_id": "opus", "url": f"{base}/missing.webm", "ext": "webm", "vcodec": "none",
             "acodec": "opus", "abr": 160},
            {**fmt, "format_id": "aac", "url": f"{base}/audio.m4a", "ext": "m4a", "vcodec": "none",
             "acodec": "mp4a.40.2", "abr": 128},
        ],
    }
    work = tmp_path / "work"
    work.mkdir()
    with yt_dlp.YoutubeDL(ytdlp_params(work, "abc123")) as ydl:
        result = ydl.process_ie_result(info, download=True)
    assert result["format_id"] == "avc-720+aac"
    assert [p.name for p in work.iterdir()] == ["abc123.mp4"]
    streams = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(work / "abc123.mp4")],
                             capture_output=True, text=True).stderr
    assert "Video: h264" in streams and "Audio: aac" in streams


def _playlist(segments: int, seconds: float, ended: bool) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{int(seconds) + 1}", "#EXT-X-MEDIA-SEQUENCE:0"]
    for i in range(segments):
        lines += [f"#EXTINF:{seconds:.3f},", f"seg{i}.ts"]
    return "\n".join(lines + (["#EXT-X-ENDLIST"] if ended else [])) + "\n"


@pytest.mark.slow
def test_live_hls_stream_is_refused_before_download(tmp_path: Path, serve) -> None:
    # An HLS playlist without #EXT-X-ENDLIST is still growing: yt-dlp reports it live.
    (tmp_path / "live.m3u8").write_text(_playlist(3, 4.0, ended=False))
    with pytest.raises(UnsupportedSource, match="live streams are not supported"):
        download(f"{serve(tmp_path)}/live.m3u8", tmp_path / "dl", LOCAL)
    assert list((tmp_path / "dl").iterdir()) == []


@pytest.mark.slow
def test_overlong_video_is_refused_before_download(tmp_path: Path, serve) -> None:
    # 25 minutes of segments that do not exist: refused from the playlist's length alone.
    (tmp_path / "long.m3u8").write_text(_playlist(150, 10.0, ended=True))
    with pytest.raises(UnsupportedSource, match=r"video is 25\.0 min long; the limit is 20\.0 min"):
        download(f"{serve(tmp_path)}/long.m3u8", tmp_path / "dl", LOCAL)
    assert list((tmp_path / "dl").iterdir()) == []


@pytest.mark.slow
def test_hls_video_downloads_and_probes(videos: Path, tmp_path: Path, serve) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i", str(videos / VIDEO), "-c", "copy",
                    "-f", "hls", "-hls_time", "4", "-hls_playlist_type", "vod", str(tmp_path / "vod.m3u8")],
                   check=True)
    fetched = download(f"{serve(tmp_path)}/vod.m3u8", tmp_path / "dl", LOCAL)
    assert fetched.duration == pytest.approx(382 / 25, abs=1)
    assert abs(probe_video(fetched.path).frames - manifest_frames(videos, VIDEO)) <= 1
    assert list((tmp_path / "dl").iterdir()) == [fetched.path]
