"""`make bench`: every benchmark in one run, each printing its figures and ratios (no timed assertions)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.benchmarks import (  # noqa: E402
    bench_active,
    bench_assess,
    bench_batch,
    bench_label,
    bench_label_browser,
    bench_pipeline,
    bench_pose,
    bench_quality,
    bench_scale,
    bench_suggest,
    bench_train,
)


def main(argv: list[str]) -> None:
    quick = ["--quick"] if "--quick" in argv else []
    bench_pose.main(quick)
    bench_pipeline.main(quick)
    bench_assess.main(quick)
    bench_batch.main(quick)
    bench_label.main(quick)
    bench_label_browser.main(quick)
    bench_scale.main(quick)
    bench_train.main(quick)
    bench_quality.main(quick)
    bench_suggest.main(quick)
    bench_active.main(quick)


if __name__ == "__main__":
    main(sys.argv[1:])
