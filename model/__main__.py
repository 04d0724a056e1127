"""Command line: `python -m model train|suggest|simulate|explain|assess` (design.md 4.2), thin layers over model.train,
model.suggest and model.simulate."""

from __future__ import annotations

import argparse
import math
import sys

from curation.__main__ import common_options, positive_int, run_command
from curation.project import Project
from model.registry import MODELS, UnknownModel


def build_parser() -> argparse.ArgumentParser:
    from model.calibration import METHODS as CALIBRATIONS
    from model.train import AUTO, AUTO_MODELS, RunConfig

    default = RunConfig()
    parser = argparse.ArgumentParser(prog="python -m model", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", parents=[common_options()],
                       help="train on the labelled clips and evaluate with a grouped split")
    p.add_argument("--model", default=default.model,
                   help=f"{AUTO} (pick one of {', '.join(AUTO_MODELS)} by grouped folds inside each training part) "
                        f"or one of {', '.join(MODELS)} (default {default.model})")
    p.add_argument("--calibration", choices=("auto", *CALIBRATIONS),
                   help="map of p(incorrect) fitted inside each training part (default: auto for --model auto, "
                        "none otherwise)")
    p.add_argument("--folds", type=int, default=default.folds, help="K of the stratified grouped K-fold")
    p.add_argument("--holdout", type=float, metavar="SHARE",
                   help="evaluate on one grouped holdout of this share (e.g. 0.2) instead of K-fold")
    p.add_argument("--seed", type=int, default=default.seed)
    p.add_argument("--epochs", type=int, help=f"at most this many epochs per fit (default {default.train.epochs})")
    p.add_argument("--input", choices=("auto", "whole", "windows"), default="auto",
                   help="whole clips, or 20-frame windows voting on the verdict (default: the model's measured best)")
    p.add_argument("--augment", type=int, help="augmented copies of each training clip (default: 2 for the networks, "
                   "0 for the baseline)")
    p.add_argument("--group", choices=("video", "athlete", "channel"), default=default.group,
                   help="what the grouped split keeps together (default video; clips without an athlete or "
                        "channel are grouped by video)")
    _suggest_options(sub)
    _simulate_options(sub)
    _explain_options(sub)
    _runs_options(sub)
    _assess_options(sub)
    return parser


def _suggest_options(sub) -> None:
    from model.active import DEFAULT_STRATEGY, STRATEGIES

    p = sub.add_parser("suggest", parents=[common_options()],
                       help="the unlabelled clips to label next, each with its score and reason")
    p.add_argument("--strategy", default=DEFAULT_STRATEGY, help=f"one of {', '.join(STRATEGIES)} "
                   f"(default {DEFAULT_STRATEGY})")
    p.add_argument("--k", type=positive_int, default=10, help="how many clips (default 10)")
    p.add_argument("--exercise", help="only clips of this exercise")
    p.add_argument("--run", help="score with this run instead of the chosen one (see `runs`)")


def _simulate_options(sub) -> None:
    from model.active import STRATEGIES
    from model.simulate import SimulateOptions

    default = SimulateOptions()
    p = sub.add_parser("simulate", parents=[common_options()],
                       help="replay active learning on the labelled clips: learning curves of a strategy and random")
    p.add_argument("--strategy", default=default.strategy, help=f"one of {', '.join(STRATEGIES)} "
                   f"(default {default.strategy})")
    p.add_argument("--seed-size", type=int, default=default.seed_size, help="clips labelled before the first model")
    p.add_argument("--step", type=int, default=default.step, help="clips labelled per round")
    p.add_argument("--seeds", type=int, default=default.seeds, help="repetitions averaged into each curve")
    p.add_argument("--model", default=default.model, help=f"one of {', '.join(MODELS)} (default {default.model})")
    p.add_argument("--test-share", type=float, default=default.test_share, help="share of the grouped test part")
    p.add_argument("--rounds", type=int, help="stop after this many rounds (default: until every clip is used)")
    p.add_argument("--growth", type=float, default=default.growth,
                   help=f"each round labels at least this times the clips labelled so far (default {default.growth}; "
                        "1 = even steps of --step)")
    p.add_argument("--splits", type=int, default=default.splits,
                   help="repeat the whole simulation on this many grouped test parts (default 1)")


