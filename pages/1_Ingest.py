"""Ingest: paste video links or upload files; each becomes a background job that ends in repetition clips."""

from pathlib import Path

import pandas as pd
import streamlit as st

import ui
from curation import jobs, store
from curation.ingest import BadConfiguration, IngestOptions, UnsupportedSource, canonical_url, content_key, is_url

st.set_page_config(page_title="Ingest · Formcheck", page_icon="➕", layout="wide")
project = ui.project()
jobs.tend(project)  # a job whose worker died is recovered, and waiting jobs get a worker, on every visit
# Streamlit refuses larger uploads itself (server.maxUploadSize, 500 in .streamlit/config.toml): promise no more.
MAX_UPLOAD_MB = min(500, int(st.get_option("server.maxUploadSize")))
VIDEO_TYPES = ["mp4", "mov", "m4v", "avi", "mkv", "webm"]

st.title("Add videos")
ATHLETE_RULES = {"tracked": "the person the pose tracker follows", "largest": "the largest person",
                 "most moving": "the person who moves most", "left": "the leftmost person",
                 "right": "the rightmost person", "click": "the person nearest the point below"}
SPLIT_SIDES = {None: "the whole picture", "left": "the left half", "right": "the right half",
               "top": "the top half", "bottom": "the bottom half"}
exercises = [e["name"] for e in store.list_exercises(project)]

with st.form("ingest_form", clear_on_submit=True):
    exercise = st.selectbox("Exercise shown in these videos", exercises, key="ingest_exercise",
                            index=exercises.index("squat") if "squat" in exercises else 0)
    urls = st.text_area("Video links, one per line (YouTube)", key="ingest_urls",
                        placeholder="https://www.youtube.com/watch?v=...")
    uploads = st.file_uploader(f"…or upload video files (up to {MAX_UPLOAD_MB} MB each)", type=VIDEO_TYPES,
                               accept_multiple_files=True,
                               key="ingest_uploads")
    with st.expander("Several people in the picture, split screens"):
        athlete_rule = st.selectbox("Where several people are in the picture, the athlete is", ATHLETE_RULES,
                                    format_func=ATHLETE_RULES.get, key="ingest_athlete_rule")
        px, py = st.columns(2)
        point_x = px.slider("…at this point: share of the width from the left", 0.0, 1.0, 0.5, 0.05,
                            key="ingest_athlete_x")
        point_y = py.slider("…and of the height from the top", 0.0, 1.0, 0.5, 0.05, key="ingest_athlete_y")
        side = st.selectbox("Split screen: add this part of the picture as the video", SPLIT_SIDES,
                            format_func=SPLIT_SIDES.get, key="ingest_side",
                            help="Each side of a split screen can be added as a video of its own: add the "
                                 "video once per side.")
    submitted = st.form_submit_button("Add videos", type="primary", disabled=not ui.can("lead"),
                                      help=None if ui.can("lead") else "Adding videos needs the lead role.")


def active_sources() -> set[str]:
    """Sources (canonical links, content keys of uploads) of the ingest jobs queued or running."""
    return {j["params"].get("source_key") or j["params"].get("source") for j in store.list_jobs(project)
            if j["status"] in ("queued", "running")}


def already_added(key: str) -> str | None:
    """Why a source need not be added again, or None."""
    if key in busy:
        return "already being added (see the jobs below)"
    video = store.find_video(project, key)
    return f"this video is already in the project (video {video['id']})" if video else None


if submitted:
    ui.require("lead")
    try:
        options, config_error = IngestOptions.from_env(), None
    except BadConfiguration as exc:  # links cannot be checked until the setting is fixed; uploads can go on
        options, config_error = None, str(exc)
    busy = active_sources()
    # How people are handled (curation.pipeline.PipelineOptions); a side of a split screen is its own video.
    people = {"athlete": athlete_rule, "side": side,
              "athlete_point": [point_x, point_y] if athlete_rule == "click" else None}
    suffix_key = f"#{side}" if side else ""
    lines = [line.strip() for line in (urls or "").splitlines() if line.strip()]
    queued, refused = 0, []
    for line in lines:
        try:
            if config_error:
                raise UnsupportedSource(config_error)
            if not is_url(line):
                raise UnsupportedSource("not a link: paste an http(s) video URL, or upload the file below")
            url = canonical_url(line, options)
        except UnsupportedSource as exc:
            refused.append((line, str(exc)))
            continue
        if reason := already_added(url + suffix_key):  # a second click while the first job runs adds nothing
            refused.append((line, reason))
            continue
        jobs.submit(project, "ingest", {"source": url, "source_key": url + suffix_key, "exercise": exercise,
                                        **people}, spawn=False)
        busy.add(url + suffix_key)
        queued += 1
    for upload in uploads or []:
        if upload.size > MAX_UPLOAD_MB * 2**20:  # Streamlit's megabytes
            refused.append((upload.name, f"the file is {upload.size / 2**20:.0f} MB; the limit is {MAX_UPLOAD_MB} MB"))
            continue
        if upload.size == 0:
            refused.append((upload.name, "the file is empty"))
            continue
        key = content_key(upload.getbuffer()) + suffix_key
        if reason := already_added(key):
            refused.append((upload.name, reason))
            continue
        # Saved in the job's own folder, which goes when the job ends (done, failed, cancelled or its worker
        # killed); named by the tool, never by the uploaded name (untrusted), which is kept as the title only.
        suffix = Path(upload.name).suffix.lower() if Path(upload.name).suffix.lower()[1:] in VIDEO_TYPES else ".bin"
        jobs.submit(project, "ingest", {"source_key": key, "exercise": exercise, "title": upload.name, **people},
                    spawn=False, upload=(f"upload{suffix}", upload.getbuffer()))
        busy.add(key)
        queued += 1
    if queued:
        jobs.spawn_worker(project)
        st.success(f"{queued} video(s) queued: progress below.")
    for source, reason in refused:
        st.error(f"Not added: {ui.md(source[:200])}: {ui.md(reason)}")
    if not lines and not uploads:
        st.warning("Paste at least one link or choose a file.")


