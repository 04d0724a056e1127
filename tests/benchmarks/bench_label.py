"""Benchmark: server time from a verdict to the next clip shown, on a project of 10,000 clips (bar: 150 ms).

Drives the real Label page with Streamlit's AppTest: each figure is one script run that saves the verdict the
in-browser labeller sent, claims the clips it holds and lays out the player of the one that joins them (the
browser shows the next clip at once; this is the server's side, in the background: tests/benchmarks/
bench_label_browser.py measures the browser). Run as `python tests/benchmarks/bench_label.py [--quick]`.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def make_project(folder: Path, clips: int) -> Path:
    """A dataset folder of `clips` pose clips (2 s at 30 fps, random but well-formed landmarks)."""
    rng = np.random.default_rng(0)
    (folder / "poses").mkdir(parents=True)
    with (folder / "clips.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["clip_id", "exercise", "label", "fps", "group"])
        for i in range(clips):
            writer.writerow([f"c{i:05d}", ("squat", "push-up", "lunge")[i % 3], "", 30, f"g{i % 200}"])
            np.save(folder / "poses" / f"c{i:05d}.npy", rng.random((60, 33, 4)).astype(np.float32))
    return folder


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2,000 clips and 15 verdicts")
    args = parser.parse_args(argv)
    n_clips, n_verdicts = (2_000, 15) if args.quick else (10_000, 40)
    sys.path.insert(0, str(ROOT))
    from streamlit.testing.v1 import AppTest

    from curation import store
    from curation.dataset import import_folder
    from curation.project import Project

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FORMCHECK_DATA"] = str(Path(tmp) / "project")
        project = Project.open(None)
        import_folder(project, make_project(Path(tmp) / "ds", n_clips))
        for coach in ("ann", "bob"):  # other coaches' labels make the queue query do real work
            for clip_id in store.clip_ids(project)[: n_clips // 4]:
                store.add_label_event(project, {"clip_id": clip_id, "annotator": coach, "verdict": "correct"})
        store.add_annotator(project, "kim")
        at = AppTest.from_file(str(ROOT / "pages" / "2_Label.py"), default_timeout=60)
        at.session_state["annotator"] = "kim"
        at.run()
        times, shown = [], []
        for i in range(n_verdicts):
            # What the in-browser labeller sends after a key: its outbox, the clip it shows now, the players it has.
            [element] = at.get("bidi_component")
            queue = json.loads(element.proto.json)["queue"]
            card = queue[0]
            entry = {"rid": uuid.uuid4().hex, "type": "verdict", "clip_id": card["id"],
                     "verdict": "correct" if i % 2 else "incorrect", "names": [c["name"] for c in card["criteria"]],
                     "failed": [], "seconds": 2.0, "exercise": card["exercise"], "start_frame": card["start_frame"],
                     "end_frame": card["end_frame"]}
            at.session_state["label_surface"] = {"sync": {
                "outbox": [entry], "showing": queue[1]["id"], "have": [c["player"] for c in queue],
                "jump": at.session_state["label_jump"]}}
            t0 = time.perf_counter()
            at.run()
            times.append((time.perf_counter() - t0) * 1000)
            shown.append(at.session_state["label_clip"])
        assert not at.exception, at.exception
        saved = [r for r in store.current_labels(project) if r["annotator"] == "kim"]
    times.sort()
    median, p95 = statistics.median(times), times[int(0.95 * (len(times) - 1))]
    print(f"\n== verdict to next clip, {n_clips} clips, {n_verdicts} verdicts (AppTest script runs) ==")
    print(f"median {median:.0f} ms, p95 {p95:.0f} ms, max {times[-1]:.0f} ms "
          f"(bar: 150 ms; ratio median/bar {median / 150:.2f}, p95/bar {p95 / 150:.2f})")
    print(f"{len(saved)} verdicts saved, {len(set(shown))} different clips shown")
    return {"clips": n_clips, "median_ms": median, "p95_ms": p95}


if __name__ == "__main__":
    main()
