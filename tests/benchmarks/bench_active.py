"""Benchmark: labels saved by active learning against random order, and the speed of select().

(a) Label saving: model.simulate (the default baseline model), each strategy against random
    order over seeds, on several fixed grouped test parts (split seeds; the figures are their mean). Per
    strategy: labels to reach 95 % of the full-data macro-F1, the normalised area under the learning curve,
    and the saving 1 - labels_strategy / labels_random (the issue's goal: >= 30 % for the default strategy).
    - pose_trainer (OpenPose-18, 112 clips, 4 exercises, about 2 people): grouped by recording setup
      (bench_train's honest grouping, 19 groups) and, for contrast, each clip its own group (clips of one
      recording on both sides of the test split: optimistic absolute F1, but the same leak for every strategy).
    - ngoquocbao bicep curl + lunge (MediaPipe rows labelled per frame by key-press): each run of same-label
      rows of a file is cut into clips of CLIP_ROWS rows (a shorter tail is dropped); a clip's group is its
      file and run (a run is one contiguous labelled stretch of a recording). No person ids: runs of one video
      may sit on both sides of the split, so read it as within-population labelling efficiency.
    - the synthetic sample (curation.sample, 3 exercises, 12 athletes as groups), SAMPLE_CLIPS per class and
      exercise: a pool four times pose_trainer's, with faults the model can learn.
    Then the default strategy without its diversity step and without class balancing (ablation).
(b) Speed: select() over 10,000 synthetic clips with 500-dimensional embeddings (the bar: scoring 10,000 clips
    for suggestions in at most 3 s), each strategy and the cold start.

Run as `python tests/benchmarks/bench_active.py [--quick]`; `main(argv)` returns the figures as a dict.
"""

from __future__ import annotations

import argparse
import os
import statistics
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
GOAL = 0.30  # the issue: the default strategy reaches 95 % of full-data F1 with >= 30 % fewer labels
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
    # The synthetic sample (curation.sample: stick figures with known faults, 12 athletes = groups), 100 clips
    # per class and exercise, a third unlabelled: 402 labelled clips. Synthetic, but a pool 4x pose_trainer's.
    out.append(("synthetic sample (groups=athlete)",
                project_from(make_sample(tmp / "sample-f", clips_per_class=SAMPLE_CLIPS), tmp / "sample"), 10))
    return out


# ---------------------------------------------------------------------------------------------- (a) saving


def saving(project, strategies: list[str], seeds: int, split_seeds: list[int], step: int, seed_size: int,
           **flags) -> tuple[float, list[dict]]:
    """Full-data macro-F1 and one row per strategy (random last): labels to 95 % per split and their mean,
    AUC (mean over splits), and the saving against random on the same test part (mean over splits)."""
    from model.simulate import RANDOM, SimulateOptions, simulate

    if not any(s != RANDOM for s in strategies):
        raise ValueError("give at least one strategy besides random: random is always simulated beside it")
    entries: dict[str, dict[str, list]] = {}
    fulls = []
    for split in split_seeds:
        for n, strategy in enumerate(s for s in strategies if s != RANDOM):
            options = SimulateOptions(strategy=strategy, seeds=seeds, step=step, seed_size=seed_size,
                                      split_seed=split, **flags)
            result = simulate(project, options)
            # Random order is the same in every simulation of one split (same seed sets, same draws).
            for name in (strategy, RANDOM) if n == 0 else (strategy,):
                entry = entries.setdefault(name, {"to_95_each": [], "auc_each": [], "pool": []})
                entry["to_95_each"].append(result["labels_to_95"][name])
                entry["auc_each"].append(result["auc"][name])
                entry["pool"].append(result["n_pool"])
        fulls.append(result["full_f1"])
    rows = []
    for name in [*(s for s in entries if s != RANDOM), RANDOM]:
        entry = entries[name]
        pairs = [(a, b) for a, b in zip(entry["to_95_each"], entries[RANDOM]["to_95_each"]) if a and b]
        complete = len(pairs) == len(split_seeds)  # a split where either never reached 95 % has no saving
        rows.append({"strategy": name, **entry, "auc": statistics.mean(entry["auc_each"]),
                     "to_95": statistics.mean(a for a, _ in pairs) if complete else None,
                     "saving": statistics.mean(1 - a / b for a, b in pairs) if complete else None})
    return statistics.mean(fulls), rows


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


