"""Shared Streamlit widgets: the open project behind the sign-in gate, roles, job cards, the clip player (the
only UI module outside pages/)."""

from __future__ import annotations

import functools
import logging
import re
import sys
from pathlib import Path

import streamlit as st

from curation import accounts, jobs, store
from curation.project import Project

log = logging.getLogger(__name__)


def project(need: str = "viewer") -> Project:
    """The project this app serves: `streamlit run app.py -- --data DIR`, else $FORMCHECK_DATA, else ./data.

    With sign-in configured (a password list or OIDC), only to a signed-in person whose role allows `need`;
    anyone else gets the sign-in form or one line saying why not, and the page stops there. Every page calls
    this first. With nothing configured (the local single-user mode) everything is allowed, as before.
    """
    args = sys.argv[1:]
    data = args[args.index("--data") + 1] if "--data" in args[:-1] else None
    opened = Project.open(data)
    try:
        store.check_database(opened)
    except store.StoreError as exc:  # a damaged or foreign formcheck.db: one line, not a traceback
        st.error(md(str(exc)))  # the path may hold Markdown characters
        st.stop()
    if sign_in_method() is not None:
        _gate(opened, need)
    return opened


# ---------------------------------------------------------------- sign-in and roles

_ACCOUNT, _ROLE = "auth_account", "auth_role"  # session keys no widget uses (a browser cannot set them)


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except FileNotFoundError:  # no secrets file: the local default
        return False


def sign_in_method() -> str | None:
    """"oidc" when Streamlit's secrets hold an [auth] section, "password" when $FORMCHECK_PASSWORDS names a
    list, None in the local single-user mode."""
    if _oidc_configured():
        return "oidc"
    return "password" if accounts.password_file() is not None else None


def _oidc_name() -> str | None:
    """The signed-in OIDC identity: the e-mail address the provider vouches for (display names are chosen by
    their owners, so two people could share one)."""
    if not st.user.get("is_logged_in") or st.user.get("email_verified") is False:
        return None
    return st.user.get("email")


def _account(project: Project) -> accounts.Account | None:
    """The signed-in account as it stands now (a role changed or removed by an admin counts at once)."""
    if sign_in_method() == "oidc":
        name = _oidc_name()
        if not name:
            return None
        try:
            name = accounts.clean_name(name)
        except accounts.AccountError:
            return None
        found = accounts.current_account(project, name, "oidc")
        if found and st.session_state.get(_ACCOUNT) != name:
            store.add_annotator(project, name)
            st.session_state[_ACCOUNT] = name
        return found
    name = st.session_state.get(_ACCOUNT)
    if not name:
        return None
    try:
        found = accounts.current_account(project, name, "password")
    except accounts.AccountError as exc:  # the list became unreadable: nobody is signed in
        log.warning("%s", exc)
        found = None
    if found is None:
        st.session_state.pop(_ACCOUNT, None)
    return found


def _sign_in_form(project: Project) -> None:
    with st.sidebar:
        if sign_in_method() == "oidc":
            if st.user.get("is_logged_in"):  # known to the provider, not to this project
                st.button("Log out", key="auth_logout", on_click=st.logout)
            else:
                st.button("Log in", key="auth_login", type="primary", on_click=st.login)
            return
        with st.form("auth_form", clear_on_submit=True):
            st.subheader("Sign in")
            name = st.text_input("Name", key="auth_name", autocomplete="username")
            password = st.text_input("Password", type="password", key="auth_password",
                                     autocomplete="current-password")
            submitted = st.form_submit_button("Sign in", type="primary")
        if submitted:
            try:
                signed = accounts.sign_in(project, accounts.password_file(), name, password)
            except accounts.PasswordListUnreadable as exc:  # the detail (a server path) goes to the log only
                log.warning("%s", exc)
                st.error("Sign-in is unavailable: the password list cannot be read. Tell the administrator.")
                return
            except accounts.AccountError as exc:
                st.error(str(exc))
                return
            st.session_state[_ACCOUNT] = signed.name
            st.rerun()


