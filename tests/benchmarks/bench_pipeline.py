"""Benchmark: a 60 s 720p 30 fps video from file to labelled-ready clips (wall time), and ingest peak memory.

Run as `python tests/benchmarks/bench_pipeline.py [--quick] [--long SECONDS] [--checks-only]`. Prints figures;
asserts nothing. `--checks-only`: only the cost of issue 15's checks (people beside the athlete, replays): the
same video ingested with them off and on, alternately, twice each, in fresh processes.
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


# One ingest through the Python API in a fresh process, with issue 15's checks on or off; prints its wall time.
_CHECKS = (
    "import json, resource, sys, time\n"
    "from pathlib import Path\n"
    "from curation.pipeline import PipelineOptions, ingest_source\n"
    "from curation.pose import PoseOptions\n"
    "from curation.project import Project\n"
    "video, data, on = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == 'on'\n"
    "options = PipelineOptions() if on else PipelineOptions(replays=False, pose=PoseOptions(people_every_seconds=0))\n"
    "t0 = time.perf_counter()\n"
    "result = ingest_source(Project.open(data), video, 'squat', options=options)\n"
    "wall = time.perf_counter() - t0\n"
    "cpu = sum(getattr(resource.getrusage(w), f) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)\n"
    "          for f in ('ru_utime', 'ru_stime'))\n"
    "print('RESULT', json.dumps({'wall_s': wall, 'cpu_s': cpu, 'clips': result['clips']}))\n"
)


def checks_cost(video: Path, tmp: Path, rounds: int = 2) -> dict:
    """Wall and CPU time (the process and its pose workers and ffmpeg) of the ingest with the checks off and
    on (alternating, a fresh project each), and the ratios. On a busy machine wall time swings with the other
    work; CPU time much less."""
    times: dict[str, list[float]] = {"off": [], "on": []}
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    clips = {}
    for r in range(rounds):
        for mode in ("off", "on"):
            data = tmp / f"checks-{mode}-{r}"
            out = subprocess.run([sys.executable, "-c", _CHECKS, str(video), str(data), mode], cwd=ROOT,
                                 capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"ingest failed: {out.stdout}\n{out.stderr}")
            result = json.loads(out.stdout.split("RESULT", 1)[1])
            times[mode].append(result["wall_s"])
            cpu[mode].append(result["cpu_s"])
            clips[mode] = result["clips"]
    off, on = min(times["off"]), min(times["on"])
    cpu_off, cpu_on = min(cpu["off"]), min(cpu["on"])
    print(f"\n== cost of the people and replay checks ({video.name}) ==")
    print(f"checks off: {', '.join(f'{t:.1f}' for t in times['off'])} s ({clips['off']} clips); "
          f"on: {', '.join(f'{t:.1f}' for t in times['on'])} s ({clips['on']} clips)")
    print(f"best of each: {off:.1f} s -> {on:.1f} s, ratio {on / off:.3f} (bar: <= 1.15)")
    print(f"CPU time: off {', '.join(f'{t:.1f}' for t in cpu['off'])} s; "
          f"on {', '.join(f'{t:.1f}' for t in cpu['on'])} s; best {cpu_off:.1f} -> {cpu_on:.1f} s, ratio {cpu_on / cpu_off:.3f}")
    return {"off_s": times["off"], "on_s": times["on"], "ratio": on / off, "cpu_off_s": cpu["off"],
            "cpu_on_s": cpu["on"], "cpu_ratio": cpu_on / cpu_off, "clips": clips}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20 s video instead of 60 s")
    parser.add_argument("--long", type=float, default=180.0, help="length of the memory run in seconds")
    parser.add_argument("--checks-only", action="store_true", help="only the cost of the people and replay checks")
    args = parser.parse_args(argv)
    if not SHARED.exists():
        raise SystemExit(f"no shared data at {SHARED}")
    seconds = 20.0 if args.quick else 60.0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = make_video(seconds, tmp / "input.mp4")
        if args.checks_only:
            return checks_cost(video, tmp)
        short = ingest_in_child(video, tmp / "p1")
        long_video = make_video(args.long, tmp / "long.mp4")
        long = ingest_in_child(long_video, tmp / "p2")
    print(f"\n== video to clips: {seconds:.0f} s of 1280x720 at 30 fps ==")
    print(f"wall time {short['wall_s']:.1f} s for {short['frames']} frames -> {short['clips']} clips "
          f"(bar: <= 20 s for 60 s; ratio to bar {short['wall_s'] / (20 * seconds / 60):.2f})")
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
