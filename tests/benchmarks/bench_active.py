"""Benchmark: active learning against random order over repeated grouped test splits, the speed of select(),
and the wall time of a simulation of a 7,000-clip project.

(a) model.simulate (the baseline, simulated with statistics computed once per clip) with --splits N grouped test
    parts (default 5) and seeds per part (default 10: with 3 the verdict on ngoquocbao still swung): per strategy the area under the learning curve (mean
    macro-F1 over the label counts) as mean +/- sd over splits, random order's, and the difference strategy -
    random paired by split (mean +/- sd), plus labels to reach 95 % of the full-data macro-F1 on the mean curve.
    - pose_trainer (OpenPose-18, 112 clips, 4 exercises, about 2 people): grouped by recording setup
      (bench_train's honest grouping, 19 groups) and, for contrast, each clip its own group.
    - ngoquocbao bicep curl + lunge (MediaPipe rows labelled per frame by key-press): each run of same-label
      rows of a file is cut into clips of CLIP_ROWS rows (a shorter tail is dropped); a clip's group is its
      file and run. No person ids: read it as within-population labelling efficiency. And the same with plank
      (3 exercises, 455 clips): the largest real set here.
    - the synthetic sample (curation.sample, 3 exercises, 12 athletes as groups), SAMPLE_CLIPS per class and
      exercise.
(b) Speed: select() over 10,000 synthetic clips with 500-dimensional embeddings (the bar: scoring 10,000 clips
    for suggestions in at most 3 s), each strategy and the cold start.
(c) Speed: the default simulation (3 splits, 3 seeds) of a synthetic sample project with 7,000 labelled clips
    (the bar: under 5 minutes on the reference machine), wall time and its ratio to the bar.

Run as `python tests/benchmarks/bench_active.py [--quick]`; `main(argv)` returns the figures as a dict.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.benchmarks.bench_train import pose_trainer_folder, project_from  # noqa: E402
from tests.test_dataset import write_folder  # noqa: E402

SHARED = Path(os.environ.get("FORMCHECK_SHARED_DATA", ROOT.parent / "shared" / "data"))
CLIP_ROWS = 30  # about one second of saved frames per clip
NGOQUOCBAO = {  # exercise: files (relative to keypoints/ngoquocbao); label C = correct, anything else incorrect
    "bicep_curl": ("bicep_curl/train_partial_snapshot_20221021.csv", "bicep_curl/test.csv"),
    "lunge": ("lunge/err_train_partial_snapshot_20221121.csv", "lunge/err_test.csv"),
}
NGOQUOCBAO_PLANK = {"plank": ("plank/train_partial_correct_snapshot_20221116.csv",
                              "plank/train_partial_high_snapshot_20221006.csv", "plank/test.csv")}
BAR_SECONDS = 3.0  # design.md 7: scoring 10,000 clips for suggestions
SAMPLE_CLIPS = 100  # synthetic sample: clips per class and exercise


# ---------------------------------------------------------------------------------------------- datasets


def ngoquocbao_folder(folder: Path, stride: int = CLIP_ROWS, files: dict[str, tuple[str, ...]] = NGOQUOCBAO) -> Path:
    """bicep curl and lunge rows (or `files`) as a BlazePose-33 dataset folder of CLIP_ROWS-row clips (see the
    docstring), a new clip every `stride` rows (less than CLIP_ROWS: overlapping clips, a big project)."""
    import pandas as pd

    from curation.landmarks import INDEX

    rows, arrays = [], {}
    for exercise, names in files.items():
        for name in names:
            table = pd.read_csv(SHARED / "keypoints/ngoquocbao" / name)
            points = sorted({c.rsplit("_", 1)[0] for c in table.columns if c != "label"})
            full = np.full((len(table), 33, 4), np.nan, dtype=np.float32)
            for point in points:
                for k, axis in enumerate("xyzv"):
                    full[:, INDEX[point], k] = table[f"{point}_{axis}"].to_numpy(dtype=np.float32)
            label = table["label"].astype(str).to_numpy()
            run_starts = np.flatnonzero(np.r_[True, label[1:] != label[:-1]])
            for run, (a, b) in enumerate(zip(run_starts, np.r_[run_starts[1:], len(label)])):
                for part, start in enumerate(range(a, b - CLIP_ROWS + 1, stride)):
                    clip_id = f"{exercise}_{Path(name).stem}_{run:03d}_{part:04d}".replace(".", "-")
                    arrays[clip_id] = full[start:start + CLIP_ROWS]
                    rows.append({"clip_id": clip_id, "exercise": exercise,
                                 "label": "correct" if label[a] == "C" else "incorrect", "fps": "30",
                                 "group": f"{exercise}-{Path(name).stem}-run{run}"})
    return write_folder(folder, rows, arrays)


def datasets(tmp: Path, quick: bool) -> list[tuple[str, object, int]]:
    """(name, project, step) of each dataset whose files are present; step = clips labelled per round (about
    20 rounds over the pool). Quick: pose_trainer grouped per clip only."""
    from curation.sample import make_sample

    out = []
    if (SHARED / "keypoints/pose_trainer").is_dir():
        if not quick:
            out.append(("pose_trainer (groups=setup)",
                        project_from(pose_trainer_folder(tmp / "pt-f"), tmp / "pt", "openpose18"), 5))
        out.append(("pose_trainer (groups=clip)",
                    project_from(pose_trainer_folder(tmp / "ptc-f", grouping="clip"), tmp / "ptc", "openpose18"), 5))
    if quick:
        return out
    if (SHARED / "keypoints/ngoquocbao").is_dir():
        out.append(("ngoquocbao bicep+lunge (groups=run)", project_from(ngoquocbao_folder(tmp / "nq-f"), tmp / "nq"),
                    10))
        out.append(("ngoquocbao +plank (groups=run)", project_from(
            ngoquocbao_folder(tmp / "nqp-f", files={**NGOQUOCBAO, **NGOQUOCBAO_PLANK}), tmp / "nqp"), 10))
    # The synthetic sample (curation.sample: stick figures with known faults, 12 athletes = groups), 100 clips
    # per class and exercise, a third unlabelled: 402 labelled clips. Synthetic, but a pool 4x pose_trainer's.
    out.append(("synthetic sample (groups=athlete)",
                project_from(make_sample(tmp / "sample-f", clips_per_class=SAMPLE_CLIPS), tmp / "sample"), 10))
    return out


# ---------------------------------------------------------------------------------------------- (a) saving


def compare(project, strategy: str, seeds: int, splits: int, step: int, seed_size: int, **flags) -> dict:
    """One simulate() of `strategy` (and random order) over `splits` grouped test parts: the figures of (a)."""
    from model.simulate import RANDOM, SimulateOptions, simulate

    result = simulate(project, SimulateOptions(strategy=strategy, seeds=seeds, splits=splits, step=step,
                                               seed_size=seed_size, **flags))
    return {"strategy": strategy, "full_f1": result["full_f1"], "pool": result["n_pool"],
            "auc_mean": result["auc_mean"][strategy], "auc_sd": result["auc_sd"][strategy],
            "random_mean": result["auc_mean"][RANDOM], "random_sd": result["auc_sd"][RANDOM],
            "diff_mean": result["auc_diff_mean"][strategy], "diff_sd": result["auc_diff_sd"][strategy],
            "diff_each": [s["auc"][strategy] - s["auc"][RANDOM] for s in result["splits"]],
            "to_95": result["labels_to_95"][strategy], "random_to_95": result["labels_to_95"][RANDOM],
            "seconds": result["seconds"]}


# ---------------------------------------------------------------------------------------------- (b) speed


def speed(n: int = 10_000, d: int = 500, labelled: int = 2_000, k: int = 10) -> list[dict]:
    """Seconds of one select() per strategy on n synthetic clips (d dimensions, `labelled` labelled ones)."""
    from model.active import STRATEGIES, Pool, select

    rng = np.random.default_rng(0)
    ids = [f"clip{i}" for i in range(n)]
    emb = rng.normal(size=(n, d))
    done = rng.normal(size=(labelled, d))
    p = rng.random(n)
    signals = {"committee_sd": rng.random(n) * 0.3, "committee_mi": rng.random(n) * 0.3,
               "window_spread": rng.random(n)}
    rows = []
    for strategy in (*STRATEGIES, "cold start"):
        pool = (Pool(ids, emb, labelled_embeddings=done) if strategy == "cold start" else
                Pool(ids, emb, p, labelled_embeddings=done, **signals))
        start = time.perf_counter()
        select(pool, k, "entropy" if strategy == "cold start" else strategy)
        rows.append({"strategy": strategy, "seconds": time.perf_counter() - start})
    return rows


# ---------------------------------------------------------------------------------------------- (c) simulation speed

BIG_LABELLED = 7_000  # labelled clips of the speed project
BAR_SIMULATION = 300.0  # the issue: 3 splits of a 7,000-clip project in under 5 minutes


def simulation_speed(tmp: Path, labelled: int = BIG_LABELLED) -> dict:
    """Wall time of the default simulation (3 splits) of a synthetic sample project with `labelled` labelled clips,
    with the time to read the project and compute every clip's features once."""
    from curation.sample import UNLABELLED_SHARE, make_sample
    from model.simulate import SimulateOptions, simulate

    per_class = int(np.ceil(labelled / (6 * (1 - UNLABELLED_SHARE))))  # 3 exercises x 2 classes, a third unlabelled
    start = time.perf_counter()
    project = project_from(make_sample(tmp / "big-f", clips_per_class=per_class), tmp / "big")
    made = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    result = simulate(project, SimulateOptions(splits=3))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"clips": result["n_clips"], "pool": result["n_pool"], "rounds": len(result["splits"][0]["curves"][
        result["strategy"]]), "seconds": seconds, "cpu_seconds": cpu, "ratio": seconds / BAR_SIMULATION,
        "make_seconds": made, "auc_diff_mean": result["auc_diff_mean"][result["strategy"]]}