def _gate(project: Project, need: str) -> None:
    who = _account(project)
    st.session_state[_ROLE] = who.role if who else None
    if who is None:
        _sign_in_form(project)
        if sign_in_method() == "oidc" and st.user.get("is_logged_in"):
            st.error(f"This project has no account for {md(_oidc_name() or st.user.get('email') or '?')}: "
                     "ask an admin to add you.")
        else:
            st.info("Sign in (in the sidebar) to use Formcheck.")
        st.stop()
    with st.sidebar:
        st.caption(f"Signed in as **{md(who.name)}** ({who.role})")
        if st.button("Sign out", key="auth_sign_out"):
            store.release_claims(project, who.name)
            for key in (_ACCOUNT, _ROLE, "annotator"):
                st.session_state.pop(key, None)
            if who.method == "oidc":
                st.logout()
            st.rerun()
    if not accounts.allows(who.role, need):
        st.error(f"This page needs the {need} role; you are signed in as {md(who.name)} ({who.role}). "
                 "Ask an admin if you need more.")
        st.stop()


def can(need: str) -> bool:
    """May this session do what the role `need` may? Always, in the local single-user mode. Pages hide the
    buttons this is False for, and call require() again where the action runs."""
    return sign_in_method() is None or accounts.allows(st.session_state.get(_ROLE), need)


def require(need: str) -> None:
    """Stop the run, with one line, unless this session's role allows `need` (checked where an action runs,
    so a click forged for a button the page never showed does nothing)."""
    if not can(need):
        st.error(f"This needs the {need} role.")
        st.stop()


def actor() -> str:
    """Who acts (for the audit log and edit histories): the signed-in account; locally, the coach named on the
    Label page, else "local"."""
    if sign_in_method() is not None and st.session_state.get(_ACCOUNT):
        return st.session_state[_ACCOUNT]
    return st.session_state.get("annotator") or "local"


def is_lead(project: Project, coach: str) -> bool:
    """Whether this coach settles disagreements: the role when signed in; locally, the coach's own choice."""
    if sign_in_method() is not None:
        return can("lead")
    return any(a["name"] == coach and a["role"] == "lead" for a in store.list_annotators(project))


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
            if can("lead") and button.button("Cancel", key=f"{key_prefix}_cancel_{job['id']}"):
                require("lead")
                jobs.cancel(project, job["id"])  # ends it even when its worker is gone
                st.rerun()
            st.progress(float(job["progress"]), text=md(job["message"] or job["status"]))
        elif job["status"] == "done" and job["result"] and "assessment_id" in job["result"]:  # model.assess
            r = job["result"]
            st.text(f"{r['count']} repetitions assessed, {r['incorrect']} judged incorrect (see the Assess page)")
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
            st.error(md(job["error"] or "failed"))


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
        jobs.tend(project)  # a training job whose worker died is noticed within seconds
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
        if not can("lead"):
            return
        if st.button("Retrain with the new labels", key=f"{key_prefix}_retrain",
                     help="Same settings as the latest run; it trains in the background."):
            require("lead")
            jobs.submit(project, "train", params)
            st.rerun(scope="app")

    card()


# ---------------------------------------------------------------- who is labelling


def annotator(project: Project) -> str | None:
    """The coach using this session. Signed in: the account, when its role may label. Locally: picked or
    typed once in the sidebar and kept for the session."""
    if sign_in_method() is not None:
        return st.session_state.get(_ACCOUNT) if can("coach") else None
    with st.sidebar:
        if st.session_state.get("annotator"):
            st.markdown(f"Labelling as **{md(st.session_state['annotator'])}**")
            if st.button("Switch coach", key="who_switch"):
                store.release_claims(project, st.session_state.pop("annotator"))
                st.rerun()
            return st.session_state["annotator"]
        st.subheader("Who is labelling?")
        known = [a["name"] for a in store.list_annotators(project)]
        choice = st.selectbox("Coach", ["(new coach)"] + known, key="who_pick",
                              index=1 if len(known) == 1 else 0)
        name = st.text_input("Your name", key="who_name") if choice == "(new coach)" else choice
        # Local mode only: one trusted user, so being lead is a choice, not a permission.
        lead = st.checkbox("Lead coach (settles disagreements)", key="who_lead") if choice == "(new coach)" else False
        if st.button("Start labelling", key="who_start", type="primary"):
            try:
                st.session_state["annotator"] = store.add_annotator(project, name, "lead" if lead else "coach")
            except store.StoreError as exc:
                st.error(str(exc))
                return None
            st.rerun()
    return None


