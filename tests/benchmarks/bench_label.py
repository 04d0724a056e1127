"""Benchmark: server time from a verdict to the next clip shown, on a project of 10,000 clips (bar: 150 ms).

Drives the real Label page with Streamlit's AppTest as the browser does: the page is drawn once, then each
verdict is one message of the in-browser labeller (its outbox, the clip it shows now, the players it holds),
which reruns the page's `labelling` fragment alone (FragmentRuns). Each figure is that run: the verdict saved,
the clips the browser holds refilled and claimed, the player of the clip that joins them built, the panels
about the clip on screen laid out (the browser shows the next clip at once; this is the server's side, in the
background: tests/benchmarks/bench_label_browser.py measures the browser). Wall and CPU time of this process;
the CPU time is less disturbed by other work on a shared machine. Not included: what a Streamlit server adds
to each run (the websocket; gc.collect() after every run unless runner.postScriptGC is off: 0.16 s CPU once
torch and scikit-learn are loaded; bench_label_browser's load run measures the server's CPU per verdict). Run as
`python tests/benchmarks/bench_label.py [--quick]`.
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


class FragmentRuns:
    """AppTest runs as a browser and a server make them on a page with a fragment: the page's fragments and its
    compiled script kept from one run to the next, as a server keeps them (AppTest makes new ones for each run:
    compiling this page costs more than a fragment run), and runs of the page's fragment alone, as Streamlit
    runs it when a widget inside it (the labeller) sends a value. Streamlit 1.60's AppTest has no fragment runs
    of its own: this swaps three names of its script runner module while in a `with` block. A fragment run's
    element tree holds the fragment's elements only."""

    def __init__(self) -> None:
        from streamlit.runtime.fragment import MemoryFragmentStorage
        from streamlit.runtime.scriptrunner.script_cache import ScriptCache

        self.storage = MemoryFragmentStorage()
        self.scripts = ScriptCache()
        self.fragment: list[str] | None = None  # the fragment ids the next run runs (None: the whole page)

    def __enter__(self) -> FragmentRuns:
        from streamlit.testing.v1 import local_script_runner as runner

        self._saved = runner.MemoryFragmentStorage, runner.ScriptCache, runner.RerunData
        rerun_data = runner.RerunData
        runner.MemoryFragmentStorage = lambda: self.storage
        runner.ScriptCache = lambda: self.scripts
        runner.RerunData = lambda **kw: rerun_data(**kw, fragment_id_queue=list(self.fragment or []))
        return self

    def __exit__(self, *exc) -> None:
        from streamlit.testing.v1 import local_script_runner as runner

        runner.MemoryFragmentStorage, runner.ScriptCache, runner.RerunData = self._saved

    def run_fragment(self, at):
        """Run the page's one top-level fragment alone (what a message of a widget inside it causes)."""
        top = [f for f, parent in self.storage._parent_by_id.items() if parent is None]
        assert len(top) == 1, f"the page has {len(top)} top-level fragments"
        self.fragment = top
        try:
            return at.run()
        finally:
            self.fragment = None


def labeller_data(at) -> dict:
    """What the page gave the in-browser labeller in its last run (curation/labeller.js reads it)."""
    [element] = at.get("bidi_component")
    return json.loads(element.proto.json)


def verdict_message(at, queue: list[dict], verdict: str) -> dict:
    """The message the labeller sends after a verdict key on the first clip of `queue` (the cards it holds):
    its outbox holding that verdict, the next clip on screen, the players it holds."""
    card = queue[0]
    entry = {"rid": uuid.uuid4().hex, "type": "verdict", "clip_id": card["id"], "verdict": verdict,
             "names": [c["name"] for c in card["criteria"]], "failed": [], "seconds": 2.0, "exercise": card["exercise"],
             "start_frame": card["start_frame"], "end_frame": card["end_frame"]}
    return {"sync": {"outbox": [entry], "showing": queue[1]["id"] if len(queue) > 1 else None,
                     "have": [c["player"] for c in queue], "jump": at.session_state["label_jump"],
                     "sent": time.time()}}


def verdict_runs(runs: FragmentRuns, at, n_verdicts: int) -> tuple[list[float], list[float], list[str]]:
    """Send `n_verdicts` verdict messages to the Label page `at` (label_page, inside `runs`), each as the
    fragment run it causes; returns wall times, CPU times (ms) and the clip shown after each. The cards the
    browser holds are those of every message's answer, as labeller.js keeps them."""
    held = labeller_data(at)["queue"]
    walls, cpus, shown = [], [], []
    for i in range(n_verdicts):
        at.session_state["label_surface"] = verdict_message(at, held, ("incorrect", "correct")[i % 2])
        cpu, t0 = time.process_time(), time.perf_counter()
        runs.run_fragment(at)
        walls.append((time.perf_counter() - t0) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
        assert not at.exception, at.exception
        data = labeller_data(at)
        assert data["acked"], "the verdict was not saved"
        held = data["queue"]
        shown.append(at.session_state["label_clip"])
    return walls, cpus, shown


def label_page(coach: str = "kim", timeout: float = 600):
    """The Label page drawn once (the whole page) for `coach`, ready for verdict_runs (inside FragmentRuns)."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "pages" / "2_Label.py"), default_timeout=timeout)
    at.session_state["annotator"] = coach
    at.run()
    assert not at.exception, at.exception
    return at


def summary(times: list[float]) -> tuple[float, float]:
    """(median, p95) of these times."""
    times = sorted(times)
    return statistics.median(times), times[int(0.95 * (len(times) - 1))]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2,000 clips and 15 verdicts")
    args = parser.parse_args(argv)
    n_clips, n_verdicts = (2_000, 15) if args.quick else (10_000, 40)
    sys.path.insert(0, str(ROOT))
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
        with FragmentRuns() as runs:
            walls, cpus, shown = verdict_runs(runs, label_page(timeout=60), n_verdicts)
        saved = [r for r in store.current_labels(project) if r["annotator"] == "kim"]
    (median, p95), (cpu_median, cpu_p95) = summary(walls), summary(cpus)
    print(f"\n== verdict to next clip, {n_clips} clips, {n_verdicts} verdicts (fragment runs of the Label page) ==")
    print(f"wall median {median:.0f} ms, p95 {p95:.0f} ms, max {max(walls):.0f} ms; CPU median {cpu_median:.0f} ms, "
          f"p95 {cpu_p95:.0f} ms (bar: 150 ms; ratio median/bar {median / 150:.2f}, p95/bar {p95 / 150:.2f})")
    print(f"{len(saved)} verdicts saved, {len(set(shown))} different clips shown")
    assert len(saved) == n_verdicts and len(set(shown)) == n_verdicts
    return {"clips": n_clips, "median_ms": median, "p95_ms": p95, "cpu_median_ms": cpu_median, "cpu_p95_ms": cpu_p95}


if __name__ == "__main__":
    main()
