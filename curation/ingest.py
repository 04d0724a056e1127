"""Ingest: fetch a video from a URL (yt-dlp) or a local file, safely."""

from __future__ import annotations

import functools
import hashlib
import http.client
import ipaddress
import os
import re
import shutil
import socket
import unicodedata
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import yt_dlp
import yt_dlp.utils
from yt_dlp.networking._urllib import HTTPHandler, RedirectHandler, UrllibRH

from curation.video import Cancelled, ffmpeg_exe, inspect_video

__all__ = [
    "BadConfiguration", "Cancelled", "DownloadFailed", "Fetched", "IngestOptions", "UnsupportedSource",
    "YOUTUBE_HOSTS", "canonical_url", "check_duration", "check_host_addresses", "clean_text", "content_key",
    "download", "fetch_allowed", "fetch_local", "is_url", "js_runtimes", "source_key", "ytdlp_params",
]

ProgressFn = Callable[[float], None]
CancelledFn = Callable[[], bool]

# YouTube's own hosts. They must resolve to public addresses; hosts added beyond these are trusted as
# configured (see IngestOptions).
YOUTUBE_HOSTS = (
    "youtube.com", "www.youtube.com", "m.youtube.com", "youtu.be",
    "youtube-nocookie.com", "www.youtube-nocookie.com",  # embed links (/embed/<id>) of the same videos
)
ENV_ALLOWED_HOSTS = "FORMCHECK_ALLOWED_HOSTS"
# A YouTube link is served from more hosts than the one pasted: its player API on *.youtube.com and its media on
# Google's video CDN (rrN---sn-xxxx.googlevideo.com). Requests of an ingest (each redirect included) may go to an
# allowed host or to these domains and their subdomains, the latter on public addresses only.
YOUTUBE_FETCH_DOMAINS = ("youtube.com", "youtube-nocookie.com", "googlevideo.com")

# H.264 (avc1) at <= 720p first: yt-dlp otherwise prefers AV1/VP9, which the OpenCV wheels cannot decode
# (normalise_video would re-encode them, slowly). `<=?` keeps formats whose height is unknown (direct files).
FORMAT = (
    "bv*[vcodec^=avc1][height<=?720]+ba[acodec^=mp4a]/b[vcodec^=avc1][height<=?720]"
    "/bv*[height<=?720]+ba/b[height<=?720]/b"
)
PLAYLIST_REFUSED = "playlists are not expanded; paste one video's URL"
# Protocols yt-dlp downloads itself (through the guarded request handler): plain files, HLS, DASH.
NATIVE_PROTOCOLS = ("http", "https", "m3u8_native", "http_dash_segments")
_YOUTUBE_ID = re.compile(r"[A-Za-z0-9_-]{11}")
_URLISH = re.compile(r"^(?:[a-z][a-z0-9+.-]+:|(?:www\.|m\.)?youtube\.com/|youtu\.be/)", re.I)
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")


class UnsupportedSource(ValueError):
    """A source the tool refuses: not an allowed link, a playlist, live, too long, too large, not a video."""


class DownloadFailed(RuntimeError):
    """The source was accepted but fetching it failed (network, HTTP error, extractor error)."""


class BadConfiguration(ValueError):
    """A malformed setting (FORMCHECK_ALLOWED_HOSTS): the whole tool refuses to fetch until it is fixed."""


def _normalise_host(entry: str) -> str:
    """A bare host name (IDNA, lower case) or a compressed IP literal; ValueError for anything else."""
    host = entry.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        pass
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError as e:
        raise ValueError(f"not a host name: {entry!r}") from e
    if not _HOSTNAME.match(host):
        raise ValueError(f"allowed hosts are bare host names or IP addresses (no scheme, port or path): {entry!r}")
    return host


