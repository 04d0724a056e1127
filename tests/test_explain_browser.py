"""The Label page's "Model's view" in a real browser: turning it on shades the frames and halos the joints in the
player of the clip on screen, and the verdict keys still work."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from curation.project import Project
from curation.sample import sample_project
from model.train import RunConfig, train_run
from tests.test_browser import CHROMIUM, page, ready, serve, sign_in, wait_for_events  # noqa: F401  (fixture)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed (make test installs it)"),
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Project:
    project = Project.open(tmp_path_factory.mktemp("explain-browser") / "project")
    sample_project(project, clips_per_class=4)
    train_run(project, RunConfig(model="baseline", folds=3))
    return project


@pytest.fixture(scope="module")
def trained_url(trained):
    yield from serve(trained)


def player_explanation(page) -> dict:
    """The explanation data inside the player frame of the clip on screen (curation.player), {} when none is drawn."""
    frame = page.locator("iframe.fc-player.fc-on").element_handle().content_frame()
    data = frame.evaluate("() => { const e = document.getElementById('clip-data'); return e ? e.textContent : null; }")
    if not data:
        raise AssertionError("no clip player on screen")
    return json.loads(data)["explain"]


def explained_on_screen(page, timeout: float = 20_000) -> dict:
    """The explanation of the player on screen, once the page has drawn one (the toggle reruns the page)."""
    deadline = time.time() + timeout / 1000
    while True:
        shown = player_explanation(page)
        if shown or time.time() > deadline:
            return shown
        page.wait_for_timeout(200)


def test_models_view_draws_the_explanation_in_the_player_of_the_clip_on_screen(page, trained_url, trained):
    sign_in(page, trained_url, "Gus")
    ready(page)
    assert player_explanation(page) == {}  # off by default: the coach judges first
    page.get_by_text("Model's view").click()
    page.get_by_text(re.compile(r"p\(incorrect\) = \d\.\d\d from the")).wait_for()
    shown = explained_on_screen(page)
    assert max(shown["attention"]) == 1.0 and len(set(shown["attention"])) > 3  # a band that varies over time
    assert max(shown["joints"]) == 1.0 and sum(w > 0 for w in shown["joints"]) > 3
    page.evaluate("document.activeElement && document.activeElement.blur()")
    page.keyboard.press("N")  # the verdict keys still work with the model's view open
    events = wait_for_events(trained, "Gus", 1)
    assert [e["verdict"] for e in events] == ["incorrect"]
