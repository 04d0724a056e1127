"""Label: watch one repetition, press a key for correct or incorrect, tick the failed criteria; the next clip is
already there. The clip player, the keys and the next clips live in the browser (curation/labeller.js); this
script saves the verdicts it sends (curation.labeller.save_outbox), refills the clips it holds, and lays out the
rest of the page for the clip it reports on screen. That part is a fragment (`labelling`): a message of the
labeller reruns it alone, not the sidebar and the sign-in around it."""

import uuid

import streamlit as st

import ui
from curation import agreement, labeller, lineage, store
from curation.dataset import set_clip_bounds
from model import active, quality, runs
from model.suggest import suggest

st.set_page_config(page_title="Label · Formcheck", page_icon="🏷️", layout="wide")
project = ui.project(need="coach")
st.title("Label clips")

coach = ui.annotator(project)
if not coach:
    st.info("Pick or type your name in the sidebar to start labelling.")
    st.stop()

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
    assist_mode = ui.assist_control(project, coach) if hasattr(ui, "assist_control") else "off"
    st.caption("Keys: Y correct · N incorrect · S skip · U undo · 1-9 (or the number) tick a criterion"
               + (" · A accept the model's verdict" if assist_mode == "on" else "") + ". Verdicts are saved in the "
               "background; the counter under the clip says how many are saved and how many on their way.")
kinds = {"verdict"} | ({"adjudication"} if is_lead and ui.can("lead") else set())  # what this coach's outbox may hold


def show(clip_id: str | None) -> None:
    """Put this clip on screen (None: the first of the queue): the browser jumps to it at the next run."""
    state["label_force"] = clip_id
    state["label_jump"] = uuid.uuid4().hex


LISTED = ("Label suggested clips", "Check again")
SUGGESTED_BATCH = 20
MESSAGES = {
    "Label new clips": "Nothing left to label here: every clip has your verdict. Pick another exercise, or go to "
                       "the Dataset page.",
    "Label suggested clips": "Nothing left in this queue. Retrain to refresh it.",
    "Check again": "No label left to check again: every doubted label has had a second look since the last run.",
    "Settle disagreements": "No open disagreements: every clip two coaches judged differently has a final label.",
}


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


def catalogue() -> tuple[tuple, dict[str, dict], dict[str, set[str]]]:
    """(its version, the exercises as coaches see them by name (store.list_exercises: joints, criteria in the
    rubric's order, retired ones left out), the rubric an outbox is checked against (exercise -> its criterion
    names, retired ones too: a browser may send a verdict given before a retirement)). Kept for the session until
    the catalogue or a rubric changes (store.rubric_version): read once, not on every message of the labeller."""
    version = (str(project.root), store.rubric_version(project))
    kept = state.get("label_catalogue")
    if kept is None or kept[0] != version:
        every = store.list_exercises(project, include_retired=True)
        shown = {e["name"]: {**e, "criteria": [c for c in e["criteria"] if not c["retired"]]} for e in every}
        kept = (version, shown, {e["name"]: {c["name"] for c in e["criteria"]} for e in every})
        state["label_catalogue"] = kept
    return kept


def opinions(clips: list[dict], rubric_version: tuple) -> dict[str, dict]:
    """model.assist.opinions of these clips, recorded with each verdict even when not shown. The run is chosen
    (assist.current_run_id) on each full run of the page and again when the finished runs or the promotions
    change, not after every verdict (once a run exists the choice reads every current label and each run's
    out-of-fold predictions); an opinion is worked out once per clip and frames for the session (the browser
    holds each clip for several messages; `rubric_version`: catalogue's, as the failed criteria follow the
    rubric's order)."""
    from model import assist

    folders = project.runs.iterdir() if project.runs.is_dir() else []
    promotions = store.run_promotions(project)
    runs_now = (str(project.root), tuple(sorted(f.name for f in folders if f.is_dir() and runs.is_finished(f))),
                promotions[-1]["id"] if promotions else None)
    kept = state.get("label_opinions")
    if kept is None or kept["runs"] != runs_now or kept["full_run"] != full_run:
        kept = {"runs": runs_now, "full_run": full_run, "run_id": assist.current_run_id(project), "rubric": None,
                "by_clip": {}}
        state["label_opinions"] = kept
    if kept["run_id"] is None:
        return {}
    if kept["rubric"] != rubric_version or len(kept["by_clip"]) > 1000:
        kept["rubric"], kept["by_clip"] = rubric_version, {}
    frames = {c["id"]: (c["id"], c["start_frame"], c["end_frame"], c["exercise"]) for c in clips}
    new = [c for c in clips if frames[c["id"]] not in kept["by_clip"]]
    if new:
        found = assist.opinions(project, new, run_id=kept["run_id"])
        kept["by_clip"].update({frames[c["id"]]: found.get(c["id"]) for c in new})
    return {c["id"]: kept["by_clip"][frames[c["id"]]] for c in clips if kept["by_clip"][frames[c["id"]]] is not None}


