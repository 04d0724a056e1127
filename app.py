"""Formcheck home: the open project and its counts."""

import pandas as pd
import streamlit as st

import ui
from curation import store
from curation.sample import sample_project

st.set_page_config(page_title="Formcheck", page_icon="🏋️", layout="wide")
project = ui.project()

st.title("Formcheck")
st.caption(f"Project folder: {ui.md(project.root)}")

counts = store.project_counts(project)  # not stats: its dataset statistics are the Dataset page's
a, b, c = st.columns(3)
a.metric("Videos", counts["videos"])
b.metric("Clips", counts["clips"])
c.metric("Labelled clips", counts["labelled"])

if counts["clips"] == 0:
    st.info("This project is empty. Add coaching videos, or open the sample project to try labelling at once.")
    left, right = st.columns(2)
    left.page_link("pages/1_Ingest.py", label="Add videos (YouTube links or files)", icon="➕")
    if ui.can("admin") and right.button("Open the sample project", key="home_sample", type="primary"):
        ui.require("admin")
        with st.spinner("Making synthetic clips..."):
            result = sample_project(project)
        store.record_audit(project, ui.actor(), "sample project", "", {"clips": result.added})
        st.session_state["home_toast"] = f"Sample ready: {result.added} synthetic clips, {result.labelled} labelled"
        st.rerun()
    st.caption("The sample is synthetic: stick-figure squats, curls and push-ups with known faults, made on the "
               "fly (no download), clearly marked as 'synthetic sample' in the Dataset page.")
else:
    st.subheader("Per exercise")
    st.dataframe(
        pd.DataFrame(
            [{"exercise": name, **entry} for name, entry in counts["per_exercise"].items()],
            columns=["exercise", "clips", "labelled"],
        ),
        hide_index=True,
    )
    a, b, c, d, e = st.columns(5)
    a.page_link("pages/2_Label.py", label="Label clips", icon="🏷️")
    b.page_link("pages/3_Dataset.py", label="Browse the dataset", icon="🗂️")
    c.page_link("pages/1_Ingest.py", label="Add more videos", icon="➕")
    d.page_link("pages/4_Train.py", label="Train a model", icon="🧠")
    e.page_link("pages/5_Suggest.py", label="What to label next", icon="🎯")
    st.page_link("pages/7_Assess.py", label="Assess a new video with a trained model", icon="🩺")
    if ui.can("admin") and ui.sign_in_method() is not None:
        st.page_link("pages/6_Admin.py", label="Users, roles and the audit log", icon="🔐")

if st.session_state.get("home_toast"):
    st.toast(st.session_state.pop("home_toast"), icon="✅")
