"""Train: fit a model in the background, then read honest grouped metrics, calibration and the errors."""

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

import ui
from curation import jobs, store
from model import choice, compare, runs
from model.metrics import evaluate
from model.features import GROUP_MODES
from model.registry import MODELS
from model.train import AUTO, AUTO_MODELS, MIN_LABELLED, RunConfig

st.set_page_config(page_title="Train · Formcheck", page_icon="🧠", layout="wide")
project = ui.project()
st.title("Train and evaluate")

# ------------------------------------------------------------------ label counts and settings
# Counted in SQL over the dataset's clips (replaced and excluded clips never train): those with a consensus label.
balance = store.label_balance(project)
counts = {lab: sum(r["clips"] for r in balance if r["label"] == lab) for lab in ("correct", "incorrect")}
labelled = counts["correct"] + counts["incorrect"]
a, b, c = st.columns(3)
a.metric("Labelled clips", labelled)
b.metric("Correct", counts["correct"])
c.metric("Incorrect", counts["incorrect"])
problem = None
if labelled < MIN_LABELLED:
    problem = f"Training needs at least {MIN_LABELLED} labelled clips; this project has {labelled}."
elif min(counts.values()) == 0:
    missing = "incorrect" if counts["incorrect"] == 0 else "correct"
    problem = f"Training needs both classes: no clip is labelled {missing} yet."
if problem:
    st.warning(problem + " Label more clips on the Label page.")

default = RunConfig()
with st.form("train_form"):
    c1, c2, c3, c4, c5 = st.columns(5)
    model_names = [AUTO, *MODELS]
    model_name = c1.selectbox("Model", model_names, index=model_names.index(default.model), key="train_model",
                              help=f"auto: picks one of {', '.join(AUTO_MODELS)} by grouped folds inside each "
                                   "training part, and calibrates its probabilities the same way")
    clip_input = c2.selectbox("Input", ["auto", "whole", "windows"], key="train_input",
                              help="whole: each clip as one sequence; windows: 20-frame windows (70 % overlap) "
                                   "whose confidence-weighted vote is the verdict; auto: the model's measured best")
    folds = c3.slider("Folds (grouped, stratified)", 2, 10, default.folds, key="train_folds")
    holdout = c4.checkbox("Grouped 80/20 holdout instead", key="train_holdout",
                          help="picks whole/windows (and the baseline's regularisation) by grouped folds of the "
                               "training part, then tests once on the held-out groups")
    seed = c5.number_input("Seed", 0, 10_000, default.seed, key="train_seed")
    group = c4.selectbox("Keep together", GROUP_MODES, key="train_group",
                         help="what the grouped split keeps on one side: the video, the athlete or the channel "
                              "(clips whose athlete or channel is unknown are grouped by video; the split says so)")
    start = st.form_submit_button("Train in the background", type="primary",
                                  disabled=problem is not None or not ui.can("lead"),
                                  help=None if ui.can("lead") else "Training needs the lead role.")
if start:
    ui.require("lead")
    params = {"model": model_name, "folds": int(folds), "holdout": 0.2 if holdout else None, "seed": int(seed),
              "input": clip_input, "group": group}
    jobs.submit(project, "train", params)
    st.success("Training started: progress below. You can keep labelling in another tab meanwhile.")


# ------------------------------------------------------------------ the running job
active_at_start = sum(j["status"] in ("queued", "running") for j in ui.training_jobs(project))


@st.fragment(run_every=2 if active_at_start else None)
def live() -> None:
    current = ui.training_jobs(project)
    if sum(j["status"] in ("queued", "running") for j in current) < active_at_start:
        st.rerun(scope="app")  # finished: show the new run below
    for job in current[:3]:
        if job["status"] in ("queued", "running"):
            ui.job_card(project, job, "train")
            history = runs.live_history(project)
            if history:
                curve = pd.DataFrame(history).melt(id_vars=["fold", "epoch"],
                                                   value_vars=["train_loss", "val_loss"], var_name="loss")
                curve["series"] = curve["loss"] + " · fold " + curve["fold"].astype(str)
                st.plotly_chart(px.line(curve, x="epoch", y="value", color="series", height=260),
                                key=f"train_curve_{job['id']}")
        elif job["status"] == "failed":
            st.error(f"Training failed: {ui.md(job['error'])}")
            break
        else:
            break


live()

# ------------------------------------------------------------------ runs: the registry
if "train_flash" in st.session_state:  # what the last registry action did (said once, after its rerun)
    st.success(st.session_state.pop("train_flash"))