def _runs_options(sub) -> None:
    sub.add_parser("runs", parents=[common_options()],
                   help="the finished runs with their key metrics; * marks the one that scores suggestions")
    p = sub.add_parser("promote", parents=[common_options()],
                       help="make a run the one that scores suggestions (until another promotion or --withdraw)")
    p.add_argument("run", metavar="RUN", nargs="?", help="a run id from `python -m model runs`")
    p.add_argument("--withdraw", action="store_true",
                   help="end the standing promotion: the best run on the current labels scores again")
    p.add_argument("--by", default="command line", help="who promotes (recorded with the promotion)")
    p.add_argument("--note", default="", help="why (recorded with the promotion)")
    p = sub.add_parser("name", parents=[common_options()],
                       help="name and/or annotate a run (a new naming event: the last one counts)")
    p.add_argument("run", metavar="RUN", help="a run id from `python -m model runs`")
    p.add_argument("--name", help="a short name (at most 80 characters; \"\" clears it)")
    p.add_argument("--note", help="a note on the run (at most 1000 characters; \"\" clears it)")
    p.add_argument("--by", default="command line", help="who names it (recorded with the name)")
    p = sub.add_parser("compare", parents=[common_options()],
                       help="two runs side by side: settings, label sets, metrics (B minus A), changed verdicts")
    p.add_argument("a", metavar="A", help="a run id from `python -m model runs`")
    p.add_argument("b", metavar="B", help="another run id")
    p = sub.add_parser("delete", parents=[common_options()],
                       help="delete a run for good (its folder; recorded in the audit log); needs --yes")
    p.add_argument("run", metavar="RUN", help="a run id from `python -m model runs`")
    p.add_argument("--yes", action="store_true", help="confirm: the run's models and predictions cannot come back")


def _explain_options(sub) -> None:
    p = sub.add_parser("explain", parents=[common_options()],
                       help="which frames and joints a run's verdict on a clip rests on (from the model that "
                            "made the clip's out-of-fold prediction when the clip was evaluated)")
    p.add_argument("clip_id", metavar="CLIP_ID")
    p.add_argument("--run", help="explain with this run instead of the current one (promoted, else the best)")


def _assess_options(sub) -> None:
    p = sub.add_parser("assess", parents=[common_options()],
                       help="judge each repetition of a new video (a file or an allowed link) with a run, without "
                            "adding the video to the dataset")
    p.add_argument("source", metavar="SOURCE", help="a video file, or a link from an allowed host")
    p.add_argument("--exercise", required=True, help="the exercise the video shows (one of the catalogue's)")
    p.add_argument("--run", help="judge with this run instead of the current one (promoted, else the best)")
    p.add_argument("--keep", action="store_true", help="also add the video to the dataset (as ingest would)")


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
    for name, entry in (metrics.get("per_view") or {}).items():
        lines.append(f"  {name} view: macro-F1 {_fmt(entry['macro_f1'])} (n={entry['n']})")
    if metrics.get("picked"):
        inner = metrics["auto"].get("inner_macro_f1") or {}
        scores = ", ".join(f"{k} {_fmt(v)}" for k, v in inner.items())
        lines.append(f"final model: {metrics['picked']}" + (f" (inner macro-F1: {scores})" if scores else "")
                     + f", calibration {metrics['calibration']}: ECE {_fmt(metrics.get('ece_uncalibrated'))} "
                       f"before, {_fmt(metrics['ece'])} after")
    for key, entry in (metrics.get("per_criterion") or {}).items():
        if entry.get("n_scored"):
            lines.append(f"  {key}: p(fail) AUC {_fmt(entry['auc'])}, F1 {_fmt(entry['f1'])} "
                         f"({entry['n_fail']} fail of {entry['n']})")
    lines.append(f"trained in {metrics['train_seconds']:.1f} s; final model scores "
                 f"{metrics['predict_ms_per_clip']:.2f} ms per clip")
    return "\n".join(lines)


def _train(project: Project, args: argparse.Namespace) -> tuple[object, int]:
    from model.train import RunConfig, train_run

    params = {"model": args.model, "folds": args.folds, "holdout": args.holdout, "seed": args.seed,
              "augment": args.augment, "epochs": args.epochs, "input": args.input, "group": args.group,
              "calibration": args.calibration}
    config = RunConfig.from_params(params)

    def progress(fraction: float, message: str = "") -> None:
        print(f"\r{fraction:4.0%} {message[:60]:<60}", end="", file=sys.stderr, flush=True)

    metrics = train_run(project, config, progress=progress)
    print(file=sys.stderr)
    print(summary(metrics))
    return metrics, 0


def _suggest(project: Project, args: argparse.Namespace) -> tuple[object, int]:
    from model.suggest import suggest

    result = suggest(project, k=args.k, strategy=args.strategy, exercise=args.exercise, run_id=args.run)
    source = f"run {result.run_id}" if result.run_id else "no run yet (cold start)"
    print(f"{len(result.items)} of {result.pool} unlabelled clips, {result.strategy}, scored by {source}")
    for note in result.notes:
        print(f"  ({note})")
    for s in result.items:
        p = "      " if s.p_incorrect is None else f"p={s.p_incorrect:.2f}"
        print(f"{s.clip_id}  {p}  score {s.score:.3f}  {s.reason}")
    return result.as_dict(), 0


