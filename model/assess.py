"""Assess: a new video judged repetition by repetition by a run, without entering the dataset (unless kept)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from curation import store
from curation.ingest import is_url, source_key
from curation.jobs import Cancelled, JobFailed
from curation.kinematics import ANGLES, joint_angles
from curation.landmarks import NAMES
from curation.pipeline import (USER_ERRORS, DuplicateSource, PipelineOptions, Processed, process_source,
                               store_result)
from curation.pose import load_track
from curation.project import Project, UnsafePath
from curation.segment import REPETITION
from model import runs
from model.explain import occlusion
from model.features import clip_features, feature_names

Progress = Callable[[float, str], None]


class NoRepetition(ValueError):
    """The video holds no repetition of the exercise asked for."""


class UnknownExerciseName(ValueError):
    """An exercise that is not in the project's catalogue."""


@dataclass(frozen=True)
class AssessOptions:
    pipeline: PipelineOptions = field(default_factory=PipelineOptions)
    # A repetition must move at least one of the exercise's joints (the rubric's joints of interest) through
    # this many degrees (robust 5-95 % range): a squat's knee swings 60-120, a push-up's elbow 60-90, while the
    # knees of someone curling a dumbbell wobble by 5-15. Below it the clip is movement of another exercise.
    min_joint_range: float = 20.0
    fail_at: float = 0.5  # p(incorrect) or p(fail) from which the verdict is incorrect, the criterion failed


@dataclass
class Assessment:
    """A video judged by a run: its repetitions in order (the JSON of design.md 4.3) and a summary."""

    source: str
    exercise: str
    run_id: str
    video: dict  # frames, fps, width, height, title, person_share
    reps: list[dict]
    summary: dict  # count, tempo, asymmetry
    kept: dict | None = None  # the ingest result when the video was added to the dataset
    folder: Path | None = None  # where the assessment's video, pose and result are kept (the page's)

    def as_dict(self) -> dict:
        return {"source": self.source, "exercise": self.exercise, "run_id": self.run_id, "video": self.video,
                "reps": self.reps, "summary": self.summary, "kept": self.kept}


# ---------------------------------------------------------------------------------------------- cues


def cue_of(criterion: dict) -> str:
    """What a coach says when a criterion fails: its cue, else (a criterion added without one) its
    description, else its title."""
    return criterion.get("cue") or criterion.get("description") or criterion["title"]


# ---------------------------------------------------------------------------------------------- the steps


def resolve(project: Project, exercise: str, run_id: str | None) -> tuple[str, str, runs.Fitted]:
    """(exercise key, run id, the run's final model), checked before any video work: an exercise of the
    catalogue, a finished run (the chosen one by default), a run trained on that exercise."""
    from model import choice

    try:
        key = store.exercise_key(exercise)
    except store.StoreError as exc:
        raise UnknownExerciseName(str(exc)) from None
    known = [e["name"] for e in store.list_exercises(project)]
    if key not in known:
        raise UnknownExerciseName(f"no exercise {key!r} in this project (one of {', '.join(known)})")
    if run_id is None:
        run_id = choice.current(project).run_id
        if run_id is None:
            raise runs.RunNotFound("no finished run in this project yet: train one first (python -m model train)")
    fitted = runs.load_fitted(project, run_id)
    if key not in fitted.exercises:
        raise runs.UnknownExercise(f"run {run_id} was not trained on {key!r} clips (it knows "
                                   f"{', '.join(fitted.exercises)}): it cannot judge this video")
    return key, run_id, fitted


def joint_ranges(landmarks: np.ndarray, aspect: float, joints: list[str]) -> dict[str, float]:
    """Robust range of motion (5-95 %, degrees) of each named angle over a clip; 0 for a joint never seen."""
    angles = joint_angles(landmarks, aspect)
    out = {}
    for name in joints:
        values = angles[:, list(ANGLES).index(name)]
        values = values[np.isfinite(values)]
        out[name] = float(np.percentile(values, 95) - np.percentile(values, 5)) if values.size >= 2 else 0.0
    return out


