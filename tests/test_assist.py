"""Model-assisted labelling: the current run's opinion of clips, the project's mode, the label events that record
the opinion, the coach-model agreement report, and their widgets (issue 12)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from curation import accounts, store
from curation.dataset import clip_aspect, export_folder, import_folder, load_clip_landmarks
from curation.project import Project
from curation.sample import sample_project
from model import assist, choice, runs
from model.features import clip_features
from model.train import RunConfig, load_criterion_models, train_run
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The synthetic sample (3 exercises, criteria with known faults) and a baseline run on it."""
    project = Project.open(tmp_path_factory.mktemp("assist") / "project")
    sample_project(project)
    run_id = train_run(project, RunConfig(model="baseline", folds=3))["run_id"]
    return project, run_id


def predicted(project: Project, run_id: str, clip: dict) -> tuple[float, dict[str, float]]:
    """What the run's final model and its criterion models say of a clip as it is now, computed here."""
    video = store.get_video(project, clip["video_id"]) if clip["video_id"] else None
    features = clip_features(load_clip_landmarks(project, clip), float(clip["fps"]), clip_aspect(clip, video))
    p = float(runs.load_fitted(project, run_id).predict([features], [clip["exercise"]])[0])
    heads = load_criterion_models(runs.run_dir(project, run_id))
    fails = {key.split("/", 1)[1]: float(model.predict([features], [clip["exercise"]])[0])
             for key, model in heads.items() if key.startswith(clip["exercise"] + "/")}
    return p, fails


# ---- opinions ----


def test_an_opinion_is_what_the_runs_models_predict_for_the_clip(trained):
    project, run_id = trained
    clips = store.list_clips(project)
    chosen = [next(c for c in clips if c["exercise"] == ex) for ex in ("squat", "push-up", "bicep curl")]
    said = assist.opinions(project, chosen)
    assert set(said) == {c["id"] for c in chosen}
    saved = runs.read_predictions(project, run_id)
    for clip in chosen:
        got = said[clip["id"]]
        p, fails = predicted(project, run_id, clip)
        assert got["run_id"] == run_id
        assert got["p_incorrect"] == pytest.approx(p, abs=1e-9) == pytest.approx(saved[clip["id"]][0], abs=1e-9)
        assert got["verdict"] == ("incorrect" if p >= 0.5 else "correct")
        assert got["confidence"] == pytest.approx(max(p, 1 - p))
        assert fails and got["criteria"] == pytest.approx(fails, abs=1e-9)
        assert got["failed"] == [n for n in got["criteria"] if got["criteria"][n] >= 0.5]
        rubric = [c["name"] for c in store.criteria_of(project, clip["exercise"], include_retired=True)]
        assert list(got["criteria"]) == [n for n in rubric if n in got["criteria"]]  # the rubric's order


def test_the_failed_criteria_follow_p_fail_across_the_project(trained):
    project, _ = trained
    said = assist.opinions(project, store.list_clips(project))
    assert len(said) == len(store.list_clips(project))
    failed = [o for o in said.values() if o["failed"]]
    assert failed and len(failed) < len(said)  # the sample has clips failing a criterion and clean ones
    for o in said.values():
        assert set(o["failed"]) == {n for n, p in o["criteria"].items() if p >= 0.5}
        assert o["confidence"] >= 0.5 and (o["verdict"] == "incorrect") == (o["p_incorrect"] >= 0.5)


def test_a_clip_edited_after_the_run_is_judged_on_its_present_frames(trained):
    project, run_id = trained
    clip = [c for c in store.list_clips(project) if c["exercise"] == "squat"][-1]
    before = assist.opinions(project, [clip])[clip["id"]]["p_incorrect"]
    store.set_bounds(project, clip["id"], clip["start_frame"] + 8, clip["end_frame"], "lead")
    moved = store.get_clip(project, clip["id"])
    p, _ = predicted(project, run_id, moved)
    after = assist.opinions(project, [moved])[clip["id"]]["p_incorrect"]
    assert after == pytest.approx(p, abs=1e-9) and after != pytest.approx(before, abs=1e-6)


