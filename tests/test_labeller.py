"""The server side of the in-browser labeller (curation.labeller): a browser's outbox saved once, in order, whatever
is resent; undo of a verdict in flight; claims among coaches; the clips a browser holds."""

from __future__ import annotations

import uuid

import pytest

from curation import labeller, store
from curation.project import Project
from curation.sample import sample_project


@pytest.fixture
def sample(project) -> Project:
    sample_project(project, clips_per_class=3)
    return project


def verdict(clip: dict, verdict: str = "correct", **extra) -> dict:
    return {"rid": uuid.uuid4().hex, "type": "verdict", "clip_id": clip["id"], "verdict": verdict, "names": [],
            "failed": [], "seconds": 0.8, "exercise": clip["exercise"], "start_frame": clip["start_frame"],
            "end_frame": clip["end_frame"], **extra}


def undo(entry: dict) -> dict:
    return {"rid": f"undo-{entry['rid']}", "type": "undo", "undoes": entry["rid"], "clip_id": entry["clip_id"]}


def mine(project: Project, coach: str) -> list[dict]:
    return sorted((e for c in store.clip_ids(project) for e in store.label_history(project, c)
                   if e["annotator"] == coach), key=lambda e: e["id"])


def test_an_outbox_is_saved_once_in_order_however_often_it_is_sent(sample):
    clips = store.upcoming_clips(sample, "kim", limit=5)
    outbox = [verdict(c, v) for c, v in zip(clips, ["correct", "incorrect", "skip", "correct", "incorrect"])]
    first = labeller.save_outbox(sample, "kim", outbox[:3], {"verdict"})
    assert list(first["acked"]) == [e["rid"] for e in outbox[:3]] and not first["refused"]
    again = labeller.save_outbox(sample, "kim", outbox, {"verdict"})  # a reload, a second tab: all of it again
    assert list(again["acked"]) == [e["rid"] for e in outbox]
    assert {k: again["acked"][k] for k in first["acked"]} == first["acked"]  # the same events, not new ones
    events = mine(sample, "kim")
    assert [(e["clip_id"], e["verdict"]) for e in events] == [(c["id"], e["verdict"]) for c, e in zip(clips, outbox)]
    assert [e["request_id"] for e in events] == [e["rid"] for e in outbox]


def test_criteria_follow_the_ticks_and_only_the_rubric_of_the_clip(sample):
    clip = store.upcoming_clips(sample, "kim", exercise="squat", limit=1)[0]
    names = [c["name"] for c in next(e for e in store.list_exercises(sample) if e["name"] == "squat")["criteria"]]
    labeller.save_outbox(sample, "kim", [verdict(clip, "incorrect", names=names + ["<b>made up</b>"],
                                                 failed=[names[0], "<b>made up</b>"], note="x" * 20_000)], {"verdict"})
    [event] = mine(sample, "kim")
    assert event["criteria"] == {names[0]: "fail", **{n: "pass" for n in names[1:]}}
    assert len(event["note"]) == labeller.NOTE_LIMIT
    assert labeller.criteria_verdicts("incorrect", names, []) == {}  # an incorrect verdict with no tick judges none
    assert labeller.criteria_verdicts("skip", names, names[:1]) == {}


def test_an_undo_behind_a_verdict_still_in_flight_takes_it_back(sample):
    clip = store.upcoming_clips(sample, "kim", limit=1)[0]
    sent = verdict(clip)
    result = labeller.save_outbox(sample, "kim", [sent, undo(sent)], {"verdict"})  # both arrive at once
    assert set(result["acked"]) == {sent["rid"], f"undo-{sent['rid']}"}
    assert [e["kind"] for e in mine(sample, "kim")] == ["verdict", "undo"]
    assert not [r for r in store.current_labels(sample) if r["annotator"] == "kim"]
    assert labeller.pending_clips([sent, undo(sent)]) == set()
    # an undo of a verdict that was never saved (refused) writes nothing
    ghost = {"rid": "undo-0123456789ab", "type": "undo", "undoes": "0123456789ab", "clip_id": clip["id"]}
    assert labeller.save_outbox(sample, "kim", [ghost], {"verdict"})["acked"] == {ghost["rid"]: None}
    assert len(mine(sample, "kim")) == 2


def test_bad_entries_are_refused_one_by_one_and_the_rest_is_saved(sample):
    clips = store.upcoming_clips(sample, "kim", limit=2)
    good = verdict(clips[0])
    bad = [verdict(clips[1], "maybe"), {**verdict(clips[1]), "clip_id": "no-such-clip"},
           verdict(clips[1], kind="adjudication"), {"rid": "x", "type": "verdict"}, "junk"]
    result = labeller.save_outbox(sample, "kim", [*bad, good], {"verdict"})
    assert list(result["acked"]) == [good["rid"]]
    assert set(result["refused"]) == {b["rid"] for b in bad[:3]}  # the malformed ones are never even answered
    assert "role" in result["refused"][bad[2]["rid"]]
    assert [e["request_id"] for e in mine(sample, "kim")] == [good["rid"]]


def test_a_verdict_on_a_clip_another_coach_holds_now_is_still_saved_as_the_coachs(sample):
    clip = store.upcoming_clips(sample, "kim", limit=1)[0]
    store.hold_clips(sample, "kim", [clip["id"]])
    store.hold_clips(sample, "lee", [clip["id"]])  # lee got it meanwhile (e.g. kim's claim had run out)
    labeller.save_outbox(sample, "kim", [verdict(clip, "incorrect")], {"verdict"})
    assert [(e["clip_id"], e["verdict"]) for e in mine(sample, "kim")] == [(clip["id"], "incorrect")]


def test_coaches_hold_different_clips_and_the_window_skips_verdicts_on_their_way(sample):
    kim = store.upcoming_clips(sample, "kim", limit=labeller.WINDOW)
    store.hold_clips(sample, "kim", [c["id"] for c in kim])
    lee = store.upcoming_clips(sample, "lee", limit=labeller.WINDOW)
    assert not {c["id"] for c in kim} & {c["id"] for c in lee}
    later = store.upcoming_clips(sample, "kim", limit=labeller.WINDOW + 2)
    held = labeller.window(later[2], later, skip={later[0]["id"]}, size=4)
    assert [c["id"] for c in held] == [later[2]["id"], later[1]["id"], *[c["id"] for c in later[3:5]]]


def test_the_model_opinion_a_browser_had_is_recorded_with_the_verdict(sample):
    clips = store.upcoming_clips(sample, "kim", limit=3)
    seen = {"run_id": "r1", "p_incorrect": 0.8, "verdict": "incorrect", "failed": ["depth"]}
    labeller.save_outbox(sample, "kim", [
        verdict(clips[0], prediction=seen, prediction_shown=True),
        verdict(clips[1], prediction=seen, prediction_shown=False),
        verdict(clips[2], prediction={"run_id": "r1", "p_incorrect": "high"}, prediction_shown=True),
    ], {"verdict"})
    rows = {r["clip_id"]: r for r in store.assisted_verdicts(sample) if r["annotator"] == "kim"}
    assert rows[clips[0]["id"]]["prediction"] == seen and rows[clips[0]["id"]]["prediction_shown"] is True
    assert rows[clips[1]["id"]]["prediction_shown"] is False  # hidden ("off", "decide first"), still recorded
    assert rows[clips[2]["id"]]["prediction"] is None and rows[clips[2]["id"]]["prediction_shown"] is False
