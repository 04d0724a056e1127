"""The Suggest page and the Label page's suggested / check-again queues through AppTest: train -> label what the
model suggests -> retrain, without leaving the app."""

from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest

from curation import store
from curation.project import Project
from curation.sample import sample_project
from model import quality, runs
from model.suggest import suggest
from model.train import RunConfig, train_run
from tests.test_label import page as open_page
from tests.test_label import project  # noqa: F401  (fixture)

SUGGEST, LABEL = "pages/5_Suggest.py", "pages/2_Label.py"


@pytest.fixture
def trained(project) -> Project:
    """The sample project with a few labels made wrong on purpose, and one baseline run."""
    sample_project(project, clips_per_class=6)
    labels = store.consensus_labels(project)
    for clip_id in [c for c, v in labels.items() if v["label"]][:3]:
        wrong = "incorrect" if labels[clip_id]["label"] == "correct" else "correct"
        store.add_label_event(project, {"clip_id": clip_id, "annotator": "lead", "kind": "adjudication",
                                        "verdict": wrong})
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
    at.button(key=f"label_correct_{at.session_state['label_n']}").click().run()
    assert not at.exception, at.exception
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
    at.button(key=f"label_incorrect_{at.session_state['label_n']}").click().run()
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
    assert newest["run_id"] in texts(at)
    assert not set(at.dataframe[0].value["clip"]) & set(batch)  # labelled clips left the pool
