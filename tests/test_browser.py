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
    try:
        server.wait(30)
    except subprocess.TimeoutExpired:  # a loaded machine: a streamlit that does not stop in time is killed
        server.kill()
        server.wait(10)


@pytest.fixture(scope="module")
def app_url(ingested):
    yield from serve(ingested)


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()  # page.context: more tabs
        page.set_default_timeout(30_000)
        yield page
        browser.close()


def wait_for_events(project: Project, coach: str, count: int, timeout: float = 20, page=None) -> list[dict]:
    """This coach's label events in the order they were recorded, once there are `count` (or at the timeout).
    With a page whose websocket goes through HeldSocket, waits on the page: Playwright forwards its messages only
    while it runs."""
    deadline = time.time() + timeout
    while True:
        history = sorted((e for c in store.list_clips(project) for e in store.label_history(project, c["id"])
                          if e["annotator"] == coach), key=lambda e: e["id"])
        if len(history) >= count or time.time() > deadline:
            return history
        if page is not None:
            page.wait_for_timeout(200)
        else:
            time.sleep(0.2)


def sign_in(page, app_url: str, name: str) -> None:
    """Open the Label page and start labelling as a new coach; returns once the labeller shows a clip."""
    page.goto(f"{app_url}/Label")
    page.get_by_role("button", name="Start labelling").wait_for()  # drawn after the name field, if any
    if "(new coach)" not in page.locator(".st-key-who_pick").inner_text():  # a known coach is preselected
        page.locator(".st-key-who_pick").click()
        page.get_by_role("option", name="(new coach)").click()
    page.get_by_label("Your name").fill(name)
    page.get_by_role("button", name="Start labelling").click()
    ready(page)


def ready(page) -> None:
    """The labeller shows a clip with its player loaded, and keys go to the page (not to a field)."""
    page.locator("[data-clip-id]").wait_for()
    page.locator("iframe.fc-player.fc-on").wait_for()
    page.evaluate("document.activeElement && document.activeElement.blur()")


def on_screen(page) -> str | None:
    """The id of the clip the labeller shows (its data-clip-id), None when it shows none."""
    return page.evaluate("(document.querySelector('[data-clip-id]') || {getAttribute: () => null})"
                         ".getAttribute('data-clip-id')")


def next_clip_shown(page, old: str) -> None:
    page.wait_for_function("old => { const e = document.querySelector('[data-clip-id]');"
                           " return e && e.getAttribute('data-clip-id') !== old; }", arg=old)


def counter(page) -> str:
    return page.get_by_test_id("labeller-counter").inner_text()


class HeldSocket:
    """The page's Streamlit websocket through Playwright, with what the page sends held back on demand: verdicts
    "in flight" that the server has not received (then released, or lost with the tab)."""

    def __init__(self, page):
        self.hold, self.held, self.server = False, [], None
        page.route_web_socket(re.compile(r".*/_stcore/stream"), self._route)

    def _route(self, ws) -> None:
        server = ws.connect_to_server()
        self.server = server

        def up(message):
            if self.hold:
                self.held.append(message)
            else:
                server.send(message)

        ws.on_message(up)
        server.on_message(lambda message: ws.send(message))

    def release(self) -> None:
        self.hold = False
        for message in self.held:
            self.server.send(message)
        self.held = []


def test_a_coach_labels_a_whole_video_with_the_keyboard(page, app_url, ingested, tmp_path):
    clips = store.list_clips(ingested)
    sign_in(page, app_url, "Dana")
    page.wait_for_timeout(800)

    # The clip plays in the player: its video advances.
    player = page.frame_locator("iframe.fc-player.fc-on")
    assert player.locator("video").evaluate("v => new Promise(r => setTimeout(() => r(v.currentTime), 800))") > 0

    seen = []
    keys = [["y"], ["1", "n"], ["y"]] + [["n"]] * (len(clips) - 3)
    for n, presses in enumerate(keys, start=1):
        shown = on_screen(page)
        seen.append(shown)
        for key in presses:
            page.keyboard.press(key.upper() if key.isalpha() else key)
            if key == "1":  # ticks the first criterion; the verdict key then sends it with the verdict
                expect(page.get_by_role("checkbox", name=re.compile("^1 · depth"))).to_be_checked()
        events = wait_for_events(ingested, "Dana", n)
        assert len(events) == n, f"after clip {n}: {events}"
        assert events[-1]["clip_id"] == shown  # the verdict went to the clip that was on screen
        if n < len(keys):
            next_clip_shown(page, shown)

    page.get_by_text("Nothing left to label").wait_for()
    events = wait_for_events(ingested, "Dana", len(clips))
    assert [e["verdict"] for e in events] == ["correct", "incorrect", "correct"] + ["incorrect"] * (len(clips) - 3)
    assert len({e["clip_id"] for e in events}) == len(clips)  # each clip once, none doubled
    assert events[1]["criteria"]["depth"] == "fail"  # key 1 ticked the first squat criterion
    assert all(e["seconds"] > 0 for e in events)
    assert len(set(seen)) == len(clips) and seen == [e["clip_id"] for e in events]
    expect(page.get_by_test_id("labeller-counter")).to_have_text(f"{len(clips)} saved · 0 on their way")

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
    ready(page)
    assert on_screen(page) == expected[0]
    page.keyboard.press("Y")
    next_clip_shown(page, expected[0])
    assert on_screen(page) == expected[1]  # at once, before the server answered
    events = wait_for_events(trained, "Fay", 1)
    assert [(e["clip_id"], e["verdict"]) for e in events] == [(expected[0], "correct")]

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


