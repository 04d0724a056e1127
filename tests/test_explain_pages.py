"""Explanations on the pages through AppTest: the Train error gallery (fold-true: its p is the listed out-of-fold
p), the Label page's "Model's view" of the clip on screen (computed only when asked), the Suggest page's view of
a suggested clip."""

from __future__ import annotations

import re

import pytest
from streamlit.testing.v1 import AppTest

from curation import store
from curation.project import Project
from curation.sample import sample_project
from model import choice, runs
from model.train import RunConfig, train_run
from tests.conftest import flip_labels
from tests.test_label import page as open_page

TRAIN, LABEL, SUGGEST = "pages/4_Train.py", "pages/2_Label.py", "pages/5_Suggest.py"
P_SHOWN = re.compile(r"p\(incorrect\) = (\d\.\d\d)")


@pytest.fixture
def trained(project) -> tuple[Project, str]:
    """The sample project with some labels made wrong on purpose (the error gallery has clips to show), and one
    baseline run."""
    sample_project(project, clips_per_class=6)
    flip_labels(project, 6)
    return project, train_run(project, RunConfig(model="baseline", folds=3))["run_id"]


def explanation_captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption if P_SHOWN.search(c.value)]


def test_the_error_gallery_shows_each_error_with_its_out_of_fold_p_and_fold_model(trained):
    # On main the gallery explained every error with the final model, trained on the clip: the p under a clip
    # listed as predicted correct at p = 0.02 read 0.97.
    project, run_id = trained
    oof = runs.read_oof(project, run_id).set_index("clip_id")
    at = open_page(TRAIN)
    errors = at.selectbox(key="train_error_clip").options
    assert errors, "the flipped labels must give the gallery some errors"
    for clip_id in errors:
        at.selectbox(key="train_error_clip").set_value(clip_id).run()
        assert not at.exception, at.exception
        [caption] = explanation_captions(at)
        assert P_SHOWN.search(caption).group(1) == f"{oof.p_incorrect[clip_id]:.2f}", clip_id
        assert f"fold {oof.fold[clip_id]} model (out-of-sample" in caption
        assert len(at.get("iframe")) >= 1  # the player, with the frames shaded and the joints haloed


def test_the_label_page_explains_the_clip_on_screen_only_when_asked(trained, monkeypatch):
    project, run_id = trained
    calls = []
    explain = runs.explain
    monkeypatch.setattr(runs, "explain", lambda *a: calls.append(a[2]["id"]) or explain(*a))
    at = open_page(LABEL, coach="kim")
    view = next(t for t in at.toggle if t.key and t.key.startswith("label_model_view_"))
    assert view.value is False and not calls and not explanation_captions(at)  # the verdict path computes nothing
    view.set_value(True).run()
    assert not at.exception, at.exception
    on_screen = at.session_state["label_clip"]
    assert calls == [on_screen]
    [caption] = explanation_captions(at)
    current = choice.current(project).run_id
    expected = explain(project, current, store.get_clip(project, on_screen))
    assert P_SHOWN.search(caption).group(1) == f"{expected['p_incorrect']:.2f}"
    assert ("out-of-sample" in caption) == (expected["fold"] is not None) != ("from the final model" in caption)


def test_the_suggest_page_explains_a_suggested_clip_when_picked(trained, monkeypatch):
    project, run_id = trained
    calls = []
    explain = runs.explain
    monkeypatch.setattr(runs, "explain", lambda *a: calls.append(a[2]["id"]) or explain(*a))
    at = open_page(SUGGEST)
    pick = at.selectbox(key="suggest_explain_clip")
    assert pick.value == "(none)" and not calls
    clip_id = pick.options[1]
    pick.set_value(clip_id).run()
    assert not at.exception, at.exception
    assert calls == [clip_id]
    [caption] = explanation_captions(at)
    assert "from the final model" in caption  # a suggested clip is unlabelled: outside the run's evaluation
    p = runs.read_predictions(project, run_id)[clip_id][0]
    assert P_SHOWN.search(caption).group(1) == f"{p:.2f}"
