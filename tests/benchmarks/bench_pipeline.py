"""Benchmark: a 60 s 720p 30 fps video from file to labelled-ready clips (wall time), and ingest peak memory.

Run as `python tests/benchmarks/bench_pipeline.py [--quick] [--long SECONDS]`. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data" / "videos"
# Real 1280x720 30 fps squat clips from ../shared/data (read in place), looped into one long video.
SOURCES = [f"kaiakol/squat/correct/squat_correct_{i:03d}.mp4" for i in (3, 4, 5, 6, 7, 10, 11, 12, 13)]


def make_video(seconds: float, out: Path) -> Path:
    """Concatenate shared 720p clips (re-encoded to one H.264 stream at 30 fps) until `seconds` long."""
    listing = out.with_suffix(".txt")
    lines = [f"file '{SHARED / s}'" for s in SOURCES] * 40
    listing.write_text("\n".join(lines))
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "concat", "-safe", "0", "-i",
         str(listing), "-t", str(seconds), "-vf", "scale=1280:720,fps=30", "-c:v", "libx264", "-preset",
         "veryfast", "-pix_fmt", "yuv420p", "-an", str(out)],
        check=True,
    )
    return out


# Runs the CLI in a fresh interpreter and reports that process's own peak RSS and its children's (ffmpeg).
_MEASURED = (
    "import resource, sys\n"
    "from curation.__main__ import main\n"
    "status = main(sys.argv[1:])\n"
    "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,"
    " resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(status)\n"
)


def ingest_in_child(video: Path, data: Path) -> dict:
    """Run `python -m curation ingest` in a fresh process; wall time and peak RSS (python, and ffmpeg)."""
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _MEASURED, "ingest", str(video), "--exercise", "squat", "--data", str(data),
         "--json", str(data / "result.json")],
        cwd=ROOT, capture_output=True, text=True,
    )
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"ingest failed: {out.stdout}\n{out.stderr}")
    own, children = (int(x) for x in out.stdout.split("PEAK")[1].split())
    result = json.loads((data / "result.json").read_text())[0]
    return {"wall_s": wall, "peak_mb": own / 1024, "ffmpeg_peak_mb": children / 1024, **result}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20 s video instead of 60 s")
    parser.add_argument("--long", type=float, default=180.0, help="length of the memory run in seconds")
    args = parser.parse_args(argv)
    if not SHARED.exists():
        raise SystemExit(f"no shared data at {SHARED}")
    seconds = 20.0 if args.quick else 60.0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = make_video(seconds, tmp / "input.mp4")
        short = ingest_in_child(video, tmp / "p1")
        long_video = make_video(args.long, tmp / "long.mp4")
        long = ingest_in_child(long_video, tmp / "p2")
    print(f"\n== video to clips: {seconds:.0f} s of 1280x720 at 30 fps ==")
    print(f"wall time {short['wall_s']:.1f} s for {short['frames']} frames -> {short['clips']} clips "
          f"(bar: <= 30 s for 60 s; ratio to bar {short['wall_s'] / (30 * seconds / 60):.2f})")
    print(f"real-time factor {seconds / short['wall_s']:.2f}x")
    print(f"\n== ingest peak memory ==")
    print(f"(python process; ffmpeg child peaks {short['ffmpeg_peak_mb']:.0f} / {long['ffmpeg_peak_mb']:.0f} MB)")
    print(f"{seconds:.0f} s video: {short['peak_mb']:.0f} MB; {args.long:.0f} s video: {long['peak_mb']:.0f} MB "
          f"(bar: < 1536 MB for 600 s; growth ratio {long['peak_mb'] / short['peak_mb']:.2f} "
          f"for {args.long / seconds:.1f}x the length)")
    return {"wall_s": short["wall_s"], "seconds": seconds, "peak_mb_short": short["peak_mb"],
            "peak_mb_long": long["peak_mb"], "long_seconds": args.long}


if __name__ == "__main__":
    main()