full_run = uuid.uuid4().hex  # this full run of the page (a fragment's rerun keeps the last one's)


@st.fragment
def labelling() -> None:
    """Everything that follows the clip on screen: the verdicts the labeller sent saved, its clips refilled, the
    labeller, and the panels about the clip. Its own messages rerun only this (a fragment); the sidebar's
    choices (coach, exercise, queue, skeleton, assistance) are those of the page's last full run."""
    # ------------------------------------------------------------------ save what the browser sent
    sync = ui.labeller_sync()
    version, exercises, rubric = catalogue()
    saved = labeller.save_outbox(project, coach, sync.get("outbox") or [], kinds, rubric)
    on_way = labeller.pending_clips([e for e in sync.get("outbox") or [] if e.get("rid") not in saved["refused"]])
    if state.get("label_jump") and sync.get("jump") == state["label_jump"]:
        state.pop("label_force", None)  # the browser has jumped: from now on it says which clip is on screen
    if state.get("label_for") != (coach, exercise, mode):  # another coach, exercise or queue: start at its head
        state["label_for"] = (coach, exercise, mode)
        show(None)
    if "label_jump" not in state:
        show(None)

    # ------------------------------------------------------------------ the clips the browser holds
    head = st.container()  # messages above the labeller: the labeller itself keeps its place on every run
    reasons: dict[str, str] = {}
    queue: list[dict] = []
    ahead = labeller.WINDOW + labeller.AHEAD + len(on_way)
    if mode == "Settle disagreements":
        settled = store.adjudications(project)
        clips_now = {c["id"]: c for c in store.list_clips(project, exercise=exercise)}
        queue = [d for d in agreement.disagreements(store.current_labels(project))
                 if d["clip_id"] in clips_now and d["clip_id"] not in settled]
        candidates = [clips_now[d["clip_id"]] for d in queue]
        head.caption(f"{len(queue)} clip(s) with disagreeing coaches")
    elif mode in LISTED:
        try:
            ids, reasons = listed_queue(mode)
            candidates = store.upcoming_listed_clips(project, coach, ids, skip_judged=mode == "Label suggested clips",
                                                     limit=ahead)
            if not candidates and mode == "Label suggested clips" and ids and not on_way:  # batch done: the next one
                state.pop("label_batch", None)
                ids, reasons = listed_queue(mode)
                candidates = store.upcoming_listed_clips(project, coach, ids, limit=ahead)
        except (active.EmptyPool, active.PoolExhausted, quality.NoOutOfFoldPredictions) as exc:
            head.info(str(exc))
            ids, candidates = [], []
    else:
        candidates = store.upcoming_clips(project, coach, exercise, limit=ahead)
        done = store.progress_of(project, coach, exercise)
        head.progress(done["judged"] / max(done["clips"], 1),
                      text=f"{done['judged']} of {done['clips']} clips judged by you")

    allowed = {c["id"] for c in candidates}
    # The clip on screen: the one the page sent the browser to, else the one the browser says it shows (before the
    # browser has said anything, e.g. a first run, the one this session showed last).
    wanted = (state["label_force"] if "label_force" in state else sync.get("showing") if sync
              else state.get("label_clip"))
    current = store.get_clip(project, wanted) if wanted else None
    if current is not None and not (current["active"] and current["id"] not in on_way and (
            current["id"] in allowed or (mode == "Label new clips" and exercise in (None, current["exercise"])
                                         and current["id"] not in store.excluded_clip_ids(project)))):
        current = None  # gone from this queue (excluded, merged, settled, another exercise): the queue's head instead
    if current is None and wanted and "label_force" not in state:
        show(None)
    held = labeller.window(current, candidates, on_way)
    clip = held[0] if held else None
    if clip is not None and clip["id"] != state.get("label_clip"):
        state["label_n"] = state.get("label_n", 0) + 1
    state["label_clip"] = clip["id"] if clip else None
    n = state.get("label_n", 0)
    if held:
        store.hold_clips(project, coach, [c["id"] for c in held])
        ui.prepare_ahead(project, [c for c in candidates if c["id"] not in {h["id"] for h in held}][:labeller.AHEAD])
    else:
        head.success(MESSAGES[mode])
    if mode in LISTED:
        if clip is not None:
            head.info(f"Why this clip: {reasons.get(clip['id'], '')}")
        ui.retrain(project, "label")

    # ------------------------------------------------------------------ the labeller (player, keys, verdict panel)
    surface = st.container()
    video = store.get_video(project, clip["video_id"]) if clip and clip["video_id"] else None
    if clip is not None:
        if video and video["title"]:
            st.text(f"From: {video['title']}")  # untrusted text: st.text renders neither HTML nor Markdown
        looks = store.second_looks(project, [clip["id"]]).get(clip["id"], [])
        if looks:
            said = "; ".join(f"{ui.md(x['annotator'])} said {x['verdict']}"
                             + (f" on clip {ui.md(x['from_clip'])}" if x["from_clip"] else
                                f" on frames {x['start_frame']}-{x['end_frame']} ({ui.md(x['exercise'])})"
                                if x["start_frame"] is not None else " before an edit")
                             for x in looks)
            st.warning(f"Needs a second look: the frames or the exercise changed since it was judged ({said}).",
                       icon="🔁")
        overlay = ui.model_view(project, clip, f"label_model_view_{n}")  # {} (nothing computed) unless turned on
    else:
        overlay = {}

    opinion = opinions(held, version) if held else {}
    have = set(sync.get("have") or [])
    cards, players = [], {}
    for i, c in enumerate(held):
        ex = exercises.get(c["exercise"], {"criteria": [], "joints": []})
        key = labeller.player_key(c, show_skeleton, explained=bool(overlay) and i == 0)
        if key not in have:
            v = video if i == 0 else (store.get_video(project, c["video_id"]) if c["video_id"] else None)
            players[key], warning = labeller.player_page(project, c, v, ex["joints"], show_skeleton, ui.PLAYER_HEIGHT,
                                                         **(overlay if i == 0 else {}))
            if warning and i == 0:
                head.warning(ui.md(warning))
        cards.append(labeller.card(c, ex, key, opinion.get(c["id"])))
    with surface:
        ui.labeller({
            "store": f"formcheck:{project.root}:{coach}:",  # the outbox's localStorage prefix: this project, this coach
            "kind": "adjudication" if mode == "Settle disagreements" else "verdict",
            "assist": assist_mode, "queue": cards, "players": players, "jump": state["label_jump"],
            "acked": saved["acked"], "refused": saved["refused"], "exhausted": len(candidates) < ahead,
            "echo": sync.get("sent"),  # which message of the browser this run read: it sends the next one then
        })
    if saved["refused"]:
        st.error("Not saved (the browser shows which): " + ui.md("; ".join(sorted(set(saved["refused"].values())))))
    if clip is None:
        return

    # ------------------------------------------------------------------ around the clip on screen
    if mode == "Settle disagreements":
        votes = next(d for d in queue if d["clip_id"] == clip["id"])["votes"] if clip["id"] in allowed else {}
        st.markdown("**Coaches said**")
        st.dataframe([{"coach": who, "verdict": v} for who, v in votes.items()], hide_index=True)
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
    coaches_say = store.coach_complexity(project, [clip["id"]]).get(clip["id"], {})
    auto_index = f"{clip['complexity']:.2f}" if clip["complexity"] is not None else "not measurable"
    st.caption(f"Complexity index: automatic {auto_index} · coaches "
               + (f"{coaches_say['complexity']:.2f} (median of {coaches_say['coaches']} coach(es))" if coaches_say
                  else "none yet"))

    if state.get("label_toast"):
        st.toast(state.pop("label_toast"), icon="✅")

    # ------------------------------------------------------------------ boundaries
    with st.expander("Fix clip boundaries"):
        c1, c2, c3 = st.columns(3)
        start = c1.number_input("Start frame", 0, value=clip["start_frame"], step=1, key=f"label_start_{n}")
        end = c2.number_input("End frame", 1, value=clip["end_frame"], step=1, key=f"label_end_{n}")
        if c3.button("Apply", key=f"label_bounds_{n}"):
            try:
                set_clip_bounds(project, clip, int(start), int(end), coach)
                state["label_toast"] = "Boundaries saved"
                show(clip["id"])
                st.rerun()
            except store.StoreError as exc:
                st.error(ui.md(exc))
        s1, s2 = st.columns(2)
        at = s1.number_input("Split at frame", clip["start_frame"] + 1,
                             max(clip["end_frame"] - 1, clip["start_frame"] + 1),
                             value=(clip["start_frame"] + clip["end_frame"]) // 2, key=f"label_split_at_{n}")
        if s1.button("Split in two", key=f"label_split_{n}"):
            try:
                first, _ = lineage.split(project, clip["id"], int(at), coach)
                show(first)
                st.rerun()
            except store.StoreError as exc:
                st.error(ui.md(exc))
        if s2.button("Merge with the next clip of this video", key=f"label_merge_{n}", disabled=not clip["video_id"]):
            siblings = [c for c in store.list_clips(project, video_id=clip["video_id"])
                        if c["start_frame"] > clip["start_frame"]]
            if not siblings:
                st.error("This is the last clip of its video.")
            else:
                show(lineage.merge(project, clip["id"], siblings[0]["id"], coach))
                st.rerun()
        last_edit = store.undoable_edit(project, clip["id"])
        if st.button(f"Undo the last edit of this clip ({last_edit['action']} by {ui.md(last_edit['annotator'])})"
                     if last_edit else "Undo the last edit of this clip", key=f"label_undo_edit_{n}",
                     disabled=last_edit is None):
            try:
                show(lineage.undo_edit(project, last_edit["id"], coach)["clip_id"])
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
                show(None)
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
                show(clip["id"])
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


labelling()