def repetitions(processed: Processed, landmarks: np.ndarray, aspect: float, joints: list[str],
                options: AssessOptions) -> list[dict]:
    """The clips of a processed video that are repetitions of the exercise: cut as one repetition (not a
    fallback window) and moving one of its joints at least min_joint_range. NoRepetition when none is."""
    reps = [c for c in processed.clips if c["method"] == REPETITION]
    if not reps:
        raise NoRepetition(f"no repetition found in this video (the movement does not repeat): nothing to "
                           f"assess as {processed.video['exercise']}")
    if joints:
        reps = [c for c in reps if max(joint_ranges(landmarks[c["start_frame"]:c["end_frame"]], aspect,
                                                    joints).values()) >= options.min_joint_range]
        if not reps:
            raise NoRepetition(f"no repetition of a {processed.video['exercise']} in this video: its joints "
                               f"({', '.join(j.replace('_', ' ') for j in joints)}) move less than "
                               f"{options.min_joint_range:g} degrees in every repetition found")
    return reps


def asymmetry(landmarks: np.ndarray, aspect: float, joints: list[str]) -> dict[str, dict]:
    """Left/right asymmetry of each paired joint of interest over a clip: range of motion of each side,
    their difference and the mean absolute difference of the two angle traces (degrees)."""
    angles = joint_angles(landmarks, aspect)
    column = {name: i for i, name in enumerate(ANGLES)}
    out = {}
    for left in joints:
        if not left.startswith("left_") or "right_" + left[5:] not in joints:
            continue
        right = "right_" + left[5:]
        ranges = joint_ranges(landmarks, aspect, [left, right])
        both = angles[:, column[left]] - angles[:, column[right]]
        both = both[np.isfinite(both)]
        out[left[5:]] = {"left_range": round(ranges[left], 1), "right_range": round(ranges[right], 1),
                         "range_difference": round(ranges[left] - ranges[right], 1),
                         "mean_difference": round(float(np.abs(both).mean()), 1) if both.size else None}
    return out


def judge(project: Project, run_id: str, fitted: runs.Fitted, exercise: str, landmarks: np.ndarray,
          fps: float, aspect: float, reps: list[dict], joints: list[str], options: AssessOptions,
          check: Callable[[], None] = lambda: None, progress: Progress | None = None) -> list[dict]:
    """Each repetition judged by the run: p(incorrect) and its explanation (occlusion, the final model),
    p(fail) per criterion of the exercise (the run's criterion models; None for a criterion without one),
    the cues of the criteria it thinks failed, and the left/right asymmetry of the exercise's joints."""
    from model.train import criterion_key, load_criterion_models

    criteria = store.criteria_of(project, exercise)
    heads = load_criterion_models(runs.run_dir(project, run_id))
    names = feature_names()
    out = []
    for n, clip in enumerate(reps):
        check()
        a, b = clip["start_frame"], clip["end_frame"]
        pose = landmarks[a:b]
        features = clip_features(pose, fps, aspect)
        why = occlusion(lambda batch: fitted.predict(batch, [exercise] * len(batch)), pose,
                        lambda lm: clip_features(lm, fps, aspect), names)
        p_fail = {}
        for c in criteria:
            head = heads.get(criterion_key(exercise, c["name"]))
            p_fail[c["name"]] = None if head is None else round(float(head.predict([features], [exercise])[0]), 4)
        failed = [c for c in criteria if p_fail[c["name"]] is not None and p_fail[c["name"]] >= options.fail_at]
        joint_w = why["joint_weights"]
        out.append({
            "rep": n + 1,
            "start_frame": int(a), "end_frame": int(b),
            "start_seconds": round(a / fps, 3),
            "seconds": round((b - a) / fps, 3),
            "p_incorrect": round(why["p"], 4),
            "verdict": "incorrect" if why["p"] >= options.fail_at else "correct",
            "criteria": p_fail,
            "cues": [cue_of(c) for c in failed],
            "failed": [{"criterion": c["name"], "title": c["title"], "p_fail": p_fail[c["name"]], "cue": cue_of(c)}
                       for c in failed],
            "frame_weights": [round(float(w), 5) for w in why["frame_weights"]],
            "joint_weights": {name: round(float(w), 5) for name, w in zip(NAMES, joint_w)},
            "top_joints": [NAMES[i] for i in np.argsort(-joint_w, kind="stable")[:runs.TOP_JOINTS] if joint_w[i] > 0],
            "asymmetry": asymmetry(pose, aspect, joints),
        })
        if progress is not None:
            progress((n + 1) / len(reps), f"judging repetition {n + 1} of {len(reps)}")
    return out