def _simulate(project: Project, args: argparse.Namespace) -> tuple[object, int]:
    from model.simulate import RANDOM, SimulateOptions, simulate

    options = SimulateOptions(strategy=args.strategy, seed_size=args.seed_size, step=args.step, seeds=args.seeds,
                              model=args.model, test_share=args.test_share, rounds=args.rounds, growth=args.growth,
                              splits=args.splits)

    def progress(fraction: float, message: str = "") -> None:
        print(f"\r{fraction:4.0%} {message[:60]:<60}", end="", file=sys.stderr, flush=True)

    result = simulate(project, options, progress=progress)
    print(file=sys.stderr)
    splits = len(result["splits"])
    where = (f"{result['n_pool']} clips to label, {result['n_test']} tested ({result['test_groups']} groups)"
             if splits == 1 else f"{splits} grouped test splits")
    print(f"{where}; macro-F1 with all of them {_fmt(result['full_f1'])}; {len(result['seeds'])} seeds; "
          f"{result['seconds']:.0f} s")
    for name in result["curves"]:
        reached = result["labels_to_95"][name]
        print(f"  {name}: 95 % of it after {reached if reached is not None else 'never'} labels, "
              f"area under the curve {_fmt(result['auc'][name])}")
    if result["strategy"] != RANDOM:
        saving = result["label_saving"]
        print(f"labels saved against random order: {'n/a' if saving is None else f'{saving:.0%}'}")
        if splits > 1:
            name = result["strategy"]
            print(f"area under the curve over {splits} splits: {name} {_fmt(result['auc_mean'][name])} "
                  f"+/- {_fmt(result['auc_sd'][name])}, random {_fmt(result['auc_mean'][RANDOM])} "
                  f"+/- {_fmt(result['auc_sd'][RANDOM])}; {name} - random (paired by split) "
                  f"{_fmt(result['auc_diff_mean'][name])} +/- {_fmt(result['auc_diff_sd'][name])}")
    return result, 0


def _runs(project: Project, args: argparse.Namespace) -> tuple[object, int]:
    from model.choice import table

    listing = table(project)
    if not listing["runs"]:
        print("no finished runs yet")
    for r in listing["runs"]:
        print(f"{'*' if r['current'] else ' '} {r['run_id']}  {r['model']:<11} macro-F1 {_fmt(r['macro_f1'])}  "
              f"bal. acc. {_fmt(r['balanced_accuracy'])}  AUC {_fmt(r['auc'])}  "
              f"{r['n_clips']} clips  {r['created_at'][:19]}  {r['split']}")
        for what in ("name", "note"):
            if r[what]:
                print(f"    {what}: {' '.join(r[what].split())}")
    if listing["current"]:
        print(f"* scores suggestions: {listing['reason']}")
    return listing, 0


def _promote(project: Project, args: argparse.Namespace) -> tuple[object, int]:
    from model.choice import current, promote, withdraw

    if args.withdraw == bool(args.run):
        raise PromoteUsage("give a RUN to promote, or --withdraw (not both)")
    event = withdraw(project, args.by, args.note) if args.withdraw else promote(project, args.run, args.by, args.note)
    chosen = current(project)
    print(f"suggestions are now scored by {chosen.run_id or 'no run (cold start)'}: {chosen.reason}")
    return {**event, "current": chosen.run_id, "reason": chosen.reason}, 0


class PromoteUsage(ValueError):
    """`promote` with neither or both of RUN and --withdraw."""


class RegistryUsage(ValueError):
    """`name` without --name or --note, `delete` without --yes."""


def _name(project: Project, args: argparse.Namespace) -> tuple[object, int]:
    from model.runs import name_run

    if args.name is None and args.note is None:
        raise RegistryUsage("give --name and/or --note (nothing was changed)")
    event = name_run(project, args.run, args.by, args.name, args.note)
    print(f"run {event['run_id']}: name {event['name']!r}, note {event['note']!r}")
    return event, 0


def _delete(project: Project, args: argparse.Namespace) -> tuple[object, int]:
    from curation.accounts import cli_actor
    from model.choice import current
    from model.runs import delete_run

    if not args.yes:
        raise RegistryUsage(f"deleting run {args.run} cannot be undone: add --yes to confirm (nothing was deleted)")
    gone = delete_run(project, args.run, cli_actor())
    chosen = current(project)
    print(f"deleted run {gone['run_id']}; suggestions are now scored by {chosen.run_id or 'no run (cold start)'}")
    return {"deleted": gone, "current": chosen.run_id, "reason": chosen.reason}, 0