# Every character that can start Markdown, GFM or Streamlit syntax: links and images, HTML and entities, emphasis,
# code, headings, lists, quotes, tables, math ($), directives and emoji shortcodes (:red[...]), autolinks (the
# ':' of a scheme, the '.' of a domain). CommonMark lets any of them be backslash-escaped.
_MD_SPECIAL = set("\\`*_{}[]()<>#+-.!|~:$&")
# GFM turns bare URLs and e-mail addresses into links after escapes are resolved (measured: "http\://host/x"
# still became a link), so a word joiner (U+2060, invisible) is put where those patterns would start.
_AUTOLINK = re.compile(r"(?i)(https?|ftp|mailto|xmpp|www)(?=\\[:.])|@")


def md(text: object) -> str:
    """Untrusted text for a Markdown context (st.markdown, captions, alerts, widget labels and help): on one
    line, each character of _MD_SPECIAL backslash-escaped and bare URLs broken, so nothing can form a link, an
    image or markup and it reads as typed."""
    escaped = "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in " ".join(str(text).split()))
    return _AUTOLINK.sub(lambda m: m.group(0) + "\u2060", escaped)


_md_escape = md  # the former name


# ---------------------------------------------------------------- keyboard


SEQUENCE_MS = 700  # keys typed this close together form one multi-character key ("1", "2" -> "12")


def shortcuts(keys: dict[str, str]) -> None:
    """Keyboard shortcuts for widgets that have none of their own (checkboxes): a key clicks the widget
    with that Streamlit key. (The Label page no longer uses it: its labeller, curation/labeller.js, handles its
    own keys in the browser. The page before it, which tests/benchmarks/bench_label_browser.py compares
    against, does.)

    Keys typed into a text field (the note) are left alone, modifier combinations are never taken (the
    browser's and Streamlit's own shortcuts keep working), and a widget of a run being replaced (stale) is
    not clicked, so a key pressed while the next clip loads cannot land on the wrong clip.

    A key may be several characters ("12": criterion 12 of however many). A key that begins a longer one ("1"
    when there are 10 or more criteria) waits up to SEQUENCE_MS for the next character before it clicks: "1"
    then "2" clicks 12 alone. Clicking "1" at once and taking it back when "2" came raced the rerun of the
    first click on a busy machine. Any other key clicks the waiting one first (the listener runs in the
    capture phase of the window, before Streamlit's own shortcuts), so "1" then N still ticks 1.
    """
    import json

    st.iframe(
        """<script>
(function () {
  const win = window.parent, doc = win.document;
  const keys = %s, wait = %d;
  // Each run's frame replaces the listener: one from a frame Streamlit has since removed no longer runs.
  if (win.__formcheckKeyListener) win.removeEventListener('keydown', win.__formcheckKeyListener, true);
  win.__formcheckKeyListener = function (e) {
    if (e.ctrlKey || e.altKey || e.metaKey || e.repeat) return;
    const t = e.target, tag = (t && t.tagName || '').toLowerCase();
    if (tag === 'textarea' || (tag === 'input' && !['checkbox', 'radio', 'range'].includes(t.type)) ||
        (t && t.isContentEditable)) return;
    const typed = e.key.toLowerCase(), pending = win.__formcheckPending;
    let seq = typed;
    if (pending) {
      clearTimeout(pending.timer);
      win.__formcheckPending = null;
      if (keys[pending.seq + typed] || longer(pending.seq + typed)) seq = pending.seq + typed;
      else click(pending.seq);  // the shorter key stands: it is clicked before the key that ended it
    }
    if (!keys[seq] && !longer(seq)) return;
    e.preventDefault();
    if (longer(seq)) {
      win.__formcheckPending = {seq: seq, timer: setTimeout(function () {
        win.__formcheckPending = null;
        click(seq);
      }, wait)};
      return;
    }
    click(seq);
  };
  function longer(seq) {
    return Object.keys(keys).some(k => k.length > seq.length && k.startsWith(seq));
  }
  function click(seq) {
    const el = widget(keys[seq]);
    if (el) el.click();
  }
  function widget(key) {
    if (!key) return null;
    const box = doc.querySelector('.st-key-' + key);
    if (!box || box.closest('[data-stale="true"]')) return null;
    // A checkbox's own input first: its container also holds the help tooltip's button.
    const el = box.querySelector('input[type="checkbox"]') || box.querySelector('button');
    return el && !el.disabled ? el : null;
  }
  win.addEventListener('keydown', win.__formcheckKeyListener, true);
})();
</script>"""
        % (json.dumps({k.lower(): v for k, v in keys.items()}), SEQUENCE_MS),
        height=1,
    )


# ---------------------------------------------------------------- the clip player

PLAYER_HEIGHT = 440