# ---- Batch: many videos as one job, run on Ray (curation/batch.py); its card lists every video's result.
MAX_MANIFEST_MB = 5
st.subheader("Add a batch")
with st.form("batch_form", clear_on_submit=True):
    st.caption("A manifest CSV with a row per video (columns source, exercise; optional athlete, group, note) "
               "or many links for one exercise: one job that processes the videos side by side on Ray.")
    batch_manifest = st.file_uploader(f"Manifest (CSV, up to {MAX_MANIFEST_MB} MB)", type=["csv"],
                                      key="batch_manifest")
    batch_exercise = st.selectbox("Exercise of the links below", exercises, key="batch_exercise",
                                  index=exercises.index("squat") if "squat" in exercises else 0)
    batch_links = st.text_area("…or links, one per line", key="batch_links",
                               placeholder="https://www.youtube.com/watch?v=...")
    batch_submitted = st.form_submit_button("Add as one batch", disabled=not ui.can("lead"),
                                            help=None if ui.can("lead") else "Adding videos needs the lead role.")

if batch_submitted:
    ui.require("lead")
    from curation.batch import ManifestError, Row, read_manifest

    candidates, refused = [], []
    try:
        if batch_manifest is not None:
            if batch_manifest.size > MAX_MANIFEST_MB * 2**20:
                raise ManifestError(f"the manifest is over {MAX_MANIFEST_MB} MB")
            candidates += read_manifest(batch_manifest.getvalue().decode("utf-8", errors="replace"))
        candidates += [Row(line.strip(), batch_exercise) for line in (batch_links or "").splitlines() if line.strip()]
        batch_options = IngestOptions.from_env()
    except (ManifestError, BadConfiguration) as exc:
        st.error(f"Batch not added: {ui.md(exc)}")
        candidates = []
    rows = []
    for row in candidates:
        try:
            # Files named in a manifest would be read from the server's disk: the page takes links only
            # (`python -m curation batch` takes files too).
            if not is_url(row.source):
                raise UnsupportedSource("not a link: files go in a batch from the command line")
            rows.append({**row.__dict__, "source": canonical_url(row.source, batch_options)})
        except UnsupportedSource as exc:
            refused.append((row.source, str(exc)))
    if rows:
        jobs.submit(project, "batch", {"rows": rows, "title": f"batch of {len(rows)} video(s)"})
        st.success(f"Batch of {len(rows)} video(s) queued: progress below (videos already in the project are "
                   "skipped).")
    for source, reason in refused:
        st.error(f"Not added: {ui.md(source[:200])}: {ui.md(reason)}")
    if not candidates and not refused and batch_manifest is None:
        st.warning("Upload a manifest or paste at least one link.")


active_at_start = len(active_sources())


@st.fragment(run_every=2 if active_at_start else None)
def job_list() -> None:
    jobs.tend(project)  # within seconds of a worker's death its job is re-queued or failed, and the queue goes on
    recent = store.list_jobs(project, limit=20)
    if len([j for j in recent if j["status"] in ("queued", "running")]) < active_at_start:
        st.rerun(scope="app")  # a job ended: refresh the videos table below too
    if not recent:
        st.caption("No videos added yet.")
        return
    st.subheader("Jobs")
    for job in recent:
        if job["kind"] != "batch":  # batches have their own cards below
            ui.job_card(project, job, "ingest")


job_list()


@st.fragment(run_every=2 if any(j["kind"] == "batch" and j["status"] in ("queued", "running")
                                for j in store.list_jobs(project, limit=20)) else None)
def batch_list() -> None:
    batches = [j for j in store.list_jobs(project, limit=20) if j["kind"] == "batch"]
    if batches:
        st.subheader("Batches")
    for job in batches:
        if job["status"] != "done" or not job["result"]:
            ui.job_card(project, job, "batch")  # progress, cancel, or the error
            continue
        r = job["result"]
        with st.container(border=True):
            st.text(f"{ui.STATUS_ICON['done']} done: {job['params'].get('title', 'batch')}: {r['added']} added "
                    f"({r['clips']} clips), {r['existing']} already in the project, {r['failed']} failed")
            # st.dataframe shows cells as plain text: sources and errors are untrusted.
            st.dataframe(pd.DataFrame(r["videos"])[["source", "exercise", "clips", "frames", "person_share",
                                                    "existing", "error"]], hide_index=True)


batch_list()

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
