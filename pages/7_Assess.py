"""Assess: a new video judged repetition by repetition by a trained run, without entering the dataset."""

import base64
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

import ui
from curation import jobs, store
from curation.ingest import BadConfiguration, IngestOptions, UnsupportedSource, canonical_url, is_url
from curation.kinematics import ANGLES, joint_angles
from curation.landmarks import NAMES
from curation.player import player_html
from curation.pose import load_track
from model import assess, choice, runs

st.set_page_config(page_title="Assess · Formcheck", page_icon="🩺", layout="wide")
project = ui.project()
jobs.tend(project)
MAX_UPLOAD_MB = min(500, int(st.get_option("server.maxUploadSize")))
VIDEO_TYPES = ["mp4", "mov", "m4v", "avi", "mkv", "webm"]
MAX_PLAYER_MB = 40  # a longer video is shown as its skeleton only: the player carries the video inside the page

st.title("Assess a video")
st.caption("A trained model judges each repetition of a new video: verdict and confidence, the criteria it thinks "
           "failed with their coaching cue, and which frames and joints the verdict rests on. The video is not "
           "added to the dataset unless you say so.")

finished = runs.list_runs(project)
current = choice.current(project)
exercises = [e["name"] for e in store.list_exercises(project)]
if not finished:
    st.info("No finished training run yet: train one on the Train page, then assess videos here.")

with st.form("assess_form", clear_on_submit=True):
    c1, c2 = st.columns(2)
    exercise = c1.selectbox("Exercise shown in the video", exercises, key="assess_exercise",
                            index=exercises.index("squat") if "squat" in exercises else 0)
    run_ids = [r["run_id"] for r in finished]
    run_id = c2.selectbox("Run that judges it", run_ids, key="assess_run",
                          index=run_ids.index(current.run_id) if current.run_id in run_ids else 0,
                          format_func=lambda r: f"{r} (current)" if r == current.run_id else r)
    link = st.text_input("Video link (YouTube)", key="assess_link", placeholder="https://www.youtube.com/watch?v=...")
    upload = st.file_uploader(f"…or upload a video file (up to {MAX_UPLOAD_MB} MB)", type=VIDEO_TYPES,
                              key="assess_upload")
    submitted = st.form_submit_button("Assess", type="primary", disabled=not finished or not ui.can("coach"),
                                      help=None if ui.can("coach") else "Assessing needs the coach role.")

if submitted:
    ui.require("coach")
    params = {"exercise": exercise, "run": run_id}
    error = None
    if link.strip():
        try:
            if not is_url(link.strip()):
                raise UnsupportedSource("not a link: paste an http(s) video URL, or upload the file")
            url = canonical_url(link.strip(), IngestOptions.from_env())
            jobs.submit(project, "assess", {**params, "source": url})
        except (UnsupportedSource, BadConfiguration) as exc:
            error = str(exc)
    elif upload is not None:
        if upload.size > MAX_UPLOAD_MB * 2**20:
            error = f"the file is {upload.size / 2**20:.0f} MB; the limit is {MAX_UPLOAD_MB} MB"
        elif upload.size == 0:
            error = "the file is empty"
        else:
            # Saved in the job's own folder under a name the tool makes; the uploaded name is a title only.
            suffix = Path(upload.name).suffix.lower()
            suffix = suffix if suffix[1:] in VIDEO_TYPES else ".bin"
            jobs.submit(project, "assess", {**params, "title": upload.name[:200]},
                        upload=(f"upload{suffix}", upload.getbuffer()))
    else:
        error = "paste a link or choose a file"
    if error:
        st.error(f"Not assessed: {ui.md(error)}")
    else:
        st.success("Queued: progress below.")


def assess_jobs() -> list[dict]:
    return [j for j in store.list_jobs(project, limit=30) if j["kind"] == "assess"]


running_at_start = sum(j["status"] in ("queued", "running") for j in assess_jobs())


@st.fragment(run_every=2 if running_at_start else None)
def job_list() -> None:
    jobs.tend(project)
    recent = assess_jobs()
    if sum(j["status"] in ("queued", "running") for j in recent) < running_at_start:
        st.rerun(scope="app")  # one ended: show its assessment
    for job in recent[:5]:
        if job["status"] != "done":
            ui.job_card(project, job, "assess")  # progress and cancel, or the one-line reason it failed


job_list()

done = [j for j in assess_jobs() if j["status"] == "done" and j["result"]]
if not done:
    st.stop()

labels = {j["result"]["assessment_id"]: f"{j['params'].get('title') or j['params'].get('source', '')} · "
                                        f"{j['params'].get('exercise', '')} · {j['finished_at'] or ''}"[:160]
          for j in done}
picked = st.selectbox("Assessment", list(labels), format_func=labels.get, key="assess_pick")
try:
    result = assess.load_assessment(project, picked)
except (OSError, ValueError):
    st.warning("This assessment's files are gone.")
    st.stop()
folder = assess.assessment_dir(project, picked)
video, s = result["video"], result["summary"]
aspect = video["width"] / video["height"]