def _compare(project: Project, args: argparse.Namespace) -> tuple[object, int]:
    from model.compare import compare

    c = compare(project, args.a, args.b)
    print(f"A = {c.a}, B = {c.b} (differences are B minus A)")
    for row in c.settings:
        if not row["same"]:
            print(f"  setting {row['setting']}: {row['a']} -> {row['b']}")
    print(f"  label sets: {len(c.only_a)} clips only in A, {len(c.only_b)} only in B, {len(c.relabelled)} relabelled"
          + (f" ({c.holdout_note})" if c.holdout_note else ""))
    for row in c.metrics:
        if row["metric"] in ("macro_f1", "balanced_accuracy", "auc", "ece"):
            print(f"  {row['metric']:<18} A {_fmt(row['a'])}  B {_fmt(row['b'])}  B-A {_fmt(row['diff'])}")
    for row in c.per_exercise:
        print(f"  {row['exercise']:<18} macro-F1 A {_fmt(row['macro_f1_a'])} (n {row['n_a']})  "
              f"B {_fmt(row['macro_f1_b'])} (n {row['n_b']})  B-A {_fmt(row['diff'])}")
    print(f"  verdicts: {len(c.changed)} of the {c.n_both} clips both runs judged changed")
    return c.as_dict(), 0


def _explain(project: Project, args: argparse.Namespace) -> tuple[object, int]:
    from model.runs import explain_clip

    why = explain_clip(project, args.clip_id, args.run)
    print(f"clip {why['clip_id']}, run {why['run_id']}, {why['source']} model: p(incorrect) "
          f"{why['p_incorrect']:.3f}")
    if why["note"]:
        print(f"  ({why['note']})")
    weights = why["frame_weights"]
    peak = max(range(len(weights)), key=weights.__getitem__)
    print(f"  frames: {why['frames']}, the verdict rests most on frame {peak}")
    print("  joints: " + ", ".join(f"{name} {why['joint_weights'][name]:.2f}" for name in why["top_joints"]))
    return why, 0


def _assess(project: Project, args: argparse.Namespace) -> tuple[object, int]:
    from model.assess import assess_source

    def progress(fraction: float, message: str = "") -> None:
        print(f"\r{fraction:4.0%} {message[:60]:<60}", end="", file=sys.stderr, flush=True)

    try:
        result = assess_source(project, args.source, args.exercise, args.run, keep=args.keep, progress=progress)
    finally:
        print(file=sys.stderr)  # ends the progress line, so that a refusal is a line of its own
    s = result.summary
    tempo = "" if s["seconds_per_rep"] is None else f", {s['seconds_per_rep']:.1f} s per repetition"
    print(f"{s['count']} repetitions of {result.exercise} judged by run {result.run_id}: {s['incorrect']} "
          f"incorrect{tempo}")
    for r in result.reps:
        cues = f"  -> {'; '.join(r['cues'])}" if r["cues"] else ""
        print(f"  {r['rep']:>2}. frames {r['start_frame']}-{r['end_frame']} ({r['seconds']:.1f} s): {r['verdict']} "
              f"(p={r['p_incorrect']:.2f}){cues}")
    for joint, a in s["asymmetry"].items():
        print(f"  {joint}: left-right range {a['range_difference']:+.1f} degrees")
    if result.kept:
        print(f"added to the dataset: video {result.kept['video_id']}, {result.kept['clips']} clips"
              + (" (already in the project)" if result.kept.get("existing") else ""))
    # design.md 4.3: the JSON is the list of repetitions, in order.
    return [{k: v for k, v in r.items() if k not in ("rep", "failed")} for r in result.reps], 0


COMMANDS = {"runs": _runs, "assess": _assess, "promote": _promote, "name": _name, "delete": _delete,
            "compare": _compare, "train": _train, "suggest": _suggest, "simulate": _simulate, "explain": _explain}


def main(argv: list[str] | None = None) -> int:
    from curation.pipeline import USER_ERRORS as INGEST_ERRORS
    from model.active import EmptyPool, PoolExhausted
    from model.assess import NoRepetition, UnknownExerciseName
    from model.compare import SameRun
    from model.runs import ClipNotFound, RunNotFound, RunTextRefused, UnknownExercise
    from model.simulate import SimulationRefused
    from model.suggest import UnknownStrategy
    from model.train import BadRunConfig, TrainingRefused

    return run_command(build_parser().parse_args(argv), COMMANDS,
                       (*INGEST_ERRORS, NoRepetition, UnknownExerciseName, TrainingRefused, BadRunConfig, UnknownModel, SimulationRefused, EmptyPool, PoolExhausted,
                        RunNotFound, UnknownStrategy, ClipNotFound, UnknownExercise, PromoteUsage,
                        RunTextRefused, RegistryUsage, SameRun))


if __name__ == "__main__":
    sys.exit(main())
