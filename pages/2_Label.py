"""Label: watch one repetition, press a key for correct or incorrect, tick the failed criteria; saved at once."""

import time
import uuid

import streamlit as st

import ui
from curation import agreement, lineage, store
from curation.dataset import set_clip_bounds
from curation.kinematics import COMPONENTS
from model import active, quality, runs
from model.suggest import suggest

st.set_page_config(page_title="Label · Formcheck", page_icon="🏷️", layout="wide")
project = ui.project(need="coach")
st.title("Label clips")

coach = ui.annotator(project)
if not coach:
    st.info("Pick or type your name in the sidebar to start labelling.")
    st.stop()

exercises = {e["name"]: e for e in store.list_exercises(project)}
state = st.session_state
with st.sidebar:
    shown = ["(all)"] + store.clip_exercises(project)
    pick = st.selectbox("Exercise", shown, key="label_exercise")
    exercise = None if pick == "(all)" else pick
    is_lead = ui.is_lead(project, coach)
    modes = ["Label new clips", "Label suggested clips", "Check again"] + (["Settle disagreements"] if is_lead else [])
    if state.get("label_open") in modes:  # another page asked for a queue (e.g. Suggest's "Label these clips")
        state["label_mode"] = state.pop("label_open")
    if state.get("label_mode") not in modes:  # e.g. "Settle disagreements" kept for a coach who is no lead
        state["label_mode"] = modes[0]
    mode = st.radio("Queue", modes, key="label_mode",
                    help="Suggested: the clips the latest model is least sure about. Check again: labels the "
                         "model contradicts. A second look adds a new label; nothing is overwritten.")
    show_skeleton = st.toggle("Skeleton overlay", value=True, key="label_skeleton")


def show_next(clip_id: str | None) -> None:
    """Make `clip_id` the clip on screen, with a fresh request id and clock (a new display)."""
    state["label_clip"] = clip_id
    state["label_request"] = uuid.uuid4().hex
    state["label_shown_at"] = time.time()
    state["label_n"] = state.get("label_n", 0) + 1


LISTED = ("Label suggested clips", "Check again")
SUGGESTED_BATCH = 20


def listed_queue(mode: str) -> tuple[list[str], dict[str, str]]:
    """The ranked clip ids of a suggested / check-again queue and the reason for each. A suggested batch is
    kept for the session until it is used up or a newer run exists (the queue refreshes after a retrain)."""
    if mode == "Check again":
        doubts = quality.check_again(project, exercise=exercise)
        return [d.clip_id for d in doubts], {d.clip_id: d.reason for d in doubts}
    latest = runs.list_runs(project)
    run_id = latest[0]["run_id"] if latest else None
    kept = state.get("label_batch")
    if not kept or kept["key"] != (run_id, exercise):
        batch = suggest(project, k=SUGGESTED_BATCH, exercise=exercise, run_id=run_id)
        kept = {"key": (run_id, exercise), "ids": [s.clip_id for s in batch.items],
                "reasons": {s.clip_id: s.reason for s in batch.items}}
        state["label_batch"] = kept
    return kept["ids"], kept["reasons"]


# ------------------------------------------------------------------ pick the clip on screen
if mode == "Settle disagreements":
    labels = store.current_labels(project)
    settled = store.adjudications(project)
    clips_now = {c["id"]: c for c in store.list_clips(project, exercise=exercise)}
    queue = [d for d in agreement.disagreements(labels) if d["clip_id"] in clips_now and d["clip_id"] not in settled]
    if state.get("label_clip") not in {d["clip_id"] for d in queue}:
        show_next(queue[0]["clip_id"] if queue else None)
    if not queue:
        st.success("No open disagreements: every clip two coaches judged differently has a final label.")
        st.stop()
    clip = clips_now[state["label_clip"]]
    st.caption(f"{len(queue)} clip(s) with disagreeing coaches")
elif mode in LISTED:
    try:
        ids, reasons = listed_queue(mode)
    except (active.EmptyPool, active.PoolExhausted, quality.NoOutOfFoldPredictions) as exc:
        st.info(str(exc))
        st.stop()
    if state.get("label_clip") not in ids or state.get("label_for") != (coach, exercise, mode):
        clip = store.next_listed_clip(project, coach, ids, skip_judged=mode == "Label suggested clips")
        if clip is None and mode == "Label suggested clips" and ids:  # this batch is done: the next one
            state.pop("label_batch", None)
            try:
                ids, reasons = listed_queue(mode)
            except (active.EmptyPool, active.PoolExhausted) as exc:
                st.success(str(exc))
                st.stop()
            clip = store.next_listed_clip(project, coach, ids)
        state["label_for"] = (coach, exercise, mode)
        show_next(clip["id"] if clip else None)
    if state["label_clip"] is None:
        st.success("Nothing left in this queue. Retrain to refresh it." if mode == "Label suggested clips" else
                   "No label left to check again: every doubted label has had a second look since the last run.")
        ui.retrain(project, "label")
        st.stop()
    clip = store.get_clip(project, state["label_clip"])
    st.info(f"Why this clip: {reasons.get(clip['id'], '')}")
    ui.retrain(project, "label")