def clip_player(project: Project, clip: dict, video: dict | None, joints: list[str], show_skeleton: bool,
                attention=None, joint_weights=None) -> None:
    """The looping clip with its skeleton and the exercise's joint-angle traces (curation.player); with a
    model's explanation, its attention over the frames and its saliency per joint drawn in red."""
    from curation.labeller import player_page

    html, warning = player_page(project, clip, video, joints, show_skeleton, PLAYER_HEIGHT,
                                attention=attention, joint_weights=joint_weights)
    if warning:
        st.warning(md(warning))
    st.iframe(html, height="content")


def prepare_ahead(project: Project, clips: list[dict]) -> None:
    """Cut the next clips' videos in the background so they are ready when the coach gets there."""
    from curation.clipmedia import prefetch

    videos = {c["video_id"]: store.get_video(project, c["video_id"]) for c in clips if c["video_id"]}
    prefetch(project, [(c, videos.get(c["video_id"])) for c in clips if c["video_id"]])


# ---------------------------------------------------------------- the in-browser labeller (Label page)

_LABELLER_FILES = Path(__file__).resolve().parent / "curation"


@functools.cache
def _labeller_files() -> tuple[str, str]:
    return (_LABELLER_FILES / "labeller.js").read_text(), (_LABELLER_FILES / "labeller.css").read_text()


def _labeller_component():
    """The labeller (st.components.v2: an inline module, no build step), registered once per Streamlit runtime."""
    from streamlit.components.v2.get_bidi_component_manager import get_bidi_component_manager

    if get_bidi_component_manager().get("formcheck_labeller") is None:
        js, css = _labeller_files()
        return st.components.v2.component("formcheck_labeller", js=js, css=css, isolate_styles=False)
    return functools.partial(st._bidi_component, "formcheck_labeller", isolate_styles=False)


LABELLER_KEY = "label_surface"


def labeller_sync() -> dict:
    """What the labeller last reported (curation.labeller: outbox, showing, have, jump), {} before it did."""
    value = st.session_state.get(LABELLER_KEY)
    sync = value.get("sync") if isinstance(value, dict) else None
    return sync if isinstance(sync, dict) else {}


def labeller(data: dict) -> None:
    """Mount the Label page's labeller (curation/labeller.js) with this data: the clips it holds ready and their
    player pages, which verdicts are saved, the assisted-labelling mode. What it sends back arrives as a rerun and
    is read with labeller_sync()."""
    _labeller_component()(key=LABELLER_KEY, data=data, on_sync_change=_no_callback, height="content")


def _no_callback() -> None:
    """The labeller's state is read by the page itself (labeller_sync); a callback must exist to name the state."""


# ---------------------------------------------------------------- a model's explanation of a clip


def _explanation_or_reason(project: Project, run_id: str, clip: dict) -> tuple[dict | None, str | None]:
    """(model.runs.explain's explanation, None) or (None, why there is none: a one-line reason)."""
    from model import runs

    try:
        return runs.explain(project, run_id, clip), None  # cached in the run folder: fast on reopening
    except (runs.UnknownExercise, runs.RunNotFound) as exc:
        return None, str(exc)


def explanation_caption(why: dict) -> None:
    """Which model an explanation comes from and its p(incorrect), in one line: the fold model for a clip of
    the run's evaluation (the p of the error gallery and of oof.csv), else the final model."""
    if why["fold"] is not None:
        source = f"from the fold {why['fold']} model (out-of-sample: trained without this clip)"
    else:
        source = "from the final model (fitted on all the run's labelled clips; this clip was outside its evaluation)"
    note = f" ({md(why['note'])})" if why["note"] else ""
    st.caption(f"p(incorrect) = {why['p_incorrect']:.2f} {source}{note}. Red shading under the traces: the "
               "frames whose hiding moves the verdict most; red halos on the skeleton: the joints whose hiding "
               "moves it most.")


def explanation_overlay(why: dict | None) -> dict:
    """clip_player's attention and joint_weights arguments drawn from an explanation ({} for none)."""
    import numpy as np

    from curation.landmarks import NAMES

    if why is None:
        return {}
    return {"attention": np.asarray(why["frame_weights"]),
            "joint_weights": np.array([why["joint_weights"][name] for name in NAMES])}


