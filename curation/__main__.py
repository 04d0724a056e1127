"""Command line: `python -m curation ingest|stats|import|export|worker` (design.md 4.2), a thin layer over the API."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import sys
from pathlib import Path

from curation import jobs, store
from curation.accounts import AccountError, cli_actor
from curation.dataset import LAYOUTS, DatasetError, export_folder, import_folder, import_zip
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
    p.add_argument("--athlete", default="tracked", choices=["tracked", "largest", "most moving", "left", "right"],
                   help="where several people are in the picture, which one is the athlete (default: the one the "
                        "pose tracker follows); --athlete-at picks the person nearest a point instead")
    p.add_argument("--athlete-at", metavar="X,Y", help="the athlete is the person nearest this point (shares of the "
                   "width and height, e.g. 0.7,0.5)")
    p.add_argument("--side", choices=["left", "right", "top", "bottom"],
                   help="ingest only this half of the picture (one side of a split screen) as its own video")
    sub.add_parser("stats", parents=[common], help="counts of videos, clips and labelled clips, durations, "
                   "resolutions, person and trimmed shares, complexity, seconds per verdict")
    p = sub.add_parser("import", parents=[common], help="load a pose dataset folder (clips.csv + poses/*.npy) or a "
                       ".zip of one; an export of a whole project goes into an empty project whole")
    p.add_argument("folder", type=Path, help="the folder (or .zip) to import")
    p.add_argument("--layout", default="bp33", choices=sorted(LAYOUTS), help="keypoint layout of the arrays")
    p = sub.add_parser("export", parents=[common], help="write the project as a pose dataset folder, plus tables/ "
                       "and files/ from which import rebuilds it whole (README.md in the folder)")
    p.add_argument("folder", type=Path, help="a new or empty folder")
    p.add_argument("--include-excluded", action="store_true",
                   help="keep excluded clips in clips.csv, marked by their reason in an `excluded` column")
    p = sub.add_parser("batch", parents=[common], help="ingest every video of a manifest CSV (source, exercise, "
                       "optional athlete, group, note) as Ray tasks, on this machine or a Ray cluster")
    p.add_argument("manifest", type=Path, help="CSV with a row per video; relative paths are from its folder")
    p.add_argument("--address", help="join this Ray cluster (e.g. 10.0.0.5:6379); default: Ray on this machine")
    p.add_argument("--workers", type=positive_int, help="videos processed at once (default: one per CPU)")
    sub.add_parser("worker", parents=[common], help="run queued background jobs (started by the app)")
    p = sub.add_parser("passwd", parents=[common], help="set a person's password in a password list (shared use)")
    p.add_argument("name")
    p.add_argument("--file", type=Path, required=True, help="the list the app reads from $FORMCHECK_PASSWORDS")
    user_parser(sub, common)
    return parser


def _ingest(project: Project, args: argparse.Namespace) -> tuple[object, int]:
    from curation.ingest import BadConfiguration
    from curation.pipeline import USER_ERRORS, PipelineOptions, ingest_source  # imports MediaPipe: only here
    from curation import timeline

    try:
        point = tuple(float(v) for v in args.athlete_at.split(",")) if args.athlete_at else None
        if point is not None and (len(point) != 2 or not all(0 <= v <= 1 for v in point)):
            raise ValueError
    except ValueError:
        raise UsageError("--athlete-at takes X,Y: two numbers from 0 to 1") from None
    try:
        options = PipelineOptions(athlete="click" if point else args.athlete, athlete_point=point,
                                  side=args.side)  # reads FORMCHECK_ALLOWED_HOSTS
    except BadConfiguration as exc:
        raise UsageError(str(exc)) from None
    jobs.sweep(project)  # scratch folders of an ingest that was killed
    # Every temporary file of this command (pose chunks included) in one folder of the project, removed at the
    # end; if the command is killed, named by its pid, it is swept by the next ingest or worker.
    scratch = project.work / f"ingest-{os.getpid()}-cli"
    scratch.mkdir(exist_ok=True)
    results = []
    try:
        for source in args.sources:
            def progress(fraction: float, message: str = "", _s=source) -> None:
                print(f"\r{_s[:40]}: {fraction:4.0%} {message[:50]:<50}", end="", file=sys.stderr, flush=True)

            try:
                with jobs.temp_dir(scratch):
                    result = ingest_source(project, source, args.exercise, options=options, progress=progress,
                                           work_dir=scratch)
                result.update(timeline.ingest_spans(project, result["video_id"]))
            except USER_ERRORS as exc:
                result = {"source": source, "video_id": None, "frames": 0, "fps": None, "person_share": None,
                          "trimmed_share": None, "clips": 0, "error": str(exc), "cuts": [], "removed": [],
                          "flagged": [], "clip_bounds": [], "people": None}
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
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return results, int(any(r["error"] for r in results))


def _batch(project: Project, args: argparse.Namespace) -> tuple[object, int]:
    from curation.batch import ClusterUnavailable, ManifestError, read_manifest_file, run_batch
    from curation.ingest import BadConfiguration
    from curation.pipeline import PipelineOptions

    try:
        rows = read_manifest_file(args.manifest)
        options = PipelineOptions(pose_workers=1)  # reads FORMCHECK_ALLOWED_HOSTS
    except (ManifestError, BadConfiguration) as exc:
        raise UsageError(str(exc)) from None
    jobs.sweep(project)  # scratch folders of a batch or ingest that was killed

    def progress(fraction: float, message: str = "") -> None:
        print(f"\r[{'#' * int(30 * fraction):<30}] {message[:60]:<60}", end="", file=sys.stderr, flush=True)

    try:
        results = run_batch(project, rows, address=args.address, workers=args.workers, options=options,
                            progress=progress)
    except ClusterUnavailable as exc:
        raise UsageError(str(exc)) from None
    print(file=sys.stderr)
    for r in results:
        if r["error"]:
            print(f"FAILED {r['source']}: {r['error']}")
        else:
            again = " (already ingested)" if r.get("existing") else ""
            print(f"{r['source']}: {r['clips']} clips from {r['frames']} frames{again}")
    added = sum(not r["error"] and not r.get("existing") for r in results)
    print(f"{added} added, {sum(bool(r.get('existing')) for r in results)} already in the project, "
          f"{sum(bool(r['error']) for r in results)} failed")
    return results, int(any(r["error"] for r in results))


def _stats(project: Project, args: argparse.Namespace) -> tuple[object, int]:
    s = store.stats(project)
    print(f"{s['videos']} videos, {s['clips']} clips, {s['labelled']} labelled")
    for name, entry in s["per_exercise"].items():
        print(f"  {name}: {entry['clips']} clips, {entry['labelled']} labelled")
    print(f"{s['frames']} video frames, {s['labelled_frames']} in labelled clips; "
          f"{s['video_seconds']['total']:.0f} s of video, clips {_number(s['clip_seconds']['median'], '.1f')} s "
          f"(median)")
    print(f"person in {_share(s['person_share']['overall'])} of the frames; "
          f"trimmed {_share(s['trimmed_share']['overall'])} "
          f"(automatic trim: {_share(s['trimmed_share']['automatic'])})")
    for verdict, entry in s["seconds_per_verdict"].items():
        if entry["n"]:
            print(f"  {verdict}: {entry['n']} verdicts, median {entry['median']:.1f} s")
    return s, 0


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _number(value: float | None, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def _audit(project: Project, action: str, target: object, detail: dict) -> None:
    """Admin actions of the command line go to the project's audit log too (as `cli:<login>`)."""
    store.record_audit(project, cli_actor(), action, str(target), detail)


