"""Every page through Streamlit's AppTest, on an empty and on a filled project."""

from __future__ import annotations

import time

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from curation import store
from curation.dataset import import_folder
from curation.project import Project
from tests.conftest import ROOT
from tests.test_dataset import write_folder

PAGES = ["app.py", "pages/1_Ingest.py"]


@pytest.fixture
def filled(project, tmp_path) -> Project:
    rng = np.random.default_rng(0)
    rows = [{"clip_id": f"c{i}", "exercise": "squat" if i < 4 else "plank",
             "label": ("correct", "incorrect", "")[i % 3], "fps": "30"} for i in range(6)]
    import_folder(project, write_folder(tmp_path / "ds", rows,
                                        {r["clip_id"]: rng.random((8, 33, 4)).astype(np.float32) for r in rows}))
    return project


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / page), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens_on_an_empty_project(project, page):
    open_page(page)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens_on_a_filled_project(filled, page):
    open_page(page)


def test_home_shows_the_counts(filled):
    at = open_page("app.py")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics == {"Videos": "0", "Clips": "6", "Labelled clips": "4"}


def test_home_on_an_empty_project_points_to_ingest(project):
    at = open_page("app.py")
    assert any("empty" in i.value for i in at.info)


def submit(at: AppTest, urls: str) -> AppTest:
    at.text_area(key="ingest_urls").input(urls)
    at.button[0].click()
    at.run()
    assert not at.exception, at.exception
    return at


@pytest.mark.parametrize("url, reason", [
    ("file:///etc/passwd", "http"),
    ("https://example.com/video.mp4", "allowed"),
    ("https://www.youtube.com/playlist?list=PL1234567890", "playlist"),
    ("just some words", "not a link"),
])
def test_ingest_refuses_a_bad_link_and_queues_nothing(project, url, reason):
    at = submit(open_page("pages/1_Ingest.py"), url)
    errors = " ".join(e.value for e in at.error)
    assert "Not added" in errors and reason in errors.lower()
    assert store.list_jobs(project) == []


def test_ingest_with_nothing_pasted_asks_for_input(project):
    at = submit(open_page("pages/1_Ingest.py"), "")
    assert any("at least one" in w.value for w in at.warning)
    assert store.list_jobs(project) == []


@pytest.mark.slow
def test_ingest_page_runs_a_link_to_clips_in_a_background_worker(project, video_server, monkeypatch):
    monkeypatch.setenv("FORMCHECK_ALLOWED_HOSTS", "127.0.0.1")
    url = f"{video_server}/twix/knee_squat.mp4"
    at = submit(open_page("pages/1_Ingest.py"), url)
    assert any("queued" in s.value for s in at.success)
    deadline = time.time() + 240
    while time.time() < deadline:
        jobs = store.list_jobs(project)
        if jobs and jobs[0]["status"] not in ("queued", "running"):
            break
        time.sleep(1)
    assert [j["status"] for j in jobs] == ["done"], jobs
    assert jobs[0]["result"]["clips"] >= 1
    assert store.stats(project)["clips"] == jobs[0]["result"]["clips"]
    at = open_page("pages/1_Ingest.py")
    assert any("clips" in t.value and "trimmed" in t.value for t in at.text)
    # The same link again while nothing runs: a job that finds the video already there.
    submit(at, url)


def test_a_queued_job_is_cancelled_from_its_card(project):
    from curation import jobs

    job_id = jobs.submit(project, "ingest", {"source": "https://www.youtube.com/watch?v=aaaaaaaaaaa"}, spawn=False)
    at = open_page("pages/1_Ingest.py")
    at.button(key=f"ingest_cancel_{job_id}").click().run()
    assert not at.exception
    assert store.get_job(project, job_id)["status"] == "cancelled"
