"""Benchmark: scoring 10,000 unlabelled clips for suggestions (design.md 7: at most 3 s on 2 cores).

Three figures on one project of 10,000 pose clips (1,000 of them labelled):
- suggest(): the page's and the CLI's path, from the latest run's saved scores and embeddings to a batch;
- scoring from scratch: load every clip's landmarks, compute features, p(incorrect) and embeddings with the
  run's model (what a run does for every clip, and what suggest() does for clips newer than the run);
- the Suggest page's first script run (AppTest), cold cache.
Run as `python tests/benchmarks/bench_suggest.py [--quick]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BAR_SECONDS = 3.0


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2,000 clips")
    args = parser.parse_args(argv)
    n_clips = 2_000 if args.quick else 10_000
    sys.path.insert(0, str(ROOT))
    import numpy as np
    from streamlit.testing.v1 import AppTest

    from curation import store
    from curation.dataset import import_folder
    from curation.project import Project
    from model import active, runs
    from model.features import load_clipset
    from model.suggest import suggest
    from model.train import RunConfig, train_run
    from tests.benchmarks.bench_label import make_project

    out: dict = {"clips": n_clips}
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["FORMCHECK_DATA"] = str(Path(tmp) / "project")
        project = Project.open(None)
        import_folder(project, make_project(Path(tmp) / "ds", n_clips))
        rng = np.random.default_rng(0)
        for clip_id in store.clip_ids(project)[: n_clips // 10]:
            store.add_label_event(project, {"clip_id": clip_id, "annotator": "kim",
                                            "verdict": ("correct", "incorrect")[int(rng.integers(2))]})
        start = time.perf_counter()
        run = train_run(project, RunConfig(model="baseline"))
        out["train_run_s"] = time.perf_counter() - start

        for strategy in active.STRATEGIES:
            start = time.perf_counter()
            result = suggest(project, k=10, strategy=strategy)
            out[f"suggest_{strategy}_s"] = time.perf_counter() - start
            assert len(result.items) == 10

        fitted = runs.load_fitted(project, run["run_id"])
        start = time.perf_counter()
        every = load_clipset(project, labelled_only=False)
        out["scratch_load_s"] = time.perf_counter() - start
        features = [every.features(i) for i in range(len(every))]
        loaded = time.perf_counter()
        fitted.predict_details(features, every.exercises, embed=True)  # p, window spread, embeddings: one pass
        out["scratch_load_features_s"] = loaded - start
        out["scratch_model_s"] = time.perf_counter() - loaded
        out["scratch_total_s"] = time.perf_counter() - start

        at = AppTest.from_file(str(ROOT / "pages" / "5_Suggest.py"), default_timeout=120)
        start = time.perf_counter()
        at.run()
        out["page_first_run_s"] = time.perf_counter() - start
        assert not at.exception, at.exception
        start = time.perf_counter()
        at.run()
        out["page_rerun_s"] = time.perf_counter() - start

    print(f"\n== suggestions on {n_clips:,} clips ({n_clips // 10:,} labelled), baseline run ==")
    print(f"training run (5-fold + final + scoring every clip): {out['train_run_s']:.1f} s")
    for strategy in active.STRATEGIES:
        s = out[f"suggest_{strategy}_s"]
        print(f"suggest() {strategy:<17} {s:6.2f} s   ratio to the {BAR_SECONDS:g} s bar {s / BAR_SECONDS:.2f}")
    print(f"scoring from scratch: load {out['scratch_load_s']:.2f} s + features "
          f"{out['scratch_load_features_s'] - out['scratch_load_s']:.2f} s, model "
          f"{out['scratch_model_s']:.2f} s, total {out['scratch_total_s']:.2f} s "
          f"(ratio {out['scratch_total_s'] / BAR_SECONDS:.2f})")
    print(f"Suggest page: first run {out['page_first_run_s']:.2f} s, rerun (cached) {out['page_rerun_s']:.2f} s")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