all_runs = runs.list_runs(project)
if not all_runs:
    st.info("No runs yet." if not problem else "No runs yet: label more clips first.")
    st.stop()
st.subheader("Runs")
registry = runs.run_names(project)
chosen = choice.current(project)


def run_label(rid: str) -> str:  # a picker option: plain text, never rendered as Markdown
    name = registry.get(rid, {}).get("name")
    return f"{rid} · {name}" if name else rid


current_name = registry.get(chosen.run_id, {}).get("name") if chosen.run_id else None
st.caption(f"Current model (used by Assess, model-assisted labelling and suggestions): **{ui.md(chosen.run_id)}**"
           + (f" ({ui.md(current_name)})" if current_name else "") + f" — {ui.md(chosen.reason)}")
table = pd.DataFrame([{"current": r["run_id"] == chosen.run_id, "name": registry.get(r["run_id"], {}).get("name", ""),
                       **{k: r.get(k) for k in ("run_id", "model", "split", "n_clips", "n_groups", "macro_f1",
                                                "balanced_accuracy", "kappa", "ece", "train_seconds", "created_at")},
                       "note": registry.get(r["run_id"], {}).get("note", "")}
                      for r in all_runs])
st.dataframe(table, hide_index=True, width="stretch",
             column_config={"current": st.column_config.CheckboxColumn("current", help="the current model"),
                            **{k: st.column_config.NumberColumn(format="%.3f")
                               for k in ("macro_f1", "balanced_accuracy", "kappa", "ece")}})
for key in ("train_run", "train_compare_a", "train_compare_b"):  # a pick of a run deleted since: pick again
    if key in st.session_state and st.session_state[key] not in table.run_id.tolist():
        del st.session_state[key]
run_id = st.selectbox("Inspect run", table.run_id.tolist(), key="train_run", format_func=run_label)
metrics = next(r for r in all_runs if r["run_id"] == run_id)
named = registry.get(run_id, {})
if named.get("name") or named.get("note"):
    st.markdown(f"**{ui.md(named.get('name') or run_id)}** — named by {ui.md(named['annotator'])} on "
                f"{named['created_at'][:16].replace('T', ' ')} UTC")
    if named.get("note"):
        st.text(named["note"])

lead = ui.can("lead")
with st.expander("Name, promote or delete this run", expanded=st.session_state.get("train_delete_pending") == run_id):
    if not lead:
        st.caption("Naming, promoting and deleting runs need the lead role.")
    with st.form(f"train_name_form_{run_id}"):
        new_name = st.text_input("Name", value=named.get("name", ""), max_chars=runs.NAME_CHARS,
                                 key=f"train_name_{run_id}")
        new_note = st.text_area("Note", value=named.get("note", ""), max_chars=runs.NOTE_CHARS,
                                key=f"train_note_{run_id}")
        save = st.form_submit_button("Save name and note", disabled=not lead)
    if save:
        ui.require("lead")
        try:
            runs.name_run(project, run_id, ui.actor(), new_name, new_note)
        except (runs.RunNotFound, runs.RunTextRefused) as exc:
            st.error(ui.md(exc))
        else:
            st.session_state["train_flash"] = f"Saved the name and note of run {run_id}."
            st.rerun()
    promoted_here = chosen.promotion is not None and chosen.run_id == run_id
    p1, p2, p3 = st.columns(3)
    if p1.button("Make this the current model", key="train_promote", disabled=not lead or promoted_here,
                 help="Assess, model-assisted labelling and suggestions use it until another promotion or a "
                      "withdrawal"):
        ui.require("lead")
        try:
            choice.promote(project, run_id, ui.actor())
        except runs.RunNotFound as exc:
            st.error(ui.md(exc))
        else:
            st.session_state["train_flash"] = f"Run {run_id} is now the current model."
            st.rerun()
    if choice.standing_promotion(project) is not None and p2.button(
            "Withdraw the promotion", key="train_withdraw", disabled=not lead,
            help="the best run on the current labels becomes the current model again"):
        ui.require("lead")
        choice.withdraw(project, ui.actor())
        st.session_state["train_flash"] = "Promotion withdrawn: the best run on the current labels is current."
        st.rerun()
    def ask_to_delete(rid: str = run_id) -> None:  # a callback: the question shows in the same rerun
        if ui.can("lead"):
            st.session_state["train_delete_pending"] = rid

    p3.button("Delete this run…", key="train_delete", disabled=not lead, on_click=ask_to_delete)
    if st.session_state.get("train_delete_pending") == run_id:
        st.warning(f"Delete run {run_id}" + (f" ({ui.md(named['name'])})" if named.get("name") else "")
                   + " for good? Its models, predictions and explanations go and cannot come back."
                   + (" It is the current model: the best remaining run takes over." if run_id == chosen.run_id
                      else ""))
        yes, no = st.columns(2)
        if yes.button("Yes, delete it", type="primary", key="train_delete_confirm", disabled=not lead):
            ui.require("lead")
            del st.session_state["train_delete_pending"]
            try:
                runs.delete_run(project, run_id, ui.actor())
            except runs.RunNotFound as exc:
                st.error(ui.md(exc))
            else:
                st.session_state["train_flash"] = f"Deleted run {run_id}."
                st.rerun()
        no.button("Cancel", key="train_delete_cancel",
                  on_click=lambda: st.session_state.pop("train_delete_pending", None))

