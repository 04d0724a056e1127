"""Dataset: browse and filter clips, class balance, videos (provenance, athletes, trim timeline), agreement between
coaches, history, import/export, statistics, the rubric editor."""

import io
import json
import tempfile
import zipfile
from pathlib import Path

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

import ui
from curation import agreement, store, timeline
from curation.dataset import LAYOUTS, DatasetError, export_folder, import_zip
from curation.kinematics import ANGLES
from model import assist

st.set_page_config(page_title="Dataset · Formcheck", page_icon="🗂️", layout="wide")
project = ui.project()
st.title("Dataset")



PAGE_ROWS = 200  # clips per page of the table: filtered and paged in SQL, the same cost at 100,000 clips
COLUMNS = ["clip_id", "exercise", "video", "seconds", "method", "label", "final", "correct_votes", "incorrect_votes",
           "disagreement", "coaches", "complexity", "coach_complexity", "view", "second_look"]

# The widgets of the tabs drawn only while open (below) keep their values while another tab is open: Streamlit
# forgets a widget's value after a run that did not draw it, unless the value is set through the session state.
KEPT_WIDGETS = ("dataset_exercise", "dataset_label", "dataset_coach", "dataset_disagreement", "dataset_view",
                "dataset_complexity", "dataset_complexity_by", "dataset_page", "dataset_history_clip",
                "dataset_timeline_video", "dataset_agreement_on")
for key in KEPT_WIDGETS:
    if key in st.session_state:
        st.session_state[key] = st.session_state[key]

counted = store.project_counts(project)["clips"]  # active clips, excluded ones left out (the table's)
# Clips, Videos, Agreement and Statistics are drawn only while open (each reads much of a large project; a click on
# a tab reruns the page); Import / export and the catalogue cost nothing and are always drawn.
clips_tab, videos_tab, agree_tab, io_tab, stats_tab, catalogue_tab = st.tabs(
    ["Clips", "Videos", "Agreement", "Import / export", "Statistics", "Exercises & criteria"], key="dataset_tab",
    on_change="rerun")