else:
    clip = store.get_clip(project, state["label_clip"]) if state.get("label_clip") else None
    if clip is None or not clip["active"] or state.get("label_for") != (coach, exercise):
        clip = store.next_clip(project, coach, exercise)
        state["label_for"] = (coach, exercise)
        show_next(clip["id"] if clip else None)
    done = store.progress_of(project, coach, exercise)
    st.progress(done["judged"] / max(done["clips"], 1),
                text=f"{done['judged']} of {done['clips']} clips judged by you")
    if clip is None:
        st.success("Nothing left to label here: every clip has your verdict. Pick another exercise, or go "
                   "to the Dataset page.")
        st.stop()

n = state["label_n"]
ex = exercises.get(clip["exercise"], {"criteria": [], "joints": []})
video = store.get_video(project, clip["video_id"]) if clip["video_id"] else None

# ------------------------------------------------------------------ the clip
st.caption(f"Clip {ui.md(clip['id'])} · {ui.md(clip['exercise'])} · frames {clip['start_frame']}-{clip['end_frame']} "
           f"({(clip['end_frame'] - clip['start_frame']) / clip['fps']:.1f} s)"
           + (f" · {clip['view']} view" if clip.get("view") else ""))
if video and video["title"]:
    st.text(f"From: {video['title']}")  # untrusted text: st.text renders neither HTML nor Markdown
looks = store.second_looks(project, [clip["id"]]).get(clip["id"], [])
if looks:
    said = "; ".join(f"{ui.md(x['annotator'])} said {x['verdict']}"
                     + (f" on clip {ui.md(x['from_clip'])}" if x["from_clip"] else
                        f" on frames {x['start_frame']}-{x['end_frame']} ({ui.md(x['exercise'])})"
                        if x["start_frame"] is not None else " before an edit")
                     for x in looks)
    st.warning(f"Needs a second look: the frames or the exercise changed since it was judged ({said}).", icon="🔁")
left, right = st.columns([5, 2])
with left:
    screen = st.container()  # the player goes here, once the "Model's view" toggle under it is read
    overlay = ui.model_view(project, clip, f"label_model_view_{n}")  # {} (nothing computed) unless turned on
    with screen:
        ui.clip_player(project, clip, video, ex["joints"], show_skeleton, **overlay)
    with st.expander("History of this clip"):
        history = store.clip_history(project, clip["id"])
        if history:
            st.dataframe([{**{k: e[k] for k in ("created_at", "annotator", "kind", "verdict", "frames", "exercise",
                                                "state", "clip_id", "note")},
                           "criteria": ", ".join(f"{k}: {v}" for k, v in e["criteria"].items()),
                           "complexity": ", ".join(f"{k}: {v:.2f}" for k, v in e["complexity"].items())}
                          for e in history], hide_index=True)
        else:
            st.caption("No labels yet.")