st.caption(f"Split: {metrics['split']} — every number below is out-of-sample for its clip.")
if st.button("Next: label the clips this model is least sure about, and check the labels it doubts", icon="🎯",
             key="train_to_suggest"):
    st.switch_page("pages/5_Suggest.py")

m1, m2, m3, m4, m5 = st.columns(5)
m1.metric("Macro F1", f"{metrics['macro_f1']:.3f}")
m2.metric("Balanced accuracy", f"{metrics['balanced_accuracy']:.3f}")
m3.metric("Accuracy", f"{metrics['accuracy']:.3f}")
m4.metric("Cohen's kappa", f"{metrics['kappa']:.3f}" if metrics["kappa"] is not None else "—")
before = metrics.get("ece_uncalibrated")
m5.metric("ECE", f"{metrics['ece']:.3f}" if metrics["ece"] is not None else "—",
          delta=f"{metrics['ece'] - before:+.3f} by calibration" if before is not None and metrics["ece"] is not None
          and metrics.get("calibration") not in (None, "none") else None, delta_color="inverse",
          help="expected calibration error of the out-of-fold p; the delta is against the same p before the "
               "calibration fitted inside each training part")
if metrics.get("picked"):
    st.caption(f"Final model: {metrics['picked']}, calibration {metrics['calibration']} (chosen by grouped folds "
               "inside the training part; each evaluation fold chose its own, below).")
    with st.expander("What each fold picked, and the inner scores"):
        chosen = [{"fold": k, "picked": a.get("picked"), "calibration": a.get("calibration"),
                   **{f"inner F1 {n}": v for n, v in (a.get("inner_macro_f1") or {}).items()}}
                  for k, a in enumerate([*metrics["auto"].get("folds", []), metrics["auto"]], start=1) if a]
        chosen[-1]["fold"] = "final"
        st.dataframe(pd.DataFrame(chosen), hide_index=True, width="stretch")

per_class, confusion = st.columns(2)
with per_class:
    st.markdown("**Per class**")
    st.dataframe(pd.DataFrame({k: metrics[k] for k in ("precision", "recall", "f1")}), width="stretch")
with confusion:
    names = metrics.get("confusion_labels", ["correct", "incorrect"])
    st.plotly_chart(px.imshow(np.array(metrics["confusion"]), x=[f"predicted {n}" for n in names], y=names,
                              text_auto=True, color_continuous_scale="Blues", height=300),
                    key="train_confusion")

ex_col, crit_col = st.columns(2)
with ex_col:
    st.markdown("**Macro F1 per exercise**")
    per_ex = pd.DataFrame([{"exercise": k, **v} for k, v in metrics["per_exercise"].items()])
    st.plotly_chart(px.bar(per_ex, x="exercise", y="macro_f1", hover_data=["n"], range_y=[0, 1], height=300),
                    key="train_per_exercise")
    if metrics.get("per_view"):  # runs since camera views are estimated (curation.view)
        st.caption("Macro F1 per camera view: " + " · ".join(
            f"{view} {v['macro_f1']:.2f} (n={v['n']})" if v["macro_f1"] is not None else f"{view} – (n={v['n']})"
            for view, v in metrics["per_view"].items()))
