"""Training runs: grouped out-of-fold evaluation, holdout, refusals, progress and cancel, the job and the CLI."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from curation import jobs, store
from curation.dataset import import_folder
from curation.jobs import Cancelled, JobFailed
from curation.project import Project
from curation.sample import make_sample, sample_project
from model import runs
from model.registry import TrainConfig
from model.train import (
    AUTO_MODELS,
    MIN_LABELLED,
    SELECT_BASELINE_C,
    RunConfig,
    TrainingRefused,
    candidates,
    train_job,
    train_run,
)
from tests.conftest import ROOT
from tests.test_dataset import pose_trainer_folder  # noqa: F401  (fixture)

# A network small enough to fit in a second or two: the tests check the plumbing, not the accuracy.
TINY = TrainConfig(epochs=3, hidden=8, heads=2, batch_size=16)
CONTRACT = ("model", "split", "n_clips", "n_groups", "accuracy", "balanced_accuracy", "macro_f1", "f1", "precision",
            "recall", "kappa", "ece", "confusion", "per_exercise", "train_seconds", "predict_ms_per_clip", "run_id")
TIMINGS = ("train_seconds", "predict_ms_per_clip", "scoring_seconds", "run_id")


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def edited_sample(folder: Path, edit) -> Path:
    """The synthetic sample dataset folder with its clips.csv rows passed through edit(rows)."""
    make_sample(folder)
    rows = edit(read_csv(folder / "clips.csv"))
    with (folder / "clips.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


def labelled_ids(project: Project) -> set[str]:
    return {c for c, entry in store.consensus_labels(project).items() if entry["label"]}


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory) -> tuple[Project, dict]:
    """The synthetic sample project (48 labelled of 72 clips, 12 athletes) and one default K-fold run on it."""
    project = Project.open(tmp_path_factory.mktemp("train") / "project")
    sample_project(project)
    return project, train_run(project, RunConfig(model="baseline"))


def test_every_labelled_clip_is_predicted_out_of_fold_exactly_once(sample_run):
    project, metrics = sample_run
    oof = read_csv(project.runs / metrics["run_id"] / runs.OOF)
    ids = [r["clip_id"] for r in oof]
    assert len(ids) == len(set(ids))
    assert set(ids) == labelled_ids(project)
    assert {int(r["fold"]) for r in oof} == set(range(1, 6))
    assert metrics["n_clips"] == len(ids) == 48


def test_no_group_is_on_both_sides_of_any_fold(sample_run):
    project, metrics = sample_run
    oof = read_csv(project.runs / metrics["run_id"] / runs.OOF)
    # Every labelled clip is tested once, so fold k trains on exactly the clips tested in the other folds:
    # a group on both sides of a fold would show up here as a group tested in two folds.
    folds_of_group: dict[str, set[str]] = {}
    for row in oof:
        folds_of_group.setdefault(row["group"], set()).add(row["fold"])
    assert all(len(f) == 1 for f in folds_of_group.values())
    expected_groups = {c["group_name"] for c in store.list_clips(project) if c["id"] in labelled_ids(project)}
    assert set(folds_of_group) == expected_groups and metrics["n_groups"] == 12
    assert metrics["split"] == "grouped 5-fold out-of-fold, groups=group"


def test_metrics_are_those_of_the_saved_out_of_fold_predictions(sample_run):
    project, metrics = sample_run
    oof = read_csv(project.runs / metrics["run_id"] / runs.OOF)
    y = np.array([int(r["y"]) for r in oof])
    pred = np.array([float(r["p_incorrect"]) >= 0.5 for r in oof]).astype(int)
    assert metrics["accuracy"] == pytest.approx(np.mean(y == pred))
    assert metrics["confusion"] == [[int(np.sum((y == t) & (pred == q))) for q in (0, 1)] for t in (0, 1)]
    consensus = store.consensus_labels(project)
    assert all(int(r["y"]) == (consensus[r["clip_id"]]["label"] == "incorrect") for r in oof)
    # The sample's incorrect clips each fail one criterion, so criteria results come with the run, keyed by
    # exercise: the squat's depth and the push-up's depth are two criteria.
    assert set(metrics["per_criterion"]) == {"squat/depth", "squat/trunk_lean", "bicep curl/elbow_fixed",
                                             "bicep curl/no_swing", "push-up/body_line", "push-up/depth"}


def test_final_model_scores_every_active_clip_labelled_or_not(sample_run):
    project, metrics = sample_run
    predictions = read_csv(project.runs / metrics["run_id"] / runs.PREDICTIONS)
    assert {r["clip_id"] for r in predictions} == set(store.clip_ids(project))
    p = np.array([float(r["p_incorrect"]) for r in predictions])
    u = np.array([float(r["uncertainty"]) for r in predictions])
    assert ((p >= 0) & (p <= 1)).all() and (u >= 0).all() and u.max() > 0
    assert metrics["predict_ms_per_clip"] > 0 and metrics["train_seconds"] > 0
    assert [f["fold"] for f in metrics["fits"]] == [1, 2, 3, 4, 5, "final"]


def test_scaler_of_each_fold_is_fitted_without_the_test_fold(sample_run):
    project, metrics = sample_run
    fits = {f["fold"]: f for f in metrics["fits"]}
    # The training part (fit + validation) of fold k is everything but its test fold.
    for k in range(1, 6):
        assert fits[k]["n_train"] + fits[k]["n_val"] + fits[k]["n_test"] == 48
    assert fits["final"]["n_train"] + fits["final"]["n_val"] == 48


def test_same_seed_gives_the_same_metrics_and_another_seed_another_split(data_dir):
    project = Project.open(data_dir)
    sample_project(project)
    config = RunConfig(model="transformer", train=TINY)
    first, second = train_run(project, config), train_run(project, config)
    strip = lambda m: {k: v for k, v in m.items() if k not in TIMINGS + ("fits",)}  # noqa: E731
    assert strip(first) == strip(second)
    oof = [read_csv(project.runs / m["run_id"] / runs.OOF) for m in (first, second)]
    assert oof[0] == oof[1]
    other = read_csv(project.runs / train_run(project, RunConfig(model="baseline", seed=1)).get("run_id") / runs.OOF)
    assert {r["clip_id"]: r["fold"] for r in other} != {r["clip_id"]: r["fold"] for r in oof[0]}


def test_holdout_tests_about_a_fifth_of_the_clips_in_groups_of_their_own(data_dir):
    project = Project.open(data_dir)
    sample_project(project)
    metrics = train_run(project, RunConfig(model="baseline", holdout=0.2))
    oof = read_csv(project.runs / metrics["run_id"] / runs.OOF)
    tested = {r["clip_id"] for r in oof}
    assert metrics["split"].startswith("grouped holdout 0.2")
    assert metrics["n_clips"] == len(tested) and 5 <= len(tested) <= 20
    clips = {c["id"]: c["group_name"] for c in store.list_clips(project)}
    trained_groups = {clips[c] for c in labelled_ids(project) - tested}
    assert trained_groups.isdisjoint({clips[c] for c in tested})


def test_holdout_run_chooses_its_settings_by_folds_of_the_training_part_only(data_dir):
    project = Project.open(data_dir)
    sample_project(project)
    metrics = train_run(project, RunConfig(model="baseline", holdout=0.2, folds=3))
    folder = project.runs / metrics["run_id"]
    holdout = {r["clip_id"] for r in read_csv(folder / runs.OOF)}
    inner = read_csv(folder / runs.SELECTION)
    selection = metrics["selection"]
    # Every candidate was scored out-of-fold on the same training-part clips, never on a holdout clip.
    options = {(c["input"], c["baseline_c"]) for c in selection["candidates"]}
    assert options == {(i, c) for i in ("whole", "windows") for c in SELECT_BASELINE_C}
    by_candidate: dict[str, set[str]] = {}
    for row in inner:
        by_candidate.setdefault(row["candidate"], set()).add(row["clip_id"])
    assert len(by_candidate) == 6 and all(ids == by_candidate[inner[0]["candidate"]] for ids in by_candidate.values())
    seen = by_candidate[inner[0]["candidate"]]
    assert seen.isdisjoint(holdout) and seen | holdout == labelled_ids(project)
    assert selection["folds"] == 3 and {int(r["fold"]) for r in inner} == {1, 2, 3}
    group = {c["id"]: c["group_name"] for c in store.list_clips(project)}
    assert {group[c] for c in seen}.isdisjoint({group[c] for c in holdout})
    # The chosen settings are the best inner macro-F1 (recomputed from selection.csv), and they are the
    # settings the saved final model was built with.
    f1 = {}
    for name, ids in by_candidate.items():
        rows = [r for r in inner if r["candidate"] == name]
        y = np.array([int(r["y"]) for r in rows])
        pred = np.array([float(r["p_incorrect"]) >= 0.5 for r in rows])
        f1[name] = f1_score(y, pred, average="macro")
    assert max(f1.values()) == pytest.approx(selection["macro_f1"])
    assert sorted(c["macro_f1"] for c in selection["candidates"]) == pytest.approx(sorted(f1.values()))
    chosen = selection["chosen"]
    final = runs.load_fitted(project, metrics["run_id"]).model.config
    assert (final.input, final.baseline_c) == (chosen["input"], chosen["baseline_c"])
    assert f"input={chosen['input']}" in metrics["split"] and "chosen by grouped 3-fold" in metrics["split"]


def test_candidates_start_with_the_runs_own_settings():
    own = RunConfig(model="baseline", train=TrainConfig(input="windows", baseline_c=10.0))
    assert candidates(own)[0] == {"input": "windows", "baseline_c": 10.0} and len(candidates(own)) == 6
    assert candidates(RunConfig(model="bilstm", train=TrainConfig(input="whole"))) == [{"input": "whole"},
                                                                                      {"input": "windows"}]


def keep_ten(rows):
    for r in [r for r in rows if r["label"]][10:]:
        r["label"] = ""
    return rows


def only_correct(rows):
    for r in rows:
        if r["label"] == "incorrect":
            r["label"] = ""
    return rows


def one_athlete_errs(rows):
    for r in rows:
        if r["label"] == "incorrect":
            r["group"] = "the-same-athlete"
    return rows


@pytest.mark.parametrize("edit, reason", [
    (keep_ten, f"at least {MIN_LABELLED} labelled clips.*has 10.*label 2 more"),
    (only_correct, "all 24 labelled clips are correct: label some incorrect clips too"),
    (one_athlete_errs, "only 1 group.*label clips of more videos or athletes"),
])
def test_labels_that_cannot_be_split_honestly_are_refused_with_what_to_do_and_nothing_written(
        data_dir, tmp_path, edit, reason):
    project = Project.open(data_dir)
    import_folder(project, edited_sample(tmp_path / "edited", edit))
    with pytest.raises(TrainingRefused, match=reason):
        train_run(project, RunConfig(model="baseline"))
    assert list(project.runs.iterdir()) == []


def test_an_exercise_without_labels_gets_no_prediction(data_dir, tmp_path):
    def push_ups_unlabelled(rows):
        for r in rows:
            if r["exercise"] == "push-up":
                r["label"] = ""
                r.update({k: "" for k in r if k.startswith("criterion:")})
        return rows

    project = Project.open(data_dir)
    import_folder(project, edited_sample(tmp_path / "pu", push_ups_unlabelled))
    metrics = train_run(project, RunConfig(model="baseline", folds=3))
    assert set(metrics["per_exercise"]) == {"bicep curl", "squat"}
    exercise = {c["id"]: c["exercise"] for c in store.list_clips(project)}
    for row in read_csv(project.runs / metrics["run_id"] / runs.PREDICTIONS):
        assert (row["p_incorrect"] == "") == (exercise[row["clip_id"]] == "push-up")
    push_up = next(c for c in store.list_clips(project) if c["exercise"] == "push-up")
    with pytest.raises(runs.UnknownExercise, match="not trained on 'push-up' clips"):
        runs.explain(project, metrics["run_id"], push_up)


def test_progress_reaches_one_and_the_epoch_history_is_saved(data_dir):
    project = Project.open(data_dir)
    sample_project(project)
    seen = []
    metrics = train_run(project, RunConfig(model="bilstm", folds=2, train=TINY),
                        progress=lambda f, m: seen.append((f, m)))
    assert all(f["n_augmented"] == 2 * f["n_train"] for f in metrics["fits"])  # the networks' default
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and 0 < fractions[0] < 0.1
    history = runs.live_history(project, metrics["run_id"])
    assert [(h["fold"], h["epoch"]) for h in history] == [(f, e) for f in (1, 2, "final") for e in (1, 2, 3)]
    assert all(h["train_loss"] > 0 and h["val_loss"] > 0 and 0 <= h["val_f1"] <= 1 for h in history)


def test_cancel_stops_between_epochs_and_leaves_no_run_folder(data_dir):
    project = Project.open(data_dir)
    sample_project(project)
    calls = []

    def cancelled() -> bool:
        calls.append(1)
        return len(calls) > 2  # the start check, then epoch 1 ran; asked again after epoch 2

    with pytest.raises(Cancelled):
        train_run(project, RunConfig(model="bilstm", train=TINY), cancelled=cancelled)
    assert len(calls) == 3
    assert list(project.runs.iterdir()) == [] and runs.list_runs(project) == []


@pytest.fixture
def keep_torch_threads():
    """train_job sets the worker process to one torch thread: give the test process its own setting back."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_train_job_runs_in_the_worker_and_reports_refusals_as_job_failures(data_dir, keep_torch_threads):
    project = Project.open(data_dir)
    with pytest.raises(JobFailed, match="has 0"):
        train_job(project, {"model": "baseline"})
    with pytest.raises(JobFailed, match="unknown model 'resnet'"):
        train_job(project, {"model": "resnet"})
    with pytest.raises(JobFailed, match="unknown training setting 'epoch'"):
        train_job(project, {"epoch": 3})
    sample_project(project)
    job_id = jobs.submit(project, "train", {"model": "baseline", "folds": 3, "holdout": None, "seed": 0}, spawn=False)
    jobs.run_job(project, store.claim_job(project, os.getpid()), jobs.default_runners())
    job = store.get_job(project, job_id)
    assert job["status"] == "done" and job["progress"] == 1.0
    result = job["result"]
    assert result["run_id"] == runs.list_runs(project)[0]["run_id"]
    assert result["split"].startswith("grouped 3-fold")


