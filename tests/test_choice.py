"""The run that scores suggestions: the best on the current labels (not the newest), or the one a lead promoted."""

from __future__ import annotations

import json
import shutil

import pytest

from curation import store
from curation.project import Project
from curation.sample import sample_project
from model import choice, quality, runs
from model.suggest import suggest
from model.train import RunConfig, train_run
from tests.test_train import run_cli


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Project, dict, dict]:
    """The sample project with a baseline run and, newer, a BiLSTM trained for one epoch (a worse run)."""
    project = Project.open(tmp_path_factory.mktemp("choice") / "project")
    sample_project(project, clips_per_class=8)
    good = train_run(project, RunConfig(model="baseline"))
    worse = train_run(project, RunConfig.from_params({"model": "bilstm", "epochs": 1, "augment": 0}))
    assert worse["macro_f1"] < good["macro_f1"]  # the premise of the tests below
    return project, good, worse


@pytest.fixture
def project(two_runs, tmp_path) -> Project:
    """A copy of the two-run project that a test may promote runs in."""
    shutil.copytree(two_runs[0].root, tmp_path / "copy")
    return Project.open(tmp_path / "copy")


def test_suggestions_are_scored_by_the_best_run_not_the_newest(two_runs):
    project, good, worse = two_runs
    assert runs.list_runs(project)[0]["run_id"] == worse["run_id"]  # the newest
    chosen = choice.current(project)
    assert chosen.run_id == good["run_id"] and chosen.promotion is None
    assert f"macro-F1 {good['macro_f1']:.2f}" in chosen.reason and "best of 2 runs" in chosen.reason
    assert "100% of the" in chosen.reason
    result = suggest(project, k=5)
    assert result.run_id == good["run_id"] and result.run_reason == chosen.reason


def test_a_promoted_run_scores_until_the_promotion_is_withdrawn(project, two_runs):
    _, good, worse = two_runs
    choice.promote(project, worse["run_id"], "Ana <b>lead</b>", "try the network")
    chosen = choice.current(project)
    assert chosen.run_id == worse["run_id"]
    assert chosen.reason.startswith("promoted by Ana <b>lead</b> on ") and "try the network" in chosen.reason
    assert suggest(project, k=5).run_id == worse["run_id"]
    assert {d.clip_id for d in quality.check_again(project)} <= set(runs.read_oof(project, worse["run_id"])["clip_id"])
    choice.withdraw(project, "Ana")
    assert choice.current(project).run_id == good["run_id"]
    events = store.run_promotions(project)  # append-only: the promotion and its withdrawal
    assert [e["run_id"] for e in events] == [worse["run_id"], None]


def test_a_promoted_run_that_is_gone_falls_back_to_the_best_and_says_so(project, two_runs):
    _, good, worse = two_runs
    choice.promote(project, worse["run_id"], "Ana")
    shutil.rmtree(runs.run_dir(project, worse["run_id"]))
    chosen = choice.current(project)
    assert chosen.run_id == good["run_id"] and f"the promoted run {worse['run_id']} is gone" in chosen.reason


def test_an_unknown_or_unfinished_run_cannot_be_promoted(project, two_runs):
    with pytest.raises(runs.RunNotFound, match="no finished run 'nope'"):
        choice.promote(project, "nope", "Ana")
    unfinished = runs.new_run_dir(project)
    with pytest.raises(runs.RunNotFound):
        choice.promote(project, unfinished.name, "Ana")
    assert store.run_promotions(project) == []


def test_a_run_that_never_saw_a_labelled_exercise_is_passed_over(project, two_runs):
    _, good, worse = two_runs
    # Pretend the better run knew only one exercise: the worse run, which knows them all, must score.
    path = runs.run_dir(project, good["run_id"]) / runs.METRICS
    metrics = json.loads(path.read_text())
    metrics["per_exercise"] = dict(list(metrics["per_exercise"].items())[:1])
    path.write_text(json.dumps(metrics))
    assert choice.current(project).run_id == worse["run_id"]


def test_without_runs_the_choice_is_a_cold_start(data_dir):
    chosen = choice.current(Project.open(data_dir))
    assert chosen.run is None and "no finished training run" in chosen.reason


def test_cli_lists_runs_marks_the_current_one_and_promotes(project, two_runs, tmp_path):
    _, good, worse = two_runs
    out = tmp_path / "runs.json"
    done = run_cli("model", "runs", "--data", str(project.root), "--json", str(out))
    assert done.returncode == 0, done.stderr
    listing = json.loads(out.read_text())
    assert listing["current"] == good["run_id"] and not listing["promoted"]
    assert [r["run_id"] for r in listing["runs"]] == [worse["run_id"], good["run_id"]]
    assert [r["current"] for r in listing["runs"]] == [False, True]
    assert set(listing["runs"][0]) >= {"model", "split", "macro_f1", "n_clips", "created_at"}
    assert f"* {good['run_id']}" in done.stdout

    done = run_cli("model", "promote", worse["run_id"], "--by", "Ana", "--data", str(project.root))
    assert done.returncode == 0, done.stderr
    assert f"now scored by {worse['run_id']}: promoted by Ana" in done.stdout
    done = run_cli("model", "runs", "--data", str(project.root))
    assert f"* {worse['run_id']}" in done.stdout

    refused = run_cli("model", "promote", "20990101-000000-abcdef", "--data", str(project.root))
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == ["error: no finished run '20990101-000000-abcdef' in this project "
                                                   "(see `python -m model runs`)"]
    refused = run_cli("model", "promote", "--data", str(project.root))
    assert refused.returncode == 2 and "give a RUN to promote, or --withdraw" in refused.stderr