def test_an_exercise_the_run_never_saw_and_a_clip_without_pose_are_left_out(trained):
    project, _ = trained
    np.save(project.poses / "lunge.npy", np.random.default_rng(1).random((40, 33, 4)).astype(np.float32))
    row = {"start_frame": 0, "end_frame": 40, "fps": 30.0, "method": "imported"}
    store.add_clips(project, [{**row, "id": "x_lunge", "exercise": "lunge", "pose_path": "poses/lunge.npy"},
                              {**row, "id": "x_gone", "exercise": "squat", "pose_path": "poses/gone.npy"}], [])
    squat = next(c for c in store.list_clips(project) if c["exercise"] == "squat")
    said = assist.opinions(project, [store.get_clip(project, "x_lunge"), store.get_clip(project, "x_gone"), squat])
    assert set(said) == {squat["id"]}
    for clip_id in ("x_lunge", "x_gone"):  # out of the way of the module's later training
        store.set_excluded(project, "lead", True, "test", clip_id=clip_id)


def test_the_opinion_follows_the_run_a_lead_promotes(trained):
    project, first = trained
    clip = next(c for c in store.list_clips(project) if c["exercise"] == "push-up")
    assert assist.opinions(project, [clip])[clip["id"]]["run_id"] == first
    second = train_run(project, RunConfig(model="baseline", folds=2, seed=1))["run_id"]
    choice.promote(project, second, "li")
    said = assist.opinions(project, [clip])[clip["id"]]
    p, _ = predicted(project, second, clip)
    assert said["run_id"] == second and said["p_incorrect"] == pytest.approx(p, abs=1e-9)
    choice.promote(project, first, "li")
    assert assist.opinions(project, [clip])[clip["id"]]["run_id"] == first
    assert assist.opinions(project, [clip], run_id=second)[clip["id"]]["run_id"] == second


def test_no_finished_run_means_no_opinion(project):
    sample_project(project, clips_per_class=2)
    assert assist.opinions(project, store.list_clips(project)) == {}
    assert assist.opinions(project, []) == {}


# ---- the project's mode ----


def test_the_last_mode_a_lead_set_counts_and_none_leaves_it_to_coaches(project):
    assert assist.project_mode(project) is None
    assist.set_project_mode(project, "on", "li")
    assert assist.project_mode(project) == "on"
    assist.set_project_mode(project, "decide first", "li")
    assert assist.project_mode(project) == "decide first"
    assist.set_project_mode(project, None, "li")
    assert assist.project_mode(project) is None
    events = store.setting_events(project, assist.SETTING)
    assert [e["value"] for e in events] == ["on", "decide first", None] and {e["annotator"] for e in events} == {"li"}


def test_an_unknown_mode_is_refused_in_one_line(project):
    with pytest.raises(assist.AssistError, match="not 'always'"):
        assist.set_project_mode(project, "always", "li")
    assert store.setting_events(project, assist.SETTING) == []


def test_with_sign_in_only_a_lead_sets_the_mode(project, tmp_path, monkeypatch):
    monkeypatch.setenv(accounts.PASSWORDS_ENV, str(tmp_path / "passwords"))  # sign-in configured
    store.put_account(project, "kim", "coach", "admin")
    store.put_account(project, "li", "lead", "admin")
    for who in ("kim", "nobody"):
        with pytest.raises(assist.AssistError, match="only a lead"):
            assist.set_project_mode(project, "on", who)
    assert assist.project_mode(project) is None
    assist.set_project_mode(project, "on", "li")
    assert assist.project_mode(project) == "on"
    monkeypatch.delenv(accounts.PASSWORDS_ENV)  # the local single-user mode: everything allowed
    assist.set_project_mode(project, "off", "kim")
    assert assist.project_mode(project) == "off"


# ---- label events ----

OPINION = {"run_id": "20261202-000000-abcdef", "p_incorrect": 0.75, "verdict": "incorrect", "failed": ["depth"]}


