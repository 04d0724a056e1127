"""The Suggest page and the Label page's suggested / check-again queues through AppTest: train -> label what the
model suggests -> retrain, without leaving the app."""

from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest

from curation import store
from curation.project import Project
from curation.sample import sample_project
from model import choice, quality, runs
from model.suggest import suggest
from model.train import RunConfig, train_run
from tests.conftest import flip_labels
from tests.test_label import judge
from tests.test_label import page as open_page

SUGGEST, LABEL = "pages/5_Suggest.py", "pages/2_Label.py"


@pytest.fixture
def trained(project) -> Project:
    """The sample project with a few labels made wrong on purpose, and one baseline run."""
    sample_project(project, clips_per_class=6)
    flip_labels(project, 3)
    train_run(project, RunConfig(model="baseline"))
    return project


def texts(at: AppTest) -> str:
    return " ".join(str(e.value) for kind in (at.info, at.success, at.caption, at.markdown, at.subheader)
                    for e in kind)


def test_an_empty_project_says_there_is_nothing_to_suggest(project):
    at = open_page(SUGGEST)
    assert "no clips" in texts(at)


def test_without_a_model_a_cold_start_batch_covers_the_pool(project):
    sample_project(project, clips_per_class=6)
    at = open_page(SUGGEST)
    assert "No model trained yet" in texts(at)
    table = at.dataframe[0].value
    pool = set(store.clip_ids(project)) - {r["clip_id"] for r in store.current_labels(project)}
    assert len(table) == 10 and set(table["clip"]) <= pool
    assert all("no model yet" in why for why in table["why"])


def test_with_a_run_the_page_lists_suggestions_doubted_labels_and_the_p_histogram(trained):
    at = open_page(SUGGEST)
    latest = runs.list_runs(trained)[0]["run_id"]
    assert latest in texts(at)
    suggested = at.dataframe[0].value
    expected = suggest(trained, k=10, run_id=latest)
    assert list(suggested["clip"]) == [s.clip_id for s in expected.items]
    assert all(why for why in suggested["why"])
    doubted = at.dataframe[1].value
    assert list(doubted["clip_id"]) == [d.clip_id for d in quality.check_again(trained)]
    assert len(at.get("plotly_chart")) == 1
    at.slider(key="suggest_k").set_value(5).run()
    assert len(at.dataframe[0].value) == 5


def test_label_these_clips_opens_the_label_page_on_the_suggested_queue(trained):
    at = open_page(SUGGEST)
    at.button(key="suggest_go").click().run()
    assert at.session_state["label_open"] == "Label suggested clips"


def test_a_coach_labels_the_suggested_clips_in_their_order(trained):
    batch = [s.clip_id for s in suggest(trained, k=20).items]
    at = open_page(LABEL, coach="kim", label_open="Label suggested clips")  # as Suggest's button hands over
    assert at.radio(key="label_mode").value == "Label suggested clips"
    assert at.session_state["label_clip"] == batch[0]
    assert any(i.value.startswith("Why this clip:") for i in at.info)
    judge(at, "correct")  # the Y key of the in-browser labeller
    verdicts = [e for e in store.label_history(trained, batch[0]) if e["annotator"] == "kim"]
    assert [e["verdict"] for e in verdicts] == ["correct"]
    assert at.session_state["label_clip"] == batch[1]


def test_check_again_shows_a_doubted_label_and_a_second_look_adds_an_event(trained):
    doubted = quality.check_again(trained)
    assert doubted
    at = open_page(LABEL, coach="kim", label_mode="Check again")
    first = at.session_state["label_clip"]
    assert first == doubted[0].clip_id
    assert any(doubted[0].reason in i.value for i in at.info)
    before = len(store.label_history(trained, first))
    judge(at, "incorrect")
    assert len(store.label_history(trained, first)) == before + 1
    assert at.session_state["label_clip"] != first
    assert first not in {d.clip_id for d in quality.check_again(trained)}


def test_check_again_without_a_run_says_to_train_first(project):
    sample_project(project, clips_per_class=3)
    at = open_page(LABEL, coach="kim", label_mode="Check again")
    assert any("train a model" in i.value for i in at.info)