def explanation(project: Project, run_id: str, clip: dict, show_skeleton: bool = True) -> dict | None:
    """A run's explanation of one clip (a store.get_clip row), with its own player: the source line and p
    (explanation_caption), the clip with the deciding frames shaded and joints haloed, and the top joints.
    Returns the explanation, or None when the run cannot explain this clip (the reason shown instead)."""
    why, reason = _explanation_or_reason(project, run_id, clip)
    if why is None:
        st.info(md(reason))
        return None
    explanation_caption(why)
    video = store.get_video(project, clip["video_id"]) if clip.get("video_id") else None
    exercise = next((e for e in store.list_exercises(project) if e["name"] == clip["exercise"]), None)
    clip_player(project, clip, video, exercise["joints"] if exercise else [], show_skeleton,
                **explanation_overlay(why))
    if why["top_joints"]:
        st.text("Joints the verdict rests on most: " + ", ".join(
            f"{name.replace('_', ' ')} {why['joint_weights'][name]:.0%}" for name in why["top_joints"]))
    return why


def model_view(project: Project, clip: dict, key: str, run_id: str | None = None) -> dict:
    """A "Model's view" toggle for the clip on screen, off by default (a coach judges before seeing the
    model): when turned on, the explanation of run `run_id` (default the current run, model.choice) is
    computed, its source line shown, and clip_player's overlay arguments returned for the page's own player;
    otherwise {}."""
    from model import choice

    if not st.toggle("Model's view", key=key, help="Shade the frames and halo the joints the current model's "
                     "verdict on this clip rests on (computed when turned on)."):
        return {}
    run_id = run_id or choice.current(project).run_id
    if run_id is None:
        st.caption("No model trained yet: train one on the Train page.")
        return {}
    why, reason = _explanation_or_reason(project, run_id, clip)
    if why is None:
        st.caption(md(reason))
        return {}
    explanation_caption(why)
    return explanation_overlay(why)


# ---------------------------------------------------------------- model-assisted labelling

_ASSIST = "assist_modes"  # session key no widget uses: each coach's own choice (coach -> mode), kept across pages
ASSIST_HELP = {
    "off": "the model's opinion is not shown",
    "on": "the model's verdict, its confidence and the criteria it thinks failed come with the clip, pre-ticked",
    "decide first": "give your verdict first; the model's opinion is shown once it is saved (no anchoring)",
}
_EACH_COACH = "each coach chooses"


def assist_control(project: Project, coach: str) -> str:
    """The Label page's sidebar control of the model's opinion of the clip on screen; returns "off", "on" or
    "decide first". When a lead set a mode for the project (model.assist.project_mode) a caption names it;
    otherwise the coach picks one (off at first), kept for the session. A lead also gets the project's setting."""
    from model import assist

    forced = assist.project_mode(project)
    with st.sidebar:
        if forced is not None:
            st.caption(f"Model's opinion: **{forced}**, set for this project by a lead ({ASSIST_HELP[forced]}).")
            mode = forced
        else:
            chosen = st.session_state.setdefault(_ASSIST, {})
            mode = st.radio("Model's opinion", assist.MODES, index=assist.MODES.index(chosen.get(coach, "off")),
                            key=f"label_assist_mode:{coach}", horizontal=True,
                            help="; ".join(f"{m}: {h}" for m, h in ASSIST_HELP.items()))
            chosen[coach] = mode
        if is_lead(project, coach):
            with st.expander("Model's opinion for every coach (lead)"):
                assist_project_setting(project, coach, key="label_assist_project")
    return mode


def assist_project_setting(project: Project, who: str, key: str) -> None:
    """A lead's control of the project's assisted-labelling mode (each coach chooses, off, on, decide first),
    saved as an event by model.assist.set_project_mode, with who set the present one and when."""
    from model import assist

    events = store.setting_events(project, assist.SETTING)
    options = [_EACH_COACH, *assist.MODES]
    now = assist.project_mode(project)
    pick = st.selectbox("Model's opinion on the Label page", options, index=options.index(now or _EACH_COACH),
                        key=f"{key}_pick", help="; ".join(f"{m}: {h}" for m, h in ASSIST_HELP.items()))
    if events:
        last = events[-1]
        st.caption(f"{last['value'] or _EACH_COACH} since {last['created_at'][:16].replace('T', ' ')} UTC, set by "
                   f"{md(last['annotator'])}")
    if st.button("Set for the project", key=f"{key}_save", disabled=not can("lead") or pick == (now or _EACH_COACH)):
        require("lead")
        try:
            assist.set_project_mode(project, None if pick == _EACH_COACH else pick, who,
                                    sign_in=sign_in_method() is not None)
        except (assist.AssistError, store.StoreError) as exc:
            st.error(md(exc))
            return
        st.rerun()