def test_a_label_event_keeps_the_opinion_and_whether_it_was_shown(project):
    sample_project(project, clips_per_class=2)
    first, second, third = [c["id"] for c in store.list_clips(project)][:3]
    store.add_label_event(project, {"clip_id": first, "annotator": "ana", "verdict": "correct", "seconds": 2.0,
                                    "prediction": {**OPINION, "confidence": 0.75, "criteria": {"depth": 0.6}},
                                    "prediction_shown": True})
    store.add_label_event(project, {"clip_id": second, "annotator": "ana", "verdict": "incorrect",
                                    "prediction": OPINION, "prediction_shown": False})
    store.add_label_event(project, {"clip_id": third, "annotator": "ana", "verdict": "correct"})  # as before
    rows = {r["clip_id"]: r for r in store.assisted_verdicts(project)}
    assert rows[first]["prediction"] == OPINION and rows[first]["prediction_shown"] is True  # only the 4 fields
    assert rows[second]["prediction"] == OPINION and rows[second]["prediction_shown"] is False
    assert rows[third]["prediction"] is None and rows[third]["prediction_shown"] is None
    # What read label events before still does.
    assert {r["clip_id"] for r in store.current_labels(project) if r["annotator"] == "ana"} == {first, second, third}
    assert store.consensus_labels(project)[second]["votes"]["incorrect"] >= 1
    assert [e["verdict"] for e in store.clip_history(project, first)][-1] == "correct"
    assert store.label_history(project, first)[-1]["prediction_shown"] == 1  # after the import's event


@pytest.mark.parametrize("fields, message", [
    ({"prediction": {**OPINION, "verdict": "maybe"}}, "prediction needs"),
    ({"prediction": {**OPINION, "p_incorrect": 1.5}}, "prediction needs"),
    ({"prediction": {**OPINION, "p_incorrect": math.nan}}, "prediction needs"),
    ({"prediction": "incorrect"}, "must be a dict"),
    ({"prediction": None, "prediction_shown": True}, "must be recorded"),
    ({"prediction": OPINION, "prediction_shown": "yes"}, "true or false"),
])
def test_a_malformed_opinion_is_refused_and_nothing_written(project, fields, message):
    store.add_annotator(project, "ana")
    sample_project(project, clips_per_class=2)
    clip_id = store.list_clips(project)[0]["id"]
    before = store.label_history(project, clip_id)
    with pytest.raises(store.StoreError, match=message):
        store.add_label_event(project, {"clip_id": clip_id, "annotator": "ana", "verdict": "correct", **fields})
    assert store.label_history(project, clip_id) == before


def test_the_opinions_and_the_mode_round_trip_through_export_and_import(project, tmp_path):
    sample_project(project, clips_per_class=2)
    ids = [c["id"] for c in store.list_clips(project)]
    store.add_label_event(project, {"clip_id": ids[0], "annotator": "ana", "verdict": "correct",
                                    "prediction": OPINION, "prediction_shown": True, "seconds": 1.5})
    store.add_label_event(project, {"clip_id": ids[1], "annotator": "ana", "verdict": "incorrect",
                                    "prediction": {**OPINION, "failed": []}, "prediction_shown": False})
    assist.set_project_mode(project, "decide first", "li")
    export_folder(project, tmp_path / "a")
    other = Project.open(tmp_path / "other")
    import_folder(other, tmp_path / "a")
    export_folder(other, tmp_path / "b")
    for table in ("label_events", "project_settings"):
        assert (tmp_path / "a/tables" / f"{table}.csv").read_bytes() == \
            (tmp_path / "b/tables" / f"{table}.csv").read_bytes()
    assert store.assisted_verdicts(other) == store.assisted_verdicts(project)
    assert [v["prediction"] for v in store.assisted_verdicts(other)] == [OPINION, {**OPINION, "failed": []}]
    assert assist.project_mode(other) == "decide first"


# ---- the coach-model report ----


def verdict(coach: str, said: str, model: str | None, shown: bool | None, seconds: float | None) -> dict:
    prediction = None if model is None else {**OPINION, "verdict": model}
    return {"annotator": coach, "verdict": said, "prediction": prediction, "prediction_shown": shown,
            "seconds": seconds}


def group(report: dict, coach: str, shown: bool) -> dict:
    return next(g for g in report["groups"] if g["coach"] == coach and g["shown"] is shown)