def summarise(reps: list[dict], joints_of_interest: list[str]) -> dict:
    """Rep count, tempo (seconds per repetition, repetitions per minute) and the asymmetry averaged over reps."""
    seconds = [r["seconds"] for r in reps]
    pairs = sorted({k for r in reps for k in r["asymmetry"]})
    asym = {}
    for k in pairs:
        values = [r["asymmetry"][k] for r in reps if k in r["asymmetry"]]
        mean = [v["mean_difference"] for v in values if v["mean_difference"] is not None]
        asym[k] = {"range_difference": round(float(np.mean([v["range_difference"] for v in values])), 1),
                   "mean_difference": round(float(np.mean(mean)), 1) if mean else None}
    span = reps[-1]["start_seconds"] + reps[-1]["seconds"] - reps[0]["start_seconds"] if reps else 0.0
    return {
        "count": len(reps),
        "incorrect": sum(r["verdict"] == "incorrect" for r in reps),
        "seconds_per_rep": round(float(np.mean(seconds)), 2) if seconds else None,
        "seconds_per_rep_sd": round(float(np.std(seconds)), 2) if seconds else None,
        "reps_per_minute": round(60 * len(reps) / span, 1) if span > 0 else None,
        "joints": joints_of_interest,
        "asymmetry": asym,
    }


def keep_processed(project: Project, processed: Processed) -> dict:
    """Add an assessed video to the dataset from what its assessment computed (never processed twice): the
    ingest result of design.md 4.2 (`existing` true when the source was in the project already)."""
    existing = store.find_video(project, processed.key)
    owner = f"pid {os.getpid()}"
    if existing is None and not store.claim_source(project, processed.key, owner):
        raise DuplicateSource("this video is already being added by another job; it appears in the project "
                              "when that job ends")
    try:
        existing = existing or store.find_video(project, processed.key)
        if existing is not None:
            return {"source": processed.source, "video_id": existing["id"], "title": existing["title"],
                    **{k: existing[k] for k in ("frames", "fps", "person_share", "trimmed_share", "clips")},
                    "existing": True, "error": None}
        return store_result(project, processed)
    finally:
        store.release_source(project, processed.key, owner)


# ---------------------------------------------------------------------------------------------- the whole