@dataclass(frozen=True)
class IngestOptions:
    """Limits on what may be fetched.

    allowed_hosts: exact host names or IP addresses (no wildcards, no ports: an allowed host is allowed on
    any port, because test servers take a free port). YouTube's hosts must resolve to public addresses;
    any other host listed here was added on purpose (a test server on 127.0.0.1, an on-premise media
    server) and may resolve to loopback or private addresses.
    """

    allowed_hosts: tuple[str, ...] = YOUTUBE_HOSTS
    max_bytes: int = 1 << 30  # 1 GiB: a 20-minute 720p H.264 video is about 0.3-0.6 GiB
    max_duration_s: float = 20 * 60  # coaching videos are minutes long; longer ones are usually streams
    socket_timeout_s: float = 30.0  # per network operation, not for the whole download

    def __post_init__(self) -> None:
        hosts = tuple(dict.fromkeys(_normalise_host(h) for h in self.allowed_hosts))
        object.__setattr__(self, "allowed_hosts", hosts)
        if self.max_bytes <= 0 or self.max_duration_s <= 0:
            raise ValueError("max_bytes and max_duration_s must be positive")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: object) -> IngestOptions:
        """Defaults plus the hosts of FORMCHECK_ALLOWED_HOSTS (comma-separated, e.g. "127.0.0.1")."""
        env = os.environ if environ is None else environ
        extra = [h for h in env.get(ENV_ALLOWED_HOSTS, "").split(",") if h.strip()]
        hosts = overrides.pop("allowed_hosts", YOUTUBE_HOSTS)
        try:
            return cls(allowed_hosts=(*hosts, *extra), **overrides)
        except ValueError as e:
            raise BadConfiguration(f"{ENV_ALLOWED_HOSTS}: {e}") from None

    @property
    def trusted_hosts(self) -> frozenset[str]:
        """Hosts added beyond YouTube's, which may resolve to non-public addresses."""
        return frozenset(self.allowed_hosts) - set(YOUTUBE_HOSTS)


@dataclass
class Fetched:
    """A fetched video file and its metadata. Text fields are untrusted (cleaned, capped), escape them when shown."""

    path: Path
    title: str
    uploader: str = ""
    duration: float | None = None
    webpage_url: str = ""
    extractor: str = ""
    source: str = ""  # the canonical URL, or the resolved local path
    channel: str = ""
    channel_id: str = ""
    upload_date: str = ""  # YYYY-MM-DD, '' when the source does not say
    license: str = ""


def upload_date(value: object) -> str:
    """yt-dlp's upload_date (YYYYMMDD) as YYYY-MM-DD; '' for anything else."""
    text = str(value or "")
    valid = re.fullmatch(r"(19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])", text)
    return f"{text[:4]}-{text[4:6]}-{text[6:]}" if valid else ""


def clean_text(value: object, limit: int = 200) -> str:
    """Untrusted metadata as one plain line: NFC, no control or format characters, spaces collapsed, capped."""
    if value is None:
        return ""
    text = unicodedata.normalize("NFC", str(value))
    # Cc: control characters (incl. newlines); Cf: format characters such as bidi overrides that can
    # disguise text; Zl/Zp: line and paragraph separators.
    text = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def is_url(source: str) -> bool:
    """Whether a source string is meant as a link (any scheme, or a YouTube link without one) and not a path."""
    source = source.strip()
    return bool(_URLISH.match(source)) and not os.path.exists(source)


