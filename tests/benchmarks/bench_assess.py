"""Benchmark: assessing a 60 s 720p 30 fps video (model assess) against ingesting it (curation ingest), wall time
of each command in a fresh process, measured in one run. Bar: assess <= 1.10 x ingest.

Run as `python tests/benchmarks/bench_assess.py [--quick] [--model baseline]`. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks.bench_pipeline import ROOT, SHARED, make_video  # noqa: E402


def timed(args: list[str]) -> float:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(args[:2])} failed: {out.stderr[-2000:]}")
    return wall


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20 s video instead of 60 s")
    parser.add_argument("--model", default="baseline", help="the model of the run that judges (default baseline)")
    args = parser.parse_args(argv)
    if not SHARED.exists():
        raise SystemExit(f"no shared data at {SHARED}")
    from curation.project import Project
    from curation.sample import sample_project
    from model.train import RunConfig, train_run

    seconds = 20.0 if args.quick else 60.0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = make_video(seconds, tmp / "input.mp4")
        # The judging run: trained on the synthetic sample (squats among it); assessing does not depend on
        # what the run learned, only on what it is.
        judge = Project.open(tmp / "judge")
        sample_project(judge, clips_per_class=15)
        train_run(judge, RunConfig(model=args.model, folds=3))
        ingest = timed(["curation", "ingest", str(video), "--exercise", "squat", "--data", str(tmp / "ingest")])
        assess = timed(["model", "assess", str(video), "--exercise", "squat", "--data", str(judge.root),
                        "--json", str(tmp / "assess.json")])
        reps = len(json.loads((tmp / "assess.json").read_text()))
    ratio = assess / ingest
    print(f"\n== assess against ingest: {seconds:.0f} s of 1280x720 at 30 fps, {args.model} run ==")
    print(f"ingest {ingest:.1f} s; assess {assess:.1f} s ({reps} repetitions judged and explained)")
    print(f"assess / ingest {ratio:.2f} (bar: <= 1.10)")
    return {"ingest_s": ingest, "assess_s": assess, "ratio": ratio, "reps": reps, "seconds": seconds}


if __name__ == "__main__":
    main()