def assess_source(project: Project, source: str, exercise: str, run_id: str | None = None, keep: bool = False,
                  options: AssessOptions | None = None, progress: Progress | None = None,
                  cancelled: Callable[[], bool] | None = None, save_to: Path | None = None,
                  title: str | None = None) -> Assessment:
    """Run one source (a file or an allowed link, through ingest's checks) through the pipeline without adding
    it to the dataset, then judge each repetition with run `run_id` (default the chosen run, model.choice).

    keep: add the video to the dataset afterwards, from the same processing. save_to: a folder where the
    normalised video, the pose track and the assessment are kept (the Assess page shows them and may keep
    the video later); without it nothing of the video stays. Raises runs.RunNotFound, runs.UnknownExercise,
    UnknownExerciseName (all before any video work), the pipeline's USER_ERRORS, NoRepetition, Cancelled.
    """
    options = options or AssessOptions()
    report = progress or (lambda fraction, message="": None)
    stop = cancelled or (lambda: False)

    def check() -> None:
        if stop():
            raise Cancelled()

    exercise, run_id, fitted = resolve(project, exercise, run_id)
    joints = [j for j in next(e["joints"] for e in store.list_exercises(project) if e["name"] == exercise)
              if j in ANGLES]
    key = source_key(source, options.pipeline.ingest) if is_url(source) else source_key(source)
    project.work.mkdir(parents=True, exist_ok=True)
    # "ingest-<pid>-": the prefix jobs.sweep knows, so a killed command's scratch folder is removed later.
    scratch = Path(tempfile.mkdtemp(prefix=f"ingest-{os.getpid()}-", dir=project.work))
    try:
        processed = process_source(source, key, exercise, options.pipeline, scratch,
                                   lambda f, m="": report(0.9 * f, m), stop, title)
        check()
        report(0.9, "judging repetitions")
        track = load_track(processed.pose_file)
        video = processed.video
        aspect = video["width"] / video["height"]
        reps = repetitions(processed, track.landmarks, aspect, joints, options)
        judged = judge(project, run_id, fitted, exercise, track.landmarks, float(video["fps"]), aspect, reps,
                       joints, options, check, lambda f, m: report(0.9 + 0.09 * f, m))
        assessment = Assessment(
            source, exercise, run_id,
            {k: video[k] for k in ("frames", "fps", "width", "height", "title", "person_share")},
            judged, summarise(judged, joints))
        if save_to is not None:
            save_to.mkdir(parents=True, exist_ok=True)
            for path in (processed.video_file, processed.pose_file):
                # Moved unless kept now too (store_result moves them again): the scratch folder goes anyway.
                (shutil.copyfile if keep else os.replace)(path, save_to / path.name)
            (save_to / PROCESSED).write_text(json.dumps(_processed_dict(processed)), encoding="utf-8")
            (save_to / RESULT).write_text(json.dumps(assessment.as_dict()), encoding="utf-8")
            assessment.folder = save_to
        if keep:
            check()
            assessment.kept = keep_processed(project, processed)
        report(1.0, f"{len(judged)} repetitions assessed")
        return assessment
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- kept assessments

ASSESSMENTS = "assessments"  # project.work/assessments/<id>/: video.mp4, pose.npz, processed.json, result.json
PROCESSED, RESULT = "processed.json", "result.json"


_FILES = ("video_file", "pose_file")  # Processed's paths: the files themselves are kept beside its JSON


def _processed_dict(p: Processed) -> dict:
    """Every field of a Processed but its file paths, as JSON values (whatever fields the pipeline adds)."""
    return {f.name: getattr(p, f.name) for f in fields(Processed) if f.name not in _FILES}


def new_assessment_dir(project: Project) -> Path:
    """A fresh folder for one assessment of the page (its name is the assessment id)."""
    return project.work / ASSESSMENTS / f"a{secrets.token_hex(6)}"


def assessment_dir(project: Project, assessment_id: str) -> Path:
    """The folder of a kept assessment, refusing any id that is not one this module makes."""
    if not (isinstance(assessment_id, str) and len(assessment_id) == 13 and assessment_id[0] == "a"
            and all(ch in "0123456789abcdef" for ch in assessment_id[1:])):
        raise UnsafePath(f"{assessment_id!r} is not an assessment id")
    return project.work / ASSESSMENTS / assessment_id


def load_assessment(project: Project, assessment_id: str) -> dict:
    """A kept assessment's result (Assessment.as_dict)."""
    return json.loads((assessment_dir(project, assessment_id) / RESULT).read_text(encoding="utf-8"))


def mark_kept(project: Project, assessment_id: str, kept: dict) -> None:
    """Record in a kept assessment that its video went into the dataset (the page then says so)."""
    path = assessment_dir(project, assessment_id) / RESULT
    result = json.loads(path.read_text(encoding="utf-8"))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps({**result, "kept": kept}), encoding="utf-8")
    os.replace(tmp, path)