# ---------------------------------------------------------------------------------------------- report


def _fmt(value, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="pose_trainer per clip, 2 seeds, 1 split, default only")
    parser.add_argument("--seeds", type=int, help="seeds per simulation (default 5, quick 2)")
    parser.add_argument("--splits", type=int, help="test parts (split seeds) per dataset (default 3, quick 1)")
    parser.add_argument("--step", type=int, help="clips labelled per round (default: per dataset, 5 or 10)")
    parser.add_argument("--seed-size", type=int, default=10)
    parser.add_argument("--no-ablation", action="store_true", help="skip the default without diversity / balance")
    args = parser.parse_args(argv)
    from model.active import DEFAULT_STRATEGY, STRATEGIES
    from model.simulate import RANDOM

    seeds = args.seeds or (2 if args.quick else 5)
    splits = list(range(args.splits or (1 if args.quick else 3)))
    strategies = [DEFAULT_STRATEGY] if args.quick else [s for s in STRATEGIES if s != RANDOM]
    result: dict = {"default_strategy": DEFAULT_STRATEGY, "saving": {}}
    rows = speed()
    result["speed"] = rows
    print(f"(b) select() of 10 among 10,000 synthetic clips, 500-dimensional embeddings, 2,000 labelled "
          f"(bar: {BAR_SECONDS:.0f} s to score 10,000 clips):")
    for r in rows:
        print(f"  {r['strategy']:<18} {r['seconds']:.3f} s ({r['seconds'] / BAR_SECONDS:.3f} of the bar)")
    variants = [("", {})]
    if not (args.quick or args.no_ablation):
        variants += [(" without diversity", {"diversity": False}), (" without balancing", {"balance": False})]
    with tempfile.TemporaryDirectory() as tmp:
        found = datasets(Path(tmp), args.quick)
        if not found:
            print(f"\n(a) skipped: no real keypoints at {SHARED}")
        print(f"\n(a) simulate, baseline model, seed set {args.seed_size}, {seeds} seeds, split seeds {splits}: labels "
              f"to 95 % of the full-data macro-F1 (mean over splits), AUC, saving against random on the same splits")
        for name, project, step in found:
            step = args.step or step
            table = []
            for suffix, flags in variants:
                names = strategies if not suffix else [DEFAULT_STRATEGY]
                full_f1, rows = saving(project, [*names, RANDOM], seeds, splits, step, args.seed_size, **flags)
                table += [{**r, "strategy": r["strategy"] + suffix} for r in rows
                          if not suffix or r["strategy"] != RANDOM]
            result["saving"][name] = {"full_f1": full_f1, "step": step, "rows": table}
            print(f"\n{name}: full-data macro-F1 {full_f1:.3f}, pool {table[0]['pool']} clips, step {step}")
            print(f"  {'strategy':<30} {'labels to 95%':>13} {'each split':>14} {'AUC':>6} {'saving':>7}")
            for r in table:
                each = ",".join("-" if v is None else str(v) for v in r["to_95_each"])
                print(f"  {r['strategy']:<30} {_fmt(r['to_95'], '.1f'):>13} {each:>14} {r['auc']:>6.3f} "
                      f"{_fmt(r['saving'], '+.0%'):>7}", flush=True)
            default = next(r for r in table if r["strategy"] == DEFAULT_STRATEGY)
            verdict = "meets" if default["saving"] is not None and default["saving"] >= GOAL else "misses"
            print(f"  default ({DEFAULT_STRATEGY}) {verdict} the goal of {GOAL:.0%} fewer labels than random")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
