"""Command line: `python -m model train` (design.md 4.2), a thin layer over model.train."""

from __future__ import annotations

import argparse
import math
import sys

from curation.__main__ import common_options, run_command
from curation.project import Project
from model.registry import MODELS, UnknownModel


def build_parser() -> argparse.ArgumentParser:
    from model.train import RunConfig

    default = RunConfig()
    parser = argparse.ArgumentParser(prog="python -m model", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", parents=[common_options()],
                       help="train on the labelled clips and evaluate with a grouped split")
    p.add_argument("--model", default=default.model, help=f"one of {', '.join(MODELS)} (default {default.model})")
    p.add_argument("--folds", type=int, default=default.folds, help="K of the stratified grouped K-fold")
    p.add_argument("--holdout", type=float, metavar="SHARE",
                   help="evaluate on one grouped holdout of this share (e.g. 0.2) instead of K-fold")
    p.add_argument("--seed", type=int, default=default.seed)
    p.add_argument("--epochs", type=int, help=f"at most this many epochs per fit (default {default.train.epochs})")
    p.add_argument("--augment", type=int, help="augmented copies of each training clip (default: 2 for the networks, "
                   "0 for the baseline)")
    return parser


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def summary(metrics: dict) -> str:
    """The human summary of a run: split, headline metrics, per-exercise macro-F1, timings."""
    lines = [
        f"run {metrics['run_id']}: {metrics['model']}, {metrics['split']}",
        f"{metrics['n_clips']} clips in {metrics['n_groups']} groups: macro-F1 {_fmt(metrics['macro_f1'])}, "
        f"balanced accuracy {_fmt(metrics['balanced_accuracy'])}, accuracy {_fmt(metrics['accuracy'])}, "
        f"kappa {_fmt(metrics['kappa'])}, ECE {_fmt(metrics['ece'])}",
    ]
    for name, entry in metrics["per_exercise"].items():
        lines.append(f"  {name}: macro-F1 {_fmt(entry['macro_f1'])} (n={entry['n']})")
    lines.append(f"trained in {metrics['train_seconds']:.1f} s; final model scores "
                 f"{metrics['predict_ms_per_clip']:.2f} ms per clip")
    return "\n".join(lines)


def _train(project: Project, args: argparse.Namespace) -> tuple[object, int]:
    from model.train import RunConfig, train_run

    params = {"model": args.model, "folds": args.folds, "holdout": args.holdout, "seed": args.seed,
              "augment": args.augment, "epochs": args.epochs}
    config = RunConfig.from_params(params)

    def progress(fraction: float, message: str = "") -> None:
        print(f"\r{fraction:4.0%} {message[:60]:<60}", end="", file=sys.stderr, flush=True)

    metrics = train_run(project, config, progress=progress)
    print(file=sys.stderr)
    print(summary(metrics))
    return metrics, 0


COMMANDS = {"train": _train}


def main(argv: list[str] | None = None) -> int:
    from model.train import BadRunConfig, TrainingRefused

    return run_command(build_parser().parse_args(argv), COMMANDS, (TrainingRefused, BadRunConfig, UnknownModel))


if __name__ == "__main__":
    sys.exit(main())
