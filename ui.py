"""Shared Streamlit widgets: the open project and a job's progress card (the only UI module outside pages/)."""

from __future__ import annotations

import sys

import streamlit as st

from curation import store
from curation.project import Project


def project() -> Project:
    """The project this app serves: `streamlit run app.py -- --data DIR`, else $FORMCHECK_DATA, else ./data."""
    args = sys.argv[1:]
    data = args[args.index("--data") + 1] if "--data" in args[:-1] else None
    return Project.open(data)


STATUS_ICON = {"queued": "⏳", "running": "⚙️", "done": "✅", "failed": "❌", "cancelled": "⏹️"}


def job_card(project: Project, job: dict, key_prefix: str) -> None:
    """One job: what it works on, a progress bar while it runs, its result or its error, a cancel button."""
    params = job["params"]
    name = params.get("title") or params.get("source", "")
    with st.container(border=True):
        head, button = st.columns([5, 1])
        # Titles and sources are untrusted text: st.text never renders HTML or Markdown.
        head.text(f"{STATUS_ICON.get(job['status'], '')} {job['status']}: {name}")
        if job["status"] in ("queued", "running"):
            if button.button("Cancel", key=f"{key_prefix}_cancel_{job['id']}"):
                store.request_cancel(project, job["id"])
                st.rerun()
            st.progress(float(job["progress"]), text=job["message"] or job["status"])
        elif job["status"] == "done" and job["result"]:
            r = job["result"]
            again = " (already in the project)" if r.get("existing") else ""
            st.text(
                f"{r['clips']} clips{again} · {r['frames']} frames at {r['fps']:g} fps · "
                f"person in {r['person_share']:.0%} of frames · {r['trimmed_share']:.0%} trimmed"
            )
        elif job["status"] == "failed":
            st.error(job["error"] or "failed")