def _ip_kind(host: str) -> str | None:
    """'private', 'loopback', ... for a non-public IP literal; None for a public one or a name."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    return _non_public_kind(ip)


def _non_public_kind(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    for kind in ("loopback", "link-local", "multicast", "private", "reserved", "unspecified"):
        if getattr(ip, f"is_{kind.replace('-', '_')}"):
            return kind
    return None if ip.is_global else "non-public"


def canonical_url(url: str, options: IngestOptions = IngestOptions()) -> str:
    """The one spelling of an allowed video link, or UnsupportedSource saying why it is refused.

    Only http(s), no credentials, host on the allowlist (checked before any DNS look-up; this function
    never touches the network). YouTube links become https://www.youtube.com/watch?v=<id> (youtu.be,
    /shorts/, /embed/, /live/, m., and extra parameters such as &list= dropped); a playlist without a
    video id is refused. Other allowed hosts keep path and query, lose the fragment.
    """
    text = url.strip()
    if not text or len(text) > 2048 or any(c.isspace() or unicodedata.category(c) == "Cc" for c in text):
        raise UnsupportedSource(f"not a link: {clean_text(text, 80)!r}")
    if not re.match(r"^[a-z][a-z0-9+.-]*:", text, re.I):
        if not _URLISH.match(text):
            raise UnsupportedSource(f"not a link: {clean_text(text, 80)!r}")
        text = "https://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise UnsupportedSource(f"only http(s) links are accepted, not {scheme}:")
    if parts.username is not None or parts.password is not None:
        raise UnsupportedSource("links with a user name or password are not accepted")
    try:
        host = _normalise_host(parts.hostname or "")
        port = parts.port
    except ValueError as e:
        raise UnsupportedSource(f"not a valid link host: {clean_text(parts.netloc, 80)!r}") from e
    if host not in options.allowed_hosts:
        kind = _ip_kind(host)
        if kind:
            raise UnsupportedSource(f"{host} is a {kind} address, not an allowed video site")
        raise UnsupportedSource(f"{host} is not an allowed video site (allowed: {', '.join(options.allowed_hosts)};"
                                f" more with {ENV_ALLOWED_HOSTS})")
    if host in YOUTUBE_HOSTS:
        return f"https://www.youtube.com/watch?v={_youtube_id(host, parts.path, parts.query)}"
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != {"http": 80, "https": 443}[scheme]:
        netloc += f":{port}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def _youtube_id(host: str, path: str, query: str) -> str:
    params = parse_qs(query)
    segments = [s for s in path.split("/") if s]
    if host == "youtu.be":
        candidate = segments[0] if segments else None
    elif segments[:1] == ["watch"]:
        candidate = params.get("v", [None])[0]
    elif len(segments) >= 2 and segments[0] in ("shorts", "embed", "live", "v", "e"):
        candidate = segments[1]
    else:
        candidate = None
    if candidate is None:
        if "list" in params or segments[:1] == ["playlist"]:
            raise UnsupportedSource(PLAYLIST_REFUSED)
        raise UnsupportedSource("not a YouTube video link (no video id)")
    if not _YOUTUBE_ID.fullmatch(candidate):
        raise UnsupportedSource(f"not a valid YouTube video id: {clean_text(candidate, 40)!r}")
    return candidate


def check_host_addresses(url: str, options: IngestOptions = IngestOptions()) -> None:
    """Resolve a URL's host: YouTube's and any non-allowlisted host must have only public addresses.

    Hosts added to the allowlist beyond YouTube's are trusted as configured and not resolved here.
    Raises UnsupportedSource for a non-public address, DownloadFailed when the name does not resolve.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsupportedSource(f"only http(s) links are accepted: {clean_text(url, 80)!r}")
    host = _normalise_host(parts.hostname)
    if host in options.trusted_hosts:
        return
    try:
        infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
    except socket.gaierror as e:
        raise DownloadFailed(f"cannot resolve {host}: {e.strerror}") from e
    for *_, sockaddr in infos:
        ip = ipaddress.ip_address(sockaddr[0].split("%")[0])
        if kind := _non_public_kind(ip):
            raise UnsupportedSource(f"{host} resolves to a {kind} address ({ip}); refused")


def source_key(source: str, options: IngestOptions | None = None) -> str:
    """A stable key for idempotency: the canonical URL of a link, "sha256:<hex>" of a local file's content."""
    if is_url(source):
        return canonical_url(source, options or IngestOptions.from_env())
    path = _local_file(source)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return f"sha256:{digest.hexdigest()}"


def content_key(data: bytes | memoryview) -> str:
    """The source key of a file's content held in memory (an upload): what `source_key` gives for its path."""
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _local_file(source: str | os.PathLike) -> Path:
    try:
        path = Path(source).expanduser().resolve(strict=True)
    except (FileNotFoundError, RuntimeError) as e:  # RuntimeError: a symlink loop
        raise UnsupportedSource(f"file not found: {clean_text(str(source), 120)}") from e
    if not path.is_file():
        raise UnsupportedSource(f"not a regular file: {clean_text(str(source), 120)}")
    return path


def _new_name() -> str:
    return uuid.uuid4().hex[:12]


