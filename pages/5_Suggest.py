"""Suggest: the clips worth labelling next, the labels worth checking again, and a retrain button."""

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

import ui
from curation import agreement, store
from model import active, quality, runs
from model.suggest import suggest

st.set_page_config(page_title="Suggest · Formcheck", page_icon="🎯", layout="wide")
project = ui.project()
st.title("What to label next")

all_runs = runs.list_runs(project)
latest = all_runs[0] if all_runs else None
if latest:
    f1 = "n/a" if latest["macro_f1"] is None else f"{latest['macro_f1']:.3f}"
    st.caption(f"Scored by the latest run {latest['run_id']} ({latest['model']}, macro-F1 {f1}, "
               f"{latest['n_clips']} labelled clips, {latest['created_at']}). New labels count after a retrain.")
else:
    st.info("No model trained yet: the first batch is spread over the kinds of movement in the pool. "
            "Train on the Train page once a dozen clips of both verdicts are labelled.")
ui.retrain(project, "suggest")

c1, c2, c3 = st.columns(3)
strategy = c1.selectbox("Strategy", active.STRATEGIES, index=active.STRATEGIES.index(active.DEFAULT_STRATEGY),
                        key="suggest_strategy", disabled=latest is None,
                        help="least confidence / margin / entropy rank the same way for two classes; "
                             "bald = models that disagree; random = a control")
k = c2.slider("Batch size", 5, 50, 10, 5, key="suggest_k")
shown = ["(all)"] + store.clip_exercises(project)
pick = c3.selectbox("Exercise", shown, key="suggest_exercise")
exercise = None if pick == "(all)" else pick


@st.cache_data(show_spinner=False, max_entries=8)
def batch(run_id: str | None, judged: int, strategy: str, k: int, exercise: str | None, _project=project):
    # judged is part of the key: a new verdict anywhere takes its clip out of the pool.
    return suggest(_project, k=k, strategy=strategy, exercise=exercise, run_id=run_id)


current = store.current_labels(project)
judged = len(current)
try:
    with st.spinner("Scoring the unlabelled clips..."):
        result = batch(latest["run_id"] if latest else None, judged, strategy, k, exercise)
except (active.EmptyPool, active.PoolExhausted) as exc:
    st.info(str(exc))
    result = None

if result is not None:
    st.subheader(f"Label next: {len(result.items)} of {result.pool} unlabelled clips")
    for note in result.notes:
        st.caption(note)
    table = pd.DataFrame([{"clip": s.clip_id, "p(incorrect)": s.p_incorrect, "score": s.score, "why": s.reason}
                          for s in result.items])
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={"p(incorrect)": st.column_config.ProgressColumn(min_value=0, max_value=1,
                                                                               format="%.2f"),
                                "score": st.column_config.NumberColumn(format="%.3f"),
                                "why": st.column_config.TextColumn(width="large")})
    if st.button("Label these clips", type="primary", key="suggest_go"):
        st.session_state["label_open"] = "Label suggested clips"
        st.switch_page("pages/2_Label.py")
    if result.pool_p is not None and np.isfinite(result.pool_p).any():
        chosen = {s.clip_id for s in result.items}
        spread = pd.DataFrame({"p(incorrect) of the unlabelled clips": result.pool_p,
                               "clips": np.where([c in chosen for c in result.pool_ids], "suggested", "rest")})
        st.plotly_chart(px.histogram(spread.dropna(), x="p(incorrect) of the unlabelled clips", color="clips",
                                     nbins=20, range_x=[0, 1], height=260), key="suggest_histogram")

# ------------------------------------------------------------------ label quality
st.subheader("Labels to check again")
try:
    doubts = quality.check_again(project, exercise=exercise)
except quality.NoOutOfFoldPredictions as exc:
    st.caption(str(exc))
    doubts = None
if doubts is not None:
    if not doubts:
        st.success("No label contradicts the out-of-fold predictions of the latest run.")
    else:
        st.caption(f"{len(doubts)} clip(s) whose label a model that never saw their video contradicts "
                   "(confident learning on out-of-fold predictions), most doubtful first. A second look adds a "
                   "new label; the old one stays in the history.")
        st.dataframe(quality.as_table(doubts), hide_index=True, width="stretch",
                     column_config={"p_incorrect": st.column_config.NumberColumn(format="%.2f"),
                                    "reason": st.column_config.TextColumn(width="large")})
        if st.button("Check these labels", key="suggest_check"):
            st.session_state["label_open"] = "Check again"
            st.switch_page("pages/2_Label.py")

settled = store.adjudications(project)
open_disagreements = [d for d in agreement.disagreements(current) if d["clip_id"] not in settled]
if open_disagreements:
    st.subheader("Coaches disagree")
    st.caption(f"{len(open_disagreements)} clip(s) with different verdicts from two coaches wait for a lead "
               "coach (Label page, queue \"Settle disagreements\").")
