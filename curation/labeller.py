"""Labeller: the server side of the Label page's in-browser labeller: saving the verdicts a browser sends (its
outbox), the clips it holds ready, and what it shows of each (caption, rubric, complexity, player page).

The browser keeps the clip on screen, the next few clips (video and skeleton already loaded) and an outbox of
verdicts not yet acknowledged, in localStorage under the project and the coach. Each change sends the whole
outbox; save_outbox writes every entry not yet recorded (store.add_label_event dedups by request id), and the
page hands back which request ids are saved, so the browser drops those. A reload or a reopened tab sends what is
left; two tabs of one coach may send one verdict twice, and it is recorded once. Nothing here imports streamlit.
"""

from __future__ import annotations

import base64
import html
import math
import re

import numpy as np

from curation import store
from curation.kinematics import COMPONENTS
from curation.project import Project

WINDOW = 6  # clips a browser holds: the one on screen and five ready behind it (a few seconds of a fast coach,
#            longer than the server takes to refill it under load)
AHEAD = 4  # clips beyond the window whose videos the server cuts in the background (curation.clipmedia.prefetch)
OUTBOX_LIMIT = 1000  # entries read from one browser message (a coach offline for a long day stays below)
NOTE_LIMIT = 10_000
_REQUEST = re.compile(r"^[A-Za-z0-9_-]{8,80}$")


class BadEntry(ValueError):
    """An outbox entry the server refuses (malformed, an unknown clip, a role the coach does not have)."""


def criteria_verdicts(verdict: str, names: list[str], failed: list[str]) -> dict[str, str]:
    """The criteria a verdict records: the ticked ones failed; the others passed only when the coach judged them
    (a correct verdict, or an incorrect one with at least one tick); a skip records none."""
    if verdict == "skip":
        return {}
    criteria = {c: "fail" for c in failed}
    if verdict == "correct" or failed:  # an unticked box counts as passed only when the coach judged
        criteria.update({c: "pass" for c in names if c not in failed})
    return criteria


def _prediction(value: object) -> dict | None:
    """The model's opinion a browser says it had for the clip, kept to store.PREDICTION_FIELDS with their types."""
    if not isinstance(value, dict):
        return None
    p = value.get("p_incorrect")
    if not isinstance(value.get("run_id"), str) or not isinstance(p, (int, float)) or not math.isfinite(p):
        return None
    if isinstance(p, bool) or not 0 <= p <= 1 or value.get("verdict") not in ("correct", "incorrect"):
        return None
    failed = [f for f in value.get("failed") or [] if isinstance(f, str)]
    return {"run_id": value["run_id"][:200], "p_incorrect": float(p), "verdict": value["verdict"], "failed": failed}


def verdict_event(entry: dict, coach: str, kinds: set[str], rubric: dict[str, set[str]] | None = None) -> dict:
    """The label event of one outbox verdict entry, checked field by field (the entry comes from a browser).
    `rubric`: exercise -> its criterion names; the criteria an entry names are kept to those of its exercise."""
    kind = entry.get("kind", "verdict")
    if kind not in kinds:
        raise BadEntry(f"a {kind} needs a role you do not have")
    verdict = entry.get("verdict")
    if verdict not in store.VERDICTS or (kind == "adjudication" and verdict == "skip"):
        raise BadEntry(f"unknown verdict {verdict!r}")
    known = None if rubric is None else rubric.get(entry.get("exercise"), set())
    names = [n for n in entry.get("names") or [] if isinstance(n, str) and (known is None or n in known)]
    failed = [n for n in entry.get("failed") or [] if n in names]
    note = entry.get("note") if isinstance(entry.get("note"), str) else ""
    seconds = entry.get("seconds")
    moved = entry.get("components") if isinstance(entry.get("components"), dict) else {}
    components = {}
    for name in COMPONENTS:  # only the components the coach moved; anything else is no judgement
        v = moved.get(name)
        components[name] = float(v) if isinstance(v, (int, float)) and 0 <= v <= 1 else None
    frames = {k: entry[k] for k in ("start_frame", "end_frame") if isinstance(entry.get(k), int)}
    if isinstance(entry.get("exercise"), str):
        frames["exercise"] = entry["exercise"]
    event = {"clip_id": entry["clip_id"], "annotator": coach, "kind": kind, "verdict": verdict,
             "criteria": criteria_verdicts(verdict, names, failed), "note": note[:NOTE_LIMIT],
             "seconds": round(float(seconds), 2) if isinstance(seconds, (int, float)) and seconds >= 0 else None,
             "request_id": entry["rid"], **frames, **components}
    if "prediction" in entry or "prediction_shown" in entry:  # model-assisted labelling (issue 12)
        prediction = _prediction(entry.get("prediction"))
        event["prediction"] = prediction
        event["prediction_shown"] = bool(entry.get("prediction_shown")) and prediction is not None
    return event