def _import(project: Project, args: argparse.Namespace) -> tuple[object, int]:
    if args.folder.is_file():
        r = import_zip(project, args.folder, args.layout)
    else:
        r = import_folder(project, args.folder, args.layout)
    _audit(project, "import", args.folder, {"added": r.added, "clips": r.clips, "layout": args.layout})
    if r.mode == "full":
        print(f"restored the whole exported project: {r.clips} clips ({r.labelled} labelled)")
    else:
        print(f"imported {r.added} of {r.clips} clips ({r.labelled} labelled); {r.skipped} already present")
    return r.__dict__, 0


def _export(project: Project, args: argparse.Namespace) -> tuple[object, int]:
    n = export_folder(project, args.folder, include_excluded=args.include_excluded)
    _audit(project, "export", args.folder, {"clips": n})
    print(f"exported {n} clips to {args.folder}")
    return {"clips": n, "folder": str(args.folder)}, 0


def _worker(project: Project, args: argparse.Namespace) -> tuple[object, int]:
    return {"jobs": jobs.run_worker(project)}, 0


def user_parser(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    """`user add|role|remove|list`: people and their roles in the project, for when sign-in is configured."""
    from curation.accounts import ROLES

    p = sub.add_parser("user", help="people who may sign in and their roles (viewer, coach, lead, admin)")
    users = p.add_subparsers(dest="action", required=True)
    listed = argparse.ArgumentParser(add_help=False)
    listed.add_argument("--file", type=Path, help="the password list (default: $FORMCHECK_PASSWORDS)")
    q = users.add_parser("add", parents=[common, listed],
                         help="add a person (or change their role); with a password list, also set a password "
                              "(typed, or one line on stdin)")
    q.add_argument("name", help="their name (with OIDC: their e-mail address)")
    q.add_argument("--role", default="coach", choices=ROLES)
    q.add_argument("--no-password", action="store_true", help="only the role (OIDC, or a password set before)")
    q = users.add_parser("role", parents=[common, listed], help="change a person's role")
    q.add_argument("name")
    q.add_argument("role", choices=ROLES)
    q = users.add_parser("remove", parents=[common, listed], help="remove a person's role and password line")
    q.add_argument("name")
    users.add_parser("list", parents=[common, listed], help="everyone with a role or a password line")


def _read_password() -> str:
    import getpass

    return getpass.getpass("Password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")


def _passwd(project: Project, args: argparse.Namespace) -> tuple[object, int]:
    from curation.accounts import clean_name, set_password

    name = clean_name(args.name)
    set_password(args.file, name, _read_password())
    _audit(project, "password set", name, {"file": str(args.file)})
    print(f"password set for {name} in {args.file}")
    return {"name": name}, 0


def _user(project: Project, args: argparse.Namespace) -> tuple[object, int]:
    from curation import accounts

    path = args.file or accounts.password_file()
    actor = accounts.cli_actor()
    if args.action == "add":
        password = None if args.no_password or path is None else _read_password()
        name = accounts.add_user(project, args.name, args.role, actor, password, path)
        print(f"{name} is {args.role}" + (f", password set in {path}" if password is not None else ""))
        return {"name": name, "role": args.role}, 0
    if args.action == "role":
        accounts.set_role(project, args.name, args.role, actor, path)
        print(f"{args.name} is {args.role}")
        return {"name": args.name, "role": args.role}, 0
    if args.action == "remove":
        accounts.remove_user(project, args.name, actor, path)
        print(f"{args.name} removed")
        return {"name": args.name}, 0
    users = accounts.list_users(project, path)
    for u in users:
        print(f"{u['name']:<40} {u['role']:<7} {'password list' if u['on_password_list'] else ''}")
    return users, 0


COMMANDS = {"batch": _batch, "ingest": _ingest, "stats": _stats, "import": _import, "export": _export, "worker": _worker, "passwd": _passwd,
            "user": _user}


class UsageError(Exception):
    """A fault in a command's input or surroundings (a setting, a path) that the user can fix: one line, exit 2."""


def positive_int(text: str) -> int:
    """argparse type of counts such as --k: a whole number of at least 1 (refused before any work)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _check_writable(path: str) -> None:
    """Refuse an --json path that cannot be written before any work is done (by opening it, as the write will)."""
    target = Path(path).expanduser()
    existed = target.exists()
    try:
        with open(target, "a"):
            pass
    except OSError as exc:
        raise UsageError(f"cannot write --json {path}: {exc.strerror or exc}") from None
    if not existed:
        target.unlink(missing_ok=True)


def _one_line(exc: BaseException, db_path: Path | None) -> str:
    """The one line that says what went wrong, for the faults a user can meet: bad input, a damaged or foreign
    database file, a full disk, a missing or unwritable path."""
    if isinstance(exc, sqlite3.DatabaseError):
        text = str(exc)
        if "not a database" in text or "malformed" in text:
            return f"not a Formcheck project database: {db_path} ({text})"
        if "disk is full" in text:
            return f"the disk is full: {db_path} could not be written"
        return f"database {db_path}: {text}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def run_command(args: argparse.Namespace, commands: dict, user_errors: tuple[type[Exception], ...]) -> int:
    """Open the project, run the command, write --json if asked; a user's fault is one line on stderr, exit 2.

    The --json path is checked before the work starts, so a long run never ends in an unwritable path.
    """
    project = None
    try:
        project = Project.open(args.data)  # first: it makes the data folder, where --json often goes
        if getattr(args, "json", None):
            _check_writable(args.json)
        store.check_database(project)
        result, status = commands[args.command](project, args)
        if getattr(args, "json", None):
            try:
                Path(args.json).expanduser().write_text(json.dumps(result, indent=2, default=str))
            except OSError as exc:  # e.g. the disk filled up during the work
                raise UsageError(f"cannot write --json {args.json}: {exc.strerror or exc}") from None
    except (*user_errors, UsageError, UnsafePath, store.StoreError, sqlite3.DatabaseError, OSError) as exc:
        print(f"error: {_one_line(exc, project.db_path if project else None)}", file=sys.stderr)
        return 2
    return status


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser().parse_args(argv), COMMANDS, (DatasetError, AccountError))


if __name__ == "__main__":
    sys.exit(main())