def test_augmented_copies_join_the_training_part_only(data_dir):
    project = Project.open(data_dir)
    sample_project(project)
    metrics = train_run(project, RunConfig(model="baseline", folds=3, augment=2))
    for fit in metrics["fits"]:
        assert fit["n_augmented"] == 2 * fit["n_train"]
    assert metrics["n_clips"] == 48


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_cli_trains_on_real_openpose_keypoints_and_writes_the_json_contract(pose_trainer_folder, data_dir, tmp_path):
    imported = run_cli("curation", "import", str(pose_trainer_folder), "--layout", "openpose18",
                       "--data", str(data_dir))
    assert imported.returncode == 0, imported.stderr
    out = tmp_path / "train.json"
    done = run_cli("model", "train", "--data", str(data_dir), "--json", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert set(CONTRACT) <= set(result)
    assert result["model"] == RunConfig().model and result["n_clips"] == 112
    # The folder gives no athlete: each clip is its own group, and the split says so.
    assert result["split"] == "grouped 5-fold out-of-fold, groups=clip" and result["n_groups"] == 112
    assert set(result["per_exercise"]) == {"bicep", "frontraise", "shoulderpress", "shouldershrug"}
    assert sum(e["n"] for e in result["per_exercise"].values()) == 112
    assert set(result["f1"]) == {"correct", "incorrect"} and len(result["confusion"]) == 2
    assert np.array(result["confusion"]).sum() == 112
    assert "macro-F1" in done.stdout and "shouldershrug" in done.stdout and result["split"] in done.stdout
    # auto (the default) says what it picked, from which inner scores, and the ECE before and after calibration.
    assert result["picked"] in AUTO_MODELS and result["picked"] in done.stdout
    assert set(result["auto"]["inner_macro_f1"]) == set(AUTO_MODELS)
    assert len(result["auto"]["folds"]) == 5 and all(f["picked"] in AUTO_MODELS for f in result["auto"]["folds"])
    assert result["calibration"] in ("none", "temperature", "platt", "isotonic")
    assert 0 <= result["ece_uncalibrated"] <= 1 and result["per_criterion"] == {}
    assert runs.list_runs(Project.open(data_dir))[0]["run_id"] == result["run_id"]


@pytest.mark.parametrize("args, reason", [
    (["--model", "resnet"], "unknown model 'resnet'; known: baseline"),
    ([], f"training needs at least {MIN_LABELLED} labelled clips; this project has 0"),
    (["--holdout", "1.5"], "holdout must be a share between 0 and 1"),
    (["--epochs", "0"], "bad training setting: "),
    (["--folds", "1"], "folds must be at least 2"),
])
def test_cli_refuses_bad_input_with_a_one_line_reason(data_dir, tmp_path, capsys, args, reason):
    from model.__main__ import main

    out = tmp_path / "train.json"
    assert main(["train", *args, "--data", str(data_dir), "--json", str(out)]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error: ") and reason in err and err.strip().count("\n") == 0
    assert not out.exists() and list((data_dir / "runs").iterdir()) == []


# ------------------------------------------------------------------------------ auto, calibration, criteria


def test_auto_choice_and_calibration_depend_on_the_training_part_only(tmp_path):
    from model.features import load_clipset
    from model.splits import grouped_holdout
    from model.train import fit_clips

    project = Project.open(tmp_path / "project")
    sample_project(project)
    clips = load_clipset(project)
    features = [clips.features(i) for i in range(len(clips))]
    exercises = sorted(set(clips.exercises))
    train_idx, test_idx = grouped_holdout(clips.labels, clips.groups, 0.25, seed=0)
    fitted, summary = fit_clips(clips, features, train_idx, RunConfig(), exercises)
    auto = summary["auto"]
    assert auto["picked"] in AUTO_MODELS and set(auto["inner_macro_f1"]) == set(AUTO_MODELS)
    assert auto["inner_clips"] == len(train_idx)  # every inner prediction is of a training-part clip
    assert auto["calibration"] in auto["calibration_scores"]
    # The held-out clips' labels turned around: the choice, the inner scores and the model stay the same.
    flipped = clips.subset(np.arange(len(clips)))
    flipped.labels = clips.labels.copy()
    flipped.labels[test_idx] = 1 - flipped.labels[test_idx]
    again, summary_again = fit_clips(flipped, features, train_idx, RunConfig(), exercises)
    assert summary_again["auto"] == auto
    held_out = [features[i] for i in test_idx], [clips.exercises[i] for i in test_idx]
    np.testing.assert_array_equal(again.predict(*held_out), fitted.predict(*held_out))


def test_a_calibrated_run_reports_ece_before_and_after_and_saves_the_map(tmp_path):
    project = Project.open(tmp_path / "project")
    sample_project(project)
    metrics = train_run(project, RunConfig(model="baseline", calibration="auto"))
    assert metrics["picked"] == "baseline" and metrics["calibration"] in ("none", "temperature", "platt", "isotonic")
    assert 0 <= metrics["ece_uncalibrated"] <= 1 and 0 <= metrics["ece"] <= 1
    assert all(f["picked"] == "baseline" and "calibration_scores" in f for f in metrics["auto"]["folds"])
    # The saved final model and each fold model carry their calibration.
    calibration = runs.load_fitted(project, metrics["run_id"]).model.calibration
    assert (calibration.method if calibration else "none") == metrics["calibration"]
    for k, fold in enumerate(metrics["auto"]["folds"], start=1):
        calibration = runs.load_fold(project, metrics["run_id"], k).model.calibration
        assert (calibration.method if calibration else "none") == fold["calibration"]
    # The out-of-fold p saved (and evaluated) are the calibrated ones.
    oof = runs.read_oof(project, metrics["run_id"])
    y, p = oof.y.to_numpy(), oof.p_incorrect.to_numpy()
    confidence = np.where(p >= 0.5, p, 1 - p)
    assert metrics["accuracy"] == pytest.approx(np.mean((p >= 0.5) == y)) and confidence.min() >= 0.5


def test_each_criterion_with_enough_verdicts_gets_its_own_out_of_fold_p_fail(sample_run):
    from model.train import CRITERIA_CSV, load_criterion_models

    project, metrics = sample_run
    folder = project.runs / metrics["run_id"]
    rows = read_csv(folder / CRITERIA_CSV)
    scored = {k for k, v in metrics["per_criterion"].items() if v["n_scored"]}
    assert scored and scored == {r["criterion"] for r in rows}
    for key in scored:
        entry = metrics["per_criterion"][key]
        mine = [r for r in rows if r["criterion"] == key and r["verdict"] in ("pass", "fail") and r["p_fail_oof"]]
        truth = [int(r["verdict"] == "fail") for r in mine]
        p = [float(r["p_fail_oof"]) for r in mine]
        assert len(mine) == entry["n_scored"] and sum(truth) <= entry["n_fail"]
        assert entry["f1"] == pytest.approx(f1_score(truth, np.array(p) >= 0.5, average="macro"))
        # Only clips of the criterion's own exercise are scored for it.
        exercise = key.split("/")[0]
        clips = {c["id"]: c for c in store.list_clips(project)}
        assert {clips[r["clip_id"]]["exercise"] for r in rows if r["criterion"] == key} == {exercise}
    models = load_criterion_models(folder)
    assert set(models) == scored
    key = sorted(scored)[0]
    row = next(r for r in rows if r["criterion"] == key)
    from model.features import load_clipset

    every = load_clipset(project, labelled_only=False)
    i = every.clip_ids.index(row["clip_id"])
    p = models[key].predict([every.features(i)], [every.exercises[i]])[0]
    assert p == pytest.approx(float(row["p_fail"]))