def save_outbox(project: Project, coach: str, entries: list, kinds: set[str],
                rubric: dict[str, set[str]] | None = None) -> dict:
    """Record every entry of a browser's outbox not recorded yet, in order; returns {"acked": {request id: event
    id or None}, "refused": {request id: reason}}. An acked entry is saved (now or before: a second tab or a resent
    outbox adds nothing); a refused one never will be, and the browser shows why. `kinds`: the event kinds this
    coach may record ("verdict", and "adjudication" for a lead). `rubric`: exercise -> its criterion names, retired
    ones included (the page keeps it for the session); read from the store when not given.

    Entries: {"rid", "type": "verdict", "clip_id", "verdict", "kind", "names" (criteria shown), "failed",
    "components", "note", "seconds", "start_frame", "end_frame", "exercise", "prediction", "prediction_shown"}
    or {"rid", "type": "undo", "undoes": request id of a verdict}. The verdicts are the coach's whatever claims
    other coaches hold meanwhile: claims steer the queue, events are append-only and never refused for one.
    """
    entries = [e for e in (entries or [])[:OUTBOX_LIMIT]
               if isinstance(e, dict) and isinstance(e.get("rid"), str) and _REQUEST.match(e["rid"])]
    acked: dict[str, int | None] = {}
    refused: dict[str, str] = {}
    wanted = [e["rid"] for e in entries] + [e["undoes"] for e in entries if isinstance(e.get("undoes"), str)]
    known = store.events_by_request(project, wanted)
    for entry in entries:
        rid = entry["rid"]
        if rid in known:
            acked[rid] = known[rid]["id"]
            continue
        try:
            if entry.get("type") == "undo":
                target = known.get(entry.get("undoes"))
                if target is None or target["annotator"] != coach:  # never saved (refused): nothing to take back
                    acked[rid] = None
                    continue
                event = {"clip_id": target["clip_id"], "annotator": coach, "kind": "undo", "undoes": target["id"],
                         "request_id": rid}
            else:
                if not isinstance(entry.get("clip_id"), str):
                    raise BadEntry("no clip")
                if not isinstance(entry.get("exercise"), str):  # the exercise shown, else the clip's now
                    clip = store.get_clip(project, entry["clip_id"])
                    entry = {**entry, "exercise": clip["exercise"] if clip else None}
                if rubric is None:  # read once, and only when an entry is new
                    rubric = {e["name"]: {c["name"] for c in e["criteria"]}
                              for e in store.list_exercises(project, include_retired=True)}
                event = verdict_event(entry, coach, kinds, rubric)
            event_id = store.add_label_event(project, event)
        except (BadEntry, store.StoreError) as exc:
            refused[rid] = str(exc)
            continue
        if event_id is None:  # recorded meanwhile by another tab of this coach
            event_id = store.events_by_request(project, [rid])[rid]["id"]
        acked[rid] = event_id
        known[rid] = {"id": event_id, "clip_id": entry.get("clip_id"), "annotator": coach, "request_id": rid}
    return {"acked": acked, "refused": refused}


def pending_clips(entries: list) -> set[str]:
    """The clips an outbox holds a verdict for (not taken back by an undo behind it in the same outbox)."""
    undone = {e.get("undoes") for e in entries or [] if isinstance(e, dict) and e.get("type") == "undo"}
    return {e["clip_id"] for e in entries or [] if isinstance(e, dict) and e.get("type") != "undo"
            and isinstance(e.get("clip_id"), str) and e.get("rid") not in undone}


def window(current: dict | None, candidates: list[dict], skip: set[str], size: int = WINDOW) -> list[dict]:
    """The clips a browser holds: the one on screen first (if any), then the queue's next ones, none twice and
    none in `skip` (verdicts on their way)."""
    out = [current] if current is not None else []
    for clip in candidates:
        if len(out) >= size:
            break
        if clip["id"] not in skip and all(clip["id"] != c["id"] for c in out):
            out.append(clip)
    return out


