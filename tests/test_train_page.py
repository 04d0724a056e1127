"""The Train page through AppTest: refusals, a run in the background worker, every results view."""

from __future__ import annotations

import time

import pytest

from curation import jobs, store
from curation.sample import sample_project
from model import runs
from model.train import RunConfig, train_run
from tests.conftest import open_page

TRAIN = "pages/4_Train.py"


def test_an_empty_project_is_refused_and_training_cannot_start(project):
    at = open_page(TRAIN)
    assert any("at least" in w.value for w in at.warning)
    assert at.button[0].disabled
    assert store.list_jobs(project) == []


def test_one_class_only_is_refused(project):
    sample_project(project, clips_per_class=3)
    for clip_id in store.clip_ids(project):
        store.add_label_event(project, {"clip_id": clip_id, "annotator": "adjudicator", "kind": "adjudication",
                                        "verdict": "correct"})
    at = open_page(TRAIN)
    assert any("no clip is labelled incorrect" in w.value for w in at.warning)
    assert at.button[0].disabled


@pytest.mark.slow
def test_a_run_started_on_the_page_trains_in_the_background_and_shows_every_view(project):
    sample_project(project, clips_per_class=4)
    at = open_page(TRAIN)
    at.button[0].click().run()
    assert any("started" in s.value for s in at.success)
    deadline = time.time() + 300
    while time.time() < deadline:
        job = store.list_jobs(project)[0]
        if job["status"] not in ("queued", "running"):
            break
        time.sleep(1)
    assert job["status"] == "done", job["error"]
    at = open_page(TRAIN)
    metrics = {m.label for m in at.metric}
    assert {"Macro F1", "Balanced accuracy", "Cohen's kappa", "ECE"} <= metrics
    charts = len(at.get("plotly_chart"))
    assert charts >= 4  # confusion, per exercise, reliability, complexity
    assert any("out-of-fold" in c.value for c in at.caption)
    # The error gallery opens a misclassified clip with its explanation.
    if at.selectbox(key="train_error_clip").options:
        assert any("p(incorrect)" in c.value for c in at.caption)
        assert len(at.get("iframe")) >= 1


def test_a_finished_run_is_listed_and_inspected(project):
    sample_project(project, clips_per_class=4)
    first = train_run(project, RunConfig(model="baseline", folds=3))
    second = train_run(project, RunConfig(model="baseline", folds=4, seed=1))
    at = open_page(TRAIN)
    listed = at.dataframe[0].value
    assert set(listed.run_id) == {first["run_id"], second["run_id"]}
    at.selectbox(key="train_run").set_value(first["run_id"]).run()
    assert not at.exception
    assert any(f"{first['macro_f1']:.3f}" == m.value for m in at.metric)


def test_a_failed_job_shows_its_reason(project):
    job_id = jobs.submit(project, "train", {"model": "no-such-model"}, spawn=False)
    jobs.run_worker(project)
    assert "no-such-model" in store.get_job(project, job_id)["error"]
    assert runs.list_runs(project) == []


@pytest.mark.slow
def test_an_auto_run_shows_what_it_picked_its_calibration_and_per_criterion_faults(project):
    sample_project(project)
    metrics = train_run(project, RunConfig())  # the default: auto
    at = open_page(TRAIN)
    assert any(c.value.startswith(f"Final model: {metrics['picked']}") for c in at.caption)
    ece = next(m for m in at.metric if m.label == "ECE")
    assert ece.value == f"{metrics['ece']:.3f}"
    tables = [d.value for d in at.dataframe]
    criteria = next(t for t in tables if "n_scored" in t.columns)
    # Keyed by exercise: the squat's depth and the push-up's depth are separate rows.
    assert {"squat/depth", "push-up/depth"} <= set(criteria.index)
    picks = next(t for t in tables if "picked" in t.columns)
    assert list(picks.fold)[-1] == "final" and len(picks) == len(metrics["auto"]["folds"]) + 1