# ------------------------------------------------------------------ the verdict
with right:
    if mode == "Settle disagreements":
        votes = next(d for d in queue if d["clip_id"] == clip["id"])["votes"]
        st.markdown("**Coaches said**")
        st.dataframe([{"coach": who, "verdict": v} for who, v in votes.items()], hide_index=True)
    undo_stack = state.setdefault("label_undo", [])
    kind = "adjudication" if mode == "Settle disagreements" else "verdict"
    # A form: ticking criteria, moving sliders and typing a note cause no rerun; a verdict sends them all.
    with st.form(f"label_form_{n}", border=False):
        failed = []
        if ex["criteria"]:
            keys = "1-9" if len(ex["criteria"]) <= 9 else f"type the number, 1-{len(ex['criteria'])}"
            st.markdown(f"**Criteria that failed** (keys {keys})")
            for i, crit in enumerate(ex["criteria"], start=1):  # every one: an unseen criterion is never judged
                if st.checkbox(f"{i} · {ui.md(crit['title'])}", key=f"label_crit_{i}_{n}",
                               help=ui.md(crit["description"]) or None):
                    failed.append(crit["name"])
        coaches_say = store.coach_complexity(project, [clip["id"]]).get(clip["id"], {})
        with st.expander("Complexity (automatic estimate, adjust if needed)"):
            auto_index = f"{clip['complexity']:.2f}" if clip["complexity"] is not None else "not measurable"
            coach_index = (f"{coaches_say['complexity']:.2f} (median of {coaches_say['coaches']} coach(es))"
                           if coaches_say else "none yet")
            st.caption(f"Index: automatic {auto_index} · coaches {coach_index}. Only the components you move "
                       "are saved as yours.")
            components = {}
            for name, title in COMPONENTS.items():
                auto = clip.get(name)
                start_at = float(auto) if auto is not None else 0.5
                said = coaches_say.get(name)
                moved = st.slider(title, 0.0, 1.0, start_at, 0.05, key=f"label_{name}_{n}",
                                  help=(f"automatic {auto:.2f}" if auto is not None else "automatic: not measurable")
                                  + (f" · coaches (median) {said:.2f}" if said is not None else ""))
                # An untouched slider is no judgement: its pre-filled value is never stored as the coach's.
                components[name] = moved if abs(moved - start_at) > 1e-9 else None
        note = st.text_area("Note", key=f"label_note_{n}", max_chars=10_000, height=68)
        b1, b2 = st.columns(2)
        pressed = None
        if b1.form_submit_button("Correct", key=f"label_correct_{n}", type="primary", shortcut="Y",
                                 width="stretch"):
            pressed = "correct"
        if b2.form_submit_button("Incorrect", key=f"label_incorrect_{n}", type="primary", shortcut="N",
                                 width="stretch"):
            pressed = "incorrect"
        if st.form_submit_button("Skip", key=f"label_skip_{n}", shortcut="S", width="stretch",
                                 disabled=kind != "verdict"):
            pressed = "skip"

    def verdict_event(verdict: str) -> dict:
        names = [c["name"] for c in ex["criteria"]]
        criteria = {c: "fail" for c in failed}
        if verdict == "correct" or failed:  # an unticked box counts as passed only when the coach judged
            criteria.update({c: "pass" for c in names if c not in failed})
        return {"clip_id": clip["id"], "annotator": coach, "kind": kind, "verdict": verdict,
                "criteria": criteria if verdict != "skip" else {}, "note": note,
                "start_frame": clip["start_frame"], "end_frame": clip["end_frame"], "exercise": clip["exercise"],
                "seconds": round(time.time() - state["label_shown_at"], 2),
                "request_id": state["label_request"], **components}

    if st.button("Undo last verdict", key=f"label_undo_{n}", shortcut="U", disabled=not undo_stack,
                 width="stretch"):
        last_clip, last_event = undo_stack.pop()
        store.add_label_event(project, {"clip_id": last_clip, "annotator": coach, "kind": "undo",
                                        "undoes": last_event, "request_id": f"undo-{last_event}"})
        state["label_toast"] = "Last verdict taken back: label that clip again."
        show_next(last_clip)
        st.rerun()
    if pressed:
        ui.require("lead" if kind == "adjudication" else "coach")
        event_id = store.add_label_event(project, verdict_event(pressed))
        if event_id is not None:  # None: this click was already recorded (a double click)
            undo_stack.append((clip["id"], event_id))
        state["label_toast"] = f"Saved: {pressed}" + (" (final)" if kind == "adjudication" else "")
        state["label_clip"] = None
        if mode == "Label new clips":
            following = store.next_clip(project, coach, exercise)
            show_next(following["id"] if following else None)
        st.rerun()

if state.get("label_toast"):
    st.toast(state.pop("label_toast"), icon="✅")

ui.shortcuts({str(i): f"label_crit_{i}_{n}" for i in range(1, len(ex["criteria"]) + 1)})

if mode == "Label new clips":
    ui.prepare_ahead(project, store.upcoming_clips(project, coach, exercise, current=clip["id"]))
elif mode in LISTED:
    after = ids[ids.index(clip["id"]) + 1:][:2] if clip["id"] in ids else []
    ui.prepare_ahead(project, [c for c in (store.get_clip(project, i) for i in after) if c])