def fetch_local(path: str | os.PathLike, dest_dir: str | os.PathLike,
                options: IngestOptions = IngestOptions()) -> Fetched:
    """Copy a local video (or an upload saved to disk) under dest_dir with a tool-made name.

    Refused before anything is copied (UnsupportedSource, BadVideo): empty, over `max_bytes`, not a video,
    longer than `max_duration_s` (the limit links have).
    """
    src = _local_file(path)
    size = src.stat().st_size
    if size == 0:
        raise UnsupportedSource("file is empty")
    if size > options.max_bytes:
        raise UnsupportedSource(f"file is {_mb(size)}; the limit is {_mb(options.max_bytes)}")
    check_duration(inspect_video(src).duration, options)  # before any copy, and long before pose tracking
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    suffix = src.suffix.lower() if re.fullmatch(r"\.[a-z0-9]{1,5}", src.suffix.lower()) else ""
    dst = dest_dir / f"{_new_name()}{suffix}"
    tmp = dst.with_name(f".{dst.name}.part")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return Fetched(path=dst, title=clean_text(src.stem), extractor="local", source=str(src))


def js_runtimes() -> dict[str, dict[str, str]]:
    """yt-dlp's `js_runtimes` option pointing at the deno binary of the `deno` PyPI package.

    yt-dlp needs a JavaScript runtime to solve YouTube's player challenges (scripts from yt-dlp-ejs). It
    looks for `deno` in Python's scripts folder and then on PATH; the deno wheel installs it into the
    scripts folder (the venv's bin/), so it is found even when the venv is not activated. Naming the path
    explicitly also covers `pip install --target` layouts, which deno.find_deno_bin() knows.
    """
    try:
        import deno

        return {"deno": {"path": deno.find_deno_bin()}}
    except (ImportError, FileNotFoundError):
        return {"deno": {}}  # yt-dlp's own search (scripts folder, then PATH)


class _Log:
    """yt-dlp logger that keeps messages (to explain failures) instead of printing them."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def debug(self, msg: str) -> None:
        self.lines.append(msg)

    info = warning = error = debug


def ytdlp_params(work_dir: Path, name: str, options: IngestOptions = IngestOptions(),
                 hook: Callable[[dict], None] | None = None, logger: object | None = None) -> dict:
    """The complete, fixed yt-dlp configuration: nothing comes from the user or from config files."""
    return {
        "format": FORMAT,
        "merge_output_format": "mp4",
        "outtmpl": {"default": f"{name}.%(ext)s"},  # a tool-made name, never the title
        "paths": {"home": str(work_dir), "temp": str(work_dir)},
        "restrictfilenames": True,
        "noplaylist": True,
        "allowed_extractors": ["youtube", "generic"],  # no other site's extractor, even via an embed
        "max_filesize": options.max_bytes,
        "socket_timeout": options.socket_timeout_s,
        "retries": 3,
        "fragment_retries": 3,
        "extractor_retries": 2,
        "overwrites": True,
        "continuedl": False,
        "updatetime": False,
        "ignoreconfig": True,  # the Python API reads no config files anyway; stated for the reader
        "proxy": "",  # never a proxy from the environment: every connection is checked against the allowlist
        # Only yt-dlp's own downloaders, whose requests pass the allowlist guard; ffmpeg would fetch by itself
        # (following redirects unchecked), so if yt-dlp still delegates to it, ffmpeg may read local files only.
        "external_downloader": {"default": "native"},
        "hls_prefer_native": True,
        "external_downloader_args": {"ffmpeg_i": ["-protocol_whitelist", "file,crypto,data"]},
        "cookiefile": None,
        "quiet": True,
        "noprogress": True,
        "color": {"stdout": "no_color", "stderr": "no_color"},
        "logger": logger or _Log(),
        "progress_hooks": [hook] if hook else [],
        # The imageio-ffmpeg binary is named ffmpeg-linux-...: yt-dlp accepts any file name containing
        # "ffmpeg". No ffprobe ships with it; merging and remuxing do not need one.
        "ffmpeg_location": ffmpeg_exe(),
        "js_runtimes": js_runtimes(),
    }


class _Hook:
    """yt-dlp progress hook: fraction over all parts (video + audio), size cap, cancellation."""

    def __init__(self, options: IngestOptions, progress: ProgressFn | None, cancelled: CancelledFn | None) -> None:
        self.options, self.progress, self.cancelled = options, progress, cancelled
        self.parts = 1
        self.done_parts = 0
        self.done_bytes = 0

    def __call__(self, d: dict) -> None:
        if self.cancelled and self.cancelled():
            raise Cancelled()
        got = d.get("downloaded_bytes") or 0
        total = d.get("total_bytes") or d.get("total_bytes_estimate") or 0
        if self.done_bytes + max(got, total) > self.options.max_bytes:
            raise UnsupportedSource(f"video is larger than the {_mb(self.options.max_bytes)} limit")
        if d.get("status") == "finished":
            self.done_parts += 1
            self.done_bytes += got
        elif self.progress and total:
            self.progress(min(1.0, (self.done_parts + got / total) / self.parts))


def check_duration(seconds: float, options: IngestOptions = IngestOptions()) -> None:
    """The one duration limit of links, files and uploads: UnsupportedSource over `max_duration_s`."""
    if seconds > options.max_duration_s:
        raise UnsupportedSource(f"video is {_minutes(seconds)} long; the limit is {_minutes(options.max_duration_s)}")


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def _minutes(s: float) -> str:
    return f"{s / 60:.1f} min"


def _ytdlp_message(e: yt_dlp.utils.YoutubeDLError) -> str:
    """yt-dlp's error as one plain line: no colour codes, "ERROR:", "[extractor] id:" or "(caused by ...)"."""
    lines = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip().splitlines()
    text = lines[0] if lines else type(e).__name__
    text = re.sub(r"^ERROR:\s*", "", text)
    text = re.sub(r"^\[[\w:]+\] [^:]*: ", "", text)
    text = re.sub(r" \(caused by .*\)$", "", text)
    return clean_text(text, 300)


