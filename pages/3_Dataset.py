"""Dataset: browse and filter clips, class balance, agreement between coaches, history, import/export, catalogue."""

import io
import tempfile
import zipfile
from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st

import ui
from curation import agreement, store
from curation.dataset import LAYOUTS, DatasetError, clip_overview, export_folder, import_folder
from curation.kinematics import ANGLES

st.set_page_config(page_title="Dataset · Formcheck", page_icon="🗂️", layout="wide")
project = ui.project()
st.title("Dataset")

rows = pd.DataFrame(clip_overview(project))
clips_tab, videos_tab, agree_tab, io_tab, catalogue_tab = st.tabs(
    ["Clips", "Videos", "Agreement", "Import / export", "Exercises & criteria"])

# ------------------------------------------------------------------ clips
with clips_tab:
    if rows.empty:
        st.info("No clips yet: add videos on the Ingest page, import a dataset, or open the sample project from Home.")
    else:
        f1, f2, f3, f4 = st.columns(4)
        chosen = f1.multiselect("Exercise", sorted(rows.exercise.unique()), key="dataset_exercise")
        states = f2.multiselect("Label", ["correct", "incorrect", "disputed", "unlabelled"], key="dataset_label")
        coach = f3.selectbox("Labelled by", ["(anyone)"] + [a["name"] for a in store.list_annotators(project)],
                             key="dataset_coach")
        only_disagreement = f4.checkbox("Only disagreements", key="dataset_disagreement")
        lo, hi = st.slider("Complexity index", 0.0, 1.0, (0.0, 1.0), 0.05, key="dataset_complexity")
        view = rows
        if chosen:
            view = view[view.exercise.isin(chosen)]
        if states:
            view = view[view.label.isin(states)]
        if coach != "(anyone)":
            view = view[view.coaches.str.split(", ").apply(lambda names: coach in names)]
        if only_disagreement:
            view = view[view.disagreement]
        if (lo, hi) != (0.0, 1.0):
            view = view[view.complexity.between(lo, hi)]
        st.caption(f"{len(view)} of {len(rows)} clips · click a column header to sort")
        st.dataframe(view, hide_index=True, width="stretch",
                     column_config={"complexity": st.column_config.NumberColumn(format="%.2f")})

        st.subheader("Class balance per exercise")
        balance = rows.groupby(["exercise", "label"]).size().reset_index(name="clips")
        st.plotly_chart(px.bar(balance, x="exercise", y="clips", color="label", barmode="stack",
                               color_discrete_map={"correct": "#2e7d32", "incorrect": "#c62828",
                                                   "disputed": "#f9a825", "unlabelled": "#9e9e9e"}),
                        width="stretch")

        st.subheader("Label history of a clip")
        clip_id = st.selectbox("Clip", view.clip_id.tolist() or rows.clip_id.tolist(), key="dataset_history_clip")
        history = store.label_history(project, clip_id)
        if history:
            st.dataframe(pd.DataFrame(history)[["created_at", "annotator", "kind", "verdict", "criteria", "note",
                                                "seconds"]], hide_index=True, width="stretch")
        else:
            st.caption("No label events for this clip yet.")

# ------------------------------------------------------------------ videos
with videos_tab:
    videos = store.list_videos(project)
    if videos:
        st.dataframe(
            pd.DataFrame(videos)[["title", "exercise", "frames", "fps", "width", "height", "person_share",
                                  "trimmed_share", "clips", "source"]],
            hide_index=True, width="stretch",
            column_config={
                "person_share": st.column_config.ProgressColumn("person", format="percent", min_value=0, max_value=1),
                "trimmed_share": st.column_config.ProgressColumn("trimmed", format="percent", min_value=0,
                                                                 max_value=1),
            },
        )
    else:
        st.caption("No videos ingested yet.")

