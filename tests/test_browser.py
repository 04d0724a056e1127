"""The labelling flow in a real browser: Debian chromium driven by Playwright against `streamlit run`."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from playwright.sync_api import expect

from curation import jobs, store
from curation.project import Project
from tests.conftest import ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (make test installs it)"),
]
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync", "--disable-quic"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ingested(videos, tmp_path_factory) -> Project:
    """A project holding one real ingested video: twix/knee_squat.mp4, several squats."""
    from curation.pipeline import ingest_source

    project = Project.open(tmp_path_factory.mktemp("browser") / "project")
    result = ingest_source(project, str(videos / "twix" / "knee_squat.mp4"), "squat")
    assert result["clips"] >= 3
    return project


def serve(project: Project):
    """`streamlit run app.py` on the project, on a free port; yields its URL, stops it afterwards."""
    port = free_port()
    env = {**os.environ, "FORMCHECK_DATA": str(project.root)}
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port), "--server.address",
         "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.3)
    else:
        server.kill()
        pytest.fail(f"streamlit did not start: {server.stderr.read().decode()[-2000:]}")
    yield url
    server.terminate()
    server.wait(10)


@pytest.fixture(scope="module")
def app_url(ingested):
    yield from serve(ingested)


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(30_000)
        yield page
        browser.close()


def wait_for_events(project: Project, coach: str, count: int, timeout: float = 20) -> list[dict]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        events = [e for e in store.current_labels(project) if e["annotator"] == coach]
        history = [e for c in store.list_clips(project) for e in store.label_history(project, c["id"])
                   if e["annotator"] == coach]
        if len(history) >= count:
            return history
        time.sleep(0.2)
    return history


def sign_in(page, app_url: str, name: str) -> None:
    """Open the Label page and start labelling as a new coach."""
    page.goto(f"{app_url}/Label")
    page.get_by_role("button", name="Start labelling").wait_for()  # drawn after the name field, if any
    if not page.get_by_label("Your name").is_visible():  # a known coach is preselected
        page.locator(".st-key-who_pick").click()
        page.get_by_role("option", name="(new coach)").click()
    page.get_by_label("Your name").fill(name)
    page.get_by_role("button", name="Start labelling").click()
    page.get_by_role("button", name=re.compile("^Correct")).wait_for()


def settle(page) -> None:
    """Wait until the app's rerun is over: no element of the previous run is still shown as stale."""
    page.wait_for_function("document.querySelectorAll('[data-stale=\"true\"]').length === 0")
    page.wait_for_timeout(200)


def current_clip_caption(page) -> str:
    return page.get_by_text(re.compile(r"^Clip \S+ · ")).first.inner_text()


def test_a_coach_labels_a_whole_video_with_the_keyboard(page, app_url, ingested, tmp_path):
    clips = store.list_clips(ingested)
    sign_in(page, app_url, "Dana")
    page.wait_for_timeout(1500)  # the player iframe loads and plays

    # The clip plays in the player: its video advances.
    player = page.frame_locator("iframe").first
    assert player.locator("video").evaluate("v => new Promise(r => setTimeout(() => r(v.currentTime), 800))") > 0

    seen = []
    keys = [["y"], ["1", "n"], ["y"]] + [["n"]] * (len(clips) - 3)
    for n, presses in enumerate(keys, start=1):
        caption = current_clip_caption(page)
        seen.append(caption.split(" · ")[0])
        settle(page)
        page.evaluate("document.activeElement && document.activeElement.blur()")  # keys go to the page
        for key in presses:
            page.keyboard.press(key.upper() if key.isalpha() else key)
            if key == "1":  # ticks the first criterion; the verdict key then sends it with the verdict
                expect(page.get_by_role("checkbox", name=re.compile("^1 · depth"))).to_be_checked()
        events = wait_for_events(ingested, "Dana", n)
        assert len(events) == n, f"after clip {n}: {events}"
        if n < len(keys):
            page.wait_for_function(
                "old => !document.body.innerText.includes(old)", arg=caption.split(" · ")[0], timeout=20_000)

    page.get_by_text("Nothing left to label").wait_for()
    events = wait_for_events(ingested, "Dana", len(clips))
    assert [e["verdict"] for e in events] == ["correct", "incorrect", "correct"] + ["incorrect"] * (len(clips) - 3)
    assert len({e["clip_id"] for e in events}) == len(clips)  # each clip once, none doubled
    assert events[1]["criteria"]["depth"] == "fail"  # key 1 ticked the first squat criterion
    assert all(e["seconds"] > 0 for e in events)
    assert len(set(seen)) == len(clips)

    shot = tmp_path / "label.png"
    page.screenshot(path=str(shot), full_page=True)
    pixels = cv2.imread(str(shot))
    assert pixels is not None and pixels.std() > 10, "the screenshot is blank"
    Path(os.environ.get("FORMCHECK_SCREENSHOTS", tmp_path)).mkdir(parents=True, exist_ok=True)
    shutil.copy(shot, Path(os.environ.get("FORMCHECK_SCREENSHOTS", tmp_path)) / "label_done.png")


def test_the_label_page_shows_the_skeleton_player(page, app_url, ingested, tmp_path):
    sign_in(page, app_url, "Eli")
    page.wait_for_timeout(2500)
    shot = tmp_path / "player.png"
    page.screenshot(path=str(shot))
    image = cv2.imread(str(shot))
    assert image is not None and image.std() > 10
    if os.environ.get("FORMCHECK_SCREENSHOTS"):
        shutil.copy(shot, Path(os.environ["FORMCHECK_SCREENSHOTS"]) / "label_player.png")
    # Eli opened a clip but judged nothing: no label appears for him.
    assert not [e for e in store.current_labels(ingested) if e["annotator"] == "Eli"]


