"""Benchmark: training time and grouped out-of-fold quality of each model (bar: default model on 1,000 clips <= 60 s).

(a) Speed: each model fitted on 1,000 labelled synthetic clips (curation.sample, 3 exercises; no augmented
    copies) exactly as a run's final model is (model.train.fit_clips: scaler, validation part from the
    training groups, early stopping), then scoring every clip; plus one whole default run (5 folds + final
    model + predictions + saving). The per-clip scores a run saves besides p (model.train.score_clips:
    committee BALD, MC-dropout samples for mc_mi, embeddings; window spread comes with p) are timed on
    10,000 clips (the sample's features repeated) and within the whole run. Timings depend on what else
    runs: torch's threads slow down many times over when other processes compete for the cores, so the
    load average is printed with them.
(b) Quality: macro-F1 of stratified grouped 5-fold out-of-fold predictions (model.train.train_run, the app's
    own path) of each model, over seeds, on real keypoints:
    - pose_trainer (OpenPose-18, 112 clips, 4 exercises, about 2 people, no person ids). Groups = recording
      setup: per exercise, clips whose camera framing (median neck position, torso length in pixels, frame
      bottom) lies within 0.15 torso lengths of another's are chained into one group (single linkage). Runs of
      consecutive files share a setup, i.e. were cut from one recording; 19 groups, most of them holding both
      classes. The file index alone (each clip its own group) leaks the recording across folds: shown once
      for contrast.
    - kaiakol_squat (17 BlazePose points, 22 squat clips, 18 correct / 4 incorrect). Groups = the person /
      scene groups judged by eye in ../shared/data/videos/kaiakol/squat_groups_visual.csv (7 groups + the
      incorrect clip without video on its own): the incorrect clips come from 2 groups, so K drops to 2.
    Networks with and without augmented copies (model.features.augment); shared model (exercise as an input)
    against one model per exercise, on pose_trainer; the same models under the leaky per-clip grouping.
(c) Input: whole clips against windows (TrainConfig.input; 20 frames, 70 % overlap, confidence-weighted vote)
    for each model with its default augmentation, same grouped 5-fold out-of-fold macro-F1 on both datasets:
    the figures behind model.registry.INPUT_BY_MODEL.

Run as `python tests/benchmarks/bench_train.py [--quick]`; `main(argv)` returns the figures as a dict.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.test_dataset import write_folder  # noqa: E402  (one writer of dataset folders for tests and benches)
SHARED = Path(os.environ.get("FORMCHECK_SHARED_DATA", ROOT.parent / "shared" / "data"))
BAR_SECONDS = 60.0  # design.md 7: the default model on 1,000 clips
SCORED = 10_000  # design.md 7: clips scored for suggestions
SETUP_TOLERANCE = 0.15  # torso lengths: two framings closer than this are one recording setup
AUGMENTED = 2  # augmented copies per training clip in the "+ augmented" variants


# ---------------------------------------------------------------------------------------------- datasets


def _framing(raw: np.ndarray) -> np.ndarray:
    """(neck x, neck y, torso length, frame bottom) of an OpenPose-18 clip in pixels: where the camera put the
    person. Keypoints at (0, 0, 0) are undetected."""
    x, y, c = raw[..., 0], raw[..., 1], raw[..., 2]

    def median(values: np.ndarray, joint: int) -> float:
        seen = c[:, joint] > 0
        return float(np.median(values[seen, joint])) if seen.any() else np.nan

    neck_y = median(y, 1)
    hip_y = np.nanmean([median(y, 8), median(y, 11)])
    return np.array([median(x, 1), neck_y, hip_y - neck_y, float(y.max())])


def recording_setups(arrays: dict[str, np.ndarray], exercise_of: dict[str, str]) -> dict[str, str]:
    """clip id -> recording-setup group (see the module docstring), per exercise, by single linkage."""
    from scipy.cluster.hierarchy import fcluster, linkage

    out = {}
    for exercise in sorted(set(exercise_of.values())):
        ids = sorted(c for c in arrays if exercise_of[c] == exercise)
        framing = np.stack([_framing(arrays[c]) for c in ids])
        scale = np.nanmedian(framing[:, 2])
        labels = fcluster(linkage(np.nan_to_num(framing / scale), "single"), t=SETUP_TOLERANCE, criterion="distance")
        out.update({c: f"{exercise}-setup-{k}" for c, k in zip(ids, labels)})
    return out


def pose_trainer_folder(folder: Path, grouping: str = "setup", exercises: set[str] | None = None) -> Path:
    """pose_trainer as an openpose18 dataset folder (frame size unknown: the largest coordinate of each clip is
    given as width and height, the same scale on both axes keeps angles true)."""
    rows, arrays, exercise_of = [], {}, {}
    for path in sorted((SHARED / "keypoints/pose_trainer/poses_compressed").glob("*/*.npy")):
        if exercises is not None and path.parent.name not in exercises:
            continue
        clip_id = f"{path.parent.name}_{path.stem}"
        arrays[clip_id] = np.load(path)
        exercise_of[clip_id] = path.parent.name
    groups = recording_setups(arrays, exercise_of) if grouping == "setup" else {c: "" for c in arrays}
    for clip_id, raw in arrays.items():
        size = float(np.ceil(raw[:, :, :2].max()))
        rows.append({"clip_id": clip_id, "exercise": exercise_of[clip_id],
                     "label": "correct" if "good" in clip_id.split("_", 1)[1] else "incorrect", "fps": "30",
                     "group": groups[clip_id], "width": size, "height": size})
    return write_folder(folder, rows, arrays)


def kaiakol_folder(folder: Path) -> Path:
    """The 22 kaiakol squat clips as a BlazePose-33 folder, grouped by the person/scene groups judged by eye."""
    from tests.test_dataset import kaiakol_arrays

    with (SHARED / "videos/kaiakol/squat_groups_visual.csv").open(newline="") as fh:
        seen = {r["clip"]: r["group"] for r in csv.DictReader(fh)}
    rows, arrays = [], {}
    for stem, (label, full) in kaiakol_arrays(SHARED).items():
        arrays[stem] = full
        group = seen.get(stem, "")
        rows.append({"clip_id": stem, "exercise": "squat", "label": label, "fps": "30",
                     "group": stem if group.startswith("unknown") else group})
    return write_folder(folder, rows, arrays)


def project_from(folder: Path, target: Path, layout: str = "bp33"):
    from curation.dataset import import_folder
    from curation.project import Project

    project = Project.open(target)
    import_folder(project, folder, layout)
    return project


# ---------------------------------------------------------------------------------------------- (a) speed


def speed(tmp: Path, clips_per_class: int, models: list[str], whole_run: bool) -> dict:
    """Fit time of each model on the labelled synthetic clips, scoring time, and one whole default run."""
    import torch

    from curation.sample import make_sample
    from model.features import UNLABELLED, load_clipset
    from model.train import DEFAULT_MODEL, RunConfig, fit_clips, score_clips, train_run

    project = project_from(make_sample(tmp / "speed-folder", clips_per_class=clips_per_class), tmp / "speed")
    every = load_clipset(project, labelled_only=False)
    start = time.perf_counter()
    all_features = [every.features(i) for i in range(len(every))]
    feature_ms = (time.perf_counter() - start) * 1000 / len(every)
    labelled = np.flatnonzero(every.labels != UNLABELLED)
    clips = every.subset(labelled)
    features = [all_features[i] for i in labelled]
    exercises = sorted(set(clips.exercises))
    # Scoring cost depends on the clips' lengths, not their content: the sample's clips repeated.
    many = [all_features[i % len(every)] for i in range(SCORED)]
    many_exercises = [every.exercises[i % len(every)] for i in range(SCORED)]
    rows = []
    for name in models:
        start = time.perf_counter()
        config = RunConfig(model=name, augment=0)  # the bar is about 1,000 clips: no augmented copies
        fitted, summary = fit_clips(clips, features, np.arange(len(clips)), config, exercises)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        fitted.predict(all_features, every.exercises)
        predict_ms = (time.perf_counter() - start) * 1000 / len(every)
        start = time.perf_counter()
        p = fitted.predict(many, many_exercises)
        p_s = time.perf_counter() - start
        scored = score_clips(fitted, [p, p], many, many_exercises).seconds
        extra = scored["predict_embed"] - p_s + scored["committee"] + scored["mc_samples"]
        rows.append({"model": name, "input": fitted.model.config.input, "clips": len(clips), "fit_s": fit_s,
                     "epochs": summary["epochs"], "best_epoch": summary["best_epoch"],
                     "s_per_epoch": fit_s / summary["epochs"], "predict_ms_per_clip": predict_ms,
                     "score_10k_s": predict_ms * 10, "predict_10k_s": p_s,
                     "predict_embed_10k_s": scored["predict_embed"], "mc_10k_s": scored["mc_samples"],
                     "extra_10k_s": extra, "extra_ratio": extra / p_s})
    out = {"clips": len(clips), "all_clips": len(every), "feature_ms_per_clip": feature_ms, "models": rows,
           "torch_threads": torch.get_num_threads(), "load_average": os.getloadavg()[0]}
    if whole_run:
        metrics = train_run(project, RunConfig())
        out["whole_run"] = {"model": DEFAULT_MODEL, "input": metrics["input"], "split": metrics["split"],
                            "train_seconds": metrics["train_seconds"], "macro_f1": metrics["macro_f1"],
                            "scoring_seconds": metrics["scoring_seconds"], "all_clips": len(every)}
    return out


# ---------------------------------------------------------------------------------------------- (b) quality


def _pooled(runs_by_exercise: list[tuple]) -> float:
    """Macro-F1 of the out-of-fold predictions of several per-exercise runs, pooled."""
    from model import runs
    from model.metrics import evaluate

    frames = [runs.read_oof(project, metrics["run_id"]) for project, metrics in runs_by_exercise]
    y = np.concatenate([f.y.to_numpy() for f in frames])
    p = np.concatenate([f.p_incorrect.to_numpy() for f in frames])
    ex = np.concatenate([f.exercise.to_numpy() for f in frames])
    groups = np.concatenate([f.group.to_numpy() for f in frames])
    return evaluate(y, p, ex, groups=groups)


def _variant(project, name: str, seeds: list[int], **config) -> dict:
    from model.train import RunConfig, train_run

    results = [train_run(project, RunConfig(seed=s, **config)) for s in seeds]
    return _summarise(name, results)


def _summarise(name: str, results: list[dict]) -> dict:
    f1 = [r["macro_f1"] for r in results]
    per_ex = defaultdict(list)
    for r in results:
        for ex, entry in r["per_exercise"].items():
            per_ex[ex].append(entry["macro_f1"])
    return {
        "variant": name, "split": results[0]["split"], "n_clips": results[0]["n_clips"],
        "n_groups": results[0]["n_groups"], "macro_f1": statistics.mean(f1),
        "macro_f1_sd": statistics.stdev(f1) if len(f1) > 1 else 0.0,
        "balanced_accuracy": statistics.mean(r["balanced_accuracy"] for r in results),
        "per_exercise": {ex: statistics.mean(v) for ex, v in sorted(per_ex.items())},
        "train_seconds": statistics.mean(r.get("train_seconds", 0.0) for r in results),
    }


def quality(tmp: Path, models: list[str], seeds: list[int], augment: bool, per_exercise: bool) -> dict:
    """Grouped 5-fold out-of-fold macro-F1 of each model (mean and sd over seeds) on the real keypoints."""
    out: dict[str, list[dict]] = {"pose_trainer": [], "kaiakol_squat": []}
    pose = project_from(pose_trainer_folder(tmp / "pt-folder"), tmp / "pt", "openpose18")
    for name in models:
        copies = [0] + ([AUGMENTED] if augment else [])
        for n in copies:
            label = name if n == 0 else f"{name} + {n} augmented copies"
            out["pose_trainer"].append(_variant(pose, label, seeds, model=name, augment=n))
            print(f"  pose_trainer {label}: macro-F1 {out['pose_trainer'][-1]['macro_f1']:.3f}", flush=True)
    if per_exercise:
        from model.train import RunConfig, train_run

        exercises = sorted(p.name for p in (SHARED / "keypoints/pose_trainer/poses_compressed").iterdir())
        projects = {ex: project_from(pose_trainer_folder(tmp / f"pt-{ex}-folder", exercises={ex}), tmp / f"pt-{ex}",
                                     "openpose18") for ex in exercises}
        for name in models:
            results = []
            for seed in seeds:
                config = RunConfig(model=name, seed=seed)  # each model's default augmentation
                done = [(projects[ex], train_run(projects[ex], config)) for ex in exercises]
                pooled = _pooled(done)
                pooled["split"] = "per exercise: " + done[0][1]["split"]
                pooled["train_seconds"] = sum(m["train_seconds"] for _, m in done)
                results.append(pooled)
            copies = RunConfig(model=name).copies()
            more = f" + {copies} augmented copies" if copies else ""
            out["pose_trainer"].append(_summarise(f"{name}{more}, one model per exercise", results))
    leaky = project_from(pose_trainer_folder(tmp / "pt-leaky-folder", grouping="clip"), tmp / "pt-leaky", "openpose18")
    for name in models if per_exercise else ["baseline"]:
        out["pose_trainer"].append(_variant(leaky, f"{name}, groups=clip (leaky, for contrast)", seeds, model=name,
                                            augment=0))
    kaiakol = project_from(kaiakol_folder(tmp / "kk-folder"), tmp / "kk")
    for name in models:
        out["kaiakol_squat"].append(_variant(kaiakol, name, seeds, model=name, augment=0))
        if augment and name != "baseline":
            out["kaiakol_squat"].append(_variant(kaiakol, f"{name} + {AUGMENTED} augmented copies", seeds, model=name,
                                                 augment=AUGMENTED))
    return out


# ---------------------------------------------------------------------------------------------- (c) input


def inputs(tmp: Path, models: list[str], seeds: list[int]) -> dict:
    """Whole-clip against windowed input for each model (its default augmentation), on both real datasets."""
    from model.registry import TrainConfig

    out: dict[str, list[dict]] = {}
    datasets = {"pose_trainer": lambda: project_from(pose_trainer_folder(tmp / "in-pt-folder"), tmp / "in-pt",
                                                     "openpose18"),
                "kaiakol_squat": lambda: project_from(kaiakol_folder(tmp / "in-kk-folder"), tmp / "in-kk")}
    for dataset, make in datasets.items():
        project = make()
        out[dataset] = []
        for name in models:
            for mode in ("whole", "windows"):
                row = _variant(project, f"{name}, {mode}", seeds, model=name, train=TrainConfig(input=mode))
                row.update({"model": name, "input": mode})
                out[dataset].append(row)
                print(f"  {dataset} {name} {mode}: macro-F1 {row['macro_f1']:.3f} (sd {row['macro_f1_sd']:.3f}), "
                      f"{row['train_seconds']:.1f} s per run", flush=True)
    return out


# ---------------------------------------------------------------------------------------------- report


NAME_WIDTH = 58


def _table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    head = " ".join(f"{title:>{len(title)}}" if i else f"{title:<{NAME_WIDTH}}" for i, (title, _, _) in
                    enumerate(columns))
    lines = [head]
    for r in rows:
        cells = []
        for i, (title, key, fmt) in enumerate(columns):
            value = r.get(key)
            text = "n/a" if value is None else format(value, fmt)
            cells.append(f"{text:<{NAME_WIDTH}}" if i == 0 else f"{text:>{len(title)}}")
        lines.append(" ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="300 clips, one seed, no augmentation or per-exercise")
    parser.add_argument("--models", default="baseline,bilstm,transformer")
    parser.add_argument("--seeds", type=int, help="seeds per quality figure (default 3, quick 1)")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own, one per core)")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--skip-inputs", action="store_true", help="skip (c), whole clips against windows")
    args = parser.parse_args(argv)
    from model.train import DEFAULT_MODEL

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    models = args.models.split(",")
    seeds = list(range(args.seeds or (1 if args.quick else 3)))
    result: dict = {"default_model": DEFAULT_MODEL}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_speed:
            # 250 per class and exercise, a third left unlabelled: 1,002 labelled of 1,500 clips.
            # The bar is about the default model: timed whatever --models says.
            timed = models if DEFAULT_MODEL in models else [DEFAULT_MODEL, *models]
            fast = speed(Path(tmp), 40 if args.quick else 250, timed, whole_run=True)
            result["speed"] = fast
            print(f"\n(a) speed: fit on {fast['clips']} labelled clips, score {fast['all_clips']} "
                  f"(torch threads {fast['torch_threads']}, load average {fast['load_average']:.1f}; "
                  f"features {fast['feature_ms_per_clip']:.2f} ms per clip, not included)")
            print(_table(fast["models"], [("model", "model", "s"), ("input", "input", "s"), ("fit s", "fit_s", ".1f"),
                                          ("epochs", "epochs", "d"), ("best", "best_epoch", "d"),
                                          ("s/epoch", "s_per_epoch", ".2f"),
                                          ("predict ms/clip", "predict_ms_per_clip", ".3f"),
                                          ("10k clips s", "score_10k_s", ".2f")]))
            print(f"\nscores a run saves besides p, on {SCORED} clips (s): p alone; p + window spread + embeddings "
                  f"(one pass); MC-dropout samples (networks only); the extra over p alone")
            print(_table(fast["models"], [("model", "model", "s"), ("input", "input", "s"),
                                          ("p", "predict_10k_s", ".2f"), ("p + embed", "predict_embed_10k_s", ".2f"),
                                          ("MC samples", "mc_10k_s", ".2f"), ("extra", "extra_10k_s", ".2f"),
                                          ("extra / p", "extra_ratio", ".2f")]))
            default = next((r for r in fast["models"] if r["model"] == DEFAULT_MODEL), None)
            if default is not None:
                print(f"bar: default model ({DEFAULT_MODEL}) fit {default['fit_s']:.1f} s / {BAR_SECONDS:.0f} s = "
                      f"{default['fit_s'] / BAR_SECONDS:.2f} of the bar")
            whole = fast["whole_run"]
            print(f"whole default run ({whole['split']}, + final model, predictions, saving): "
                  f"{whole['train_seconds']:.1f} s")
            parts = whole["scoring_seconds"]
            print(f"  of which scoring its {whole['all_clips']} clips: p + window spread + embeddings "
                  f"{parts['predict_embed']:.2f} s, committee BALD {parts['committee']:.3f} s, MC samples "
                  f"{parts['mc_samples']:.2f} s")
        if not args.skip_quality:
            if not (SHARED / "keypoints").is_dir():
                print(f"\n(b) quality skipped: no real data at {SHARED}")
            else:
                print(f"\n(b) quality: grouped out-of-fold macro-F1, mean (sd) over seeds {seeds}", flush=True)
                good = quality(Path(tmp), models, seeds, augment=not args.quick, per_exercise=not args.quick)
                result["quality"] = good
                for name, rows in good.items():
                    exercises = sorted({e for r in rows for e in r["per_exercise"]})
                    print(f"\n{name}: {rows[0]['n_clips']} clips; {rows[0]['split']}")
                    for r in rows:
                        r.update({f"f1:{e}": r["per_exercise"].get(e) for e in exercises})
                    print(_table(rows, [("variant", "variant", "s"), ("groups", "n_groups", "d"),
                                        ("macro-F1", "macro_f1", ".3f"), ("sd", "macro_f1_sd", ".3f"),
                                        ("bal.acc", "balanced_accuracy", ".3f"),
                                        *[(e[:13], f"f1:{e}", ".3f") for e in exercises],
                                        ("run s", "train_seconds", ".1f")]))
        if not args.skip_inputs and (SHARED / "keypoints").is_dir():
            print(f"\n(c) input: grouped out-of-fold macro-F1, whole clips against windows, mean (sd) over seeds "
                  f"{seeds}", flush=True)
            compared = inputs(Path(tmp), models, seeds)
            result["inputs"] = compared
            for name, rows in compared.items():
                print(f"\n{name}: {rows[0]['n_clips']} clips; {rows[0]['split']}")
                print(_table(rows, [("variant", "variant", "s"), ("macro-F1", "macro_f1", ".3f"),
                                    ("sd", "macro_f1_sd", ".3f"), ("bal.acc", "balanced_accuracy", ".3f"),
                                    ("run s", "train_seconds", ".1f")]))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