# The source and title are untrusted text: st.text never renders HTML or Markdown.
st.text(f"{video.get('title') or result['source']}: {result['exercise']}, judged by run {result['run_id']}")
m = st.columns(4)
m[0].metric("Repetitions", s["count"])
m[1].metric("Judged incorrect", s["incorrect"])
m[2].metric("Seconds per repetition", "n/a" if s["seconds_per_rep"] is None else f"{s['seconds_per_rep']:.2f}")
m[3].metric("Repetitions per minute", "n/a" if s["reps_per_minute"] is None else f"{s['reps_per_minute']:.1f}")

reps = result["reps"]
rep_no = st.selectbox("Repetition", [r["rep"] for r in reps], key="assess_rep",
                      format_func=lambda n: f"{n}: {reps[n - 1]['verdict']} (p(incorrect) "
                                            f"{reps[n - 1]['p_incorrect']:.2f})")
rep = reps[rep_no - 1]

track = load_track(folder / "pose.npz")
# Frame weights of every repetition along the whole video: the red band under the traces shows, rep by rep,
# the phase each verdict rests on; the halos are the chosen repetition's joints.
attention = np.zeros(track.landmarks.shape[0])
for r in reps:
    attention[r["start_frame"]:r["start_frame"] + len(r["frame_weights"])] = r["frame_weights"]
joints = [j for j in s["joints"] if j in ANGLES] or ["left_knee", "right_knee"]
all_angles = joint_angles(track.landmarks, aspect)
angles = {name: all_angles[:, list(ANGLES).index(name)] for name in joints}
video_file = folder / "video.mp4"
b64 = None
if video_file.is_file() and video_file.stat().st_size <= MAX_PLAYER_MB * 2**20:
    b64 = base64.b64encode(video_file.read_bytes()).decode()
elif video_file.is_file():
    st.caption(f"The video is over {MAX_PLAYER_MB} MB: its skeleton is shown without the picture.")
st.iframe(player_html(track.landmarks, video["fps"], angles, b64, aspect, ui.PLAYER_HEIGHT, True,
                      attention=attention, joint_weights=np.array([rep["joint_weights"][n] for n in NAMES])),
          height="content")

c1, c2 = st.columns([3, 2])
with c1:
    st.subheader(f"Repetition {rep['rep']}: {rep['verdict']}")
    st.text(f"frames {rep['start_frame']}-{rep['end_frame']} ({rep['start_seconds']:.1f} s, lasting "
            f"{rep['seconds']:.1f} s); p(incorrect) {rep['p_incorrect']:.2f}: the model is "
            f"{max(rep['p_incorrect'], 1 - rep['p_incorrect']):.0%} sure")
    if rep["failed"]:
        for f in rep["failed"]:
            st.text(f"✗ {f['title']} (p(fail) {f['p_fail']:.2f}): {f['cue']}")
    else:
        st.text("No criterion flagged as failed.")
    if rep["top_joints"]:
        st.text("Joints the verdict rests on most: " + ", ".join(
            f"{n.replace('_', ' ')} {rep['joint_weights'][n]:.0%}" for n in rep["top_joints"]))
    crit = pd.DataFrame([{"criterion": k, "p(fail)": v} for k, v in rep["criteria"].items()])
    if not crit.empty:
        st.dataframe(crit, hide_index=True, width="stretch",
                     column_config={"p(fail)": st.column_config.NumberColumn(
                         format="%.2f", help="empty: the run has no model for this criterion (too few labels)")})
with c2:
    st.subheader("Left/right asymmetry")
    if s["asymmetry"]:
        st.dataframe(pd.DataFrame([{"joint": k, "range L-R (deg)": v["range_difference"],
                                    "mean |L-R| (deg)": v["mean_difference"]} for k, v in s["asymmetry"].items()]),
                     hide_index=True, width="stretch")
    else:
        st.caption("The exercise has no paired joints of interest.")

st.subheader("Every repetition")
st.dataframe(pd.DataFrame([{"rep": r["rep"], "start (s)": r["start_seconds"], "seconds": r["seconds"],
                            "verdict": r["verdict"], "p(incorrect)": r["p_incorrect"],
                            "failed": ", ".join(f["title"] for f in r["failed"]), "cues": " · ".join(r["cues"])}
                           for r in reps]), hide_index=True, width="stretch")

d1, d2 = st.columns(2)
d1.download_button("Download the report (HTML)", assess.report_html(result, track.landmarks, aspect),
                   file_name=f"assessment-{picked}.html", mime="text/html", key="assess_report")
if result.get("kept"):
    d2.text(f"In the dataset as video {result['kept']['video_id']}.")
elif d2.button("Add to the dataset", key="assess_keep", disabled=not ui.can("lead"),
               help="Adds the video and its repetition clips as an ingest would (from this assessment's "
                    "processing)." if ui.can("lead") else "Adding videos needs the lead role."):
    ui.require("lead")
    try:
        kept = assess.keep_assessment(project, picked)
        assess.mark_kept(project, picked, kept)
        st.success(f"Added: video {ui.md(kept['video_id'])}, {kept['clips']} clips"
                   + (" (it was in the project already)." if kept.get("existing") else "."))
    except (*assess.USER_ERRORS, OSError) as exc:  # another job adding it, or this assessment's files gone
        st.error(ui.md(exc))
