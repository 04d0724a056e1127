"""Lineage: clip edits (split, merge, undo, exercise change) that keep complexity and cached media true.

The store records each edit as an event and derives which labels still count (they follow the frames they
judged); this module adds what needs the poses: the automatic complexity recomputed on the new frames, and
the cached clip videos of moved clips dropped.
"""

from __future__ import annotations

from curation import store
from curation.dataset import load_clip_landmarks
from curation.kinematics import complexity_row
from curation.project import Project


def recompute_complexity(project: Project, clip_ids: list[str]) -> dict[str, dict]:
    """Recompute and store the automatic complexity of these clips from their present frames; returns it."""
    values = {}
    for clip_id in clip_ids:
        clip = store.get_clip(project, clip_id)
        if clip is None:
            continue
        video = store.get_video(project, clip["video_id"]) if clip["video_id"] else None
        width, height = (video or clip).get("width"), (video or clip).get("height")  # imported clips may carry a size
        aspect = width / height if width and height else 1.0
        values[clip_id] = complexity_row(load_clip_landmarks(project, clip), clip["fps"], aspect)
    store.set_complexity(project, values)
    return values


def _refresh(project: Project, moved: list[str], fresh: list[str] = ()) -> None:
    """After an edit: drop the cached videos of moved clips, recompute complexity of moved and new clips."""
    from curation.clipmedia import clear_stale  # cv2 and ffmpeg: only when a coach edits clips

    for clip_id in moved:
        clear_stale(project, clip_id)
    recompute_complexity(project, [*moved, *fresh])


def split(project: Project, clip_id: str, at: int, annotator: str) -> tuple[str, str]:
    """Split a clip in two at frame `at` (store.split_clip), each part with its own complexity."""
    parts = store.split_clip(project, clip_id, at, annotator)
    _refresh(project, [], list(parts))
    return parts


def merge(project: Project, first_id: str, second_id: str, annotator: str) -> str:
    """Merge two clips of a video into one (store.merge_clips), with the complexity of the whole."""
    merged = store.merge_clips(project, first_id, second_id, annotator)
    _refresh(project, [], [merged])
    return merged


def undo_edit(project: Project, edit_id: int, annotator: str) -> dict:
    """Undo a clip edit (store.undo_edit); the clips whose frames moved back get their complexity again."""
    result = store.undo_edit(project, edit_id, annotator)
    _refresh(project, result["moved"])
    return result