def test_an_uploaded_video_is_ingested_in_the_background(page, app_url, ingested, videos):
    before = len(store.list_videos(ingested))
    page.goto(f"{app_url}/Ingest")
    page.locator(".st-key-ingest_uploads input[type=file]").set_input_files(str(videos / "twix" / "correct-squat.mp4"))
    page.get_by_text("correct-squat.mp4").wait_for()
    page.get_by_role("button", name="Add videos").click()
    page.get_by_text("queued").first.wait_for()
    page.get_by_text(re.compile(r"\d+ clips · 382 frames")).wait_for(timeout=120_000)  # the job card, live
    assert len(store.list_videos(ingested)) == before + 1
    assert [j["status"] for j in store.list_jobs(ingested)][:1] == ["done"]
    # The upload lived in its job's folder (curation.jobs.job_dir), which goes once the job is done.
    job = store.list_jobs(ingested)[0]
    assert not jobs.job_dir(ingested, job["id"]).exists()
    assert not list(ingested.work.rglob("correct-squat*"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Project:
    """The synthetic sample project with one baseline run: suggestions have a model behind them."""
    from curation.sample import sample_project
    from model.train import RunConfig, train_run

    project = Project.open(tmp_path_factory.mktemp("loop") / "project")
    sample_project(project, clips_per_class=6)
    train_run(project, RunConfig(model="baseline"))
    return project


@pytest.fixture(scope="module")
def trained_url(trained):
    yield from serve(trained)


def test_train_suggest_label_retrain_without_leaving_the_browser(page, trained_url, trained):
    from model import choice, runs
    from model.suggest import suggest

    first_run = runs.list_runs(trained)[0]
    expected = [s.clip_id for s in suggest(trained, k=20).items]  # the Label page's suggested batch
    page.goto(f"{trained_url}/Suggest")
    page.get_by_text(first_run["run_id"]).first.wait_for()
    page.get_by_role("button", name="Label these clips").click()
    page.get_by_role("button", name="Start labelling").wait_for()
    page.get_by_label("Your name").fill("Fay")
    page.get_by_role("button", name="Start labelling").click()
    page.get_by_text("Why this clip:").wait_for()
    assert current_clip_caption(page).split(" · ")[0] == f"Clip {expected[0]}"
    page.wait_for_timeout(1500)  # the player and the key listener load (keys during a rerun are dropped)
    settle(page)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press("Y")
    events = wait_for_events(trained, "Fay", 1)
    assert [(e["clip_id"], e["verdict"]) for e in events] == [(expected[0], "correct")]
    page.wait_for_function("old => !document.body.innerText.includes(old)", arg=f"Clip {expected[0]}")
    assert current_clip_caption(page).split(" · ")[0] == f"Clip {expected[1]}"

    settle(page)
    page.get_by_role("button", name="Retrain with the new labels").click()
    deadline = time.time() + 240
    while time.time() < deadline and runs.list_runs(trained)[0]["run_id"] == first_run["run_id"]:
        time.sleep(1)
    newest = runs.list_runs(trained)[0]
    assert newest["run_id"] != first_run["run_id"] and newest["n_clips"] == first_run["n_clips"] + 1
    # the page notices the finished job; the new run competes with the old one and the page names the run
    # chosen to score suggestions (model.choice: the best on the current labels, or a promoted one)
    page.get_by_role("button", name="Retrain with the new labels").wait_for(timeout=30_000)
    page.goto(f"{trained_url}/Suggest")
    page.get_by_text(choice.current(trained).run_id).first.wait_for()


@pytest.fixture(scope="module")
def many_criteria(tmp_path_factory) -> Project:
    """The synthetic sample whose first clip's exercise has 12 criteria (more than the digit keys)."""
    from curation.sample import sample_project

    project = Project.open(tmp_path_factory.mktemp("criteria") / "project")
    sample_project(project, clips_per_class=2)
    exercise = store.upcoming_clips(project, "nobody", limit=1)[0]["exercise"]
    have = next(e for e in store.list_exercises(project) if e["name"] == exercise)["criteria"]
    for k in range(12 - len(have)):
        store.add_criterion(project, exercise, f"extra {k}")
    return project


@pytest.fixture(scope="module")
def many_criteria_url(many_criteria):
    yield from serve(many_criteria)


def test_criteria_past_the_ninth_are_judged_by_typing_their_number(page, many_criteria_url, many_criteria):
    clip = store.upcoming_clips(many_criteria, "Gus", limit=1)[0]
    names = [c["name"] for c in next(e for e in store.list_exercises(many_criteria)
                                     if e["name"] == clip["exercise"])["criteria"]]
    sign_in(page, many_criteria_url, "Gus")
    page.wait_for_timeout(1500)  # the player and the key listener load
    settle(page)
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press("1")
    page.keyboard.press("2")  # typed quickly after 1: criterion 12, and the 1 is taken back
    expect(page.get_by_role("checkbox", name=re.compile("^12 · "))).to_be_checked()
    expect(page.get_by_role("checkbox", name=re.compile("^1 · "))).not_to_be_checked()
    page.keyboard.press("3")
    expect(page.get_by_role("checkbox", name=re.compile("^3 · "))).to_be_checked()
    page.keyboard.press("N")
    [event] = wait_for_events(many_criteria, "Gus", 1)
    assert event["clip_id"] == clip["id"]
    assert {k for k, v in event["criteria"].items() if v == "fail"} == {names[11], names[2]}
    assert set(event["criteria"]) == set(names)  # every criterion judged, none unseen