def _check_info(info: dict, options: IngestOptions, guard: _RequestGuard | None = None) -> None:
    """Refuse before downloading: playlists, live streams, over-long or over-large videos, odd media URLs."""
    if info.get("_type") in ("playlist", "multi_video"):
        raise UnsupportedSource(PLAYLIST_REFUSED)
    if info.get("is_live") or info.get("live_status") in ("is_live", "is_upcoming", "post_live"):
        raise UnsupportedSource("live streams are not supported; wait until the recording is published")
    if info.get("duration"):
        check_duration(info["duration"], options)
    formats = info.get("requested_formats") or [info]
    size = sum((f.get("filesize") or f.get("filesize_approx") or 0) for f in formats)
    if size > options.max_bytes:
        raise UnsupportedSource(f"video is about {_mb(size)}; the limit is {_mb(options.max_bytes)}")
    for f in formats:
        media = f.get("url") or ""
        scheme = urlsplit(media).scheme
        if scheme not in ("http", "https"):
            raise UnsupportedSource(f"the video's media link uses {scheme or 'no'} scheme, not http(s); refused")
        if f.get("protocol") not in NATIVE_PROTOCOLS:
            raise UnsupportedSource(f"the video is offered only as {clean_text(f.get('protocol'), 40)}, which the "
                                    "tool does not download")
        (guard or _RequestGuard(options)).check_url(media, "the video's media link")
        check_host_addresses(media, options)


def fetch_allowed(host: str, options: IngestOptions = IngestOptions()) -> bool:
    """Whether a request may go to this (normalised) host: an allowed host, or YouTube's page and media domains."""
    return host in options.allowed_hosts or any(host == d or host.endswith("." + d) for d in YOUTUBE_FETCH_DOMAINS)


