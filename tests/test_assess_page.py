"""The Assess page through AppTest: refusals, a real video assessed in the background worker, its results, the
report and "add to the dataset"."""

from __future__ import annotations

import time

import pytest

from curation import jobs, store
from curation.sample import sample_project
from model.train import RunConfig, train_run
from tests.conftest import open_page

PAGE = "pages/7_Assess.py"


def wait_for_jobs(project, seconds: float = 300) -> list[dict]:
    deadline = time.time() + seconds
    while time.time() < deadline:
        listed = store.list_jobs(project)
        if listed and all(j["status"] not in ("queued", "running") for j in listed):
            return listed
        time.sleep(1)
    raise AssertionError(f"jobs still running: {store.list_jobs(project)}")


def test_without_a_run_the_page_says_to_train_first(project):
    at = open_page(PAGE)
    assert any("No finished training run" in i.value for i in at.info)
    assert at.button(key="FormSubmitter:assess_form-Assess").disabled


@pytest.fixture
def trained(project):
    sample_project(project, clips_per_class=15)
    train_run(project, RunConfig(model="baseline", folds=3))
    return project


def test_a_bad_link_is_refused_and_a_run_that_never_saw_the_exercise_fails_its_job(trained):
    at = open_page(PAGE)
    at.text_input(key="assess_link").input("https://example.com/video.mp4")
    at.button(key="FormSubmitter:assess_form-Assess").click()
    at.run()
    assert any("Not assessed" in e.value and "allowed" in e.value for e in at.error)
    assert store.list_jobs(trained) == []
    # A plank video judged by a run trained on squats, curls and push-ups: the job fails before any video work.
    jobs.submit(trained, "assess", {"source": "/nowhere.mp4", "exercise": "plank"}, spawn=False)
    jobs.run_worker(trained)
    at = open_page(PAGE)
    assert any("not trained on 'plank'" in e.value for e in at.error), [e.value for e in at.error]


@pytest.mark.slow
def test_a_real_video_is_assessed_in_the_background_shown_reported_and_kept(trained, video_server, monkeypatch):
    monkeypatch.setenv("FORMCHECK_ALLOWED_HOSTS", "127.0.0.1")
    at = open_page(PAGE)
    at.selectbox(key="assess_exercise").set_value("squat")
    at.text_input(key="assess_link").input(f"{video_server}/twix/knee_squat.mp4")
    at.button(key="FormSubmitter:assess_form-Assess").click()
    at.run()
    assert any("Queued" in s.value for s in at.success)
    [job] = wait_for_jobs(trained)
    assert job["status"] == "done", job
    assert store.list_videos(trained) == []  # assessed, not added
    at = open_page(PAGE)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Repetitions"] == "4"
    assert len(at.dataframe[-1].value) == 4  # every repetition in the table
    assert any("p(incorrect)" in t.value and "sure" in t.value for t in at.text)
    assert at.get("download_button")  # the HTML report
    at.selectbox(key="assess_rep").set_value(3).run()
    assert any(t.value.startswith("frames ") for t in at.text)
    at.button(key="assess_keep").click().run()
    assert not at.exception, at.exception
    assert any("Added: video" in s.value for s in at.success)
    [video] = store.list_videos(trained)
    assert video["clips"] >= 4
    at = open_page(PAGE)
    assert any("In the dataset as video" in t.value for t in at.text)
