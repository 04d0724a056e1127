"""Benchmark: the project keeps its speed as it grows (issue 13), at 10,000 and 100,000 clips.

For each size: the server time of a verdict (store.add_label_event, then store.next_clip and store.upcoming_clips
for the queue: what the Label page asks on each verdict; bar 150 ms), next_clip and progress_of alone, the counts
(store.project_counts: the Home page's; store.stats with the dataset statistics), current_labels,
consensus_labels and one page of the Dataset page's clip table (store.clip_table) after a write (every kept read
stale) and unchanged, the first draw of each page by a new session after a write (bar 1 s; Suggest on a cold
start: no run), and importing tiny arrays (2,000 and 10,000 clips, --quick 100 and 500; per 1,000 clips); then
the growth ratio large/small of each: near 10 grows linearly, near 1 not at all. Projects are built by inserting
rows (one shared pose array), not by importing, so that 100,000 clips take seconds. Run as
`python tests/benchmarks/bench_scale.py [--quick]` (--quick: 2,000 and 20,000 clips).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
EXERCISES = ("squat", "push-up", "lunge")
PAGES = ("app.py", "pages/1_Ingest.py", "pages/2_Label.py", "pages/3_Dataset.py", "pages/4_Train.py",
         "pages/5_Suggest.py", "pages/6_Admin.py", "pages/7_Assess.py")


def build_project(root: Path, clips: int):
    """A project of `clips` imported clips sharing one pose array; coaches ann and bob labelled the first
    quarter, a hundred clips are excluded and a hundred had their bounds moved (the queries' slow cases)."""
    from curation import store
    from curation.project import Project

    project = Project.open(root)
    rng = np.random.default_rng(0)
    np.save(project.poses / "shared.npy", rng.random((60, 33, 4)).astype(np.float32))
    rows = [{"id": f"c{i:06d}", "exercise": EXERCISES[i % 3], "start_frame": 0, "end_frame": 60, "fps": 30.0,
             "method": "imported", "pose_path": "poses/shared.npy", "group_name": f"g{i % 200}",
             "complexity": float(rng.random())} for i in range(clips)]
    events = [{"clip_id": c["id"], "annotator": coach, "verdict": ("correct", "incorrect")[(i + j) % 3 == 0]}
              for j, coach in enumerate(("ann", "bob")) for i, c in enumerate(rows[: clips // 4])]
    store.add_clips(project, rows, events)
    for i in range(0, clips, max(1, clips // 100)):
        store.set_excluded(project, "lead", True, "benchmark", clip_id=f"c{i + 1:06d}")
        store.set_bounds(project, f"c{i + 2:06d}", 5, 55, "lead", pose_frames=60)
    store.add_annotator(project, "kim")
    return project


def _ms(fn, repeat: int = 1) -> float:
    """The fastest of `repeat` calls, in ms (the least disturbed by other work on the machine)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, (time.perf_counter() - t0) * 1000)
    return best


def _after_write(project, fn) -> float:
    """fn's time (ms) right after a write that changes nothing but makes every kept aggregate stale (the case
    of a page drawn after another coach's verdict)."""
    from curation import store

    clip = store.get_clip(project, "c000000")
    store.set_complexity(project, {clip["id"]: {k: clip[k] for k in (*store.COMPLEXITY_COLUMNS, "complexity")}})
    return _ms(fn)


def store_verdict_times(project, n_verdicts: int) -> list[float]:
    """The server work of a verdict (ms): the event written, the next clip chosen and claimed, the queue's next
    clips listed (the Label page refills its queue with these)."""
    from curation import store

    times = []
    clip = store.next_clip(project, "kim")
    for i in range(n_verdicts):
        t0 = time.perf_counter()
        store.add_label_event(project, {"clip_id": clip["id"], "annotator": "kim",
                                        "verdict": ("correct", "incorrect")[i % 2], "seconds": 3.0})
        clip = store.next_clip(project, "kim")
        store.upcoming_clips(project, "kim", current=clip["id"], limit=3)
        times.append((time.perf_counter() - t0) * 1000)
    return times


def verdict_times(n_verdicts: int) -> tuple[list[float], list[float]]:
    """The Label page's handling of one verdict message of its in-browser labeller (ms, wall): the run of the
    page's `labelling` fragment that the message causes (verdict saved, the clips the browser holds refilled and
    claimed, the new clip's player built, the panels about the clip on screen laid out), driven through AppTest
    as the browser sends it (tests/benchmarks/bench_label.verdict_runs: the labeller's value under its key, a
    fragment run), after one full draw of the page (a server adds its gc.collect() per run: see bench_label).
    Prints the median and p95; returns the wall and the CPU times."""
    from tests.benchmarks.bench_label import FragmentRuns, label_page, summary
    from tests.benchmarks.bench_label import verdict_runs as runs_of

    with FragmentRuns() as runs:
        walls, cpus, shown = runs_of(runs, label_page(), n_verdicts)
    assert len(set(shown)) == n_verdicts  # each verdict brought another clip
    (median, p95), (cpu_median, cpu_p95) = summary(walls), summary(cpus)
    print(f"verdict message (Label page fragment run), {n_verdicts} verdicts: wall median {median:.1f} ms, "
          f"p95 {p95:.1f} ms; CPU median {cpu_median:.1f} ms, p95 {cpu_p95:.1f} ms")
    return walls, cpus


def warm_up(pages: tuple[str, ...]) -> None:
    """Draw each page once on an empty project: what a running app has imported already is not timed."""
    from streamlit.testing.v1 import AppTest

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FORMCHECK_DATA"] = tmp
        for page in pages:
            AppTest.from_file(str(ROOT / page), default_timeout=300).run()


def first_draws(project, pages: tuple[str, ...]) -> dict[str, float]:
    """Each page's first script run for a new session right after a write (ms; every kept read stale, as after
    another coach's verdict), wall and CPU time of this process (the script's thread included: less disturbed
    by other work on a shared machine); modules are imported already, as in a running app. The Dataset page
    once per tab (the first, Clips, under the page's name)."""
    from streamlit.testing.v1 import AppTest

    out = {}
    empty = project.root / "empty_page.py"  # AppTest's own cost of a first run, to read the others against
    empty.write_text("import streamlit as st\n\nst.write('empty')\n")
    draws = [(str(empty), None)] + [(page, None) for page in pages]
    if "pages/3_Dataset.py" in pages:  # its tabs after the first, each drawn only while open
        draws += [("pages/3_Dataset.py", tab)
                  for tab in ("Videos", "Agreement", "Import / export", "Statistics", "Exercises & criteria")]
    for page, tab in draws:
        _after_write(project, lambda: None)
        at = AppTest.from_file(str(ROOT / page), default_timeout=900)
        at.session_state["annotator"] = "kim"
        if tab is not None:
            at.session_state["dataset_tab"] = tab
        name = "an empty page" if page == str(empty) else page if tab is None else f"{page} · {tab}"
        cpu = time.process_time()
        out[name] = _ms(at.run)
        out[f"{name} (cpu)"] = (time.process_time() - cpu) * 1000
        assert not at.exception, (page, at.exception)
    return out


def import_ms(folder: Path, clips: int) -> float:
    """Importing a dataset folder of `clips` tiny arrays into a new project (ms)."""
    from curation.dataset import import_folder
    from curation.project import Project
    from tests.benchmarks.bench_label import make_project

    source = make_project(folder / "source", clips)
    return _ms(lambda: import_folder(Project.open(folder / "project"), source))


def measure(clips: int, n_verdicts: int, pages: tuple[str, ...], import_clips: int) -> dict[str, float]:
    """Every figure of one project size (ms)."""
    from curation import store

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FORMCHECK_DATA"] = str(Path(tmp) / "project")
        project = build_project(Path(tmp) / "project", clips)
        fig: dict[str, float] = {}
        times = sorted(store_verdict_times(project, n_verdicts))
        fig["verdict (store) median"] = statistics.median(times)
        fig["verdict (store) p95"] = times[int(0.95 * (len(times) - 1))]
        if "pages/2_Label.py" in pages:
            walls, cpus = (sorted(t) for t in verdict_times(n_verdicts))
            fig["verdict (Label page run) median"] = statistics.median(walls)
            fig["verdict (Label page run) p95"] = walls[int(0.95 * (len(walls) - 1))]
            fig["verdict (Label page run) CPU median"] = statistics.median(cpus)
        fig["next_clip"] = _ms(lambda: store.next_clip(project, "kim"), 5)
        fig["progress_of"] = _ms(lambda: store.progress_of(project, "kim"), 5)
        fig["counts after a write"] = _after_write(project, lambda: store.project_counts(project))
        fig["stats after a write"] = _after_write(project, lambda: store.stats(project))
        fig["stats unchanged"] = _ms(lambda: store.stats(project), 3)
        fig["current_labels after a write"] = _after_write(project, lambda: store.current_labels(project))
        fig["consensus_labels after a write"] = _after_write(project, lambda: store.consensus_labels(project))
        fig["clip_table page after a write"] = _after_write(project, lambda: store.clip_table(project))
        fig["clip_table filtered page"] = _ms(lambda: store.clip_table(project, states=["disputed", "correct"],
                                                                       coach="bob", offset=200), 3)
        for page, ms in first_draws(project, pages).items():
            fig[f"first draw {page}"] = ms
        if import_clips:
            fig["import, per 1,000 clips"] = import_ms(Path(tmp), import_clips) * 1000 / import_clips
    return fig


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2,000 and 20,000 clips")
    parser.add_argument("--pages", nargs="*", help="pages to draw (default: every page)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    sizes = (2_000, 20_000) if args.quick else (10_000, 100_000)
    pages = tuple(args.pages) if args.pages is not None else PAGES
    verdicts = 12 if args.quick else 30
    warm_up(pages)
    small = measure(sizes[0], verdicts, pages, 100 if args.quick else 2_000)
    large = measure(sizes[1], verdicts, pages, 500 if args.quick else 10_000)
    print(f"\n== scale: {sizes[0]:,} and {sizes[1]:,} clips (ms; ratio large/small, 10 = linear) ==")
    print(f"{'figure':40s} {sizes[0]:>10,} {sizes[1]:>10,}  ratio")
    for key in small:
        if key in large:
            print(f"{key:40s} {small[key]:10.1f} {large[key]:10.1f} {large[key] / max(small[key], 1e-9):6.2f}")
        else:
            print(f"{key:40s} {small[key]:10.1f}")
    for key in large.keys() - small.keys():
        print(f"{key:40s} {'':10s} {large[key]:10.1f}")
    draws = {k: v for k, v in large.items() if k.startswith("first draw") and "empty" not in k and "cpu" not in k}
    slowest = max(draws, key=draws.get, default=None)
    empty = large.get("first draw an empty page", 0)
    verdict = large.get("verdict (Label page run) median", large["verdict (store) median"])
    print(f"bars at {sizes[1]:,}: verdict {verdict:.0f} ms (150), slowest first draw "
          f"{draws.get(slowest, 0):.0f} ms (1000: {slowest}; an empty page {empty:.0f} ms)")
    return {"small": small, "large": large}


if __name__ == "__main__":
    main()