# ---------------------------------------------------------------- the in-browser labeller: nothing lost, nothing doubled


@pytest.fixture(scope="module")
def many(tmp_path_factory) -> Project:
    """The synthetic sample project: 36 pose-only clips."""
    from curation.sample import sample_project

    project = Project.open(tmp_path_factory.mktemp("many") / "project")
    sample_project(project, clips_per_class=6)
    return project


@pytest.fixture(scope="module")
def many_url(many):
    yield from serve(many)


def choose_coach(page, name: str) -> None:
    """After a reload (a new session): pick a known coach again."""
    page.get_by_role("button", name="Start labelling").wait_for()
    if name not in page.locator(".st-key-who_pick").inner_text():
        page.locator(".st-key-who_pick").click()
        page.get_by_role("option", name=name, exact=True).click()
    page.get_by_role("button", name="Start labelling").click()
    ready(page)


def press_on_new_clips(page, keys: list[str], shown: list[str]) -> None:
    """Each key as soon as a clip not judged yet is on screen (never waiting for the server's answer)."""
    for key in keys:
        page.wait_for_function("seen => { const e = document.querySelector('[data-clip-id]');"
                               " return e && !seen.includes(e.getAttribute('data-clip-id')); }", arg=shown)
        shown.append(on_screen(page))
        page.keyboard.press(key)


def test_thirty_clips_labelled_as_fast_as_keys_go_land_once_each_in_order(page, many_url, many):
    sign_in(page, many_url, "Hal")
    shown: list[str] = []
    keys = ["Y" if i % 3 else "N" for i in range(30)]
    press_on_new_clips(page, keys, shown)
    events = wait_for_events(many, "Hal", 30, timeout=90)
    assert [e["clip_id"] for e in events] == shown  # exactly 30, in the order pressed, each on the clip shown
    assert [e["verdict"] for e in events] == ["correct" if k == "Y" else "incorrect" for k in keys]
    assert len(set(shown)) == 30 and all(e["kind"] == "verdict" for e in events)
    expect(page.get_by_test_id("labeller-counter")).to_have_text("30 saved · 0 on their way")
    page.wait_for_timeout(1500)
    assert len(wait_for_events(many, "Hal", 31, timeout=1)) == 30  # and nothing more arrives later


def test_a_reload_with_verdicts_in_flight_loses_nothing(page, many_url, many):
    socket = HeldSocket(page)
    sign_in(page, many_url, "Ida")
    shown: list[str] = []
    press_on_new_clips(page, ["Y", "N", "Y"], shown)
    assert len(wait_for_events(many, "Ida", 3, page=page)) == 3
    socket.hold = True  # the server hears nothing more: these verdicts stay in flight
    press_on_new_clips(page, ["N", "N", "Y"], shown)
    expect(page.get_by_test_id("labeller-counter")).to_have_text("3 saved · 3 on their way")
    assert len(wait_for_events(many, "Ida", 4, timeout=1.5, page=page)) == 3
    socket.hold, socket.held = False, []  # the tab goes with what it held: only the browser's outbox is left
    page.reload()
    choose_coach(page, "Ida")
    events = wait_for_events(many, "Ida", 6, page=page)
    assert [e["clip_id"] for e in events] == shown
    assert [e["verdict"] for e in events] == ["correct", "incorrect", "correct", "incorrect", "incorrect", "correct"]
    assert on_screen(page) not in shown
    press_on_new_clips(page, ["Y"], shown)
    assert [e["clip_id"] for e in wait_for_events(many, "Ida", 7, page=page)] == shown
    expect(page.get_by_test_id("labeller-counter")).to_have_text("4 saved · 0 on their way")


