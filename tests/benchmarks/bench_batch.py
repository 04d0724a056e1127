"""Benchmark: batch ingest on a local Ray with 1 and 2 workers against the single-video pipeline, in one run.

Prints the speedup of 2 workers over 1 (bar: >= 1.7 on 2 cores), frames per second per core of the batch against
the in-process pipeline on one core (aim: >= 0.9), Ray's overhead per video, the peak memory of a Ray worker, and
from the measured per-core rate the wall time of 10,000 one-minute videos on N machines. Run as
`python tests/benchmarks/bench_batch.py [--quick] [--videos K] [--seconds S]`. Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imageio_ffmpeg

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.benchmarks.bench_pipeline import SHARED, SOURCES  # noqa: E402


def make_videos(count: int, seconds: float, folder: Path) -> list[Path]:
    """`count` different 720p 30 fps videos (the shared squat clips in a rotated order), `seconds` long each."""
    out = []
    for k in range(count):
        order = SOURCES[k % len(SOURCES):] + SOURCES[:k % len(SOURCES)]
        listing = folder / f"v{k}.txt"
        listing.write_text("\n".join(f"file '{SHARED / s}'" for s in order * 20))
        path = folder / f"v{k}.mp4"
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "concat", "-safe", "0",
                        "-i", str(listing), "-t", str(seconds), "-vf", "scale=1280:720,fps=30", "-c:v", "libx264",
                        "-preset", "veryfast", "-pix_fmt", "yuv420p", "-an", str(path)], check=True)
        out.append(path)
    return out


def single_pipeline(videos: list[Path], tmp: Path) -> tuple[float, float, int]:
    """The compute stages of the ordinary ingest, one video after the other in this process on one core:
    (wall seconds, CPU seconds, frames). A first short video is run before timing, so MediaPipe's start is not
    counted."""
    from curation.batch import _cpu_seconds
    from curation.ingest import source_key
    from curation.pipeline import PipelineOptions, process_source

    options = PipelineOptions(pose_workers=1)
    warm = SHARED / SOURCES[0]
    process_source(str(warm), source_key(str(warm)), "squat", options, Path(tempfile.mkdtemp(dir=tmp)))
    total, frames, cpu = 0.0, 0, _cpu_seconds()
    for video in videos:
        t0 = time.perf_counter()
        p = process_source(str(video), source_key(str(video)), "squat", options, Path(tempfile.mkdtemp(dir=tmp)))
        total += time.perf_counter() - t0
        frames += p.video["frames"]
    return total, _cpu_seconds() - cpu, frames


def ray_batch(videos: list[Path], workers: int, tmp: Path) -> dict:
    """A batch of the videos into a fresh project on a fresh local Ray of `workers` CPUs; Ray's start is timed
    apart from the batch (its workers start cold inside the batch, as they would in a real run)."""
    import ray

    from curation.batch import Row, run_batch
    from curation.project import Project

    project = Project.open(tmp / f"project-{workers}")
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=workers, include_dashboard=False, logging_level="WARNING",
             log_to_driver=False, _node_ip_address="127.0.0.1")
    started = time.perf_counter() - t0
    stats: dict = {}
    try:
        t0 = time.perf_counter()
        results = run_batch(project, [Row(str(v), "squat") for v in videos], workers=workers, stats=stats)
        wall = time.perf_counter() - t0
    finally:
        ray.shutdown()
    failed = [r["error"] for r in results if r["error"]]
    if failed:
        raise SystemExit(f"batch failed: {failed}")
    return {"wall_s": wall, "start_s": started, "frames": sum(r["frames"] for r in results),
            "task_s": [t["seconds"] for t in stats["tasks"]], "cpu_s": sum(t["cpu_seconds"] for t in stats["tasks"]),
            "load": os.getloadavg()[0],
            "peak_mb": max(t["peak_rss"] for t in stats["tasks"]) / 2**20}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="4 videos of 6 s instead of 4 of 20 s")
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=None)
    args = parser.parse_args(argv)
    if not SHARED.exists():
        raise SystemExit(f"no shared data at {SHARED}")
    seconds = args.seconds or (6.0 if args.quick else 20.0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        videos = make_videos(args.videos, seconds, tmp)
        base_s, base_cpu, frames = single_pipeline(videos, tmp)
        base_load = os.getloadavg()[0]
        one = ray_batch(videos, 1, tmp)
        two = ray_batch(videos, 2, tmp)
    base_rate = frames / base_s  # frames per second on one core, in-process
    rate1, rate2 = frames / one["wall_s"], frames / (two["wall_s"] * 2)
    speedup = one["wall_s"] / two["wall_s"]
    print(f"\n== batch ingest on Ray: {args.videos} videos of {seconds:.0f} s, 1280x720 at 30 fps "
          f"({frames} frames) ==")
    print(f"single-video pipeline (in-process, 1 core): {base_s:.1f} s, {base_rate:.1f} frames/s")
    print(f"Ray batch, 1 worker:  {one['wall_s']:.1f} s ({rate1:.1f} frames/s per core; "
          f"ratio to the single pipeline {rate1 / base_rate:.2f})")
    print(f"Ray batch, 2 workers: {two['wall_s']:.1f} s ({rate2:.1f} frames/s per core; "
          f"ratio to the single pipeline {rate2 / base_rate:.2f}, aim >= 0.9)")
    print(f"speedup 2 workers / 1: {speedup:.2f} (bar: >= 1.7)")
    overhead = (one["wall_s"] - base_s) / args.videos
    in_task = (sum(one["task_s"]) - base_s) / args.videos
    print(f"Ray overhead per video (1 worker, batch wall minus the single pipeline): {overhead:.2f} s, of which "
          f"{in_task:.2f} s inside the task (cold worker start, bytes in and out); Ray's own start "
          f"{statistics.mean([one['start_s'], two['start_s']]):.1f} s per batch")
    print(f"peak memory of a Ray worker: {max(one['peak_mb'], two['peak_mb']):.0f} MB "
          f"(declared per task: curation.batch.TASK_MEMORY)")
    # CPU time does not depend on what else the machine runs: the per-core figures that hold on a shared machine.
    cpu_frame = {"single": 1000 * base_cpu / frames, "1": 1000 * one["cpu_s"] / frames,
                 "2": 1000 * two["cpu_s"] / frames}
    print(f"CPU time per frame (all stages, ffmpeg included): single pipeline {cpu_frame['single']:.1f} ms, Ray "
          f"tasks {cpu_frame['1']:.1f} ms (1 worker) / {cpu_frame['2']:.1f} ms (2 workers): per-core efficiency "
          f"{cpu_frame['single'] / cpu_frame['2']:.2f}; Ray's CPU overhead per video "
          f"{(two['cpu_s'] - base_cpu) / args.videos:.2f} s")
    print(f"load average after each part (2 cores): single {base_load:.1f}, 1 worker {one['load']:.1f}, "
          f"2 workers {two['load']:.1f}; above 2 other programs shared the cores and the wall-time figures above "
          f"are distorted")
    # 10,000 one-minute videos at 30 fps, at the CPU cost per frame measured in the Ray tasks: tasks are
    # independent, so wall time is CPU time over the cores (the driver's store write is milliseconds a video).
    total_frames = 10_000 * 60 * 30
    cpu_hours = total_frames * cpu_frame["2"] / 1000 / 3600
    print(f"estimate for 10,000 one-minute 30 fps videos ({total_frames / 1e6:.0f} M frames) at "
          f"{cpu_frame['2']:.1f} ms of CPU per frame: {cpu_hours:.0f} CPU-hours")
    for machines, cores in ((1, 2), (4, 8), (16, 8), (64, 16)):
        print(f"  {machines:>3} machine(s) x {cores:>2} cores: {cpu_hours / (machines * cores):7.1f} h wall")
    return {"speedup": speedup, "rate_ratio": rate2 / base_rate, "cpu_ms_per_frame": cpu_frame,
            "overhead_s": overhead, "peak_mb": two["peak_mb"],
            "cpu_hours_10k": cpu_hours}


if __name__ == "__main__":
    main()