@pytest.mark.slow
def test_retrain_from_the_suggest_page_refreshes_the_suggestions(trained):
    first_run = runs.list_runs(trained)[0]
    batch = [s.clip_id for s in suggest(trained, k=3).items]
    for clip_id in batch:  # a coach labels what was suggested
        store.add_label_event(trained, {"clip_id": clip_id, "annotator": "kim", "verdict": "correct"})
    at = open_page(SUGGEST)
    at.button(key="suggest_retrain").click().run()
    job = store.list_jobs(trained)[0]
    assert job["kind"] == "train" and job["params"]["model"] == first_run["config"]["model"]
    deadline = time.time() + 300
    while time.time() < deadline and store.get_job(trained, job["id"])["status"] in ("queued", "running"):
        time.sleep(1)
    assert store.get_job(trained, job["id"])["status"] == "done", store.get_job(trained, job["id"])
    newest = runs.list_runs(trained)[0]
    assert newest["run_id"] != first_run["run_id"] and newest["n_clips"] == first_run["n_clips"] + 3
    at = open_page(SUGGEST)
    # The new run competes with the old one: the page names the one chosen (model.choice), best on these labels.
    assert choice.current(trained).run_id in texts(at)
    assert not set(at.dataframe[0].value["clip"]) & set(batch)  # labelled clips left the pool


@pytest.fixture
def two_runs(trained) -> tuple[Project, str, str]:
    """`trained` plus a newer, worse run (a BiLSTM trained for one epoch): (project, best run, newest run)."""
    good = runs.list_runs(trained)[0]
    worse = train_run(trained, RunConfig.from_params({"model": "bilstm", "epochs": 1, "augment": 0}))
    assert worse["macro_f1"] < good["macro_f1"]
    return trained, good["run_id"], worse["run_id"]


def test_the_page_names_the_best_run_as_the_one_that_scores_and_says_why(two_runs):
    project, good, worse = two_runs
    at = open_page(SUGGEST)
    assert f"Scored by run {good}" in texts(at) and "best of 2 runs on the current labels" in texts(at)
    assert list(at.dataframe[0].value["clip"]) == [s.clip_id for s in suggest(project, k=10, run_id=good).items]


def test_a_lead_promotes_a_run_from_the_page_and_it_scores_from_then_on(two_runs):
    project, good, worse = two_runs
    at = open_page(SUGGEST, coach="kim")
    at.selectbox(key="suggest_promote_run").set_value(worse)
    at.text_input(key="suggest_promote_note").set_value("*try* the network")
    at.button(key="suggest_promote").click().run()
    assert not at.exception, at.exception
    assert [e["run_id"] for e in store.run_promotions(project)] == [worse]
    assert f"Scored by run {worse}" in texts(at) and "promoted by " in texts(at) and "kim" in texts(at)
    assert "\\*try\\* the network" in texts(at)  # a note is shown as typed, never as Markdown
    at.selectbox(key="suggest_promote_run").set_value("(best on the current labels)")
    at.button(key="suggest_promote").click().run()
    assert f"Scored by run {good}" in texts(at)


@pytest.mark.slow
def test_simulate_on_this_project_runs_in_the_background_and_shows_the_learning_curves(trained):
    at = open_page(SUGGEST)
    assert not at.get("plotly_chart") or len(at.get("plotly_chart")) == 1  # the p histogram only
    at.button(key="suggest_simulate").click().run()
    job = store.list_jobs(trained)[0]
    assert job["kind"] == "simulate" and job["params"]["splits"] == 3 and job["params"]["seeds"] == 3
    deadline = time.time() + 300
    while time.time() < deadline and store.get_job(trained, job["id"])["status"] in ("queued", "running"):
        time.sleep(1)
    done = store.get_job(trained, job["id"])
    assert done["status"] == "done", done
    at = open_page(SUGGEST)
    assert len(at.get("plotly_chart")) == 2
    assert "3 grouped test splits" in texts(at) and "random order" in texts(at)
