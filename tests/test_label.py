"""The Label and Dataset pages through AppTest: verdicts land once, undo, several coaches, untrusted text."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from curation import store
from curation.dataset import import_folder, set_clip_bounds
from curation.kinematics import COMPONENTS
from curation.project import Project
from curation.sample import sample_project
from tests.conftest import ROOT, add_two_clip_video, open_page, start_python
from tests.test_dataset import write_folder

LABEL, DATASET = "pages/2_Label.py", "pages/3_Dataset.py"


@pytest.fixture
def sample(project) -> Project:
    sample_project(project, clips_per_class=3)
    return project


def page(path: str, coach: str | None = None, **state) -> AppTest:
    """The page run once by AppTest, as `coach` (registered) when given, with these session state values."""
    if coach:
        store.add_annotator(Project.open(None), coach)
        state["annotator"] = coach
    return open_page(path, **state)


def button(at: AppTest, prefix: str):
    return next(b for b in at.button if b.key and b.key.startswith(prefix))


def labeller_data(at: AppTest) -> dict:
    """What the page gave the in-browser labeller in its last run (curation/labeller.js reads it)."""
    [element] = at.get("bidi_component")
    return json.loads(element.proto.json)


def send(at: AppTest, outbox: list[dict], showing: str | None = None) -> None:
    """One message of the labeller, as curation/labeller.js sends it: its whole outbox, the clip it shows now and
    the jump it applied; then the run that message causes."""
    at.session_state["label_surface"] = {"sync": {"outbox": outbox, "showing": showing,
                                                  "jump": at.session_state["label_jump"]}}
    at.run()
    assert not at.exception, at.exception


def entry(at: AppTest, verdict: str, failed=(), kind: str = "verdict", **extra) -> dict:
    """The outbox entry the labeller makes when a key judges the clip on screen."""
    card = labeller_data(at)["queue"][0]
    assert card["id"] == at.session_state["label_clip"]  # the page and the labeller agree on the clip on screen
    return {"rid": uuid.uuid4().hex, "type": "verdict", "kind": kind, "clip_id": card["id"], "verdict": verdict,
            "names": [c["name"] for c in card["criteria"]], "failed": list(failed), "components": {}, "note": "",
            "seconds": 1.25, "start_frame": card["start_frame"], "end_frame": card["end_frame"],
            "exercise": card["exercise"], **extra}


def judge(at: AppTest, verdict: str, failed=(), **extra) -> dict:
    """A verdict key on the clip on screen: the entry goes out, and the labeller shows the next clip."""
    sent = entry(at, verdict, failed, **extra)
    nxt = labeller_data(at)["queue"][1:2]
    send(at, [sent], showing=nxt[0]["id"] if nxt else None)
    return sent


def events_of(project: Project, coach: str) -> list[dict]:
    return [e for c in store.clip_ids(project) for e in store.label_history(project, c) if e["annotator"] == coach]


@pytest.mark.parametrize("path", [LABEL, DATASET])
def test_the_page_opens_on_an_empty_project(project, path):
    page(path, coach="kim")


@pytest.mark.parametrize("path", [LABEL, DATASET])
def test_the_page_opens_on_a_filled_project(sample, path):
    page(path, coach="kim")


def test_the_label_page_asks_who_is_labelling(sample):
    at = page(LABEL)
    assert any("name" in i.value for i in at.info)
    at.text_input(key="who_name").input("  Dana  ")
    at.button(key="who_start").click().run()
    assert at.session_state["annotator"] == "Dana"
    assert [a["name"] for a in store.list_annotators(sample)] == ["Dana"]


def test_an_empty_name_is_refused(sample):
    at = page(LABEL)
    at.button(key="who_start").click().run()
    assert any("name" in e.value for e in at.error)
    assert store.list_annotators(sample) == []


def test_a_verdict_lands_once_with_criteria_components_and_time(sample):
    at = page(LABEL, coach="kim")
    first = at.session_state["label_clip"]
    names = [c["name"] for c in labeller_data(at)["queue"][0]["criteria"]]
    sent = judge(at, "incorrect", failed=names[:1])  # key 1 ticked the first criterion, then N
    assert labeller_data(at)["acked"] == {sent["rid"]: events_of(sample, "kim")[0]["id"]}  # "saved" after the commit
    [event] = events_of(sample, "kim")
    assert (event["clip_id"], event["verdict"], event["kind"]) == (first, "incorrect", "verdict")
    assert "fail" in event["criteria"].values() and "pass" in event["criteria"].values()
    # issue 9: the sliders were not touched, so no complexity is stored as the coach's (main stored them all)
    assert event["seconds"] >= 0 and all(event[c] is None for c in COMPONENTS)
    assert at.session_state["label_clip"] != first  # auto-advance
    at.run()  # a rerun (refresh of the same session) adds nothing
    send(at, [sent], showing=at.session_state["label_clip"])  # nor the same outbox again (a reload, a second tab)
    assert len(events_of(sample, "kim")) == 1


def test_a_repeated_request_is_recorded_once(sample):
    at = page(LABEL, coach="kim")
    clip = at.session_state["label_clip"]
    sent = judge(at, "correct")
    send(at, [sent, sent])  # resent, even twice in one outbox: two tabs of one coach, a reload
    # A verdict sent again carries the same request as the first.
    again = store.add_label_event(sample, {"clip_id": clip, "annotator": "kim", "verdict": "correct",
                                           "request_id": sent["rid"]})
    assert again is None and len(events_of(sample, "kim")) == 1


def test_undo_takes_the_verdict_back_as_a_new_event(sample):
    at = page(LABEL, coach="kim")
    first = at.session_state["label_clip"]
    sent = judge(at, "correct")
    # U: the labeller shows the clip again at once and sends an undo of that verdict behind it
    send(at, [{"rid": f"undo-{sent['rid']}", "type": "undo", "undoes": sent["rid"], "clip_id": first}], showing=first)
    assert at.session_state["label_clip"] == first  # back on the clip to label it again
    kinds = [e["kind"] for e in events_of(sample, "kim")]
    assert kinds == ["verdict", "undo"]
    assert not [r for r in store.current_labels(sample) if r["annotator"] == "kim"]


def test_a_labeller_message_reruns_only_its_fragment_and_saves_once_in_order(sample):
    """As in a browser: the labeller's message reruns the page's labelling fragment alone (not the sidebar, the
    sign-in, the title), which saves the verdict, refills the clips and moves on; a resent outbox and an undo
    behind a verdict land once each, in order."""
    from tests.benchmarks.bench_label import FragmentRuns

    with FragmentRuns() as runs:
        at = page(LABEL, coach="kim")
        first = at.session_state["label_clip"]
        sent = entry(at, "incorrect")
        at.session_state["label_surface"] = {"sync": {"outbox": [sent], "showing": labeller_data(at)["queue"][1]["id"],
                                                      "jump": at.session_state["label_jump"]}}
        runs.run_fragment(at)
        assert not at.exception and not at.title and not at.sidebar.children  # the fragment's elements only
        [event] = events_of(sample, "kim")
        assert labeller_data(at)["acked"] == {sent["rid"]: event["id"]}
        assert at.session_state["label_clip"] not in (None, first)
        assert first not in {c["id"] for c in labeller_data(at)["queue"]}
        undo = {"rid": f"undo-{sent['rid']}", "type": "undo", "undoes": sent["rid"], "clip_id": first}
        for _ in range(2):  # sent again: nothing more
            at.session_state["label_surface"] = {"sync": {"outbox": [sent, undo], "showing": first,
                                                          "jump": at.session_state["label_jump"]}}
            runs.run_fragment(at)
            assert not at.exception, at.exception
        assert [e["kind"] for e in events_of(sample, "kim")] == ["verdict", "undo"]
        assert at.session_state["label_clip"] == first
        at.run()  # a full run after fragment runs: the page and its sidebar again, nothing saved twice
        assert at.title[0].value == "Label clips" and len(events_of(sample, "kim")) == 2


def test_a_rubric_change_reaches_the_next_clip_between_labeller_messages(sample):
    """The page keeps the catalogue for the session, but a criterion a lead adds meanwhile is on the next card."""
    from tests.benchmarks.bench_label import FragmentRuns

    with FragmentRuns() as runs:
        at = page(LABEL, coach="kim")
        exercise = labeller_data(at)["queue"][0]["exercise"]
        store.add_criterion(sample, exercise, "new_check", "added by a lead while kim labels")
        at.session_state["label_surface"] = {"sync": {"outbox": [entry(at, "correct")], "showing": None,
                                                      "jump": at.session_state["label_jump"]}}
        runs.run_fragment(at)
        assert not at.exception, at.exception
        cards = [c for c in labeller_data(at)["queue"] if c["exercise"] == exercise]
        assert cards and all("new_check" in [c["name"] for c in card["criteria"]] for card in cards)


def test_the_models_opinion_comes_with_each_clip_and_follows_a_promotion_not_each_verdict(project, monkeypatch):
    """The labeller's cards carry the current run's opinion. The run is chosen on the page's full run and again
    when a run finishes or a lead promotes one, not after every verdict (the choice reads every label)."""
    from model import assist, choice
    from model.train import RunConfig, train_run
    from tests.benchmarks.bench_label import FragmentRuns

    sample_project(project, clips_per_class=4)
    first = train_run(project, RunConfig(model="baseline", folds=2))["run_id"]
    chosen = []

    def judged(at: AppTest) -> dict:  # with the opinion the labeller had (labeller.js copies the card's)
        opinion = labeller_data(at)["queue"][0]["opinion"]
        return entry(at, "correct", prediction={k: opinion[k] for k in ("run_id", "p_incorrect", "verdict", "failed")},
                     prediction_shown=False)

    monkeypatch.setattr(assist, "current_run_id", lambda p, pick=assist.current_run_id: chosen.append(1) or pick(p))
    with FragmentRuns() as runs:
        at = page(LABEL, coach="kim")
        assert {c["opinion"]["run_id"] for c in labeller_data(at)["queue"]} == {first}
        for _ in range(3):
            at.session_state["label_surface"] = {"sync": {"outbox": [judged(at)], "showing": None,
                                                          "jump": at.session_state["label_jump"]}}
            runs.run_fragment(at)
            assert not at.exception, at.exception
        assert len(chosen) == 1  # on the full run only
        second = train_run(project, RunConfig(model="baseline", folds=2, seed=1))["run_id"]
        choice.promote(project, second, "li")
        at.session_state["label_surface"] = {"sync": {"outbox": [judged(at)], "showing": None,
                                                      "jump": at.session_state["label_jump"]}}
        runs.run_fragment(at)
        assert {c["opinion"]["run_id"] for c in labeller_data(at)["queue"]} == {second}
    said = assist.opinions(project, [store.get_clip(project, labeller_data(at)["queue"][0]["id"])], run_id=second)
    assert labeller_data(at)["queue"][0]["opinion"] == next(iter(said.values()))  # the same numbers
    recorded = [json.loads(e["prediction"])["run_id"] for e in sorted(events_of(project, "kim"), key=lambda e: e["id"])]
    assert recorded == [first] * 4  # the last verdict was on a card of the first run, sent before the promotion


def test_two_coaches_get_different_clips_and_keep_their_own_verdicts(sample):
    kim, lee = page(LABEL, coach="kim"), page(LABEL, coach="lee")
    assert kim.session_state["label_clip"] != lee.session_state["label_clip"]
    # each holds a few clips ready in the browser: none of them is in the other's
    assert not {c["id"] for c in labeller_data(kim)["queue"]} & {c["id"] for c in labeller_data(lee)["queue"]}
    clip = kim.session_state["label_clip"]
    judge(kim, "correct")
    store.add_label_event(sample, {"clip_id": clip, "annotator": "lee", "verdict": "incorrect"})
    mine = {r["annotator"]: r["verdict"] for r in store.current_labels(sample) if r["clip_id"] == clip}
    assert mine == {"kim": "correct", "lee": "incorrect"}


def test_a_lead_coach_settles_a_disagreement(sample):
    clip = store.clip_ids(sample)[0]
    for who, verdict in (("kim", "correct"), ("lee", "incorrect")):
        store.add_label_event(sample, {"clip_id": clip, "annotator": who, "verdict": verdict})
    store.add_annotator(sample, "max", role="lead")
    at = AppTest.from_file(str(ROOT / LABEL), default_timeout=60)
    at.session_state["annotator"] = "max"
    at.run()
    at.radio(key="label_mode").set_value("Settle disagreements").run()
    assert at.session_state["label_clip"] == clip
    assert labeller_data(at)["kind"] == "adjudication"
    judge(at, "incorrect", kind="adjudication")
    assert store.consensus_labels(sample)[clip] | {"votes": None} == {
        "label": "incorrect", "votes": None, "criteria": {}, "source": "adjudication"}
    assert any("No open disagreements" in s.value for s in at.success)


def test_untrusted_text_is_shown_as_text(project, tmp_path):
    title = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    note = "n" * 10_000
    rows = [{"clip_id": "c1", "exercise": "squat", "label": "", "fps": "30", "source": title}]
    import_folder(project, write_folder(tmp_path / "ds", rows, {"c1": np.random.default_rng(0).random(
        (10, 33, 4)).astype(np.float32)}))
    store.add_label_event(project, {"clip_id": "c1", "annotator": "<b>eve</b>", "verdict": "correct", "note": note})
    at = page(DATASET)
    assert not at.exception
    # Nothing on the page is rendered as HTML: markdown elements never carry the raw tags.
    assert all("<script>" not in m.value for m in at.markdown)
    shown = [df.value for df in at.dataframe]
    assert any((df == title).any().any() for df in shown)  # the title is shown, verbatim, as data
    at = page(LABEL, coach="<b>eve</b>")
    assert not at.exception
    assert all("<b>" not in m.value for m in at.markdown)


def test_boundaries_move_and_a_clip_splits(sample):
    at = page(LABEL, coach="kim")
    clip = store.get_clip(sample, at.session_state["label_clip"])
    at.number_input(key=f"label_start_{at.session_state['label_n']}").set_value(clip["start_frame"] + 2)
    button(at, "label_bounds_").click()
    at.run()
    moved = store.get_clip(sample, clip["id"])
    assert moved["start_frame"] == clip["start_frame"] + 2
    button(at, "label_split_").click()
    at.run()
    assert not store.get_clip(sample, clip["id"])["active"]
    halves = [store.get_clip(sample, f"{clip['id']}-{s}") for s in "ab"]
    assert halves[0]["start_frame"] == moved["start_frame"] and halves[1]["end_frame"] == moved["end_frame"]
    assert halves[0]["end_frame"] == halves[1]["start_frame"]


def test_bad_boundaries_are_refused_and_change_nothing(sample):
    at = page(LABEL, coach="kim")
    clip = store.get_clip(sample, at.session_state["label_clip"])
    n = at.session_state["label_n"]
    at.number_input(key=f"label_start_{n}").set_value(clip["end_frame"] + 5)
    button(at, "label_bounds_").click()
    at.run()
    assert any("at least one frame" in e.value for e in at.error)
    assert store.get_clip(sample, clip["id"])["start_frame"] == clip["start_frame"]


def test_the_dataset_page_filters_and_adds_to_the_catalogue(sample):
    at = page(DATASET)
    at.multiselect(key="dataset_label").set_value(["unlabelled"]).run()
    table = at.dataframe[0].value
    assert len(table) > 0 and set(table.label) == {"unlabelled"}
    at.text_input(key="dataset_ex_name").input("Wall Sit")
    at.text_input(key="dataset_ex_text").input("Isometric squat against a wall")
    at.button(key="FormSubmitter:dataset_add_exercise-Add exercise").click().run()
    assert "wall sit" in [e["name"] for e in store.list_exercises(sample)]
    at.text_input(key="dataset_ex_name").input("Wall Sit")
    at.button(key="FormSubmitter:dataset_add_exercise-Add exercise").click().run()
    assert any("exists already" in e.value for e in at.error)


def test_home_opens_the_sample_project(project):
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    at.button(key="home_sample").click().run()
    counts = store.stats(project)
    assert counts["clips"] >= 60 and 0 < counts["labelled"] < counts["clips"]
    assert {"squat", "bicep curl", "push-up"} <= counts["per_exercise"].keys()


def _coach_session(root: str, coach: str) -> None:
    """One coach labelling until the queue is empty; prints the clip ids in the order judged."""
    project = Project.open(root)
    done = []
    while (clip := store.next_clip(project, coach)) is not None:
        store.add_label_event(project, {"clip_id": clip["id"], "annotator": coach, "verdict": "correct",
                                        "request_id": f"{coach}-{clip['id']}"})
        done.append(clip["id"])
    print(json.dumps(done))


@pytest.mark.slow
def test_eight_coaches_labelling_500_clips_at_once_lose_and_double_nothing(project, tmp_path):
    rng = np.random.default_rng(0)
    rows = [{"clip_id": f"c{i:03d}", "exercise": "squat", "label": "", "fps": "30"} for i in range(500)]
    import_folder(project, write_folder(tmp_path / "ds", rows, {r["clip_id"]: rng.random((2, 33, 4)).astype(
        np.float32) for r in rows}))
    procs = {f"coach{k}": start_python(f"from tests.test_label import _coach_session; "
                                       f"_coach_session({str(project.root)!r}, 'coach{k}')") for k in range(8)}
    outputs = {coach: p.communicate(timeout=300) for coach, p in procs.items()}
    assert [p.returncode for p in procs.values()] == [0] * 8, outputs
    done = {coach: json.loads(out) for coach, (out, _err) in outputs.items()}
    # Every coach judged every clip once: 8 x 500 events, none lost, none doubled.
    assert all(sorted(ids) == sorted(r["clip_id"] for r in rows) for ids in done.values())
    labels = store.current_labels(project)
    assert len(labels) == 8 * 500
    assert len({(r["clip_id"], r["annotator"]) for r in labels}) == 8 * 500
    # While they worked side by side, claims spread them: their first clips were all different.
    assert len({ids[0] for ids in done.values()}) == 8


def test_with_a_password_list_only_a_right_password_lets_a_coach_in(sample, tmp_path, monkeypatch):
    import subprocess
    import sys

    passwords = tmp_path / "passwords"
    out = subprocess.run([sys.executable, "-m", "curation", "passwd", "Dana", "--file", str(passwords)],
                         input="long secret\n", capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    monkeypatch.setenv("FORMCHECK_PASSWORDS", str(passwords))
    at = page(LABEL)  # the sign-in form of every page (issue 10: it was the Label page's own)
    at.text_input(key="auth_name").input("Dana")
    at.text_input(key="auth_password").input("wrong secret")
    next(b for b in at.button if b.label == "Sign in").click().run()
    assert any("wrong password" in e.value for e in at.error) and "auth_account" not in at.session_state
    at.text_input(key="auth_name").input("Dana")  # the form empties itself after each try
    at.text_input(key="auth_password").input("long secret")
    next(b for b in at.button if b.label == "Sign in").click().run()
    assert at.session_state["auth_account"] == "Dana" and at.title[0].value == "Label clips"


def test_the_dataset_page_packs_the_dataset_as_a_zip(sample):
    import io
    import zipfile

    at = page(DATASET)
    at.button(key="dataset_zip").click().run()
    assert any("clips packed" in s.value for s in at.success)
    with zipfile.ZipFile(io.BytesIO(at.session_state["dataset_zip_bytes"])) as zf:
        names = zf.namelist()
    assert "dataset/clips.csv" in names
    assert sum(n.startswith("dataset/poses/") for n in names) == len(store.clip_ids(sample))


def test_merging_two_clips_of_a_video_replaces_them_by_one(data_dir):
    project = Project.open(data_dir)
    add_two_clip_video(project)
    store.add_label_event(project, {"clip_id": "v1_000", "annotator": "kim", "verdict": "correct"})
    merged = store.merge_clips(project, "v1_001", "v1_000", "kim")
    active = store.list_clips(project)
    assert [(c["id"], c["start_frame"], c["end_frame"]) for c in active] == [(merged, 0, 85)]
    assert store.label_history(project, "v1_000")  # the old clip's labels are kept, on the old clip
    with pytest.raises(store.StoreError):
        store.merge_clips(project, merged, merged, "kim")


def test_only_the_complexity_sliders_a_coach_moves_are_stored_as_theirs(sample):
    at = page(LABEL, coach="kim")
    clip = store.get_clip(sample, at.session_state["label_clip"])
    auto = {c["name"]: c["auto"] for c in labeller_data(at)["queue"][0]["components"]}
    assert auto["balance_demand"] == clip["balance_demand"]  # the slider starts at the automatic value
    # the labeller sends only the slider the coach moved (curation/labeller.js); nonsense values are dropped
    judge(at, "correct", components={"balance_demand": 0.95 if (clip["balance_demand"] or 0) < 0.9 else 0.05,
                                      "joints_engaged": "high", "range_of_motion": 7})
    [event] = events_of(sample, "kim")
    assert event["balance_demand"] in (0.95, 0.05)
    assert [event[c] for c in ("joints_engaged", "angular_sensitivity", "range_of_motion")] == [None] * 3
    assert store.coach_complexity(sample)[clip["id"]]["balance_demand"] == event["balance_demand"]
    [shown] = [h for h in store.clip_history(sample, clip["id"]) if h["kind"] == "verdict"]
    assert shown["complexity"] == {"balance_demand": event["balance_demand"]}  # the history shows it too


def test_every_criterion_of_an_exercise_is_shown_and_judged_beyond_nine(sample):
    for k in range(7):
        store.add_criterion(sample, "squat", f"extra {k}")
    names = [c["name"] for c in next(e for e in store.list_exercises(sample) if e["name"] == "squat")["criteria"]]
    assert len(names) == 12
    at = page(LABEL, coach="kim", label_exercise="squat")
    shown = labeller_data(at)["queue"][0]["criteria"]
    assert [c["name"] for c in shown] == names  # every one, in order (an old page showed the first 9)
    judge(at, "incorrect", failed=[names[11]])
    [event] = events_of(sample, "kim")
    assert event["criteria"][names[11]] == "fail"  # main recorded an unseen 12th criterion as "pass"
    assert set(event["criteria"]) == set(names) and list(event["criteria"].values()).count("fail") == 1


def test_a_clip_whose_frames_changed_asks_for_a_second_look_and_shows_where_its_labels_came_from(sample):
    clip = store.list_clips(sample, exercise="squat")[0]
    store.add_label_event(sample, {"clip_id": clip["id"], "annotator": "kim", "verdict": "incorrect"})
    set_clip_bounds(sample, clip, clip["start_frame"] + 2, clip["end_frame"], "lee")
    at = page(LABEL, coach="kim")
    send(at, [], showing=clip["id"])  # the labeller says this clip is on screen: the page follows it
    assert at.session_state["label_clip"] == clip["id"]
    assert any("Needs a second look" in w.value and "kim said incorrect" in w.value for w in at.warning)
    history = at.dataframe[0].value
    assert "needs a second look" in set(history.state)


def test_a_coach_excludes_a_clip_with_a_reason_and_restores_it(sample):
    at = page(LABEL, coach="kim")
    clip, n = at.session_state["label_clip"], at.session_state["label_n"]
    button(at, "label_exclude_").click()
    at.run()
    assert any("why" in e.value for e in at.error) and not store.exclusions(sample)  # a reason is needed
    at.text_input(key=f"label_exclude_reason_{n}").input("two people in the frame")
    button(at, "label_exclude_").click()
    at.run()
    [row] = store.exclusions(sample)
    assert (row["clip_id"], row["reason"], row["annotator"]) == (clip, "two people in the frame", "kim")
    assert at.session_state["label_clip"] != clip  # it left the queue
    button(at, "label_restore_").click()
    at.run()
    assert store.exclusions(sample) == []


def test_the_dataset_page_filters_by_coach_complexity_and_restores_an_excluded_clip(sample):
    first, second = store.clip_ids(sample)[:2]
    store.add_label_event(sample, {"clip_id": first, "annotator": "kim", "verdict": "correct",
                                   **{c: 0.9 for c in COMPONENTS}})
    store.set_excluded(sample, "kim", True, "junk", clip_id=second)
    at = page(DATASET)
    table = at.dataframe[0].value
    assert second not in set(table.clip_id) and {"coach_complexity", "second_look"} <= set(table.columns)
    at.radio(key="dataset_complexity_by").set_value("coaches")
    at.slider(key="dataset_complexity").set_value((0.8, 1.0)).run()
    assert list(at.dataframe[0].value.clip_id) == [first]
    at.button(key="dataset_restore").click().run()
    assert store.exclusions(sample) == [] and store.excluded_clip_ids(sample) == set()


@pytest.mark.parametrize("damage", ["not an array", "missing", "wrong shape"])
def test_a_clip_whose_pose_cannot_be_read_is_shown_from_its_video_with_a_warning_and_judged(sample, damage):
    at = page(LABEL, coach="kim")
    first, second = labeller_data(at)["queue"][:2]
    clip = store.get_clip(sample, first["id"])
    pose = sample.path(clip["pose_path"])
    if damage == "not an array":
        pose.write_bytes(b"a coach's notes saved under the wrong name\n" * 10)
    elif damage == "missing":
        pose.unlink()
    else:
        np.save(pose, np.zeros((60, 17, 3), np.float32))
    at = page(LABEL, coach="kim")  # a new session: the page is built again with the damaged clip first
    assert not at.exception, at.exception
    data = labeller_data(at)
    assert [c["id"] for c in data["queue"][:2]] == [first["id"], second["id"]]  # the queue goes on
    players = {c["id"]: data["players"][c["player"]] for c in data["queue"][:2]}
    assert "The pose of this clip cannot be read" in players[first["id"]]
    assert "cannot be read" not in players[second["id"]]
    assert any("The pose of this clip cannot be read" in w.value for w in at.warning)
    judge(at, "incorrect")  # the coach judges it from the video
    assert [e["verdict"] for e in events_of(sample, "kim")] == ["incorrect"]


def test_a_clip_whose_video_cannot_be_cut_is_still_shown_and_judged(project):
    from tests.conftest import add_two_clip_video

    add_two_clip_video(project)  # its pose track was never written either
    (project.root / "videos").mkdir(exist_ok=True)
    (project.root / "videos" / "v1.mp4").write_bytes(b"not a video at all\n" * 50)
    at = page(LABEL, coach="kim")
    assert not at.exception, at.exception
    data = labeller_data(at)
    player = data["players"][data["queue"][0]["player"]]
    assert "The video of this clip cannot be cut" in player and "The pose of this clip cannot be read" in player
    judge(at, "correct")
    assert [e["verdict"] for e in events_of(project, "kim")] == ["correct"]