# ------------------------------------------------------------------ agreement
with agree_tab:
    labels = [r for r in store.current_labels(project) if r["annotator"] != "import"]
    exercise_of = {c["id"]: c["exercise"] for c in store.list_clips(project)}
    table = pd.DataFrame(agreement.agreement_table(labels, exercise_of))
    if table.empty or table.n_items.max() == 0:
        st.info("Agreement needs clips judged by at least two coaches.")
    else:
        st.caption("Cohen's kappa for two coaches, Fleiss' kappa for more; criteria use pass/fail.")
        st.dataframe(table, hide_index=True, width="stretch",
                     column_config={"percent_agreement": st.column_config.NumberColumn(format="%.2f"),
                                    "kappa": st.column_config.NumberColumn(format="%.2f")})
    settled = store.adjudications(project)
    open_cases = [d for d in agreement.disagreements(labels) if d["clip_id"] not in settled]
    st.metric("Clips waiting for a lead coach", len(open_cases))
    if open_cases:
        st.dataframe(pd.DataFrame([{"clip_id": d["clip_id"], "split": d["split"],
                                    "votes": ", ".join(f"{k}: {v}" for k, v in d["votes"].items())}
                                   for d in open_cases]), hide_index=True, width="stretch")
        st.caption("A lead coach settles these on the Label page (queue: Settle disagreements).")

# ------------------------------------------------------------------ import / export
with io_tab:
    st.subheader("Export")
    st.caption("The pose dataset folder: clips.csv (labels = current consensus) and poses/<clip_id>.npy.")
    if st.button("Prepare a .zip of the dataset", key="dataset_zip", disabled=rows.empty):
        with tempfile.TemporaryDirectory() as tmp:
            count = export_folder(project, Path(tmp) / "dataset")
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
                for path in sorted((Path(tmp) / "dataset").rglob("*")):
                    if path.is_file():
                        zf.write(path, path.relative_to(tmp))
        st.session_state["dataset_zip_bytes"] = buffer.getvalue()
        st.success(f"{count} clips packed.")
    if st.session_state.get("dataset_zip_bytes"):
        st.download_button("Download dataset.zip", st.session_state["dataset_zip_bytes"], "formcheck-dataset.zip",
                           mime="application/zip", key="dataset_download")
    st.subheader("Import")
    upload = st.file_uploader("A .zip holding clips.csv and poses/", type=["zip"], key="dataset_import_zip")
    layout = st.selectbox("Keypoint layout of the arrays", list(LAYOUTS), key="dataset_import_layout")
    if st.button("Import", key="dataset_import", disabled=upload is None):
        with tempfile.TemporaryDirectory() as tmp:
            try:
                with zipfile.ZipFile(upload) as zf:
                    for member in zf.namelist():  # never write outside the temporary folder
                        if member.startswith("/") or ".." in Path(member).parts:
                            raise DatasetError(f"unsafe path in the zip: {member}")
                    zf.extractall(tmp)
                found = [p.parent for p in Path(tmp).rglob("clips.csv")]
                if not found:
                    raise DatasetError("the zip holds no clips.csv")
                result = import_folder(project, found[0], layout)
                st.success(f"Imported {result.added} of {result.clips} clips ({result.labelled} labelled); "
                           f"{result.skipped} were already in the project.")
            except (DatasetError, zipfile.BadZipFile) as exc:
                st.error(f"Nothing imported: {exc}")

# ------------------------------------------------------------------ catalogue
with catalogue_tab:
    for ex in store.list_exercises(project):
        with st.expander(f"{ex['name']} · {len(ex['criteria'])} criteria"):
            st.text(ex["description"])
            st.caption("Joints of interest: " + (", ".join(ex["joints"]) or "none"))
            if ex["criteria"]:
                st.dataframe(pd.DataFrame(ex["criteria"]), hide_index=True, width="stretch")
    names = [e["name"] for e in store.list_exercises(project)]
    with st.form("dataset_add_criterion", clear_on_submit=True):
        st.markdown("**Add a criterion**")
        target = st.selectbox("Exercise", names, key="dataset_crit_exercise")
        crit_name = st.text_input("Criterion (e.g. knee_valgus)", key="dataset_crit_name")
        crit_text = st.text_input("What the coach checks", key="dataset_crit_text")
        if st.form_submit_button("Add criterion"):
            try:
                st.success(f"Added {store.add_criterion(project, target, crit_name, crit_text)} to {target}.")
            except store.StoreError as exc:
                st.error(str(exc))
    with st.form("dataset_add_exercise", clear_on_submit=True):
        st.markdown("**Add an exercise**")
        ex_name = st.text_input("Name", key="dataset_ex_name")
        ex_text = st.text_input("Description", key="dataset_ex_text")
        ex_joints = st.multiselect("Joints of interest", list(ANGLES), key="dataset_ex_joints")
        if st.form_submit_button("Add exercise"):
            try:
                st.success(f"Added {store.add_exercise(project, ex_name, ex_text, ex_joints)}.")
            except store.StoreError as exc:
                st.error(str(exc))