def test_agreement_and_seconds_are_split_by_shown_per_coach_and_overall():
    verdicts = [
        verdict("ann", "incorrect", "incorrect", True, 2.0),  # agrees
        verdict("ann", "correct", "correct", True, 4.0),  # agrees
        verdict("ann", "correct", "incorrect", True, 9.0),  # disagrees
        verdict("ann", "correct", "incorrect", False, 5.0),  # disagrees
        verdict("ann", "correct", None, False, 7.0),  # no model to ask: timed, no agreement
        verdict("bob", "incorrect", "incorrect", True, None),  # agrees, untimed
        verdict("bob", "correct", "correct", False, 3.0),  # agrees
        verdict("bob", "correct", "correct", None, 1.0),  # made before showing was recorded: left out
    ]
    report = assist.coach_model_report(verdicts, min_group=2)
    ann_on, ann_off = group(report, "ann", True), group(report, "ann", False)
    assert (ann_on["verdicts"], ann_on["with_prediction"], ann_on["agree"]) == (3, 3, 2)
    assert ann_on["agreement"] == pytest.approx(2 / 3) and ann_on["median_seconds"] == 4.0
    assert (ann_off["verdicts"], ann_off["with_prediction"], ann_off["agreement"]) == (2, 1, 0.0)
    assert ann_off["median_seconds"] == 6.0 and not ann_off["enough_agreement"] and ann_off["enough_seconds"]
    bob_on = group(report, "bob", True)
    assert bob_on["agreement"] == 1.0 and bob_on["median_seconds"] is None and bob_on["timed"] == 0
    every_on, every_off = group(report, assist.ALL, True), group(report, assist.ALL, False)
    assert every_on["agreement"] == pytest.approx(3 / 4) and every_on["median_seconds"] == 4.0
    assert every_off["agreement"] == pytest.approx(1 / 2) and every_off["median_seconds"] == 5.0  # of 5, 7, 3
    assert report["unrecorded"] == 1
    assert report["gap"]["agreement"] == pytest.approx(3 / 4 - 1 / 2) and report["gap"]["median_seconds"] == -1.0
    assert [g["coach"] for g in report["groups"]] == ["ann", "ann", "bob", "bob", assist.ALL, assist.ALL]
    small = assist.coach_model_report(verdicts)  # the default minimum: every group too small to compare
    assert small["gap"] == {"agreement": None, "median_seconds": None}
    assert not any(g["enough_agreement"] or g["enough_seconds"] for g in small["groups"])


def write_assisted_verdicts(project: Project, n: int) -> list[str]:
    """n shown verdicts of ann agreeing with the model on all but the first, in 2 s each, and n not shown, agreeing
    on half, in 4 s each; returns the clip ids (2n clips)."""
    sample_project(project, clips_per_class=max(1, n))
    ids = [c["id"] for c in store.list_clips(project)][:2 * n]
    for i, clip_id in enumerate(ids):
        shown = i < n
        model = "incorrect" if (i == 0 if shown else i % 2 == 0) else "correct"
        store.add_label_event(project, {"clip_id": clip_id, "annotator": "ann", "verdict": "correct",
                                        "seconds": 2.0 if shown else 4.0, "prediction": {**OPINION, "verdict": model},
                                        "prediction_shown": shown})
    return ids


def test_the_report_reads_the_projects_events_and_leaves_undone_verdicts_out(project):
    ids = write_assisted_verdicts(project, 4)  # shown: 3 of 4 agree; not shown (i = 4..7): i odd agree, 2 of 4
    undone = store.add_label_event(project, {"clip_id": ids[0], "annotator": "ann", "verdict": "incorrect",
                                             "prediction": OPINION, "prediction_shown": True, "seconds": 30.0})
    store.add_label_event(project, {"clip_id": ids[0], "annotator": "ann", "kind": "undo", "undoes": undone})
    report = assist.report(project, min_group=4)
    on, off = group(report, assist.ALL, True), group(report, assist.ALL, False)
    assert (on["verdicts"], on["agreement"], on["median_seconds"]) == (4, 0.75, 2.0)
    assert (off["verdicts"], off["agreement"], off["median_seconds"]) == (4, 0.5, 4.0)
    assert report["gap"] == {"agreement": 0.25, "median_seconds": -2.0}


# ---- pages and widgets ----