# ------------------------------------------------------------------ boundaries
with st.expander("Fix clip boundaries"):
    limit = video["frames"] if video else None
    c1, c2, c3 = st.columns(3)
    start = c1.number_input("Start frame", 0, value=clip["start_frame"], step=1, key=f"label_start_{n}")
    end = c2.number_input("End frame", 1, value=clip["end_frame"], step=1, key=f"label_end_{n}")
    if c3.button("Apply", key=f"label_bounds_{n}"):
        try:
            set_clip_bounds(project, clip, int(start), int(end), coach)
            state["label_toast"] = "Boundaries saved"
            show_next(clip["id"])
            st.rerun()
        except store.StoreError as exc:
            st.error(ui.md(exc))
    s1, s2 = st.columns(2)
    at = s1.number_input("Split at frame", clip["start_frame"] + 1, max(clip["end_frame"] - 1, clip["start_frame"] + 1),
                         value=(clip["start_frame"] + clip["end_frame"]) // 2, key=f"label_split_at_{n}")
    if s1.button("Split in two", key=f"label_split_{n}"):
        try:
            first, _ = lineage.split(project, clip["id"], int(at), coach)
            show_next(first)
            st.rerun()
        except store.StoreError as exc:
            st.error(ui.md(exc))
    if s2.button("Merge with the next clip of this video", key=f"label_merge_{n}", disabled=not clip["video_id"]):
        siblings = [c for c in store.list_clips(project, video_id=clip["video_id"]) if c["start_frame"] > clip["start_frame"]]
        if not siblings:
            st.error("This is the last clip of its video.")
        else:
            show_next(lineage.merge(project, clip["id"], siblings[0]["id"], coach))
            st.rerun()
    last_edit = store.undoable_edit(project, clip["id"])
    if st.button(f"Undo the last edit of this clip ({last_edit['action']} by {ui.md(last_edit['annotator'])})"
                 if last_edit else "Undo the last edit of this clip", key=f"label_undo_edit_{n}",
                 disabled=last_edit is None):
        try:
            show_next(lineage.undo_edit(project, last_edit["id"], coach)["clip_id"])
            state["label_toast"] = "Edit undone"
            st.rerun()
        except store.StoreError as exc:
            st.error(ui.md(exc))

# ------------------------------------------------------------------ exclusion and exercise
with st.expander("Exclude, or change the exercise"):
    whole = st.radio("Apply to", ["this clip", "its whole video"], horizontal=True, key=f"label_scope_{n}",
                     disabled=not clip["video_id"])
    target = {"video_id": clip["video_id"]} if whole == "its whole video" else {"clip_id": clip["id"]}
    reason = st.text_input("Reason", key=f"label_exclude_reason_{n}", max_chars=500,
                           placeholder="e.g. camera cut, not this exercise, two people")
    e1, e2 = st.columns(2)
    if e1.button("Exclude from the dataset", key=f"label_exclude_{n}", disabled=not ui.can("lead")):
        ui.require("lead")
        try:
            store.set_excluded(project, coach, True, reason, **target)
            state["label_toast"] = "Excluded: it leaves every queue, training run and export (restore below)"
            state["label_clip"] = None
            st.rerun()
        except store.StoreError as exc:
            st.error(ui.md(exc))
    new_exercise = e2.selectbox("Exercise", list(exercises), index=list(exercises).index(clip["exercise"])
                                if clip["exercise"] in exercises else 0, key=f"label_new_exercise_{n}")
    if e2.button("Change the exercise", key=f"label_change_exercise_{n}",
                 disabled=new_exercise == clip["exercise"] or not ui.can("lead")):
        ui.require("lead")
        try:
            store.change_exercise(project, new_exercise, coach, **target)
            state["label_toast"] = f"Now {ui.md(new_exercise)}: its earlier verdicts stay in the history"
            show_next(clip["id"])
            st.rerun()
        except store.StoreError as exc:
            st.error(ui.md(exc))
    excluded = store.exclusions(project)
    if excluded:
        st.markdown("**Excluded now**")
        st.dataframe([{k: x[k] for k in ("clip_id", "video_id", "reason", "annotator", "created_at")}
                      for x in excluded], hide_index=True)
        labels = {f"{'clip' if x['clip_id'] else 'video'} {x['clip_id'] or x['video_id']}": x for x in excluded}
        back = st.selectbox("Restore", list(labels), key=f"label_restore_pick_{n}")
        if st.button("Restore", key=f"label_restore_{n}", disabled=not ui.can("lead")):
            ui.require("lead")
            x = labels[back]
            store.set_excluded(project, coach, False, reason, clip_id=x["clip_id"], video_id=x["video_id"])
            state["label_toast"] = f"Restored {ui.md(back)}"
            st.rerun()
