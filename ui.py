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
        elif job["status"] == "done" and job["result"] and "macro_f1" in job["result"]:
            r = job["result"]
            f1 = "n/a" if r["macro_f1"] is None else f"{r['macro_f1']:.3f}"
            st.text(f"run {r['run_id']}: {r['model']}, macro-F1 {f1} on {r['n_clips']} clips ({r['split']})")
        elif job["status"] == "done" and job["result"]:
            r = job["result"]
            again = " (already in the project)" if r.get("existing") else ""
            st.text(
                f"{r['clips']} clips{again} · {r['frames']} frames at {r['fps']:g} fps · "
                f"person in {r['person_share']:.0%} of frames · {r['trimmed_share']:.0%} trimmed"
            )
        elif job["status"] == "failed":
            st.error(job["error"] or "failed")


def training_jobs(project: Project) -> list[dict]:
    """The recent training jobs, newest first."""
    return [j for j in store.list_jobs(project, limit=20) if j["kind"] == "train"]


def retrain(project: Project, key_prefix: str) -> None:
    """A "Retrain" button that repeats the latest run's settings (or the defaults) as a background job, and
    the running training's card, refreshed every 2 s, so a coach can retrain without leaving the page."""
    from curation import jobs
    from model import runs

    running = [j for j in training_jobs(project) if j["status"] in ("queued", "running")]

    @st.fragment(run_every=2 if running else None)
    def card() -> None:
        now = [j for j in training_jobs(project) if j["status"] in ("queued", "running")]
        if now:
            job_card(project, now[0], key_prefix)
            return
        if running:  # it finished since the page was drawn: let the page read the new run
            st.rerun(scope="app")
        latest = runs.list_runs(project)
        config = latest[0]["config"] if latest else {}
        params = {k: config[k] for k in ("model", "folds", "holdout", "seed") if k in config}
        if "input" in config.get("train", {}):
            params["input"] = config["train"]["input"]
        if st.button("Retrain with the new labels", key=f"{key_prefix}_retrain",
                     help="Same settings as the latest run; it trains in the background."):
            jobs.submit(project, "train", params)
            st.rerun(scope="app")

    card()


# ---------------------------------------------------------------- who is labelling


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except FileNotFoundError:  # no secrets file: the local default
        return False


def annotator(project: Project) -> str | None:
    """The coach using this session, kept for the session: picked or typed once in the sidebar locally;
    with a password list ($FORMCHECK_PASSWORDS) a name and password; with OIDC in secrets, st.login."""
    from curation.accounts import AccountError, check_password, password_file

    with st.sidebar:
        if _oidc_configured():
            if not st.user.is_logged_in:
                st.button("Log in", key="who_login", on_click=st.login)
                return None
            st.session_state["annotator"] = store.add_annotator(project, st.user.get("name") or st.user.get("email"))
        if st.session_state.get("annotator"):
            st.markdown(f"Labelling as **{_md_escape(st.session_state['annotator'])}**")
            if st.button("Switch coach", key="who_switch"):
                store.release_claims(project, st.session_state.pop("annotator"))
                st.rerun()
            return st.session_state["annotator"]
        st.subheader("Who is labelling?")
        if (passwords := password_file()) is not None:
            name = st.text_input("Name", key="who_login_name")
            password = st.text_input("Password", type="password", key="who_password")
            if st.button("Log in", key="who_start", type="primary"):
                try:
                    accepted = check_password(passwords, name, password)
                except AccountError as exc:
                    st.error(str(exc))
                    return None
                if not accepted:
                    st.error("Unknown name or wrong password.")
                    return None
                st.session_state["annotator"] = store.add_annotator(project, name)
                st.rerun()
            return None
        known = [a["name"] for a in store.list_annotators(project)]
        choice = st.selectbox("Coach", ["(new coach)"] + known, key="who_pick",
                              index=1 if len(known) == 1 else 0)
        name = st.text_input("Your name", key="who_name") if choice == "(new coach)" else choice
        lead = st.checkbox("Lead coach (settles disagreements)", key="who_lead") if choice == "(new coach)" else False
        if st.button("Start labelling", key="who_start", type="primary"):
            try:
                st.session_state["annotator"] = store.add_annotator(project, name, "lead" if lead else "coach")
            except store.StoreError as exc:
                st.error(str(exc))
                return None
            st.rerun()
    return None