class _RequestGuard:
    """The allowlist applied to every request of one download, hop by hop, before anything is sent.

    yt-dlp follows redirects inside its request handler and its downloaders open their own requests, so the
    check sits where every request passes: the URL of each request and of each redirect's Location, and
    the address of each TCP connection (resolved here, then connected to the checked address, so a name
    that changes its answer between the check and the connection cannot slip through). The first refusal
    is kept: yt-dlp wraps errors raised inside its handlers into its own messages.
    """

    def __init__(self, options: IngestOptions) -> None:
        self.options = options
        self.refused: str | None = None

    def _refuse(self, message: str) -> None:
        self.refused = self.refused or message
        raise UnsupportedSource(message)

    def check_url(self, url: str, what: str = "a request") -> None:
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https"):
            self._refuse(f"{what} uses {parts.scheme or 'no'} scheme, not http(s); refused")
        try:
            host = _normalise_host(parts.hostname or "")
        except ValueError:
            host = clean_text(parts.netloc, 80)
        if not fetch_allowed(host, self.options):
            self._refuse(f"{what} goes to {host}, which is not an allowed host; refused")

    def connect(self, address: tuple, timeout: object = socket._GLOBAL_DEFAULT_TIMEOUT,
                source_address: tuple | None = None) -> socket.socket:
        """http.client's `_create_connection`: only to allowed hosts at permitted addresses."""
        host, port = address[0], address[1]
        try:
            host = _normalise_host(host)
        except ValueError:
            self._refuse(f"not a valid host: {clean_text(host, 80)!r}")
        if not fetch_allowed(host, self.options):
            self._refuse(f"a connection to {host}, which is not an allowed host; refused")
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except socket.gaierror as e:
            raise OSError(f"cannot resolve {host}: {e.strerror}") from e
        addresses = [sockaddr[0].split("%")[0] for *_, sockaddr in infos]
        if host not in self.options.trusted_hosts:
            for ip in addresses:
                if kind := _non_public_kind(ipaddress.ip_address(ip)):
                    self._refuse(f"{host} resolves to a {kind} address ({ip}); refused")
        error: OSError = OSError(f"cannot connect to {host}")
        for ip in dict.fromkeys(addresses):
            try:
                return socket.create_connection((ip, port), timeout, source_address)
            except OSError as e:
                error = e
        raise error