with crit_col:
    st.markdown("**Per criterion** (each with enough verdicts gets its own p(fail) model, tested out-of-fold)")
    if metrics.get("per_criterion"):
        crit = pd.DataFrame(metrics["per_criterion"]).T
        if "auc_p_incorrect" not in crit:  # a run from before per-criterion models: its "auc" was p(incorrect)'s
            crit = crit.rename(columns={"auc": "auc_p_incorrect"})
        crit = crit.reindex(columns=["auc", "f1", "n_fail", "n", "n_scored", "auc_p_incorrect"])
        st.dataframe(crit, width="stretch",
                     column_config={"auc": st.column_config.NumberColumn("AUC p(fail)", format="%.3f"),
                                    "f1": st.column_config.NumberColumn("F1 p(fail)", format="%.3f"),
                                    "auc_p_incorrect": st.column_config.NumberColumn("AUC p(incorrect)",
                                                                                     format="%.3f")})
        st.caption("exercise/criterion; no AUC: fewer than 4 failing or 4 passing clips to learn it from.")
    else:
        st.caption("No criterion verdicts in the labels yet.")

cal_col, cx_col = st.columns(2)
with cal_col:
    st.markdown("**Reliability** (calibration: dots on the diagonal are honest confidences)")
    rel = pd.DataFrame(metrics["reliability"])
    rel = rel[rel.n > 0]
    fig = go.Figure([go.Scatter(x=[0.5, 1], y=[0.5, 1], mode="lines", name="perfect", line={"dash": "dot"}),
                     go.Scatter(x=rel.confidence, y=rel.accuracy, mode="markers+lines", name="model",
                                text=rel.n, marker={"size": 6 + 20 * rel.n / max(rel.n.max(), 1)})])
    fig.update_layout(xaxis_title="confidence", yaxis_title="accuracy", height=300)
    st.plotly_chart(fig, key="train_reliability")
    st.dataframe(pd.DataFrame(metrics["confidence_bands"]), hide_index=True, width="stretch")
with cx_col:
    st.markdown("**F1 against the complexity index**")
    complexity_by = st.radio("Complexity from", ["automatic", "coaches"], horizontal=True, key="train_complexity_by",
                             help="coaches: per clip the median of the values coaches set on the Label page")
    points = metrics.get("f1_vs_complexity")
    if complexity_by == "coaches":  # the run's out-of-sample predictions against today's coach values
        tested = runs.read_oof(project, run_id)
        coach_values = store.coach_complexity(project)
        points = evaluate(tested.y, tested.p_incorrect, tested.exercise, complexity=[
            coach_values.get(c, {}).get("complexity") for c in tested.clip_id])["f1_vs_complexity"]
    if points:
        cx = pd.DataFrame(points)
        st.plotly_chart(px.scatter(cx, x=cx.columns[1], y="macro_f1", text="exercise", height=300),
                        key="train_complexity")
    else:
        st.caption("No complexity estimates for these clips.")

# ------------------------------------------------------------------ error gallery
st.subheader("Errors")
oof = runs.read_oof(project, run_id)
oof["predicted"] = np.where(oof.p_incorrect >= 0.5, "incorrect", "correct")
oof["truth"] = np.where(oof.y == 1, "incorrect", "correct")
oof["confidence"] = np.maximum(oof.p_incorrect, 1 - oof.p_incorrect)
errors = oof[oof.predicted != oof.truth].sort_values("confidence", ascending=False)
if errors.empty:
    st.success("No clip was misclassified in this run.")
else:
    st.caption(f"{len(errors)} misclassified clips, most confident first: likely hard cases or label errors.")
    st.dataframe(errors[["clip_id", "exercise", "truth", "predicted", "confidence"]], hide_index=True,
                 width="stretch")
    pick = st.selectbox("Open a clip", errors.clip_id.tolist(), key="train_error_clip")
    clip = store.get_clip(project, pick)
    if clip is None:
        st.warning("This clip is no longer in the project.")
    else:
        ui.explanation(project, run_id, clip)  # by the clip's fold model: its p is the out-of-fold p listed

