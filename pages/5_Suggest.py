"""Suggest: the clips worth labelling next (scored by the chosen run, which a lead may promote), the labels worth
checking again, a retrain button, and what active learning saves on this project (a background simulation)."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

import ui
from curation import jobs, store
from model import active, choice, quality, runs
from model.simulate import bands
from model.suggest import suggest

st.set_page_config(page_title="Suggest · Formcheck", page_icon="🎯", layout="wide")
project = ui.project()
st.title("What to label next")

all_runs = runs.list_runs(project)
judged = store.current_label_count(project)  # counted, not read: every label is 50,000 rows at 100,000 clips


@st.cache_data(show_spinner=False, max_entries=8)
def chosen_run(run_ids: tuple[str, ...], judged: int, promotions: int, _project=project) -> choice.Choice:
    # Reads every run's out-of-fold file: once per new run, new verdict or new promotion, not on every rerun.
    return choice.current(_project)


chosen = chosen_run(tuple(r["run_id"] for r in all_runs), judged, len(store.run_promotions(project)))
latest = chosen.run  # the run that scores suggestions (promoted, else the best on the current labels)
if latest:
    # The reason may hold a lead's name and note: untrusted text, escaped for Markdown.
    st.caption(f"Scored by run {latest['run_id']} ({latest['model']}, {latest['n_clips']} labelled clips, "
               f"{latest['created_at'][:16].replace('T', ' ')}): {ui.md(chosen.reason)}. "
               "New labels count after a retrain.")
else:
    st.info("No model trained yet: the first batch is spread over the kinds of movement in the pool. "
            "Train on the Train page once a dozen clips of both verdicts are labelled.")
if len(all_runs) > 1 and ui.can("lead"):
    with st.expander("Choose the run that scores suggestions"):
        names = {r["run_id"]: f"{r['run_id']} · {r['model']} · macro-F1 "
                              f"{'n/a' if r['macro_f1'] is None else format(r['macro_f1'], '.3f')} · "
                              f"{r['n_clips']} clips" for r in all_runs}
        options = ["(best on the current labels)", *names]
        standing = choice.standing_promotion(project)
        pick = st.selectbox("Run", options, key="suggest_promote_run",
                            index=options.index(standing["run_id"]) if standing and standing["run_id"] in names else 0,
                            format_func=lambda o: names.get(o, o))
        note = st.text_input("Why (optional)", key="suggest_promote_note", max_chars=200)
        if st.button("Use this run", key="suggest_promote"):
            ui.require("lead")
            if pick in names:
                choice.promote(project, pick, ui.actor(), note)
            elif standing:
                choice.withdraw(project, ui.actor(), note)
            st.rerun()
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


try:
    with st.spinner("Scoring the unlabelled clips..."):
        result = batch(chosen.run_id, judged, strategy, k, exercise)
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
        # Counted here into 20 bins: the whole pool's values (75,000 at 100,000 clips) sent to plotly cost 0.3 s.
        picked = {s.clip_id for s in result.items}
        suggested = np.array([c in picked for c in result.pool_ids], dtype=bool)
        edges = np.linspace(0.0, 1.0, 21)
        figure = go.Figure([go.Bar(x=(edges[:-1] + edges[1:]) / 2, width=edges[1] - edges[0], name=name,
                                   y=np.histogram(result.pool_p[which & np.isfinite(result.pool_p)], edges)[0])
                            for name, which in (("rest", ~suggested), ("suggested", suggested))])
        figure.update_layout(barmode="stack", bargap=0, height=260, legend_title_text="clips",
                             xaxis={"title": "p(incorrect) of the unlabelled clips", "range": [0, 1]},
                             yaxis={"title": "count"})
        st.plotly_chart(figure, key="suggest_histogram")
    if latest and result.items:  # the scoring run's view of one suggested clip, computed only once picked
        look = st.selectbox("Model's view of a suggested clip", ["(none)", *[s.clip_id for s in result.items]],
                            key="suggest_explain_clip",
                            help="The frames and joints the model's verdict on the clip rests on")
        if look != "(none)" and (clip := store.get_clip(project, look)) is not None:
            ui.explanation(project, latest["run_id"], clip)

# ------------------------------------------------------------------ label quality
st.subheader("Labels to check again")
try:
    doubts = quality.check_again(project, run_id=chosen.run_id, exercise=exercise)  # the run named above
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

open_disagreements = store.open_disagreements(project)  # counted, not read from every label
if open_disagreements:
    st.subheader("Coaches disagree")
    st.caption(f"{open_disagreements} clip(s) with different verdicts from two coaches wait for a lead "
               "coach (Label page, queue \"Settle disagreements\").")

# ------------------------------------------------------------------ what active learning saves here
st.subheader("What active learning saves on this project")
# model.simulate's defaults otherwise (default strategy, baseline model)
SIMULATION = {"splits": 3, "seeds": 3, "title": "active learning against random order, replayed on the labels"}


def simulations() -> list[dict]:
    return [j for j in store.list_jobs(project, limit=20) if j["kind"] == "simulate"]


running_sim = [j for j in simulations() if j["status"] in ("queued", "running")]


@st.fragment(run_every=2 if running_sim else None)
def simulation() -> None:
    jobs_now = simulations()
    going = [j for j in jobs_now if j["status"] in ("queued", "running")]
    if going:
        ui.job_card(project, going[0], "suggest_sim")
        return
    if running_sim:  # it finished since the page was drawn
        st.rerun(scope="app")
    finished = [j for j in jobs_now if j["status"] in ("done", "failed")]
    if finished and finished[0]["status"] == "failed":
        st.caption(f"The last simulation failed: {ui.md(finished[0]['error'])}")
    done = next((j for j in finished if j["status"] == "done" and j["result"]), None)
    if done is None:
        st.caption("Replays labelling on the clips labelled so far (3 grouped test splits, 3 seeds): the suggested "
                   "order against random order, macro-F1 after each number of labels.")
    else:
        show_simulation(done["result"], done["finished_at"])
    if ui.can("lead") and st.button("Simulate on this project", key="suggest_simulate",
                                    help="Runs in the background; a few minutes on thousands of clips."):
        ui.require("lead")
        jobs.submit(project, "simulate", SIMULATION)
        st.rerun(scope="app")


def show_simulation(result: dict, when: str | None) -> None:
    name = result["strategy"]
    rows = pd.DataFrame(bands(result))
    figure = go.Figure()
    for strategy, colour in ((name, "#1f77b4"), ("random", "#7f7f7f")):
        part = rows[rows["strategy"] == strategy]
        if part.empty:
            continue
        x = list(part["labels"])
        upper, lower = list(part["mean"] + part["sd"]), list(part["mean"] - part["sd"])
        figure.add_trace(go.Scatter(x=x + x[::-1], y=upper + lower[::-1], fill="toself", fillcolor=colour,
                                    opacity=0.2, line={"width": 0}, hoverinfo="skip", showlegend=False))
        figure.add_trace(go.Scatter(x=x, y=list(part["mean"]), mode="lines+markers", name=strategy,
                                    line={"color": colour}))
    figure.update_layout(height=320, xaxis={"title": "labels", "type": "log"},
                         yaxis={"title": "macro-F1 on test clips"}, margin={"t": 10})
    st.plotly_chart(figure, key="suggest_simulation")
    diff, sd = result["auc_diff_mean"].get(name), result["auc_diff_sd"].get(name)
    saving = result.get("label_saving")
    splits = len(result["splits"])
    words = [f"Simulated {str(when or '')[:16].replace('T', ' ')} on {result['n_clips']} labelled clips, "
             f"{splits} grouped test splits (bands: one sd over splits)."]
    if diff is not None:
        sd = sd or 0.0
        verdict = "better than" if diff - sd > 0 else "worse than" if diff + sd < 0 else "about as good as"
        words.append(f"The suggested order ({name}) is {verdict} random order: mean macro-F1 over the curve "
                     f"{diff:+.3f} ± {sd:.3f}.")
    reached = result["labels_to_95"]
    if reached.get(name) and reached.get("random"):
        words.append(f"95 % of the full-data macro-F1 ({result['full_f1']:.2f}) after {reached[name]} labels "
                     f"against {reached['random']} in random order"
                     + (f" ({saving:.0%} fewer)." if saving is not None and saving > 0 else "."))
    st.caption(" ".join(words))


simulation()