class _GuardedHTTPHandler(HTTPHandler):
    """yt-dlp's HTTP handler whose connections go through the guard (no SOCKS: proxies are never used)."""

    def __init__(self, guard: _RequestGuard, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.guard = guard

    def _connection(self, http_class: type, *args: object, **kwargs: object) -> http.client.HTTPConnection:
        conn = http_class(*args, **kwargs)
        conn._create_connection = self.guard.connect
        if self._source_address is not None:
            conn.source_address = (self._source_address, 0)
        return conn

    def http_open(self, req: urllib.request.Request) -> object:
        return self.do_open(functools.partial(self._connection, http.client.HTTPConnection), req)

    def https_open(self, req: urllib.request.Request) -> object:
        return self.do_open(functools.partial(self._connection, http.client.HTTPSConnection), req,
                            context=self._context)


class _GuardedRedirectHandler(RedirectHandler):
    """Checks each redirect's target before following it (no request at all to a refused target)."""

    def __init__(self, guard: _RequestGuard) -> None:
        super().__init__()
        self.guard = guard

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001 (urllib's signature)
        self.guard.check_url(newurl, f"a redirect ({code}) from {clean_text(urlsplit(req.full_url).hostname, 80)}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _GuardedUrllibRH(UrllibRH):
    """yt-dlp's urllib request handler reduced to http(s) without proxies, with the guard on every hop."""

    _SUPPORTED_URL_SCHEMES = ("http", "https")

    def __init__(self, *, guard: _RequestGuard, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.guard = guard

    def _create_instance(self, proxies, cookiejar, legacy_ssl_support=None):  # noqa: ANN001 (yt-dlp's signature)
        opener = urllib.request.OpenerDirector()  # no ProxyHandler, file, data or ftp handler: none is wanted
        for handler in (
            _GuardedHTTPHandler(self.guard, debuglevel=int(bool(self.verbose)), source_address=self.source_address,
                                context=self._make_sslcontext(legacy_ssl_support=legacy_ssl_support)),
            urllib.request.HTTPCookieProcessor(cookiejar),
            urllib.request.UnknownHandler(),
            urllib.request.HTTPDefaultErrorHandler(),
            urllib.request.HTTPErrorProcessor(),
            _GuardedRedirectHandler(self.guard),
        ):
            opener.add_handler(handler)
        opener.addheaders = []
        return opener

    def _send(self, request):  # noqa: ANN001 (yt-dlp's signature)
        self.guard.check_url(request.url)
        return super()._send(request)


class _GuardedYoutubeDL(yt_dlp.YoutubeDL):
    """YoutubeDL whose only request handler is the guarded one (extraction, downloads, HLS fragments)."""

    def __init__(self, params: dict, guard: _RequestGuard) -> None:
        self.guard = guard
        super().__init__(params)

    @functools.cached_property
    def _request_director(self):  # noqa: ANN202 (yt-dlp's RequestDirector)
        return self.build_request_director([functools.partial(_GuardedUrllibRH, guard=self.guard)])


def download(url: str, dest_dir: str | os.PathLike, options: IngestOptions = IngestOptions(),
             progress: ProgressFn | None = None, cancelled: CancelledFn | None = None) -> Fetched:
    """Download one video with yt-dlp into dest_dir/<tool-made id>.<ext> and return it with its metadata.

    The URL must pass `canonical_url` and `check_host_addresses`. Metadata is read first (no download)
    to refuse playlists, live streams and videos over the duration or size caps; the size cap is also
    enforced while downloading. Everything is written in a private folder under dest_dir that is
    removed afterwards, so a failure or cancellation leaves no file. The result is checked to be a video
    by ffmpeg (BadVideo otherwise). Raises UnsupportedSource, DownloadFailed, BadVideo or Cancelled.
    """
    canonical = canonical_url(url, options)
    check_host_addresses(canonical, options)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    name = _new_name()
    work = dest_dir / f".download-{name}"
    work.mkdir()
    hook, log, guard = _Hook(options, progress, cancelled), _Log(), _RequestGuard(options)
    try:
        with _GuardedYoutubeDL(ytdlp_params(work, name, options, hook, log), guard) as ydl:
            try:
                info = ydl.extract_info(canonical, download=False)
                _check_info(info, options, guard)
                if cancelled and cancelled():
                    raise Cancelled()
                hook.parts = len(info.get("requested_formats") or ()) or 1
                info = ydl.process_ie_result(info, download=True)
            except yt_dlp.utils.YoutubeDLError as e:
                if guard.refused:  # a hop the guard refused, said plainly rather than in yt-dlp's wrapping
                    raise UnsupportedSource(guard.refused) from e
                message = _ytdlp_message(e)
                if message.startswith("Unsupported URL"):
                    raise UnsupportedSource(f"no video found at {canonical} (the page is not a video file)") from e
                raise DownloadFailed(f"download failed: {message}") from e
        produced = [Path(d["filepath"]) for d in info.get("requested_downloads") or () if d.get("filepath")]
        produced = [p for p in produced if p.is_file() and p.resolve().parent == work.resolve()]
        if guard.refused:  # yt-dlp may log a failed fragment and go on: a refused hop fails the download
            raise UnsupportedSource(guard.refused)
        if not produced:
            if any("larger than max-filesize" in line for line in log.lines):
                raise UnsupportedSource(f"video is larger than the {_mb(options.max_bytes)} limit")
            raise DownloadFailed("download produced no file")
        video = inspect_video(produced[0])
        check_duration(video.duration, options)
        suffix = produced[0].suffix.lower() if re.fullmatch(r"\.[a-z0-9]{1,5}", produced[0].suffix.lower()) else ""
        final = dest_dir / f"{name}{suffix}"
        os.replace(produced[0], final)
    finally:
        shutil.rmtree(work)
    if progress:
        progress(1.0)
    page = yt_dlp.utils.sanitize_url(str(info.get("webpage_url") or ""))
    return Fetched(
        path=final,
        title=clean_text(info.get("title")) or name,
        uploader=clean_text(info.get("uploader") or info.get("channel"), 100),
        duration=float(info.get("duration") or video.duration),
        webpage_url=page if urlsplit(page).scheme in ("http", "https") else canonical,
        extractor=clean_text(info.get("extractor_key") or info.get("extractor"), 40),
        source=canonical,
        channel=clean_text(info.get("channel"), 100),
        channel_id=clean_text(info.get("channel_id"), 80),
        upload_date=upload_date(info.get("upload_date")),
        license=clean_text(info.get("license"), 100),
    )