# ------------------------------------------------------------------ compare two runs
if len(all_runs) >= 2:
    st.subheader("Compare runs")
    ids = table.run_id.tolist()
    left, right = st.columns(2)
    run_a = left.selectbox("Run A", ids, index=1, key="train_compare_a", format_func=run_label)
    run_b = right.selectbox("Run B", ids, index=0, key="train_compare_b", format_func=run_label)
    if run_a == run_b:
        st.info("Pick two different runs to compare.")
        st.stop()
    try:
        diff = compare.compare(project, run_a, run_b)
    except runs.RunNotFound as exc:  # deleted by someone else since the list was read
        st.error(ui.md(exc))
        st.stop()
    st.caption("Differences are B minus A.")
    number = st.column_config.NumberColumn(format="%.3f")
    signed = st.column_config.NumberColumn("B − A", format="%+.3f")

    st.markdown("**Settings**")
    every = st.toggle("Show every setting", key="train_compare_every_setting")
    shown_settings = pd.DataFrame([s for s in diff.settings if every or not s["same"]],
                                  columns=["setting", "a", "b", "same"])
    if shown_settings.empty:
        st.caption("Same settings and same data.")
    else:
        st.dataframe(shown_settings.rename(columns={"a": "A", "b": "B"}), hide_index=True, width="stretch")

    st.markdown("**Labels**")
    l1, l2, l3 = st.columns(3)
    l1.metric("Clips only in A", len(diff.only_a))
    l2.metric("Clips only in B", len(diff.only_b))
    l3.metric("Label changed", len(diff.relabelled))
    if diff.holdout_note:
        st.caption(diff.holdout_note)
    for title, rows in (("only in A", diff.only_a), ("only in B", diff.only_b),
                        ("whose label changed between A and B", diff.relabelled)):
        if rows:
            with st.expander(f"Clips {title} ({len(rows)})"):
                st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    st.dataframe(pd.DataFrame(diff.label_counts), hide_index=True, width="stretch")

    st.markdown("**Metrics**")
    st.dataframe(pd.DataFrame(diff.metrics).rename(columns={"a": "A", "b": "B"}), hide_index=True, width="stretch",
                 column_config={"A": number, "B": number, "diff": signed})
    ex_a, ex_b = st.columns(2)
    with ex_a:
        st.markdown("**Macro F1 per exercise**")
        per_ex = pd.DataFrame(diff.per_exercise)
        st.dataframe(per_ex, hide_index=True, width="stretch",
                     column_config={"macro_f1_a": number, "macro_f1_b": number, "diff": signed})
        bars = per_ex.melt(id_vars="exercise", value_vars=["macro_f1_a", "macro_f1_b"], var_name="run",
                           value_name="macro_f1").replace({"run": {"macro_f1_a": "A", "macro_f1_b": "B"}})
        st.plotly_chart(px.bar(bars, x="exercise", y="macro_f1", color="run", barmode="group", range_y=[0, 1],
                               height=280), key="train_compare_per_exercise")
    with ex_b:
        st.markdown("**Per criterion**")
        if diff.per_criterion:
            st.dataframe(pd.DataFrame(diff.per_criterion).set_index("criterion"), width="stretch",
                         column_config={k: signed if k.endswith("_diff") else number
                                        for k in diff.per_criterion[0] if k.startswith(("auc", "f1"))})
            st.caption("auc, f1: the criterion's own p(fail) model; auc_p_incorrect: p(incorrect) against the "
                       "criterion's verdicts.")
        else:
            st.caption("No criterion verdicts in either run.")

    cm_a, cm_b = st.columns(2)
    labels_shown = diff.confusion["labels"]
    for column, side, rid in ((cm_a, "a", run_a), (cm_b, "b", run_b)):
        with column:
            st.markdown(f"**Confusion matrix of {side.upper()}** ({ui.md(run_label(rid))})")
            st.plotly_chart(px.imshow(np.array(diff.confusion[side]), x=[f"predicted {n}" for n in labels_shown],
                                      y=labels_shown, text_auto=True, color_continuous_scale="Blues", height=280),
                            key=f"train_compare_confusion_{side}")

    st.markdown("**Clips whose verdict changed**")
    st.caption(f"{len(diff.changed)} of the {diff.n_both} clips both runs judged (out-of-fold p where the clip was "
               "in the run's evaluation, else its final model's), largest change of p(incorrect) first; right: "
               "the run that agrees with the current label.")
    if diff.changed:
        changed = pd.DataFrame(diff.changed)
        st.dataframe(changed, hide_index=True, width="stretch", column_config={"p_a": number, "p_b": number})
        o1, o2 = st.columns([3, 1])
        pick = o1.selectbox("Open a clip", changed.clip_id.tolist(), key="train_compare_clip")
        by = o2.radio("Explained by", ["A", "B"], horizontal=True, key="train_compare_by")
        clip = store.get_clip(project, pick)
        if clip is None:
            st.warning("This clip is no longer in the project.")
        else:
            ui.explanation(project, run_a if by == "A" else run_b, clip)