# ------------------------------------------------------------------ clips
with clips_tab:
    if clips_tab.open:
        if not counted:
            st.info("No clips yet: add videos on the Ingest page, import a dataset, or open the sample project from "
                    "Home.")
        else:
            f1, f2, f3, f4 = st.columns(4)
            chosen = f1.multiselect("Exercise", store.dataset_exercises(project), key="dataset_exercise")
            states = f2.multiselect("Label", ["correct", "incorrect", "disputed", "unlabelled"], key="dataset_label")
            coach = f3.selectbox("Labelled by", ["(anyone)"] + [a["name"] for a in store.list_annotators(project)],
                                 key="dataset_coach")
            only_disagreement = f4.checkbox("Only disagreements", key="dataset_disagreement")
            g1, g2, g3 = st.columns([3, 1, 1])
            views = g3.multiselect("Camera view", ["front", "side", "oblique", "unknown"], key="dataset_view",
                                   help="estimated per clip from the pose at ingest")
            st.session_state.setdefault("dataset_complexity", (0.0, 1.0))  # its default: no warning when kept
            lo, hi = g1.slider("Complexity index", 0.0, 1.0, step=0.05, key="dataset_complexity")
            by = g2.radio("Complexity from", ["automatic", "coaches"], horizontal=True, key="dataset_complexity_by",
                          help="coaches: the median of the values coaches set on the Label page")
            filters = {"exercises": chosen, "states": states, "coach": None if coach == "(anyone)" else coach,
                       "disagreement": only_disagreement, "views": views,
                       "complexity": None if (lo, hi) == (0.0, 1.0) else (lo, hi), "complexity_by": by}
            page = st.session_state.get("dataset_page", 1)
            shown, matching = store.clip_table(project, **filters, offset=(page - 1) * PAGE_ROWS, limit=PAGE_ROWS)
            pages = max(1, -(-matching // PAGE_ROWS))
            if page > pages:  # the filters keep fewer clips than before: their last page
                page = st.session_state["dataset_page"] = pages
                shown, matching = store.clip_table(project, **filters, offset=(page - 1) * PAGE_ROWS, limit=PAGE_ROWS)
            if pages > 1:
                st.number_input("Page", 1, pages, key="dataset_page")
            view = pd.DataFrame(shown, columns=COLUMNS)
            st.caption(f"{matching} of {counted} clips" + (f" · page {page} of {pages} ({PAGE_ROWS} a page, in video "
                                                           "order)" if pages > 1 else "")
                       + " · click a column header to sort the page")
            st.dataframe(view, hide_index=True, width="stretch",
                         column_config={"complexity": st.column_config.NumberColumn(format="%.2f"),
                                        "coach_complexity": st.column_config.NumberColumn(format="%.2f"),
                                        "second_look": st.column_config.CheckboxColumn(
                                            help="labelled on other frames or another exercise: needs a second look")})

            st.subheader("Class balance per exercise")
            balance = pd.DataFrame(store.label_balance(project), columns=["exercise", "label", "clips"])
            st.plotly_chart(px.bar(balance, x="exercise", y="clips", color="label", barmode="stack",
                                   color_discrete_map={"correct": "#2e7d32", "incorrect": "#c62828",
                                                       "disputed": "#f9a825", "unlabelled": "#9e9e9e"}),
                            width="stretch")

            st.subheader("Label history of a clip")
            clip_id = st.selectbox("Clip", view.clip_id.tolist()
                                   or [r["clip_id"] for r in store.clip_table(project)[0]], key="dataset_history_clip")
            history = store.label_history(project, clip_id)
            if history:
                for event in history:  # criteria named as in the rubric the label was made with
                    rubric = store.label_rubric(project, event["id"])
                    titles = {c["name"]: c["title"] for c in rubric["criteria"]}
                    event["rubric"] = rubric["version"]
                    event["criteria"] = ", ".join(f"{titles.get(k, k)}: {v}" for k, v in event["criteria"].items())
                    event["model"] = assist.describe_recorded(event)
                st.dataframe(pd.DataFrame(history)[["created_at", "annotator", "kind", "verdict", "criteria", "note",
                                                    "seconds", "model", "rubric"]], hide_index=True, width="stretch",
                             column_config={"rubric": st.column_config.NumberColumn(
                                 "rubric", help="version of the rubric the label was made with"),
                                 "model": st.column_config.TextColumn(
                                     "model", help="the model's opinion when the label was given, and whether the "
                                                   "coach saw it before deciding")})
            else:
                st.caption("No label events for this clip yet.")

        with st.expander("Excluded clips and videos"):  # left out of every queue, training run and export
            excluded = store.exclusions(project)
            if excluded:
                st.dataframe(pd.DataFrame(excluded)[["clip_id", "video_id", "reason", "annotator", "created_at"]],
                             hide_index=True, width="stretch")
                names = {f"{'clip' if x['clip_id'] else 'video'} {x['clip_id'] or x['video_id']}": x for x in excluded}
                back = st.selectbox("Restore", list(names), key="dataset_restore_pick")
                why = st.text_input("Reason", key="dataset_restore_reason", max_chars=500)
                if st.button("Restore", key="dataset_restore"):
                    x = names[back]
                    store.set_excluded(project, ui.actor(), False, why, clip_id=x["clip_id"], video_id=x["video_id"])
                    st.rerun()
            else:
                st.caption("Nothing excluded. Clips and videos are excluded, with a reason, on the Label page.")

# ------------------------------------------------------------------ videos
REASON_COLOURS = {timeline.KEPT: "#2e7d32", timeline.RESTORED: "#66bb6a", "no person": "#9e9e9e",
                  "still": "#f9a825", "talking head": "#8e24aa", timeline.REMOVED_BY_COACH: "#c62828",
                  "several people": "#0277bd", "replay": "#00838f"}


def undo_picker(label: str, button: str, events: list[dict], key: str, role: str, describe, undo) -> None:
    """Pick one of `events` (described by describe(event)) and take it back with undo(project, id, actor)."""
    if not events:
        return
    by_id = {e["id"]: e for e in events}
    pick = st.selectbox(label, list(by_id), key=f"{key}_pick", format_func=lambda i: describe(by_id[i]))
    if st.button(button, key=key, disabled=not ui.can(role)):
        ui.require(role)
        undo(project, pick, ui.actor())
        st.rerun()


def timeline_figure(parts: list[dict], fps: float) -> go.Figure:
    """One row of kept clips, one of removed spans and one of flagged spans, in seconds, coloured by reason;
    camera cuts as vertical lines."""
    fig = go.Figure()
    spans = [p for p in parts if p["kind"] != "cut"]
    for reason in dict.fromkeys(p["reason"] for p in spans):
        mine = [p for p in spans if p["reason"] == reason]
        fig.add_bar(y=["clips" if p["kind"] == "clip" else p["kind"] for p in mine],
                    x=[(p["end_frame"] - p["start_frame"]) / fps for p in mine],
                    base=[p["start_frame"] / fps for p in mine], orientation="h", name=reason,
                    marker_color=REASON_COLOURS.get(reason, "#607d8b"),
                    customdata=[[p["start_frame"], p["end_frame"], p["clip_id"] or ""] for p in mine],
                    hovertemplate="frames %{customdata[0]}-%{customdata[1]} %{customdata[2]}<extra>" + reason
                                  + "</extra>")
    for cut in (p for p in parts if p["kind"] == "cut"):
        fig.add_vline(x=cut["start_frame"] / fps, line_dash="dot", line_color="#37474f")
    fig.update_layout(barmode="overlay", height=220, xaxis_title="seconds (dotted: camera cuts)",
                      margin={"t": 10, "b": 10})
    return fig


with videos_tab:
    if videos_tab.open:
        videos = store.list_videos(project)
        if not videos:
            st.caption("No videos ingested yet.")
        else:
            if "dataset_videos_done" in st.session_state:  # said after the rerun that refreshed the tables
                st.success(st.session_state.pop("dataset_videos_done"))
            trim = store.trim_summary(project)
            m1, m2, m3 = st.columns(3)
            m1.metric("Trimmed share of all footage", f"{trim['current']:.1%}",
                      help="frames not in the dataset, after the coaches' restores and removals")
            m2.metric("Removed by the automatic trim", f"{trim['automatic']:.1%}")
            m3.metric("Videos with an athlete", f"{sum(bool(v['athlete']) for v in videos)} of {len(videos)}")
            st.caption("For comparison: a published study of 270 YouTube coaching videos removed about 15 % of "
                       "non-movement content.")
            table = pd.DataFrame(videos)
            table["trimmed"] = table.id.map(lambda v: trim["per_video"][v]["current"])
            # Every text column comes from the source or a coach: shown by st.dataframe as plain text, no links.
            st.dataframe(
                table[["title", "athlete", "exercise", "uploader", "channel", "channel_id", "upload_date", "duration",
                       "license", "webpage_url", "source", "source_key", "frames", "fps", "width", "height",
                       "person_share", "trimmed", "clips", "id"]],
                hide_index=True, width="stretch",
                column_config={
                    "person_share": st.column_config.ProgressColumn("person", format="percent", min_value=0,
                                                                    max_value=1),
                    "trimmed": st.column_config.ProgressColumn("trimmed", format="percent", min_value=0, max_value=1),
                    "duration": st.column_config.NumberColumn("duration (s)", format="%.1f"),
                    "source_key": st.column_config.TextColumn("source key", help="a link's canonical form, or a file's "
                                                                                 "sha256"),
                },
            )
            video_names = {v["id"]: f"{v['title'] or v['id']} · {v['id']}" for v in videos}

            st.subheader("Athletes")
            st.caption("Grouped evaluation by athlete (Train page) keeps each athlete's videos on one side.")
            with st.form("dataset_athlete_form", clear_on_submit=True):
                chosen_videos = st.multiselect("Videos", list(video_names), format_func=video_names.get,
                                               key="dataset_athlete_videos")
                athlete = st.text_input("Athlete (leave empty for unknown)", key="dataset_athlete_name", max_chars=80)
                if st.form_submit_button("Set the athlete of these videos", disabled=not ui.can("coach")):
                    ui.require("coach")
                    try:
                        changed = store.set_athlete(project, chosen_videos, athlete, ui.actor())
                        st.session_state["dataset_videos_done"] = f"{changed} video(s) changed."
                        st.rerun()
                    except store.StoreError as exc:
                        st.error(ui.md(exc))
            edits = [e for e in store.video_events(project) if e["undoes"] is None and not e["undone"]]
            undo_picker("Athlete changes", "Undo this change", edits, "dataset_athlete_undo", "coach",
                        lambda e: f"{e['created_at'][:19]} · {video_names.get(e['video_id'])}: "
                                  f"{e['previous'] or '(unknown)'} → {e['value'] or '(unknown)'}",
                        store.undo_video_event)

            st.subheader("Timeline: kept clips and removed spans")
            video_id = st.selectbox("Video", list(video_names), format_func=video_names.get,
                                    key="dataset_timeline_video")
            video = next(v for v in videos if v["id"] == video_id)
            parts = timeline.video_timeline(project, video_id)
            if parts:
                st.plotly_chart(timeline_figure(parts, video["fps"]), width="stretch", key="dataset_timeline_plot")
            spans = [p for p in parts if p["kind"] == "removed" and p["reason"] != timeline.REMOVED_BY_COACH]
            fps = video["fps"]
            r1, r2 = st.columns(2)
            with r1:
                if spans:
                    span = st.selectbox(
                        "A removed span", range(len(spans)), key="dataset_restore_span",
                        format_func=lambda i: f"{spans[i]['start_frame'] / fps:.1f}-"
                                              f"{spans[i]['end_frame'] / fps:.1f} s · {spans[i]['reason']}")
                    if st.button("Restore it as clips", key="dataset_restore", disabled=not ui.can("lead")):
                        ui.require("lead")
                        made = timeline.restore_span(project, video_id, spans[span]["start_frame"],
                                                     spans[span]["end_frame"], ui.actor())
                        st.session_state["dataset_videos_done"] = f"{len(made['clips'])} clip(s) made from the span."
                        st.rerun()
                else:
                    st.caption("Nothing of this video was removed.")
            with r2:
                seconds = video["frames"] / fps
                lo, hi = st.slider("A part to remove (seconds)", 0.0, seconds, (0.0, min(seconds, 1.0)), 0.1,
                                   key="dataset_remove_range")
                if st.button("Remove this part from the dataset", key="dataset_remove", disabled=not ui.can("lead")):
                    ui.require("lead")
                    gone = timeline.remove_span(project, video_id, int(round(lo * fps)), int(round(hi * fps)),
                                                ui.actor())
                    st.session_state["dataset_videos_done"] = f"{len(gone['clips'])} clip(s) excluded."
                    st.rerun()
            changes = [e for e in store.trim_events(project, video_id) if e["action"] != "undo" and not e["undone"]]
            undo_picker("Trim changes", "Undo this trim change", changes, "dataset_trim_undo", "lead",
                        lambda e: f"{e['action']} {e['start_frame'] / fps:.1f}-{e['end_frame'] / fps:.1f} s "
                                  f"by {e['annotator']} ({len(e['clips'])} clips)",
                        store.undo_trim_event)

# ------------------------------------------------------------------ agreement


OPEN_CASES_SHOWN = 200  # clips of the waiting list shown, most split first
AGREEMENT_AT_ONCE = 20_000  # current labels up to which the kappas come with the page (~0.5 s); past it, on request


@st.cache_data(show_spinner=False, max_entries=4)
def agreement_figures(version: tuple[int, int], _project=project) -> pd.DataFrame:
    # Kept until a write changes the labels (version: store.data_version), as the clips table above.
    labels = [r for r in store.current_labels(_project) if r["annotator"] != "import"]
    exercise_of = store.dataset_exercise_of(_project)
    return pd.DataFrame(agreement.agreement_table(labels, exercise_of))


with agree_tab:
    if agree_tab.open:
        current_labels = store.current_label_count(project)
        if current_labels <= AGREEMENT_AT_ONCE or st.toggle(
                f"Compute the agreement over all {current_labels} current labels (seconds)",
                key="dataset_agreement_on"):
            table = agreement_figures(store.data_version(project))
        else:
            table = None
        if table is None:
            st.caption("Kappas per exercise and criterion are computed on request at this size.")
        elif table.empty or table.n_items.max() == 0:
            st.info("Agreement needs clips judged by at least two coaches.")
        else:
            st.caption("Cohen's kappa for two coaches, Fleiss' kappa for more; criteria use pass/fail.")
            st.dataframe(table, hide_index=True, width="stretch",
                         column_config={"percent_agreement": st.column_config.NumberColumn(format="%.2f"),
                                        "kappa": st.column_config.NumberColumn(format="%.2f")})
        disputed, waiting = store.open_disagreement_labels(project, limit=OPEN_CASES_SHOWN)  # ranked in SQL
        open_cases = agreement.disagreements(disputed)
        st.metric("Clips waiting for a lead coach", waiting)
        if open_cases:
            st.dataframe(pd.DataFrame([{"clip_id": d["clip_id"], "split": d["split"],
                                        "votes": ", ".join(f"{k}: {v}" for k, v in d["votes"].items())}
                                       for d in open_cases]), hide_index=True, width="stretch")
            st.caption(("" if waiting == len(open_cases) else f"The {len(open_cases)} most split of {waiting}. ")
                       + "A lead coach settles these on the Label page (queue: Settle disagreements).")


# ------------------------------------------------------------------ coaches and the model (assisted labelling)


@st.cache_data(show_spinner=False, max_entries=4)
def assist_figures(version: tuple[int, int], _project=project) -> dict:
    # Kept until a write changes the label events (version: store.data_version), as the tables above.
    return assist.report(_project)


def _figure(value: float | None, n: int, enough: bool, fmt: str) -> str:
    """A group's figure with its count, or plainly that the group is too small to read."""
    if not n:
        return "none"
    if not enough:
        return f"too few ({n} < {assist.MIN_GROUP})"
    return f"{fmt.format(value)} (of {n})"


with agree_tab:
    if agree_tab.open:
        st.subheader("Coaches and the model")
        coaches_model = assist_figures(store.data_version(project))
        groups = coaches_model["groups"]
        if not any(g["verdicts"] for g in groups):
            st.caption("No verdict yet for which the Label page recorded whether the model's opinion was shown.")
        else:
            st.caption("Agreement: the share of verdicts equal to the model's verdict recorded with them. Seconds: the "
                       "median time per verdict. \"shown\": the coach saw the model's opinion before deciding "
                       "(mode on); \"not shown\": off, decide first, or no model to ask.")
            st.dataframe(pd.DataFrame([{
                "coach": g["coach"], "model's opinion": "shown" if g["shown"] else "not shown",
                "verdicts": g["verdicts"],
                "agreement": _figure(g["agreement"], g["with_prediction"], g["enough_agreement"], "{:.0%}"),
                "median seconds": _figure(g["median_seconds"], g["timed"], g["enough_seconds"], "{:.1f} s"),
            } for g in groups]), hide_index=True, width="stretch")
            gap = coaches_model["gap"]
            if gap["agreement"] is not None:
                st.text(f"Over all coaches, agreement with the model is {gap['agreement']:+.0%} with its opinion shown "
                        "than without (a large gap suggests coaches anchor on it).")
            else:
                st.text(f"Too few verdicts to compare agreement with the opinion shown and not shown: each needs at "
                        f"least {assist.MIN_GROUP} verdicts with a recorded opinion.")
            if gap["median_seconds"] is not None:
                st.text(f"A verdict takes {gap['median_seconds']:+.1f} s (median) with the opinion shown than without.")
            plotted = [g for g in groups if g["enough_agreement"]]
            if plotted:
                st.plotly_chart(px.bar(pd.DataFrame([{"coach": g["coach"], "agreement": g["agreement"],
                                                      "opinion": "shown" if g["shown"] else "not shown"}
                                                     for g in plotted]),
                                       x="coach", y="agreement", color="opinion", barmode="group", height=300,
                                       range_y=[0, 1]), width="stretch", key="dataset_assist_agreement")
        if coaches_model["unrecorded"]:
            st.caption(f"{coaches_model['unrecorded']} verdicts made before the Label page recorded the model's "
                       "opinion are left out.")

# ------------------------------------------------------------------ import / export
with io_tab:
    st.subheader("Export")
    st.caption("The pose dataset folder: clips.csv (labels = current consensus) and poses/<clip_id>.npy, plus "
               "tables/ and files/ from which an empty project is rebuilt whole (README.md in the zip).")
    keep_excluded = st.checkbox("Keep excluded clips (marked by their reason in an `excluded` column)",
                                key="dataset_zip_excluded")
    if st.button("Prepare a .zip of the dataset", key="dataset_zip", disabled=not counted or not ui.can("admin"),
                 help=None if ui.can("admin") else "Export needs the admin role."):
        ui.require("admin")
        with tempfile.TemporaryDirectory() as tmp:
            count = export_folder(project, Path(tmp) / "dataset", include_excluded=keep_excluded)
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
                for path in sorted((Path(tmp) / "dataset").rglob("*")):
                    if path.is_file():
                        zf.write(path, path.relative_to(tmp))
        st.session_state["dataset_zip_bytes"] = buffer.getvalue()
        store.record_audit(project, ui.actor(), "export", "dataset.zip", {"clips": count})
        st.success(f"{count} clips packed.")
    if st.session_state.get("dataset_zip_bytes") and ui.can("admin"):
        st.download_button("Download dataset.zip", st.session_state["dataset_zip_bytes"], "formcheck-dataset.zip",
                           mime="application/zip", key="dataset_download")
    st.subheader("Import")
    upload = st.file_uploader("A .zip holding clips.csv and poses/", type=["zip"], key="dataset_import_zip")
    layout = st.selectbox("Keypoint layout of the arrays", list(LAYOUTS), key="dataset_import_layout")
    if st.button("Import", key="dataset_import", disabled=upload is None or not ui.can("admin"),
                 help=None if ui.can("admin") else "Import needs the admin role."):
        ui.require("admin")
        try:
            result = import_zip(project, upload, layout)  # checked whole (sizes, paths, files) before writing
            store.record_audit(project, ui.actor(), "import", upload.name[:200],
                               {"added": result.added, "clips": result.clips, "layout": layout})
            if result.mode == "full":
                st.success(f"Restored the whole exported project: {result.clips} clips ({result.labelled} labelled).")
            else:
                st.success(f"Imported {result.added} of {result.clips} clips ({result.labelled} labelled); "
                           f"{result.skipped} were already in the project.")
        except DatasetError as exc:
            st.error(f"Nothing imported: {ui.md(exc)}")

# ------------------------------------------------------------------ statistics
with stats_tab:
    if stats_tab.open:
        figures = store.stats(project)
        s1, s2, s3, s4, s5, s6 = st.columns(6)
        s1.metric("Videos", figures["videos"])
        s2.metric("Clips", figures["clips"])
        s3.metric("Labelled clips", figures["labelled"])
        s4.metric("Labelled frames", figures["labelled_frames"])
        share = figures["person_share"]["overall"]
        s5.metric("Person in frame", "n/a" if share is None else f"{share:.1%}")
        share = figures["trimmed_share"]["overall"]
        s6.metric("Trimmed", "n/a" if share is None else f"{share:.1%}")
        per = pd.DataFrame([{
            "exercise": name, "videos": e["videos"], "clips": e["clips"], "frames": e["frames"],
            "labelled": e["labelled"], "labelled frames": e["labelled_frames"],
            "correct clips": e["per_class"]["correct"]["clips"], "correct frames": e["per_class"]["correct"]["frames"],
            "incorrect clips": e["per_class"]["incorrect"]["clips"],
            "incorrect frames": e["per_class"]["incorrect"]["frames"], "seconds": e["seconds"],
            "complexity (automatic)": e["complexity_auto"], "complexity (coaches)": e["complexity_coach"],
        } for name, e in figures["exercises"].items()])
        if per.empty:
            st.info("No clips yet.")
        else:
            st.subheader("Per exercise and class")
            st.dataframe(per, hide_index=True, width="stretch",
                         column_config={c: st.column_config.NumberColumn(format="%.2f")
                                        for c in ("seconds", "complexity (automatic)", "complexity (coaches)")})
            c1, c2 = st.columns(2)
            c1.plotly_chart(px.bar(per.melt("exercise", ["correct clips", "incorrect clips"], "class",
                                            "labelled clips"), x="exercise", y="labelled clips", color="class",
                                   barmode="stack", height=320,
                                   color_discrete_map={"correct clips": "#2e7d32", "incorrect clips": "#c62828"}),
                            width="stretch", key="dataset_stats_classes")
            c2.plotly_chart(px.bar(per.melt("exercise", ["complexity (automatic)", "complexity (coaches)"], "by",
                                            "complexity"), x="exercise", y="complexity", color="by", barmode="group",
                                   height=320), width="stretch", key="dataset_stats_complexity")
            st.subheader("Durations, resolutions and frame rates")
            d1, d2, d3 = st.columns([2, 1, 1])
            d1.dataframe(pd.DataFrame({"videos (s)": figures["video_seconds"], "clips (s)": figures["clip_seconds"]}),
                         width="stretch")
            d2.dataframe(pd.DataFrame(list(figures["resolutions"].items()), columns=["resolution", "videos"]),
                         hide_index=True, width="stretch")
            d3.dataframe(pd.DataFrame(list(figures["fps"].items()), columns=["fps", "videos"]), hide_index=True,
                         width="stretch")
            if figures["videos"]:
                shares = pd.DataFrame({"person": figures["person_share"]["per_video"],
                                       "trimmed": figures["trimmed_share"]["per_video"]})
                st.plotly_chart(px.histogram(shares.melt(var_name="share", value_name="of the video's frames"),
                                             x="of the video's frames", color="share", barmode="overlay", nbins=20,
                                             height=300), width="stretch", key="dataset_stats_shares")
            st.subheader("Coaches' seconds per verdict")
            st.dataframe(pd.DataFrame(figures["seconds_per_verdict"]).T[["n", "mean", "median", "min", "max"]],
                         width="stretch")

# ------------------------------------------------------------------ catalogue
with catalogue_tab:
    # The rubric editor: every change is a rubric event (undoable below); labels keep the criterion keys they
    # used, so a renamed or retired criterion still reads right in old labels.
    exercises = {e["name"]: e for e in store.list_exercises(project)}
    rubric_for = st.selectbox("Exercise", list(exercises), key="dataset_rubric_exercise")
    lead = ui.can("lead")
    if rubric_for:
        ex = exercises[rubric_for]
        st.text(ex["description"])
        crits = store.criteria_of(project, rubric_for, include_retired=True)
        if crits:
            st.dataframe(pd.DataFrame(crits)[["position", "title", "name", "description", "cue", "retired"]],
                         hide_index=True, width="stretch",
                         column_config={"name": st.column_config.TextColumn("key", help="what labels store; "
                                                                                        "never changes")})
            titles = {c["name"]: f"{c['title']}{' (retired)' if c['retired'] else ''}" for c in crits}
            key = st.selectbox("Criterion", list(titles), format_func=titles.get, key="dataset_rubric_criterion")
            crit = next(c for c in crits if c["name"] == key)
            with st.form(f"dataset_rubric_edit_{rubric_for}_{key}"):
                new_title = st.text_input("Name shown to coaches", crit["title"], max_chars=60,
                                          key=f"dataset_rubric_title_{rubric_for}_{key}")
                new_text = st.text_input("What the coach checks", crit["description"], max_chars=300,
                                         key=f"dataset_rubric_text_{rubric_for}_{key}")
                new_cue = st.text_input("Coaching cue (what the athlete hears when it fails; shown by Assess)",
                                        crit["cue"], max_chars=store.CUE_LIMIT,
                                        key=f"dataset_rubric_cue_{rubric_for}_{key}")
                if st.form_submit_button("Save name and description", disabled=not lead):
                    ui.require("lead")
                    try:
                        store.edit_criterion(project, rubric_for, key, ui.actor(), title=new_title,
                                             description=new_text)
                        store.set_cue(project, rubric_for, key, new_cue, ui.actor())
                        st.rerun()
                    except store.StoreError as exc:
                        st.error(ui.md(exc))
            b1, b2, b3 = st.columns(3)
            active = [c["name"] for c in crits if not c["retired"]]
            order = [c["name"] for c in crits]
            i = order.index(key)
            for column, label, step in ((b1, "Move up", -1), (b2, "Move down", 1)):
                if column.button(label, key=f"dataset_rubric_move_{step}", width="stretch",
                                 disabled=not lead or not 0 <= i + step < len(order)):
                    ui.require("lead")
                    order[i], order[i + step] = order[i + step], order[i]
                    store.reorder_criteria(project, rubric_for, order, ui.actor())
                    st.rerun()
            if b3.button("Restore" if crit["retired"] else "Retire", key="dataset_rubric_retire", width="stretch",
                         disabled=not lead, help="retired criteria are no longer offered on the Label page; "
                                                 "labels that used them keep them"):
                ui.require("lead")
                store.edit_criterion(project, rubric_for, key, ui.actor(), retired=not crit["retired"])
                st.rerun()
            st.caption(f"{len(active)} active, {len(crits) - len(active)} retired; coaches see the active ones in "
                       "this order.")
        with st.form(f"dataset_rubric_joints_{rubric_for}"):
            joints = st.multiselect("Joints of interest (their angle traces on the Label page)", list(ANGLES),
                                    [j for j in ex["joints"] if j in ANGLES], key=f"dataset_rubric_joints_{rubric_for}")
            if st.form_submit_button("Save joints", disabled=not lead):
                ui.require("lead")
                store.set_exercise(project, rubric_for, ui.actor(), joints=joints)
                st.rerun()
        history = store.rubric_events(project, rubric_for)
        with st.expander(f"Rubric history ({len(history)} changes; version {max(e['id'] for e in history)})"
                         if history else "Rubric history"):
            if history:
                st.dataframe(pd.DataFrame([{**e, "detail": json.dumps(e["detail"])} for e in history])[
                    ["id", "created_at", "annotator", "action", "criterion", "detail", "undone"]],
                    hide_index=True, width="stretch")
                undoable = [e["id"] for e in history if e["action"] != "undo" and not e["undone"]]
                pick = st.selectbox("Change", undoable, key="dataset_rubric_undo_pick",
                                    format_func=lambda i: next(f"{i}: {e['action']} {e['criterion'] or ''}"
                                                               for e in history if e["id"] == i))
                if st.button("Undo this change", key="dataset_rubric_undo", disabled=not lead or pick is None):
                    ui.require("lead")
                    store.undo_rubric_event(project, pick, ui.actor())
                    st.rerun()
    names = [e["name"] for e in store.list_exercises(project)]
    with st.form("dataset_add_criterion", clear_on_submit=True):
        st.markdown("**Add a criterion**")
        target = st.selectbox("Exercise", names, key="dataset_crit_exercise")
        crit_name = st.text_input("Criterion (e.g. knee_valgus)", key="dataset_crit_name")
        crit_text = st.text_input("What the coach checks", key="dataset_crit_text")
        if st.form_submit_button("Add criterion", disabled=not ui.can("lead")):
            ui.require("lead")
            try:
                st.success(f"Added {ui.md(store.add_criterion(project, target, crit_name, crit_text))} to "
                           f"{ui.md(target)}.")
            except store.StoreError as exc:
                st.error(ui.md(exc))
    with st.form("dataset_add_exercise", clear_on_submit=True):
        st.markdown("**Add an exercise**")
        ex_name = st.text_input("Name", key="dataset_ex_name")
        ex_text = st.text_input("Description", key="dataset_ex_text")
        ex_joints = st.multiselect("Joints of interest", list(ANGLES), key="dataset_ex_joints")
        if st.form_submit_button("Add exercise", disabled=not ui.can("lead")):
            ui.require("lead")
            try:
                st.success(f"Added {ui.md(store.add_exercise(project, ex_name, ex_text, ex_joints))}.")
            except store.StoreError as exc:
                st.error(ui.md(exc))