# ---------------------------------------------------------------------------------------------- report


def _fmt(value, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="pose_trainer per clip, 2 seeds, 2 splits, the default strategy only, no 7,000-clip run")
    parser.add_argument("--seeds", type=int, help="seeds per split (default 10, quick 2)")
    parser.add_argument("--splits", type=int, help="grouped test parts per dataset (default 5, quick 2)")
    parser.add_argument("--step", type=int, help="clips labelled per round at least (default: per dataset, 5 or 10)")
    parser.add_argument("--seed-size", type=int, default=10)
    parser.add_argument("--strategies", help="comma-separated (default: the default strategy and mixed)")
    parser.add_argument("--no-speed", action="store_true", help="skip (c), the 7,000-clip simulation")
    args = parser.parse_args(argv)
    from model.active import DEFAULT_STRATEGY

    seeds = args.seeds or (2 if args.quick else 10)
    splits = args.splits or (2 if args.quick else 5)
    strategies = (args.strategies.split(",") if args.strategies else
                  [DEFAULT_STRATEGY] if args.quick else list(dict.fromkeys([DEFAULT_STRATEGY, "mixed"])))
    result: dict = {"default_strategy": DEFAULT_STRATEGY, "saving": {}}
    rows = speed()
    result["speed"] = rows
    print(f"(b) select() of 10 among 10,000 synthetic clips, 500-dimensional embeddings, 2,000 labelled "
          f"(bar: {BAR_SECONDS:.0f} s to score 10,000 clips):")
    for r in rows:
        print(f"  {r['strategy']:<18} {r['seconds']:.3f} s ({r['seconds'] / BAR_SECONDS:.3f} of the bar)")
    with tempfile.TemporaryDirectory() as tmp:
        found = datasets(Path(tmp), args.quick)
        if not found:
            print(f"\n(a) skipped: no real keypoints at {SHARED}")
        print(f"\n(a) simulate, baseline, seed set {args.seed_size}, growth 1.5, {splits} grouped test splits x "
              f"{seeds} seeds: area under the learning curve, mean +/- sd over splits; strategy - random paired by split")
        print(f"  {'dataset':<36} {'pool':>5} {'full F1':>7}  {'strategy':<9} {'AUC':>13} {'random':>13} "
              f"{'difference':>15} {'to 95%':>7} {'random':>6}")
        for name, project, step in found:
            table = [compare(project, s, seeds, splits, args.step or step, args.seed_size) for s in strategies]
            result["saving"][name] = table
            for r in table:
                print(f"  {name:<36} {r['pool']:>5} {r['full_f1']:>7.3f}  {r['strategy']:<9} "
                      f"{r['auc_mean']:.3f} ± {r['auc_sd']:.3f} {r['random_mean']:.3f} ± {r['random_sd']:.3f} "
                      f"{r['diff_mean']:+.3f} ± {r['diff_sd']:.3f} {_fmt(r['to_95'], 'd'):>7} "
                      f"{_fmt(r['random_to_95'], 'd'):>6}", flush=True)
        if not (args.quick or args.no_speed):
            big = simulation_speed(Path(tmp))
            result["simulation_speed"] = big
            print(f"\n(c) default simulation, 3 splits x 3 seeds, {big['clips']} labelled synthetic clips (pool "
                  f"{big['pool']}, {big['rounds']} rounds per curve): {big['seconds']:.0f} s, "
                  f"{big['ratio']:.2f} of the {BAR_SIMULATION:.0f} s bar; {big['cpu_seconds']:.0f} s of CPU (one thread): with "
                  f"other work on the cores the wall time is longer than the CPU time (making the project: "
                  f"{big['make_seconds']:.0f} s)")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