def test_the_dataset_page_reports_coaches_and_the_model(project):
    ids = write_assisted_verdicts(project, assist.MIN_GROUP)
    store.add_label_event(project, {"clip_id": store.list_clips(project)[-1]["id"], "annotator": "bob",
                                    "verdict": "incorrect", "prediction": OPINION, "prediction_shown": True})
    at = AppTest.from_file(str(ROOT / "pages/3_Dataset.py"), default_timeout=120)
    at.session_state["dataset_tab"] = "Agreement"  # drawn only while open
    at.run()
    assert not at.exception, at.exception
    assert "Coaches and the model" in [h.value for h in at.subheader]
    table = next(d.value for d in at.dataframe if "model's opinion" in d.value.columns)
    rows = {(r.coach, r["model's opinion"]): r for _, r in table.iterrows()}
    n = assist.MIN_GROUP
    assert rows[("ann", "shown")]["agreement"] == f"{(n - 1) / n:.0%} (of {n})"
    assert rows[("ann", "not shown")]["median seconds"] == f"4.0 s (of {n})"
    assert rows[("bob", "shown")]["agreement"] == f"too few (1 < {n})"
    assert rows[("bob", "not shown")]["agreement"] == "none"
    assert rows[(assist.ALL, "shown")]["agreement"] == f"{n / (n + 1):.0%} (of {n + 1})"  # bob's one agrees
    texts = " ".join(t.value for t in at.text)
    assert "agreement with the model is +" in texts and "-2.0 s (median)" in texts
    # Each label event's history row names the opinion recorded with it (the Clips tab, the first).
    at = AppTest.from_file(str(ROOT / "pages/3_Dataset.py"), default_timeout=120)
    at.run()
    at.selectbox(key="dataset_history_clip").set_value(ids[0]).run()
    history = next(d.value for d in at.dataframe if "model" in d.value.columns)
    assert history.model.iloc[-1] == "incorrect, p 0.75, failed depth; shown"
    at.selectbox(key="dataset_history_clip").set_value(ids[-1]).run()
    history = next(d.value for d in at.dataframe if "model" in d.value.columns)
    assert history.model.iloc[-1] == "correct, p 0.75, failed depth; not shown"


def assist_script():
    import streamlit as st

    import ui

    project = ui.project()
    st.session_state["assist_mode_out"] = ui.assist_control(project, st.session_state.get("coach", "ann"))


def test_a_coach_chooses_unless_the_project_sets_the_mode(project):
    at = AppTest.from_function(assist_script, default_timeout=30)
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["assist_mode_out"] == "off"  # off until the coach turns it on
    assert not at.selectbox  # ann is no lead: no project setting
    at.radio(key="label_assist_mode:ann").set_value("decide first").run()
    assert at.session_state["assist_mode_out"] == "decide first"
    at.session_state["coach"] = "bo"
    at.run()
    assert at.session_state["assist_mode_out"] == "off"  # each coach's own choice
    assist.set_project_mode(project, "on", "li")
    at.run()
    assert at.session_state["assist_mode_out"] == "on" and not at.radio
    assert any("set for this project by a lead" in c.value for c in at.sidebar.caption)


def test_a_lead_sets_the_mode_for_every_coach_from_the_sidebar(project):
    store.add_annotator(project, "li", "lead")
    at = AppTest.from_function(assist_script, default_timeout=30)
    at.session_state["coach"] = "li"
    at.run()
    assert not at.exception, at.exception
    at.selectbox(key="label_assist_project_pick").set_value("decide first").run()
    at.button(key="label_assist_project_save").click().run()
    assert not at.exception, at.exception
    assert assist.project_mode(project) == "decide first"
    assert store.setting_events(project, assist.SETTING)[-1]["annotator"] == "li"
    assert at.session_state["assist_mode_out"] == "decide first"


def test_an_admin_sets_the_mode_on_the_admin_page(project):
    at = AppTest.from_file(str(ROOT / "pages/6_Admin.py"), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    at.selectbox(key="admin_assist_pick").set_value("on").run()
    at.button(key="admin_assist_save").click().run()
    assert not at.exception, at.exception
    assert assist.project_mode(project) == "on"
    assert any(c.value.startswith("on since") for c in at.caption)
