"""Formcheck home: the open project and its counts."""

import pandas as pd
import streamlit as st

import ui
from curation import store

st.set_page_config(page_title="Formcheck", page_icon="🏋️", layout="wide")
project = ui.project()

st.title("Formcheck")
st.caption(f"Project folder: {project.root}")

counts = store.stats(project)
a, b, c = st.columns(3)
a.metric("Videos", counts["videos"])
b.metric("Clips", counts["clips"])
c.metric("Labelled clips", counts["labelled"])

if counts["clips"] == 0:
    st.info("This project is empty. Add coaching videos on the **Ingest** page: paste YouTube links or upload files.")
    st.page_link("pages/1_Ingest.py", label="Add videos", icon="➕")
else:
    st.subheader("Per exercise")
    st.dataframe(
        pd.DataFrame(
            [{"exercise": name, **entry} for name, entry in counts["per_exercise"].items()],
            columns=["exercise", "clips", "labelled"],
        ),
        hide_index=True,
    )
    st.page_link("pages/1_Ingest.py", label="Add more videos", icon="➕")