def keep_assessment(project: Project, assessment_id: str) -> dict:
    """The page's "add to the dataset": the kept assessment's video and pose stored as an ingest would (copies:
    the assessment stays viewable). Returns the ingest result."""
    folder = assessment_dir(project, assessment_id)
    saved = json.loads((folder / PROCESSED).read_text(encoding="utf-8"))
    scratch = Path(tempfile.mkdtemp(prefix=f"ingest-{os.getpid()}-", dir=project.work))
    try:
        for name in ("video.mp4", "pose.npz"):
            shutil.copyfile(folder / name, scratch / name)
        known = {f.name for f in fields(Processed)}
        saved = {k: [tuple(r) for r in v] if k in ("removed", "flagged") else v for k, v in saved.items() if k in known}
        processed = Processed(**saved, video_file=scratch / "video.mp4", pose_file=scratch / "pose.npz")
        return keep_processed(project, processed)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def assess_job(project: Project, params: dict, progress: Progress, cancelled: Callable[[], bool]) -> dict:
    """The background job of the Assess page: one source assessed into a kept folder; returns
    {"assessment_id", "count", "incorrect"}. User errors end the job with their one-line message."""
    workers = 1 if len(store.running_jobs(project)) > 1 else 2
    options = AssessOptions(pipeline=replace(PipelineOptions(), pose_workers=workers))
    folder = new_assessment_dir(project)
    try:
        result = assess_source(project, params["source"], params["exercise"], params.get("run"),
                               options=options, progress=progress, cancelled=cancelled, save_to=folder,
                               title=params.get("title"))
    except (*USER_ERRORS, NoRepetition, UnknownExerciseName, runs.RunNotFound, runs.UnknownExercise) as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise JobFailed(str(exc)) from exc
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return {"assessment_id": folder.name, "count": result.summary["count"],
            "incorrect": result.summary["incorrect"], "title": result.video["title"]}


# ---------------------------------------------------------------------------------------------- the report


def _e(text: object) -> str:
    """Untrusted text (titles, sources, cues) as HTML text."""
    import html

    return html.escape(str(text), quote=True)


def _weights_svg(weights: list[float], width: int = 240, height: int = 36) -> str:
    """The explanation's per-frame weights as bars (which phase of the repetition the verdict rests on)."""
    w = np.asarray(weights, dtype=float)
    if w.size == 0:
        return ""
    top = w.max() or 1.0
    step = width / w.size
    bars = "".join(f'<rect x="{i * step:.1f}" y="{height - height * v / top:.1f}" width="{max(step, 1):.1f}" '
                   f'height="{height * v / top:.1f}"/>' for i, v in enumerate(w))
    return (f'<svg class="weights" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="weight of each frame">{bars}</svg>')


