"""Benchmark: honest quality of every model on every real labelled set, against a random forest on joint angles.

Repeated stratified grouped K-fold (K = 5, lowered when a set has too few groups per class; one split per
seed, seeds 0-4 by default) on each real labelled set of ../shared/data:
- pose_trainer (OpenPose-18, 112 clips, 4 exercises): groups = recording setup (bench_train's grouping);
- kaiakol_squat (17 BlazePose points, 22 squat clips, 4 incorrect): groups = person/scene judged by eye;
- ngoquocbao bicep curl + lunge (MediaPipe rows labelled per frame, cut into 30-row clips; bench_active's
  grouping: one group per labelled stretch of a recording).
Each model is fitted exactly as a run fits a fold (model.train.fit_clips: scaler and, for auto, the inner
grouped choice of family and calibration, all inside the training part) and predicts the fold's test clips.
The reference is a plain random forest (REFERENCE_TREES trees, balanced class weights, seeded by the split)
on mean, sd, min, max and range of the joint-angle columns of clip_features, on the same splits.

Printed per set and model: out-of-fold macro-F1, mean and sd over the split seeds; ECE (mean); the paired
difference in macro-F1 against the reference (same split), mean and sd; and the bar for the default model:
better than the reference on average over the sets, and on no set worse than it by more than the
seed-to-seed sd of the paired difference. Only F1 and ECE are compared: they do not depend on machine load.

Run as `python tests/benchmarks/bench_quality.py [--quick] [--seeds N] [--models a,b]`; `main(argv)` returns
the figures as a dict.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.benchmarks.bench_active import ngoquocbao_folder  # noqa: E402
from tests.benchmarks.bench_train import SHARED, kaiakol_folder, pose_trainer_folder, project_from  # noqa: E402

REFERENCE = "forest on joint angles"
REFERENCE_TREES = 300
FOLDS = 5
MODELS = "auto,baseline,extra_trees,forest,minirocket"  # the networks take minutes per split: bench_train (b)


def datasets(tmp: Path, quick: bool) -> list[tuple[str, object]]:
    """(name, project) of each real labelled set present; quick: pose_trainer and kaiakol only."""
    out = []
    keypoints = SHARED / "keypoints"
    if (keypoints / "pose_trainer").is_dir():
        out.append(("pose_trainer", project_from(pose_trainer_folder(tmp / "pt-f"), tmp / "pt", "openpose18")))
    if (keypoints / "kaiakol_squat").is_dir():
        out.append(("kaiakol_squat", project_from(kaiakol_folder(tmp / "kk-f"), tmp / "kk")))
    if (keypoints / "ngoquocbao").is_dir() and not quick:
        out.append(("ngoquocbao", project_from(ngoquocbao_folder(tmp / "nq-f"), tmp / "nq")))
    return out


def angle_statistics(features: np.ndarray) -> np.ndarray:
    """Mean, sd, min, max and range over the frames of each joint-angle column (NaN ignored, unseen -> 0)."""
    from model.features import feature_names

    columns = [i for i, n in enumerate(feature_names()) if n.startswith("angle_")]
    a = np.asarray(features, dtype=np.float64)[:, columns]
    seen = np.isfinite(a).any(axis=0)
    filled = np.where(seen, a, 0.0)  # a column never seen: 0 throughout
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanmin(filled, axis=0), np.nanmax(filled, axis=0)
        stats = np.concatenate([np.nanmean(filled, axis=0), np.nanstd(filled, axis=0), lo, hi, hi - lo])
    return np.nan_to_num(stats)


def reference_p(design: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.ensemble import RandomForestClassifier

    forest = RandomForestClassifier(n_estimators=REFERENCE_TREES, class_weight="balanced", random_state=seed,
                                    n_jobs=1)
    forest.fit(design[train], y[train])
    return forest.predict_proba(design[test])[:, 1]


def evaluate_set(name: str, project, models: list[str], seeds: list[int]) -> dict:
    """Per model and split seed: out-of-fold macro-F1 and ECE, and what auto picked."""
    from model.features import load_clipset
    from model.metrics import evaluate
    from model.splits import grouped_kfold
    from model.train import RunConfig, fit_clips

    clips = load_clipset(project)
    features = [clips.features(i) for i in range(len(clips))]
    design = np.stack([angle_statistics(f) for f in features])
    exercises = sorted(set(clips.exercises))
    y = clips.labels
    out: dict = {"n_clips": len(clips), "n_groups": len(set(clips.groups)), "n_incorrect": int(y.sum()),
                 "models": {m: {"macro_f1": [], "ece": [], "seconds": [], "picked": []} for m in [REFERENCE, *models]}}
    for seed in seeds:
        splits = grouped_kfold(y, clips.groups, FOLDS, seed)
        out["folds"] = len(splits)
        for model in [REFERENCE, *models]:
            start = time.perf_counter()
            p = np.full(len(y), np.nan)
            for train, test in splits:
                if model == REFERENCE:
                    p[test] = reference_p(design, y, train, test, seed)
                    continue
                fitted, summary = fit_clips(clips, features, train, RunConfig(model=model, seed=seed), exercises)
                p[test] = fitted.predict([features[i] for i in test], [clips.exercises[i] for i in test])
                if "auto" in summary:
                    choice = summary["auto"]
                    out["models"][model]["picked"].append(f"{choice['picked']}+{choice['calibration']}")
            metrics = evaluate(y, p, clips.exercises)
            entry = out["models"][model]
            entry["macro_f1"].append(metrics["macro_f1"])
            entry["ece"].append(metrics["ece"])
            entry["seconds"].append(time.perf_counter() - start)
            print(f"  {name} seed {seed} {model}: macro-F1 {metrics['macro_f1']:.3f}, ECE {metrics['ece']:.3f}, "
                  f"{entry['seconds'][-1]:.1f} s", flush=True)
    reference = out["models"][REFERENCE]["macro_f1"]
    for entry in out["models"].values():
        diff = [a - b for a, b in zip(entry["macro_f1"], reference)]
        entry.update({"f1_mean": statistics.mean(entry["macro_f1"]), "f1_sd": _sd(entry["macro_f1"]),
                      "ece_mean": statistics.mean(entry["ece"]), "diff_mean": statistics.mean(diff),
                      "diff_sd": _sd(diff), "seconds_mean": statistics.mean(entry["seconds"])})
    return out


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def report(results: dict[str, dict], default: str) -> dict:
    """Print the per-set tables and the bar; returns the bar's figures."""
    for name, result in results.items():
        print(f"\n{name}: {result['n_clips']} clips ({result['n_incorrect']} incorrect), {result['n_groups']} groups, "
              f"grouped {result['folds']}-fold out-of-fold")
        print(f"{'model':<24}{'macro-F1':>9}{'sd':>7}{'ECE':>7}{'diff vs forest':>16}{'sd':>7}{'s/split':>9}")
        for model, e in result["models"].items():
            print(f"{model:<24}{e['f1_mean']:>9.3f}{e['f1_sd']:>7.3f}{e['ece_mean']:>7.3f}{e['diff_mean']:>+16.3f}"
                  f"{e['diff_sd']:>7.3f}{e['seconds_mean']:>9.1f}")
        picked = result["models"].get(default, {}).get("picked")
        if picked:
            counts = {p: picked.count(p) for p in sorted(set(picked))}
            print(f"  {default} picked (per outer fold): " + ", ".join(f"{k} x{v}" for k, v in counts.items()))
    if not results or not all(default in r["models"] for r in results.values()):
        return {}
    diffs = {name: r["models"][default] for name, r in results.items()}
    average = statistics.mean(e["diff_mean"] for e in diffs.values())
    worst = {name: e["diff_mean"] + e["diff_sd"] for name, e in diffs.items()}
    print(f"\nbar: default ({default}) minus {REFERENCE}, mean over the {len(diffs)} sets: {average:+.3f} "
          f"({'beats' if average > 0 else 'does not beat'} it)")
    for name, e in diffs.items():
        ok = e["diff_mean"] >= -e["diff_sd"]
        print(f"  {name}: {e['diff_mean']:+.3f} (sd {e['diff_sd']:.3f}): "
              f"{'within' if ok else 'OUTSIDE'} one seed-to-seed sd")
    return {"average_diff": average, "per_set": {n: e["diff_mean"] for n, e in diffs.items()}, "worst": worst}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 seeds, pose_trainer and kaiakol only, auto and forest")
    parser.add_argument("--seeds", type=int, help="split seeds (default 5, quick 2)")
    parser.add_argument("--models", help=f"comma-separated (default {MODELS})")
    args = parser.parse_args(argv)
    from model.train import DEFAULT_MODEL

    seeds = list(range(args.seeds or (2 if args.quick else 5)))
    models = (args.models or ("auto,forest" if args.quick else MODELS)).split(",")
    if not (SHARED / "keypoints").is_dir():
        print(f"quality benchmark skipped: no real data at {SHARED}")
        return {}
    print(f"quality: repeated grouped {FOLDS}-fold, split seeds {seeds}, models {', '.join(models)} "
          f"(load average {os.getloadavg()[0]:.1f})", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, project in datasets(Path(tmp), args.quick):
            results[name] = evaluate_set(name, project, models, seeds)
    return {"results": results, "bar": report(results, DEFAULT_MODEL)}


if __name__ == "__main__":
    main(sys.argv[1:])
