"""Timeline: a video's kept clips and removed spans, and the coaches' review of the trim (restore, remove)."""

from __future__ import annotations

from curation import store
from curation.kinematics import complexity_row
from curation.pose import load_track
from curation.project import Project
from curation.segment import WINDOW, SegmentOptions, segment_repetitions
from curation.shots import split_at_cuts
from curation.view import estimate_view

RESTORED = "restored"
KEPT = "kept"
REMOVED_BY_COACH = "removed by a coach"
CUT = "camera cut"


def video_timeline(project: Project, video_id: str) -> list[dict]:
    """What became of each part of a video, in frame order: {start_frame, end_frame, kind, reason, clip_id}.

    kind "clip" for an active clip (kept by the trim, or restored by a coach: reason says which), "removed"
    for a span the trim cut (reason: no person, still, talking head) or a coach took out (REMOVED_BY_COACH).
    A span the trim cut and a coach restored shows as its clips. Frames inside a kept part but between
    clips (the rest between repetitions) are not listed. kind "flagged" for a span the ingest kept but marked
    (reason: several people, replay), kind "cut" for a hard camera cut (start_frame = end_frame = the first
    frame of the new shot, reason CUT).
    """
    video = store.get_video(project, video_id)
    if video is None:
        raise store.StoreError(f"no video {video_id!r}")
    live = [e for e in store.trim_events(project, video_id) if e["action"] != "undo" and not e["undone"]]
    restored = [(e["start_frame"], e["end_frame"]) for e in live if e["action"] == "restore"]
    rows = [{"start_frame": c["start_frame"], "end_frame": c["end_frame"], "kind": "clip", "clip_id": c["id"],
             "reason": RESTORED if any(a <= c["start_frame"] and c["end_frame"] <= b for a, b in restored) else KEPT}
            for c in store.list_clips(project, video_id=video_id)]
    # Each frame's last word: the automatic cut, then the coaches' restores and removals in order.
    marks: list[str | None] = [None] * int(video["frames"])
    for span in store.removed_spans(project, video_id):
        marks[span["start_frame"]:span["end_frame"]] = [span["reason"]] * (span["end_frame"] - span["start_frame"])
    for e in live:
        a, b = e["start_frame"], min(e["end_frame"], len(marks))
        marks[a:b] = [None if e["action"] == "restore" else REMOVED_BY_COACH] * (b - a)
    start = 0
    for t in range(1, len(marks) + 1):
        if t == len(marks) or marks[t] != marks[start]:
            if marks[start] is not None:
                rows.append({"start_frame": start, "end_frame": t, "kind": "removed", "clip_id": None,
                             "reason": marks[start]})
            start = t
    # A replay also says which earlier frames it shows again (source_start, source_end).
    rows += [{"start_frame": s["start_frame"], "end_frame": s["end_frame"], "kind": "flagged", "clip_id": None,
              "reason": s["reason"], **{k: s[k] for k in ("source_start", "source_end") if k in s}}
             for s in store.flagged_details(project, video_id)]
    rows += [{"start_frame": f, "end_frame": f, "kind": "cut", "clip_id": None, "reason": CUT}
             for f in store.shot_cuts(project, video_id)]
    return sorted(rows, key=lambda r: (r["start_frame"], r["kind"]))


def ingest_spans(project: Project, video_id: str) -> dict:
    """What the ingest found in a video, as the ingest JSON gives it per source (design.md 4.2): `cuts` (first
    frames of new shots), `removed` and `flagged` ([{start_frame, end_frame, reason}], a replay also with
    source_start, source_end), `clip_bounds` ([{start_frame, end_frame}] of the active clips) and `people` (the
    athlete rule, split screen and side of curation.people; None for videos ingested before). Frames end
    exclusive."""
    return {
        "cuts": store.shot_cuts(project, video_id),
        "removed": store.removed_spans(project, video_id),
        # A replay also gives the span it repeats (source_start, source_end).
        "flagged": store.flagged_details(project, video_id),
        # How its people were handled: split screen found ("vertical"/"horizontal" and the seam), side ingested.
        "people": store.video_people(project, video_id),
        "clip_bounds": [{"start_frame": c["start_frame"], "end_frame": c["end_frame"]}
                        for c in store.list_clips(project, video_id=video_id, include_excluded=True)],
    }


def restore_span(project: Project, video_id: str, start: int, end: int, annotator: str,
                 options: SegmentOptions = SegmentOptions()) -> dict:
    """Give frames [start, end) back to the dataset as clips: cut into repetitions as at ingest, or as one
    window clip when no repetition shows (a coach restoring a span says there is an exercise in it).

    Recorded as one trim event (undo_trim_event takes it back); returns {id, clips}.
    """
    video = store.get_video(project, video_id)
    if video is None:
        raise store.StoreError(f"no video {video_id!r}")
    start, end = max(0, int(start)), min(int(end), int(video["frames"]))
    if end <= start:
        raise store.StoreError("the span holds no frame")
    track = load_track(project.path(video["pose_path"]))
    aspect = video["width"] / video["height"] if video["height"] else 1.0
    cuts = store.shot_cuts(project, video_id)
    bounds = [(b.start, b.end, b.method) for b in
              segment_repetitions(track.landmarks, track.fps, [(start, end)], options=options, aspect=aspect,
                                  cuts=cuts)]
    exercise = next((c["exercise"] for c in store.list_clips(project, video_id=video_id)), video["exercise"])
    clips = [{
        "exercise": exercise or "unknown", "start_frame": int(a), "end_frame": int(b), "fps": float(video["fps"]),
        "method": method, "group_name": video["group_name"], "source": video["source"],
        "view": estimate_view(track.landmarks[a:b], aspect),
        **complexity_row(track.landmarks[a:b], track.fps, aspect),
    } for a, b, method in bounds or [(a, b, WINDOW) for a, b in split_at_cuts([(start, end)], cuts)]]
    return store.restore_span(project, video_id, start, end, annotator, clips)


def remove_span(project: Project, video_id: str, start: int, end: int, annotator: str) -> dict:
    """Take frames [start, end) out of the dataset: the clips overlapping them are set aside (one trim event)."""
    return store.remove_span(project, video_id, int(start), int(end), annotator)