def test_undo_takes_back_a_verdict_still_in_flight(page, many_url, many):
    socket = HeldSocket(page)
    sign_in(page, many_url, "Jo")
    first = on_screen(page)
    socket.hold = True
    page.keyboard.press("Y")
    next_clip_shown(page, first)
    page.wait_for_timeout(300)  # the labeller has sent it (after painting the next clip): it is in flight
    page.keyboard.press("U")  # the verdict has not reached the server: undo works all the same
    page.wait_for_function("id => document.querySelector('[data-clip-id]').getAttribute('data-clip-id') === id",
                           arg=first)
    expect(page.get_by_test_id("labeller-counter")).to_have_text("0 saved · 2 on their way")
    socket.release()
    events = wait_for_events(many, "Jo", 2, page=page)
    assert [(e["clip_id"], e["kind"]) for e in events] == [(first, "verdict"), (first, "undo")]
    assert events[1]["undoes"] == events[0]["id"]
    page.keyboard.press("N")  # judged again
    events = wait_for_events(many, "Jo", 3, page=page)
    assert [(e["clip_id"], e["kind"], e["verdict"]) for e in events][2] == (first, "verdict", "incorrect")
    assert [(r["clip_id"], r["verdict"]) for r in store.current_labels(many) if r["annotator"] == "Jo"] == [
        (first, "incorrect")]


def test_two_tabs_of_one_coach_record_a_verdict_in_flight_once(page, many_url, many):
    socket = HeldSocket(page)
    sign_in(page, many_url, "Kay")
    first = on_screen(page)
    socket.hold = True
    page.keyboard.press("N")  # in this tab's outbox (and localStorage), not at the server
    next_clip_shown(page, first)
    other = page.context.new_page()  # a second tab of the same browser: it finds the verdict and sends it
    other.goto(f"{many_url}/Label")
    choose_coach(other, "Kay")
    assert on_screen(other) != first  # that clip has a verdict on its way: not shown again
    assert [e["clip_id"] for e in wait_for_events(many, "Kay", 1, page=page)] == [first]
    socket.release()  # the first tab's copy arrives too, and is recorded once
    page.wait_for_timeout(2000)
    assert [(e["clip_id"], e["verdict"]) for e in wait_for_events(many, "Kay", 2, timeout=2, page=page)] == [(first, "incorrect")]
    expect(page.get_by_test_id("labeller-counter")).to_have_text("1 saved · 0 on their way")


def test_assisted_labelling_by_keys_records_whether_the_model_was_shown(page, trained_url, trained):
    from model import assist

    def opinion_of(clip_id: str) -> dict:
        return assist.opinions(trained, [store.get_clip(trained, clip_id)])[clip_id]

    sidebar = page.get_by_test_id("stSidebar")
    sign_in(page, trained_url, "Lou")
    # off (the default): nothing of the model is shown, and what it thought is recorded all the same
    first = on_screen(page)
    expect(page.locator(".fc-opinion")).to_have_text("")
    page.keyboard.press("Y")
    [event] = [e for e in wait_for_events(trained, "Lou", 1)]
    [row] = [r for r in store.assisted_verdicts(trained) if r["id"] == event["id"]]
    said = opinion_of(first)
    assert row["prediction"] == {k: said[k] for k in store.PREDICTION_FIELDS} and row["prediction_shown"] is False

    # on: the opinion with its failed criteria ticked; A accepts it
    sidebar.get_by_text("on", exact=True).click()
    expect(page.locator(".fc-opinion")).to_contain_text("The model's opinion")
    ready(page)
    second = on_screen(page)
    said = opinion_of(second)
    ticked = page.locator("[data-criterion]:checked").evaluate_all("boxes => boxes.map(b => b.dataset.criterion)")
    assert ticked == said["failed"]
    page.keyboard.press("A")
    next_clip_shown(page, second)
    event = wait_for_events(trained, "Lou", 2)[-1]
    assert (event["clip_id"], event["verdict"]) == (second, said["verdict"])
    assert sorted(k for k, v in event["criteria"].items() if v == "fail") == sorted(said["failed"])
    [row] = [r for r in store.assisted_verdicts(trained) if r["id"] == event["id"]]
    assert row["prediction_shown"] is True and row["prediction"]["run_id"] == said["run_id"]

    # decide first: hidden until the coach's verdict, then "you said X, the model said Y (p)"
    sidebar.get_by_text("decide first", exact=True).click()
    expect(page.locator(".fc-opinion")).to_have_text("")
    ready(page)
    third = on_screen(page)
    said = opinion_of(third)
    page.keyboard.press("N")
    expect(page.locator(".fc-feedback")).to_contain_text(
        f"Clip {third}: you said incorrect, the model said {said['verdict']} (p(incorrect) {said['p_incorrect']:.2f})")
    event = wait_for_events(trained, "Lou", 3)[-1]
    [row] = [r for r in store.assisted_verdicts(trained) if r["id"] == event["id"]]
    assert event["clip_id"] == third and row["prediction_shown"] is False and row["prediction"]["verdict"] == said["verdict"]