def caption(clip: dict) -> str:
    """The line above the player: id, exercise, frames, length and camera view."""
    return (f"Clip {clip['id']} · {clip['exercise']} · frames {clip['start_frame']}-{clip['end_frame']} "
            f"({(clip['end_frame'] - clip['start_frame']) / clip['fps']:.1f} s)"
            + (f" · {clip['view']} view" if clip.get("view") else ""))


def player_key(clip: dict, show_skeleton: bool, explained: bool = False) -> str:
    """Names one player page: a clip's frames, the skeleton setting and whether a model's overlay is drawn."""
    return (f"{clip['id']}:{clip['start_frame']}:{clip['end_frame']}:{clip['exercise']}:{int(show_skeleton)}"
            f"{':why' if explained else ''}")


def player_page(project: Project, clip: dict, video: dict | None, joints: list[str], show_skeleton: bool,
                height: int, attention=None, joint_weights=None) -> tuple[str, str | None]:
    """The clip player's page (curation.player) with the clip's video embedded, and a warning when part of the
    clip cannot be shown: a missing or uncuttable video (then the skeleton only), a pose file that cannot be read
    (then the video only, no skeleton or angles). The warning is also written at the top of the player page
    itself, so it is seen whenever the clip comes on screen, even from the browser's held clips. Embedded rather
    than linked: the page is complete when it arrives, so a clip held ready plays at once, and no new route serves
    clip files outside the app's sign-in."""
    from curation.clipmedia import MissingVideo, clip_video
    from curation.dataset import clip_aspect, load_clip_landmarks
    from curation.kinematics import ANGLES, joint_angles
    from curation.player import player_html

    problems = []
    try:
        landmarks = load_clip_landmarks(project, clip)
        if landmarks.ndim != 3 or landmarks.shape[1:] != (33, 4):
            raise ValueError(f"an array of shape {landmarks.shape}, not (frames, 33, 4)")
    except (OSError, ValueError, EOFError, KeyError) as exc:  # missing, truncated, not an array, wrong shape
        problems.append(f"The pose of this clip cannot be read ({_reason(exc)}); showing the video without "
                        "skeleton or angles. Judge it from the video, or exclude the clip.")
        landmarks = np.full((max(int(clip["end_frame"]) - int(clip["start_frame"]), 1), 33, 4), np.nan, np.float32)
    aspect = clip_aspect(clip, video)
    all_angles = joint_angles(landmarks, aspect)
    names = [j for j in joints if j in ANGLES] or ["left_knee", "right_knee", "left_elbow", "right_elbow"]
    angles = {name: all_angles[:, list(ANGLES).index(name)] for name in names}
    try:
        path = clip_video(project, clip, video)
    except MissingVideo as exc:
        problems.append(f"The video file is missing ({exc}); showing the skeleton only.")
        path = None
    except (OSError, ValueError) as exc:  # a damaged video ffmpeg cannot cut, bounds past its end
        problems.append(f"The video of this clip cannot be cut ({_reason(exc)}); showing the skeleton only.")
        path = None
    b64 = base64.b64encode(path.read_bytes()).decode() if path else None
    page = player_html(landmarks, clip["fps"], angles, b64, aspect, height, show_skeleton,
                       attention=attention, joint_weights=joint_weights)
    warning = " ".join(problems) or None
    if warning:
        page = page.replace("<body>", '<body><p style="margin:0 0 4px;padding:4px 8px;background:#fff3cd;color:#5c4400;'
                                      f'border-radius:4px">{html.escape(warning)}</p>', 1)
    return page, warning


def _reason(exc: BaseException) -> str:
    """One short line of an exception, for a coach."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"


def card(clip: dict, exercise: dict, key: str, opinion: dict | None = None) -> dict:
    """What the browser shows of one clip besides its player: caption, rubric (name, title, description),
    complexity components (automatic value) and the frames the verdict records; all text is shown as text."""
    return {
        "id": clip["id"], "caption": caption(clip), "player": key,
        "start_frame": clip["start_frame"], "end_frame": clip["end_frame"], "exercise": clip["exercise"],
        "criteria": [{"name": c["name"], "title": c.get("title") or c["name"], "description": c.get("description") or ""}
                     for c in exercise.get("criteria", [])],
        "components": [{"name": name, "title": title, "auto": clip.get(name)} for name, title in COMPONENTS.items()],
        "opinion": opinion,
    }
