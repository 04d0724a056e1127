"""Command line: `python -m curation ingest|stats|import|export|worker` (design.md 4.2), a thin layer over the API."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from curation import jobs, store
from curation.accounts import AccountError
from curation.dataset import LAYOUTS, DatasetError, export_folder, import_folder
from curation.project import Project, UnsafePath


def common_options() -> argparse.ArgumentParser:
    """--data and --json, which every command of curation and model takes."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--data", help="project folder (default: $FORMCHECK_DATA or ./data)")
    p.add_argument("--json", metavar="PATH", help="also write a machine-readable result to PATH")
    return p


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = argparse.ArgumentParser(prog="python -m curation", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("ingest", parents=[common], help="download or read videos, track pose, cut repetition clips")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="a video URL or a local video file")
    p.add_argument("--exercise", help="exercise shown in the videos (e.g. squat)")
    sub.add_parser("stats", parents=[common], help="counts of videos, clips and labelled clips")
    p = sub.add_parser("import", parents=[common], help="load a pose dataset folder (clips.csv + poses/*.npy)")
    p.add_argument("folder", type=Path)
    p.add_argument("--layout", default="bp33", choices=sorted(LAYOUTS), help="keypoint layout of the arrays")
    p = sub.add_parser("export", parents=[common], help="write the project's clips as a pose dataset folder")
    p.add_argument("folder", type=Path)
    sub.add_parser("worker", parents=[common], help="run queued background jobs (started by the app)")
    p = sub.add_parser("passwd", parents=[common], help="set a coach's password in a password list (shared use)")
    p.add_argument("name")
    p.add_argument("--file", type=Path, required=True, help="the list the app reads from $FORMCHECK_PASSWORDS")
    return parser


def _ingest(project: Project, args: argparse.Namespace) -> tuple[object, int]:
    from curation.pipeline import USER_ERRORS, ingest_source  # imports MediaPipe: only for this command

    results = []
    for source in args.sources:
        def progress(fraction: float, message: str = "", _s=source) -> None:
            print(f"\r{_s[:40]}: {fraction:4.0%} {message[:50]:<50}", end="", file=sys.stderr, flush=True)

        try:
            result = ingest_source(project, source, args.exercise, progress=progress)
        except USER_ERRORS as exc:
            result = {"source": source, "video_id": None, "frames": 0, "fps": None, "person_share": None,
                      "trimmed_share": None, "clips": 0, "error": str(exc)}
        print(file=sys.stderr)
        results.append(result)
        if result["error"]:
            print(f"FAILED {source}: {result['error']}")
        else:
            again = " (already ingested)" if result.get("existing") else ""
            print(
                f"{source}: {result['clips']} clips from {result['frames']} frames at {result['fps']:g} fps, "
                f"person in {result['person_share']:.0%}, trimmed {result['trimmed_share']:.0%}{again}"
            )
    return results, int(any(r["error"] for r in results))


def _stats(project: Project, args: argparse.Namespace) -> tuple[object, int]:
    s = store.stats(project)
    print(f"{s['videos']} videos, {s['clips']} clips, {s['labelled']} labelled")
    for name, entry in s["per_exercise"].items():
        print(f"  {name}: {entry['clips']} clips, {entry['labelled']} labelled")
    return s, 0


def _import(project: Project, args: argparse.Namespace) -> tuple[object, int]:
    r = import_folder(project, args.folder, args.layout)
    print(f"imported {r.added} of {r.clips} clips ({r.labelled} labelled); {r.skipped} already present")
    return r.__dict__, 0


def _export(project: Project, args: argparse.Namespace) -> tuple[object, int]:
    n = export_folder(project, args.folder)
    print(f"exported {n} clips to {args.folder}")
    return {"clips": n, "folder": str(args.folder)}, 0


def _worker(project: Project, args: argparse.Namespace) -> tuple[object, int]:
    return {"jobs": jobs.run_worker(project)}, 0


def _passwd(project: Project, args: argparse.Namespace) -> tuple[object, int]:
    import getpass

    from curation.accounts import set_password

    password = getpass.getpass("Password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    set_password(args.file, args.name, password)
    print(f"password set for {args.name} in {args.file}")
    return {"name": args.name}, 0


COMMANDS = {"ingest": _ingest, "stats": _stats, "import": _import, "export": _export, "worker": _worker, "passwd": _passwd}


def run_command(args: argparse.Namespace, commands: dict, user_errors: tuple[type[Exception], ...]) -> int:
    """Open the project, run the command, say a user's error in one line (exit 2), write --json if asked."""
    try:
        project = Project.open(args.data)
        result, status = commands[args.command](project, args)
    except (*user_errors, UnsafePath, store.StoreError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return status


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser().parse_args(argv), COMMANDS, (DatasetError, AccountError))


if __name__ == "__main__":
    sys.exit(main())