def _pose_svg(points: np.ndarray, joint_weights: dict[str, float], aspect: float, height: int = 160) -> str:
    """One frame's skeleton (x, y normalised) with red halos on the joints the verdict rests on."""
    from curation.landmarks import EDGES

    width = int(round(height * aspect))
    xy = np.asarray(points[:, :2], dtype=float) * [width, height]
    lines = "".join(f'<line x1="{xy[a, 0]:.1f}" y1="{xy[a, 1]:.1f}" x2="{xy[b, 0]:.1f}" y2="{xy[b, 1]:.1f}"/>'
                    for a, b in EDGES if np.isfinite(xy[[a, b]]).all())
    top = max(joint_weights.values(), default=0.0) or 1.0
    halos = "".join(f'<circle cx="{xy[i, 0]:.1f}" cy="{xy[i, 1]:.1f}" r="{3 + 12 * joint_weights[name] / top:.1f}"/>'
                    for i, name in enumerate(NAMES) if joint_weights.get(name, 0) > 0 and np.isfinite(xy[i]).all())
    return (f'<svg class="pose" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="skeleton at the frame the verdict rests on most"><g class="halo">{halos}</g>'
            f'<g class="bone">{lines}</g></svg>')


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
h1{font-size:1.5em} table{border-collapse:collapse;width:100%} td,th{border-bottom:1px solid #ddd;
padding:6px;text-align:left;vertical-align:top} .incorrect{color:#c62828;font-weight:600}
.correct{color:#2e7d32;font-weight:600} svg.weights rect{fill:#c62828} svg.pose{background:#222}
svg.pose line{stroke:#9be7ff;stroke-width:2} svg.pose circle{fill:rgba(255,60,60,.55)} .muted{color:#777}
"""


def report_html(result: dict, landmarks: np.ndarray | None = None, aspect: float = 1.0) -> str:
    """A self-contained HTML report of an assessment (Assessment.as_dict): no script, no network, every text
    escaped. With the video's landmarks, each repetition shows the skeleton at the frame its verdict rests
    on most, the deciding joints haloed."""
    s, video = result["summary"], result["video"]
    rows = []
    for r in result["reps"]:
        failed = "".join(f"<li><b>{_e(f['title'])}</b> (p(fail) {f['p_fail']:.2f}): {_e(f['cue'])}</li>"
                         for f in r["failed"]) or '<li class="muted">none flagged</li>'
        pose = ""
        if landmarks is not None and r["frame_weights"]:
            peak = r["start_frame"] + int(np.argmax(r["frame_weights"]))
            pose = _pose_svg(landmarks[peak], r["joint_weights"], aspect)
        asym = "; ".join(f"{_e(k)}: {v['range_difference']:+.0f}&deg; range L-R" for k, v in r["asymmetry"].items())
        joints = ", ".join(_e(j.replace("_", " ")) for j in r["top_joints"])
        rows.append(
            f'<tr class="rep" data-rep="{r["rep"]}"><td>{r["rep"]}</td>'
            f'<td>{r["start_seconds"]:.1f} s (frames {r["start_frame"]}-{r["end_frame"]}), {r["seconds"]:.1f} s</td>'
            f'<td class="{r["verdict"]}">{r["verdict"]}<br><span class="muted">p(incorrect) '
            f'{r["p_incorrect"]:.2f}</span></td><td><ul>{failed}</ul></td>'
            f'<td>{_weights_svg(r["frame_weights"])}<br>{pose}<br><span class="muted">joints: {joints or "-"}'
            f'</span></td><td>{asym or "-"}</td></tr>')
    asym = "".join(f"<li>{_e(k)}: range difference {v['range_difference']:+.1f}&deg;, mean difference "
                   f"{_number(v['mean_difference'])}&deg;</li>" for k, v in s["asymmetry"].items())
    tempo = "n/a" if s["seconds_per_rep"] is None else (
        f"{s['seconds_per_rep']:.2f} s per repetition (sd {s['seconds_per_rep_sd']:.2f})"
        + ("" if s["reps_per_minute"] is None else f", {s['reps_per_minute']:.1f} per minute"))
    # A file's path on the machine that assessed it is nobody's business in a shared report: its name only.
    source = result["source"] if is_url(result["source"]) else Path(result["source"]).name
    kept = "" if not result.get("kept") else f"<p>Added to the dataset as video {_e(result['kept']['video_id'])}.</p>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Formcheck assessment: {_e(result['exercise'])}</title><style>{_STYLE}</style></head>
<body><h1>Assessment: {_e(result['exercise'])}</h1>
<p id="source">Video: {_e(video.get('title') or source)} <span class="muted">({_e(source)};
{video['frames']} frames at {video['fps']:g} fps, {video['width']}x{video['height']})</span></p>
<p>Judged by run {_e(result['run_id'])}.</p>{kept}
<p id="summary"><b>{s['count']} repetitions</b>, {s['incorrect']} judged incorrect. Tempo: {tempo}.</p>
<h2>Left/right asymmetry</h2><ul>{asym or '<li class="muted">no paired joints</li>'}</ul>
<h2>Repetitions</h2>
<table><thead><tr><th>#</th><th>when</th><th>verdict</th><th>failed criteria and cues</th>
<th>explanation (frames, skeleton at the deciding frame, joints)</th><th>asymmetry</th></tr></thead>
<tbody>{''.join(rows)}</tbody></table>
<p class="muted">Red bars: how much hiding each frame moves the verdict; red halos: the joints whose hiding moves it
most. A model's verdict is a second opinion, not a coach's.</p>
</body></html>
"""