def _md_escape(text: str) -> str:
    """Untrusted text inside Markdown: every Markdown/HTML-significant character backslash-escaped."""
    return "".join("\\" + ch if ch in "\\`*_{}[]()<>#+-.!|~" else ch for ch in str(text))


# ---------------------------------------------------------------- keyboard


def shortcuts(keys: dict[str, str]) -> None:
    """Keyboard shortcuts for widgets that have none of their own (checkboxes): a key clicks the widget
    with that Streamlit key.

    Keys typed into a text field (the note) are left alone, modifier combinations are never taken (the
    browser's and Streamlit's own shortcuts keep working), and a widget of a run being replaced (stale) is
    not clicked, so a key pressed while the next clip loads cannot land on the wrong clip.
    """
    import json

    st.iframe(
        """<script>
(function () {
  const win = window.parent, doc = win.document;
  const keys = %s;
  // Each run's frame replaces the listener: one from a frame Streamlit has since removed no longer runs.
  if (win.__formcheckKeyListener) doc.removeEventListener('keydown', win.__formcheckKeyListener);
  win.__formcheckKeyListener = function (e) {
    if (e.ctrlKey || e.altKey || e.metaKey || e.repeat) return;
    const t = e.target, tag = (t && t.tagName || '').toLowerCase();
    if (tag === 'textarea' || (tag === 'input' && !['checkbox', 'radio', 'range'].includes(t.type)) ||
        (t && t.isContentEditable)) return;
    const key = keys[e.key.toLowerCase()];
    if (!key) return;
    const box = doc.querySelector('.st-key-' + key);
    if (!box || box.closest('[data-stale="true"]')) return;
    // A checkbox's own input first: its container also holds the help tooltip's button.
    const el = box.querySelector('input[type="checkbox"]') || box.querySelector('button');
    if (!el || el.disabled) return;
    e.preventDefault();
    el.click();
  };
  doc.addEventListener('keydown', win.__formcheckKeyListener);
})();
</script>"""
        % json.dumps({k.lower(): v for k, v in keys.items()}),
        height=1,
    )


# ---------------------------------------------------------------- the clip player

PLAYER_HEIGHT = 440


def clip_player(project: Project, clip: dict, video: dict | None, joints: list[str], show_skeleton: bool,
                attention=None, joint_weights=None) -> None:
    """The looping clip with its skeleton and the exercise's joint-angle traces (curation.player); with a
    model's explanation, its attention over the frames and its saliency per joint drawn in red."""
    import base64

    from curation.clipmedia import MissingVideo, clip_video
    from curation.dataset import load_clip_landmarks
    from curation.kinematics import ANGLES, joint_angles
    from curation.player import player_html

    landmarks = load_clip_landmarks(project, clip)
    aspect = video["width"] / video["height"] if video else 1.0
    all_angles = joint_angles(landmarks, aspect)
    names = [j for j in joints if j in ANGLES] or ["left_knee", "right_knee", "left_elbow", "right_elbow"]
    angles = {name: all_angles[:, list(ANGLES).index(name)] for name in names}
    try:
        path = clip_video(project, clip, video)
    except MissingVideo as exc:
        st.warning(f"The video file is missing ({exc}); showing the skeleton only.")
        path = None
    b64 = base64.b64encode(path.read_bytes()).decode() if path else None
    st.iframe(player_html(landmarks, clip["fps"], angles, b64, aspect, PLAYER_HEIGHT, show_skeleton,
                          attention=attention, joint_weights=joint_weights), height="content")


def prepare_ahead(project: Project, clips: list[dict]) -> None:
    """Cut the next clips' videos in the background so they are ready when the coach gets there."""
    from curation.clipmedia import prefetch

    videos = {c["video_id"]: store.get_video(project, c["video_id"]) for c in clips if c["video_id"]}
    prefetch(project, [(c, videos.get(c["video_id"])) for c in clips if c["video_id"]])
