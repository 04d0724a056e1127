"""Ingest: paste video links or upload files; each becomes a background job that ends in repetition clips."""

import uuid
from pathlib import Path

import pandas as pd
import streamlit as st

import ui
from curation import jobs, store
from curation.ingest import IngestOptions, UnsupportedSource, canonical_url, is_url

st.set_page_config(page_title="Ingest · Formcheck", page_icon="➕", layout="wide")
project = ui.project()
MAX_UPLOAD_MB = 500
VIDEO_TYPES = ["mp4", "mov", "m4v", "avi", "mkv", "webm"]

st.title("Add videos")
exercises = [e["name"] for e in store.list_exercises(project)]

with st.form("ingest_form", clear_on_submit=True):
    exercise = st.selectbox("Exercise shown in these videos", exercises, key="ingest_exercise",
                            index=exercises.index("squat") if "squat" in exercises else 0)
    urls = st.text_area("Video links, one per line (YouTube)", key="ingest_urls",
                        placeholder="https://www.youtube.com/watch?v=...")
    uploads = st.file_uploader("…or upload video files", type=VIDEO_TYPES, accept_multiple_files=True,
                               key="ingest_uploads")
    submitted = st.form_submit_button("Add videos", type="primary")


def active_sources() -> set[str]:
    return {j["params"].get("source") for j in store.list_jobs(project) if j["status"] in ("queued", "running")}


if submitted:
    options = IngestOptions.from_env()
    busy = active_sources()
    lines = [line.strip() for line in (urls or "").splitlines() if line.strip()]
    queued, refused = 0, []
    for line in lines:
        try:
            if not is_url(line):
                raise UnsupportedSource("not a link: paste an http(s) video URL, or upload the file below")
            url = canonical_url(line, options)
        except UnsupportedSource as exc:
            refused.append((line, str(exc)))
            continue
        if url not in busy:  # a second click while the first job runs adds nothing
            jobs.submit(project, "ingest", {"source": url, "exercise": exercise}, spawn=False)
            busy.add(url)
            queued += 1
    for upload in uploads or []:
        if upload.size > MAX_UPLOAD_MB * 1024 * 1024:
            refused.append((upload.name, f"larger than {MAX_UPLOAD_MB} MB"))
            continue
        if upload.size == 0:
            refused.append((upload.name, "the file is empty"))
            continue
        # Named by the tool, never by the uploaded name (untrusted); the name is kept as the title only.
        suffix = Path(upload.name).suffix.lower() if Path(upload.name).suffix.lower()[1:] in VIDEO_TYPES else ".bin"
        target = project.work / "uploads" / f"{uuid.uuid4().hex}{suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(upload.getbuffer())
        jobs.submit(project, "ingest", {"source": str(target), "exercise": exercise, "title": upload.name,
                                        "upload": project.relative(target)}, spawn=False)
        queued += 1
    if queued:
        jobs.spawn_worker(project)
        st.success(f"{queued} video(s) queued: progress below.")
    for source, reason in refused:
        st.error(f"Not added: {source[:200]}: {reason}")
    if not lines and not uploads:
        st.warning("Paste at least one link or choose a file.")


active_at_start = len(active_sources())


@st.fragment(run_every=2 if active_at_start else None)
def job_list() -> None:
    recent = store.list_jobs(project, limit=20)
    if len([j for j in recent if j["status"] in ("queued", "running")]) < active_at_start:
        st.rerun(scope="app")  # a job ended: refresh the videos table below too
    if not recent:
        st.caption("No videos added yet.")
        return
    st.subheader("Jobs")
    for job in recent:
        ui.job_card(project, job, "ingest")


job_list()

videos = store.list_videos(project)
if videos:
    st.subheader("Videos in the project")
    st.dataframe(
        pd.DataFrame(videos)[["title", "exercise", "frames", "fps", "width", "height", "person_share",
                              "trimmed_share", "clips", "created_at"]],
        hide_index=True,
        column_config={
            "person_share": st.column_config.ProgressColumn("person", format="percent", min_value=0, max_value=1),
            "trimmed_share": st.column_config.ProgressColumn("trimmed", format="percent", min_value=0, max_value=1),
        },
    )
