"""Store: the project's SQLite database (schema migrations and every query the app makes)."""

from __future__ import annotations

import functools
import json
import os
import re
import sqlite3
import statistics
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import sqlite_utils

from curation import catalogue
from curation.project import Project

BUSY_TIMEOUT_MS = 10_000  # writers queue behind each other; at least 5 s (design.md section 3)
VERDICTS = ("correct", "incorrect", "skip")
LABELS = ("correct", "incorrect")


class StoreError(ValueError):
    """A request the database refuses (unknown clip, bad verdict, ...), with a message for the user."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


# ---------------------------------------------------------------- connections and transactions

_migrate_lock = threading.Lock()
_KEPT_PER_THREAD = 4  # databases a thread keeps a connection to (tests make hundreds of projects in one thread)
_kept = threading.local()  # this thread's open connections: {db path: (pid, inode, connection)}
_forked: list[sqlite3.Connection] = []  # a parent's connections seen in a forked child: never used nor closed


def _open(project: Project) -> sqlite3.Connection:
    """A new connection: WAL, busy timeout, foreign keys; the database migrated on first use in this process."""
    conn = sqlite3.connect(project.db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                           check_same_thread=True)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL: a crash loses no committed transaction's integrity
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":  # a property of the file, kept once set
            conn.execute("PRAGMA journal_mode = WAL")
        if not _up_to_date(conn):  # read on every new connection: a project made anew at a known path included
            with _migrate_lock:
                migrate(sqlite_utils.Database(conn))
    except BaseException:
        conn.close()
        raise
    return conn


def _up_to_date(conn: sqlite3.Connection) -> bool:
    """Whether the database has every migration applied (a damaged or foreign file raises here)."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_migrations'").fetchone():
        return False
    return conn.execute("SELECT count(*) FROM _migrations").fetchone()[0] >= len(MIGRATIONS)


def _kept_connection(project: Project) -> sqlite3.Connection:
    """This thread's connection to the project's database, opened on first use and kept (opening one costs
    about 3 ms of CPU, and a page asks the store dozens of times). A new one when the file at the path is
    another (a project made anew: the kept connection holds the old file open, so its inode cannot be reused)
    or this is a forked child of the process that opened it."""
    path = str(project.db_path)
    kept: dict[str, tuple[int, int, sqlite3.Connection]] = _kept.__dict__.setdefault("conns", {})
    try:
        inode = os.stat(path).st_ino
    except OSError:
        inode = -1  # not made yet: the connection makes it
    entry = kept.pop(path, None)
    if entry is not None:
        pid, known, conn = entry
        if pid != os.getpid():
            _forked.append(conn)  # SQLite forbids using a connection across fork; closing it would too
        elif known == inode:
            kept[path] = entry  # most recently used last
            return conn
        else:
            conn.close()
    conn = _open(project)
    kept[path] = (os.getpid(), os.stat(path).st_ino, conn)
    while len(kept) > _KEPT_PER_THREAD:
        _pid, _inode, old = kept.pop(next(iter(kept)))
        if _pid == os.getpid():
            old.close()
        else:
            _forked.append(old)
    return conn


@contextmanager
def connect(project: Project) -> Iterator[sqlite_utils.Database]:
    """The database of the project, on this thread's kept connection. Inside a write transaction of that
    connection (a read made while a write is under way) a separate short-lived connection is used instead, so
    the read sees only committed data, as it always has."""
    conn = _kept_connection(project)
    if conn.in_transaction:
        conn = _open(project)
        try:
            yield sqlite_utils.Database(conn)
        finally:
            conn.close()
        return
    try:
        yield sqlite_utils.Database(conn)
    finally:
        if conn.in_transaction:  # a transaction left open by a caller's bug: never carried into the next call
            conn.execute("ROLLBACK")


def check_database(project: Project) -> None:
    """StoreError when the project's database file is not a usable SQLite database (another kind of file, a
    damaged one): said once at the edge (CLI, page) instead of a traceback from the first query."""
    if not project.db_path.exists():
        return  # a new project: its database is made on first use
    try:
        with connect(project) as db:
            db.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        raise  # locked, read-only, disk full ...: not a fault of the file itself
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"not a Formcheck project database: {project.db_path} ({exc})") from None


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite3.Connection]:
    """A short writing transaction taken with BEGIN IMMEDIATE, so writers never deadlock on upgrade."""
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


# ---------------------------------------------------------------- project-wide reads, kept until a write

_MEMO_ENTRIES = 64  # (project, function) pairs kept; a process serves one project, tests make many
_memos: dict[tuple[str, str], tuple[tuple[int, int], Any]] = {}


def data_version(project: Project) -> tuple[int, int]:
    """What changes with every write to the clips, labels, edits, exclusions and videos (not the rubric, jobs or
    accounts): the change counter (bumped by triggers, whichever process writes) and the database file (a
    project made anew at the same path). Pages key their caches of project-wide tables with it."""
    with connect(project) as db:
        n = db.conn.execute("SELECT n FROM change_counter").fetchone()[0]
    return project.db_path.stat().st_ino, n


def _fresh(value: Any) -> Any:
    """A copy the caller may change without changing the kept result: rows (dicts) copied, nested values shared."""
    if isinstance(value, list):
        return [dict(v) if isinstance(v, dict) else v for v in value]
    if isinstance(value, dict):
        return {k: dict(v) if isinstance(v, dict) else v for k, v in value.items()}
    return value


def memoised(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Keep the result of fn(project), a read over the whole project (every label, every clip), until a write
    changes the tables behind it (m009's change_counter): pages call these on every rerun and at 100,000 clips
    each takes a second. Calls with further arguments (one clip, one exercise) are not kept. For reads of the
    tables in _VERSIONED_TABLES only (and of what never changes)."""

    @functools.wraps(fn)
    def wrapper(project: Project, *args: Any, **kwargs: Any) -> Any:
        if args or any(v is not None for v in kwargs.values()):
            return fn(project, *args, **kwargs)
        key = (str(project.db_path), f"{fn.__module__}.{fn.__qualname__}")
        version = data_version(project)  # read first: a write during fn leaves a result older than its version
        kept = _memos.get(key)
        if kept is None or kept[0] != version:
            if len(_memos) >= _MEMO_ENTRIES:
                _memos.clear()
            kept = (version, fn(project))
            _memos[key] = kept
        return _fresh(kept[1])

    return wrapper


# ---------------------------------------------------------------- migrations

MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = []


def migration(fn: Callable[[sqlite3.Connection], None]) -> Callable[[sqlite3.Connection], None]:
    """Register a schema change; migrations run in order, each once, each in its own transaction."""
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_initial(conn: sqlite3.Connection) -> None:
    _script(
        conn,
        """
        CREATE TABLE exercises (
            name TEXT PRIMARY KEY,
            description TEXT NOT NULL DEFAULT '',
            joints TEXT NOT NULL DEFAULT '[]'          -- JSON list of kinematics angle names
        );
        CREATE TABLE criteria (
            id INTEGER PRIMARY KEY,
            exercise TEXT NOT NULL REFERENCES exercises(name) ON UPDATE CASCADE,
            name TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            UNIQUE (exercise, name)
        );
        CREATE TABLE videos (
            id TEXT PRIMARY KEY,                       -- made by the tool: v + hash of the source key
            source_key TEXT NOT NULL UNIQUE,           -- canonical URL or sha256 of the file: ingest is idempotent
            source TEXT NOT NULL,                      -- what the user gave (untrusted text)
            title TEXT NOT NULL DEFAULT '',            -- untrusted text
            uploader TEXT NOT NULL DEFAULT '',         -- untrusted text
            exercise TEXT REFERENCES exercises(name) ON UPDATE CASCADE,
            video_path TEXT NOT NULL,                  -- relative to the project root
            pose_path TEXT NOT NULL,
            frames INTEGER NOT NULL,
            fps REAL NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            person_share REAL NOT NULL,
            trimmed_share REAL NOT NULL,
            group_name TEXT,                           -- athlete or scene when known
            created_at TEXT NOT NULL
        );
        CREATE TABLE clips (
            id TEXT PRIMARY KEY,
            video_id TEXT REFERENCES videos(id),       -- NULL for clips imported as pose arrays
            exercise TEXT NOT NULL REFERENCES exercises(name) ON UPDATE CASCADE,
            start_frame INTEGER NOT NULL,              -- in the video (inclusive); 0 for imported clips
            end_frame INTEGER NOT NULL,                -- exclusive
            fps REAL NOT NULL,
            method TEXT NOT NULL,                      -- repetition | window | imported
            pose_path TEXT,                            -- imported clips: poses/<clip_id>.npy
            group_name TEXT,
            source TEXT,
            joints_engaged REAL,                       -- automatic complexity components (kinematics)
            angular_sensitivity REAL,
            range_of_motion REAL,
            balance_demand REAL,
            complexity REAL,
            active INTEGER NOT NULL DEFAULT 1,         -- 0 once replaced by a split or merge
            created_at TEXT NOT NULL,
            CHECK (end_frame > start_frame)
        );
        CREATE INDEX clips_exercise ON clips(exercise);
        CREATE INDEX clips_video ON clips(video_id);
        CREATE TABLE label_events (                   -- append-only: never updated, never deleted
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            clip_id TEXT NOT NULL REFERENCES clips(id),
            annotator TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('verdict', 'undo', 'adjudication')),
            verdict TEXT CHECK (verdict IN ('correct', 'incorrect', 'skip')),
            undoes INTEGER REFERENCES label_events(id),
            criteria TEXT NOT NULL DEFAULT '{}',       -- JSON {criterion: "pass" | "fail"}
            joints_engaged REAL,
            angular_sensitivity REAL,
            range_of_motion REAL,
            balance_demand REAL,
            note TEXT NOT NULL DEFAULT '',
            seconds REAL,
            request_id TEXT UNIQUE,                    -- one per click: a double click or a rerun adds nothing
            created_at TEXT NOT NULL
        );
        CREATE INDEX label_events_clip ON label_events(clip_id, annotator);
        CREATE INDEX label_events_undoes ON label_events(undoes);
        CREATE TABLE jobs (
            id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            params TEXT NOT NULL,                      -- JSON
            status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
            progress REAL NOT NULL DEFAULT 0,
            message TEXT NOT NULL DEFAULT '',
            result TEXT,                               -- JSON
            error TEXT,
            pid INTEGER,
            attempts INTEGER NOT NULL DEFAULT 0,
            cancel_requested INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            started_at TEXT,
            heartbeat_at TEXT,
            finished_at TEXT
        );
        CREATE INDEX jobs_status ON jobs(status, created_at);
        """
    )
    for ex in catalogue.EXERCISES:
        conn.execute(
            "INSERT INTO exercises (name, description, joints) VALUES (?, ?, ?)",
            (ex.name, ex.description, json.dumps(list(ex.joints))),
        )
        conn.executemany(
            "INSERT INTO criteria (exercise, name, description) VALUES (?, ?, ?)",
            [(ex.name, c.name, c.description) for c in ex.criteria],
        )


@migration
def m002_annotators_claims_edits(conn: sqlite3.Connection) -> None:
    _script(
        conn,
        """
        CREATE TABLE annotators (
            name TEXT PRIMARY KEY,
            role TEXT NOT NULL DEFAULT 'coach' CHECK (role IN ('coach', 'lead')),
            created_at TEXT NOT NULL
        );
        CREATE TABLE claims (                          -- who is looking at a clip now: others get other clips
            clip_id TEXT PRIMARY KEY REFERENCES clips(id),
            annotator TEXT NOT NULL,
            expires_at REAL NOT NULL                   -- unix seconds
        );
        CREATE INDEX claims_annotator ON claims(annotator);
        CREATE TABLE clip_edits (                      -- history of boundary changes, splits and merges
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            clip_id TEXT NOT NULL REFERENCES clips(id),
            annotator TEXT NOT NULL,
            action TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL
        );
        CREATE INDEX label_events_annotator ON label_events(annotator, clip_id);
        """,
    )


# Migrations 003-008 were reserved at the start of session 3 so that several streams of work could add schema
# side by side; each is owned by one stream and holds only its own tables and columns.
@migration
def m003_label_lineage(conn: sqlite3.Connection) -> None:
    """Clip edits as events, labels that follow their frames, exclusions, exercise changes (issue 9)."""
    _script(
        conn,
        """
        -- The frames a label event judged and the clip's exercise then (its criteria's rubric); NULL for events
        -- made before m003 (see _on_frames).
        ALTER TABLE label_events ADD COLUMN start_frame INTEGER;
        ALTER TABLE label_events ADD COLUMN end_frame INTEGER;
        ALTER TABLE label_events ADD COLUMN exercise TEXT;
        ALTER TABLE clip_edits ADD COLUMN undoes INTEGER REFERENCES clip_edits(id);
        CREATE INDEX clip_edits_clip ON clip_edits(clip_id);
        CREATE TABLE clip_parents (                    -- lineage: clips made by a split or a merge
            clip_id TEXT NOT NULL REFERENCES clips(id),
            parent_id TEXT NOT NULL REFERENCES clips(id),
            edit_id INTEGER NOT NULL REFERENCES clip_edits(id),
            PRIMARY KEY (clip_id, parent_id)
        );
        CREATE INDEX clip_parents_parent ON clip_parents(parent_id);
        CREATE TABLE exclusions (                      -- append-only: the latest event of a clip or video rules
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            clip_id TEXT REFERENCES clips(id),
            video_id TEXT REFERENCES videos(id),
            action TEXT NOT NULL CHECK (action IN ('exclude', 'restore')),
            reason TEXT NOT NULL DEFAULT '',
            annotator TEXT NOT NULL,
            created_at TEXT NOT NULL,
            CHECK ((clip_id IS NULL) != (video_id IS NULL))
        );
        CREATE INDEX exclusions_clip ON exclusions(clip_id);
        CREATE INDEX exclusions_video ON exclusions(video_id);
        CREATE VIEW excluded_clips AS                  -- excluded by itself or with its whole video
            SELECT c.id AS clip_id FROM clips c
            WHERE c.id IN (SELECT clip_id FROM exclusions WHERE action = 'exclude' AND id IN (
                              SELECT max(id) FROM exclusions WHERE clip_id IS NOT NULL GROUP BY clip_id))
               OR c.video_id IN (SELECT video_id FROM exclusions WHERE action = 'exclude' AND id IN (
                              SELECT max(id) FROM exclusions WHERE video_id IS NOT NULL GROUP BY video_id))
        """,
    )


@migration
def m004_rubric_provenance(conn: sqlite3.Connection) -> None:
    """Versioned rubric, video provenance and athlete, trimmed spans (issue 9)."""
    _script(
        conn,
        """
        -- title: the name shown ('' = the key); position: order within the exercise; retired: no longer
        -- offered to coaches (labels that used it keep it)
        ALTER TABLE criteria ADD COLUMN title TEXT NOT NULL DEFAULT '';
        ALTER TABLE criteria ADD COLUMN position INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE criteria ADD COLUMN retired INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE rubric_events (                   -- append-only; criteria and exercises.joints follow from it
            id INTEGER PRIMARY KEY AUTOINCREMENT,      -- the rubric version: a label made at time t used the
                                                       -- events created up to t
            exercise TEXT NOT NULL REFERENCES exercises(name) ON UPDATE CASCADE,
            criterion TEXT,                            -- the criterion's key (stable: label JSON uses it)
            action TEXT NOT NULL CHECK (action IN ('add', 'rename', 'describe', 'reorder', 'retire', 'restore',
                                                   'joints', 'undo')),
            detail TEXT NOT NULL DEFAULT '{}',         -- JSON: title, description, order or joints
            undoes INTEGER REFERENCES rubric_events(id),
            annotator TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX rubric_events_exercise ON rubric_events(exercise, id);
        -- Provenance as the source reports it (untrusted text, cleaned by ingest): upload_date YYYY-MM-DD,
        -- duration in seconds, webpage_url the original page ('' for files), '' where unknown. athlete: who is
        -- filmed, set by coaches ('' unknown).
        ALTER TABLE videos ADD COLUMN channel TEXT NOT NULL DEFAULT '';
        ALTER TABLE videos ADD COLUMN channel_id TEXT NOT NULL DEFAULT '';
        ALTER TABLE videos ADD COLUMN upload_date TEXT NOT NULL DEFAULT '';
        ALTER TABLE videos ADD COLUMN duration REAL;
        ALTER TABLE videos ADD COLUMN license TEXT NOT NULL DEFAULT '';
        ALTER TABLE videos ADD COLUMN webpage_url TEXT NOT NULL DEFAULT '';
        ALTER TABLE videos ADD COLUMN athlete TEXT NOT NULL DEFAULT '';
        CREATE TABLE video_events (                    -- append-only edits of a video's fields (the athlete)
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            video_id TEXT NOT NULL REFERENCES videos(id),
            field TEXT NOT NULL CHECK (field IN ('athlete')),
            value TEXT NOT NULL,
            previous TEXT NOT NULL,
            undoes INTEGER REFERENCES video_events(id),
            annotator TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX video_events_video ON video_events(video_id, id);
        CREATE TABLE trim_spans (                      -- what the automatic trim removed, and why
            video_id TEXT NOT NULL REFERENCES videos(id),
            start_frame INTEGER NOT NULL,
            end_frame INTEGER NOT NULL,                -- exclusive
            reason TEXT NOT NULL,                      -- no person | still | talking head
            PRIMARY KEY (video_id, start_frame),
            CHECK (end_frame > start_frame)
        );
        CREATE TABLE trim_events (                     -- append-only review of the trim: restore or remove a span
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            video_id TEXT NOT NULL REFERENCES videos(id),
            action TEXT NOT NULL CHECK (action IN ('restore', 'remove', 'undo')),
            start_frame INTEGER,
            end_frame INTEGER,
            clips TEXT NOT NULL DEFAULT '[]',          -- JSON: clip ids made (restore) or taken out (remove)
            undoes INTEGER REFERENCES trim_events(id),
            annotator TEXT NOT NULL,
            created_at TEXT NOT NULL
        );
        CREATE INDEX trim_events_video ON trim_events(video_id, id)
        """,
    )
    # The rubric as it stands becomes its first version: one event per exercise's joints and per criterion,
    # dated as early as the project's first record so that labels made before this migration find it.
    stamp = conn.execute("SELECT min(t) FROM (SELECT min(created_at) AS t FROM label_events UNION ALL "
                         "SELECT min(created_at) FROM clips UNION ALL SELECT ?)", (now(),)).fetchone()[0]
    for name, joints in conn.execute("SELECT name, joints FROM exercises ORDER BY name").fetchall():
        conn.execute("INSERT INTO rubric_events (exercise, action, detail, annotator, created_at) "
                     "VALUES (?, 'joints', ?, 'catalogue', ?)",
                     (name, json.dumps({"joints": json.loads(joints)}), stamp))
    rows = conn.execute("SELECT id, exercise, name, description FROM criteria ORDER BY exercise, id").fetchall()
    position: dict[str, int] = {}
    for crit_id, exercise, name, description in rows:
        position[exercise] = position.get(exercise, -1) + 1
        conn.execute("UPDATE criteria SET position = ? WHERE id = ?", (position[exercise], crit_id))
        conn.execute("INSERT INTO rubric_events (exercise, criterion, action, detail, annotator, created_at) "
                     "VALUES (?, ?, 'add', ?, 'catalogue', ?)",
                     (exercise, name, json.dumps({"title": "", "description": description}), stamp))


@migration
def m005_exchange(conn: sqlite3.Connection) -> None:
    """What the lossless dataset exchange needs (frame size of imported clips...) (issues 9, 10)."""
    _script(
        conn,
        """
        -- pixels of the source frame of a clip imported without a video (NULL: its video's size, or unknown)
        ALTER TABLE clips ADD COLUMN width INTEGER;
        ALTER TABLE clips ADD COLUMN height INTEGER
        """,
    )


@migration
def m006_accounts_audit(conn: sqlite3.Connection) -> None:
    """Accounts, roles, the admin audit log (issue 10)."""
    _script(
        conn,
        """
        CREATE TABLE accounts (                        -- roles when sign-in is configured (curation.accounts)
            name TEXT PRIMARY KEY,                     -- the password list's name, or the OIDC e-mail address
            role TEXT NOT NULL CHECK (role IN ('viewer', 'coach', 'lead', 'admin')),
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        CREATE TABLE audit (                           -- every admin action: who, what, when (append-only)
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            actor TEXT NOT NULL,                       -- an account name, a local coach or "local", `cli:<login>`
            action TEXT NOT NULL,
            target TEXT NOT NULL DEFAULT '',
            detail TEXT NOT NULL DEFAULT '{}'          -- JSON
        );
        CREATE INDEX audit_at ON audit(at)
        """,
    )


@migration
def m007_jobs(conn: sqlite3.Connection) -> None:
    """Job liveness and temporary files (issue 10): claims on the sources being ingested. (Liveness itself is the
    jobs table's pid and heartbeat_at; a job's files are its folder work/jobs/<id>/.)"""
    _script(
        conn,
        """
        CREATE TABLE source_claims (                 -- a source being ingested now: a second ingest stops at once
            source_key TEXT PRIMARY KEY,
            owner TEXT NOT NULL,                       -- "pid <n>": the worker or command at work on it
            pid INTEGER NOT NULL,                      -- the holder; a claim of a dead process is taken over
            claimed_at TEXT NOT NULL
        )
        """,
    )


@migration
def m008_runs(conn: sqlite3.Connection) -> None:
    """Promoted runs and model choices (issue 11)."""
    _script(
        conn,
        """
        CREATE TABLE run_promotions (                  -- append-only: the last row says which run scores
            id INTEGER PRIMARY KEY AUTOINCREMENT,      -- suggestions (model.choice)
            run_id TEXT,                               -- NULL: the promotion withdrawn, the best run again
            annotator TEXT NOT NULL,
            note TEXT NOT NULL DEFAULT '',             -- untrusted text
            created_at TEXT NOT NULL
        )
        """,
    )


# Tables whose writes change what the memoised project-wide reads return (see memoised).
_VERSIONED_TABLES = ("clips", "label_events", "clip_edits", "clip_parents", "exclusions", "videos", "video_events",
                     "trim_spans", "trim_events")


@migration
def m009_indexes(conn: sqlite3.Connection) -> None:
    """Indexes and derived tables that keep the Label page's reads fast at 100,000 clips (issue 13).

    clip_queue holds per clip what next_clip orders by (how many coaches labelled it on its present frames,
    video order), kept by triggers so that every writer (page, worker, CLI, restore) keeps it true: the next
    clip is the first row of an index instead of a count over every label event and a sort of every clip.
    change_counter is bumped by every write to the tables the project-wide aggregates read (memoised), so
    that they are recomputed only when something changed, whichever process wrote.
    """
    _script(
        conn,
        """
        CREATE INDEX clips_order ON clips(video_id, start_frame, id);
        CREATE TABLE clip_queue (                      -- derived from clips and label_events (triggers below)
            clip_id TEXT PRIMARY KEY,
            active INTEGER NOT NULL,                   -- clips.active as 0 or 1
            exercise TEXT NOT NULL,
            coaches INTEGER NOT NULL,                  -- see _coaches_of
            video_id TEXT,
            start_frame INTEGER NOT NULL
        );
        CREATE INDEX clip_queue_order ON clip_queue(active, coaches, video_id, start_frame, clip_id);
        CREATE INDEX clip_queue_exercise ON clip_queue(active, exercise, coaches, video_id, start_frame, clip_id);
        CREATE TABLE change_counter (n INTEGER NOT NULL);
        INSERT INTO change_counter VALUES (0)
        """,
    )
    conn.execute(f"INSERT INTO clip_queue SELECT {_queue_row('c')} FROM clips c")
    # Trigger bodies hold several statements: made one by one (_script splits on semicolons and newlines).
    refresh = "UPDATE clip_queue SET coaches = {} WHERE clip_id = {}.clip_id;"
    triggers = {
        "clip_queue_clip_insert": f"AFTER INSERT ON clips BEGIN INSERT OR REPLACE INTO clip_queue SELECT "
                                  f"{_queue_row('NEW')}; END",
        "clip_queue_clip_update": "AFTER UPDATE OF id, active, exercise, start_frame, end_frame, video_id ON clips "
                                  "BEGIN DELETE FROM clip_queue WHERE clip_id = OLD.id; "
                                  f"INSERT OR REPLACE INTO clip_queue SELECT {_queue_row('NEW')}; END",
        "clip_queue_clip_delete": "AFTER DELETE ON clips BEGIN DELETE FROM clip_queue WHERE clip_id = OLD.id; END",
    }
    for table in ("label_events", "clip_edits"):  # an edit after a pre-m003 label stops it counting (_on_frames)
        for when, rows in (("INSERT", ("NEW",)), ("DELETE", ("OLD",)), ("UPDATE", ("OLD", "NEW"))):
            body = " ".join(refresh.format(_coaches_of(f"{r}.clip_id"), r) for r in rows)
            triggers[f"clip_queue_{table}_{when.lower()}"] = f"AFTER {when} ON {table} BEGIN {body} END"
    for table in _VERSIONED_TABLES:
        for when in ("INSERT", "UPDATE", "DELETE"):
            triggers[f"change_counter_{table}_{when.lower()}"] = (f"AFTER {when} ON {table} BEGIN "
                                                                  "UPDATE change_counter SET n = n + 1; END")
    for name, body in triggers.items():
        conn.execute(f"CREATE TRIGGER {name} {body}")


def _coaches_of(clip: str) -> str:
    """SQL: how many coaches gave clip `clip` a correct or incorrect verdict on its present frames (next_clip
    hands out the clips fewer coaches labelled first; undone verdicts count there, as they always have)."""
    return (f"(SELECT count(DISTINCT e.annotator) FROM label_events e JOIN clips j ON j.id = e.clip_id "
            f"WHERE e.clip_id = {clip} AND e.kind = 'verdict' AND e.verdict != 'skip' AND {_on_frames('e', 'j')})")


def _queue_row(c: str) -> str:
    """SQL: the clip_queue row (its columns in order) of clip row `c`."""
    return (f"{c}.id, CASE WHEN {c}.active THEN 1 ELSE 0 END, {c}.exercise, {_coaches_of(c + '.id')}, {c}.video_id, "
            f"{c}.start_frame")


@migration
def m010_shots(conn: sqlite3.Connection) -> None:
    """Camera cuts, flagged spans and camera views (issue 15)."""
    _script(
        conn,
        """
        CREATE TABLE shot_cuts (                       -- first frame of each shot after a hard camera cut
            video_id TEXT NOT NULL REFERENCES videos(id),
            frame INTEGER NOT NULL,
            PRIMARY KEY (video_id, frame)
        );
        CREATE TABLE flagged_spans (                   -- spans kept in the dataset but marked (several people,
            id INTEGER PRIMARY KEY AUTOINCREMENT,      -- a replay): the ingest's own, not a coach's
            video_id TEXT NOT NULL REFERENCES videos(id),
            start_frame INTEGER NOT NULL,
            end_frame INTEGER NOT NULL,                -- exclusive
            reason TEXT NOT NULL
        );
        CREATE INDEX flagged_spans_video ON flagged_spans(video_id, start_frame);
        -- front / side / oblique, estimated from the clip's pose (curation.view); NULL: not estimated
        ALTER TABLE clips ADD COLUMN view TEXT
        """,
    )


# Migration slots of session 4, in this order (a migration's number is its place in the file).
@migration
def m011_cues(conn: sqlite3.Connection) -> None:
    """A coaching cue per criterion (issue 12): what a coach says to the athlete when it fails. The shipped cues
    of the catalogue's criteria are written as rubric events (a `describe` whose detail holds `cue`)."""
    _script(conn, "ALTER TABLE criteria ADD COLUMN cue TEXT NOT NULL DEFAULT ''")
    shipped = {(ex.name, c.name): c.cue for ex in catalogue.EXERCISES for c in ex.criteria if c.cue}
    for exercise, name in conn.execute("SELECT exercise, name FROM criteria ORDER BY exercise, position, id").fetchall():
        if (exercise, name) in shipped:
            _record_rubric(conn, exercise, name, "describe", {"cue": shipped[exercise, name]}, "catalogue")


@migration
def m012_assisted_labels(conn: sqlite3.Connection) -> None:
    """Model-assisted labelling (issue 12): what the model said of a clip when it was labelled, whether the coach
    saw it before the verdict, and the project's assisted-labelling setting as events."""
    _script(
        conn,
        """
        -- JSON {run_id, p_incorrect, verdict, failed} of the model's opinion at labelling time (NULL: none existed)
        ALTER TABLE label_events ADD COLUMN prediction TEXT;
        -- 1: the opinion was on screen before the verdict; 0: not (hidden, or "decide first"); NULL: not recorded
        ALTER TABLE label_events ADD COLUMN prediction_shown INTEGER;
        CREATE TABLE project_settings (                -- append-only: per name, the last row's value counts
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL,                        -- e.g. "assist_mode"
            value TEXT,                                -- NULL: the setting withdrawn (back to its default)
            annotator TEXT NOT NULL,                   -- who set it
            created_at TEXT NOT NULL
        );
        CREATE INDEX project_settings_name ON project_settings(name, id)
        """,
    )


@migration
def m013_run_registry(conn: sqlite3.Connection) -> None:
    """Runs as a registry (issue 12): a name and a note per run, as events (the run folder is never rewritten)."""
    _script(
        conn,
        """
        CREATE TABLE run_names (                       -- append-only: per run, its last row's name and note count
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            run_id TEXT NOT NULL,                      -- a folder name of runs/ (the run may since be deleted)
            name TEXT NOT NULL DEFAULT '',             -- untrusted text, one line
            note TEXT NOT NULL DEFAULT '',             -- untrusted text
            annotator TEXT NOT NULL,                   -- who named it
            created_at TEXT NOT NULL
        );
        CREATE INDEX run_names_run ON run_names(run_id, id)
        """,
    )


@migration
def m014_people(conn: sqlite3.Connection) -> None:
    """Replays point at the span they repeat; how each video's people were handled (issue 15)."""
    _script(
        conn,
        """
        -- a replay's earlier footage [source_start, source_end); NULL for other reasons
        ALTER TABLE flagged_spans ADD COLUMN source_start INTEGER;
        ALTER TABLE flagged_spans ADD COLUMN source_end INTEGER;
        CREATE TABLE video_people (                    -- one row per video ingested after this migration
            video_id TEXT PRIMARY KEY REFERENCES videos(id),
            athlete_rule TEXT NOT NULL,                -- curation.people.RULES: how the athlete was chosen
            athlete_x REAL,                            -- the clicked point of the "click" rule (normalised)
            athlete_y REAL,
            split TEXT,                                -- "vertical" / "horizontal" split screen found, or NULL
            split_at REAL,                             -- the seam's position, 0..1
            side TEXT                                  -- the side of a split screen this video is, or NULL
        )
        """,
    )


@migration
def m015_scale(conn: sqlite3.Connection) -> None:
    """Derived tables that keep the counts and the current labels fast at 100,000 clips (issue 13).

    label_current holds each annotator's current label per clip (the event current_labels returns) and
    clip_labels each clip's votes and adjudication (what consensus_labels decides by). Both are refreshed clip
    by clip by triggers on every write that can change them (a label event or its undo, a clip's frames or
    exercise, a clip edit: see _on_frames), whichever process writes, so a verdict costs one clip's refresh
    and reading them is a scan of a small table instead of a ranking of every label event.
    """
    _script(
        conn,
        """
        CREATE TABLE label_current (                   -- derived from label_events and clips (triggers below)
            event_id INTEGER PRIMARY KEY,              -- the annotator's current verdict event on the clip
            clip_id TEXT NOT NULL,
            annotator TEXT NOT NULL,
            verdict TEXT NOT NULL                      -- correct or incorrect
        );
        CREATE INDEX label_current_clip ON label_current(clip_id, annotator);
        CREATE TABLE clip_labels (                     -- derived from label_current and label_events (triggers)
            clip_id TEXT PRIMARY KEY,
            correct INTEGER NOT NULL,                  -- current correct verdicts (one per annotator at most)
            incorrect INTEGER NOT NULL,
            adjudicated INTEGER NOT NULL,              -- 1: a lead's adjudication on the present frames stands
            label TEXT                                 -- consensus: the adjudication, else the majority, else NULL
        )
        """,
    )
    _refresh_labels(conn)
    triggers = {
        "clip_labels_clip_insert": f"AFTER INSERT ON clips BEGIN {_label_refresh('NEW.id')} END",
        "clip_labels_clip_update": "AFTER UPDATE OF id, start_frame, end_frame, exercise ON clips BEGIN "
                                   f"{_label_refresh('OLD.id')} {_label_refresh('NEW.id')} END",
        "clip_labels_clip_delete": f"AFTER DELETE ON clips BEGIN {_label_refresh('OLD.id')} END",
    }
    for table in ("label_events", "clip_edits"):
        for when, rows in (("INSERT", ("NEW",)), ("DELETE", ("OLD",)), ("UPDATE", ("OLD", "NEW"))):
            body = " ".join(_label_refresh(f"{r}.clip_id") for r in rows)
            if table == "label_events":  # an undo changes the clip of the event it takes back
                body += " ".join(_label_refresh(f"(SELECT u.clip_id FROM label_events u WHERE u.id = {r}.undoes)")
                                 for r in rows)
            triggers[f"clip_labels_{table}_{when.lower()}"] = f"AFTER {when} ON {table} BEGIN {body} END"
    for name, body in triggers.items():
        conn.execute(f"CREATE TRIGGER {name} {body}")


@migration
def m016_dataset_rows(conn: sqlite3.Connection) -> None:
    """A derived table that keeps the Dataset page's and the Home page's aggregates fast at 100,000 clips (issue 13).

    dataset_rows holds per clip what the counts, the class balance and the dataset statistics filter, group and
    sum by: whether the clip is in the dataset (active, not excluded by itself or with its video), its exercise,
    its label state, its frames, seconds and complexity. Refreshed by triggers on every write that can change a
    row (a clip, its clip_labels row, an exclusion of the clip or of its video), whichever process writes, so
    that an aggregate is one scan of one covering index instead of a join of clips, clip_labels and the
    excluded_clips view. Without rowid: the indexes then hold the clip id too (dataset_clip_ids reads only them).
    """
    _script(
        conn,
        """
        CREATE TABLE dataset_rows (                    -- derived from clips, clip_labels, exclusions (triggers)
            clip_id TEXT PRIMARY KEY,
            active INTEGER NOT NULL,                   -- clips.active as 0 or 1
            excluded INTEGER NOT NULL,                 -- 1: in the excluded_clips view (by itself or its video)
            exercise TEXT NOT NULL,
            state TEXT NOT NULL,                       -- clip_table's label: _STATE_SQL
            labelled INTEGER NOT NULL,                 -- 1: in consensus_labels (a current label or an adjudication)
            frames INTEGER NOT NULL,                   -- end_frame - start_frame
            seconds REAL NOT NULL,                     -- frames / fps
            complexity REAL                            -- clips.complexity (the automatic index)
        ) WITHOUT ROWID;
        CREATE INDEX dataset_rows_counts ON dataset_rows(active, excluded, exercise, state, labelled, frames, seconds,
                                                         complexity);
        CREATE INDEX dataset_rows_seconds ON dataset_rows(active, excluded, seconds)
        """,
    )
    conn.execute(f"INSERT INTO dataset_rows {_dataset_row_select('1')}")
    triggers = {
        # m015's triggers write a clip's clip_labels row anew (a delete, then an insert) when the clip is added, when
        # its frames or exercise change and on every label event: its row here follows that insert. A clip deleted
        # or renamed, or its other columns changed: the clips triggers.
        "dataset_rows_clip_labels_insert": f"AFTER INSERT ON clip_labels BEGIN {_dataset_refresh('NEW.clip_id')} END",
        "dataset_rows_clip_update": "AFTER UPDATE OF id, active, fps, video_id, complexity ON clips BEGIN "
                                    f"{_dataset_refresh('OLD.id')} {_dataset_refresh('NEW.id')} END",
        "dataset_rows_clip_delete": f"AFTER DELETE ON clips BEGIN {_dataset_refresh('OLD.id')} END",
    }
    for when, rows in (("INSERT", ("NEW",)), ("DELETE", ("OLD",)), ("UPDATE", ("OLD", "NEW"))):
        # An exclusion event of a clip, or of a video: each of its clips.
        body = " ".join(f"{_dataset_refresh(f'{r}.clip_id')} DELETE FROM dataset_rows WHERE clip_id IN (SELECT id "
                        f"FROM clips WHERE video_id = {r}.video_id); INSERT INTO dataset_rows "
                        f"{_dataset_row_select(f'c.video_id = {r}.video_id')};" for r in rows)
        triggers[f"dataset_rows_exclusions_{when.lower()}"] = f"AFTER {when} ON exclusions BEGIN {body} END"
    for name, body in triggers.items():
        conn.execute(f"CREATE TRIGGER {name} {body}")


def _current_select(where: str) -> str:
    """SQL: the label_current rows (event_id, clip_id, annotator, verdict) of the clips `where` selects (on
    label event e and its clip c): each annotator's latest correct/incorrect verdict, not undone, on the present
    frames. Without a WITH clause: SQLite refuses one in a trigger."""
    return (f"SELECT id, clip_id, annotator, verdict FROM (SELECT e.id, e.clip_id, e.annotator, e.verdict, "
            "row_number() OVER (PARTITION BY e.clip_id, e.annotator ORDER BY e.id DESC) AS rn "
            "FROM label_events e JOIN clips c ON c.id = e.clip_id "
            f"WHERE {where} AND e.kind = 'verdict' AND e.verdict IN ('correct', 'incorrect') "
            "AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes = e.id) "
            f"AND {_on_frames('e', 'c')}) WHERE rn = 1")


def _clip_labels_select(where: str) -> str:
    """SQL: the clip_labels rows of the clips `where` selects (on clip c), from label_current."""
    adjudication = ("(SELECT e.verdict FROM label_events e WHERE e.clip_id = c.id AND e.kind = 'adjudication' "
                    "AND NOT EXISTS (SELECT 1 FROM label_events u WHERE u.undoes = e.id) "
                    f"AND {_on_frames('e', 'c')} ORDER BY e.id DESC LIMIT 1)")
    adjudicated = adjudication.replace("SELECT e.verdict", "SELECT 1", 1)
    return ("SELECT id, correct, incorrect, adjudicated, CASE WHEN adjudicated THEN adjudication "
            "WHEN correct > incorrect THEN 'correct' WHEN incorrect > correct THEN 'incorrect' END FROM ("
            "SELECT c.id, "
            "(SELECT count(*) FROM label_current k WHERE k.clip_id = c.id AND k.verdict = 'correct') AS correct, "
            "(SELECT count(*) FROM label_current k WHERE k.clip_id = c.id AND k.verdict = 'incorrect') AS incorrect, "
            f"EXISTS {adjudicated} AS adjudicated, {adjudication} AS adjudication FROM clips c WHERE {where})")


def _label_refresh(clip: str) -> str:
    """SQL statements (for a trigger body) recomputing label_current and clip_labels of clip `clip`."""
    return (f"DELETE FROM label_current WHERE clip_id = {clip}; "
            f"INSERT INTO label_current {_current_select(f'e.clip_id = {clip}')}; "
            f"DELETE FROM clip_labels WHERE clip_id = {clip}; "
            f"INSERT INTO clip_labels {_clip_labels_select(f'c.id = {clip}')};")


def _refresh_labels(conn: sqlite3.Connection) -> None:
    """Recompute label_current and clip_labels of every clip from the events."""
    conn.execute("DELETE FROM label_current")
    conn.execute("DELETE FROM clip_labels")
    conn.execute(f"INSERT INTO label_current {_current_select('1')}")
    conn.execute(f"INSERT INTO clip_labels {_clip_labels_select('1')}")


def _script(conn: sqlite3.Connection, sql: str) -> None:
    """Run several statements inside the open transaction (executescript would commit it first)."""
    for statement in sql.split(";\n"):
        if statement.strip():
            conn.execute(statement)


def migrate(db: sqlite_utils.Database) -> int:
    """Apply the migrations not yet applied; returns the schema version."""
    conn = db.conn
    conn.execute("CREATE TABLE IF NOT EXISTS _migrations (version INTEGER PRIMARY KEY, name TEXT, applied_at TEXT)")
    for version, fn in enumerate(MIGRATIONS, start=1):
        with transaction(db):
            # Re-checked inside the write lock: another process may have applied it meanwhile.
            if conn.execute("SELECT 1 FROM _migrations WHERE version = ?", (version,)).fetchone():
                continue
            fn(conn)
            conn.execute("INSERT INTO _migrations VALUES (?, ?, ?)", (version, fn.__name__, now()))
    return len(MIGRATIONS)


def _insert(conn: sqlite3.Connection, table: str, rows: list[dict]) -> None:
    """Plain INSERTs inside the caller's transaction (sqlite-utils' insert would commit it midway)."""
    for row in rows:
        columns = ", ".join(row)
        conn.execute(f"INSERT INTO {table} ({columns}) VALUES ({', '.join('?' * len(row))})", list(row.values()))


def _rows(conn: sqlite3.Connection, sql: str, params: Any = ()) -> list[dict]:
    cur = conn.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


# ---------------------------------------------------------------- exercises and criteria


def list_exercises(project: Project, include_retired: bool = False) -> list[dict]:
    """Every exercise with its joints (list) and criteria in the rubric's order (see criteria_of; retired ones
    only when include_retired)."""
    with connect(project) as db:
        exercises = _rows(db.conn, "SELECT * FROM exercises ORDER BY name")
        criteria = _rows(db.conn, _CRITERIA_SQL.format(where="(:all OR NOT retired)"), {"all": include_retired})
    for ex in exercises:
        ex["joints"] = json.loads(ex["joints"])
        ex["criteria"] = [_criterion(c) for c in criteria if c["exercise"] == ex["name"]]
    return exercises


NAME = re.compile(r"^[a-z0-9][a-z0-9 _-]{0,39}$")


def exercise_key(name: str) -> str:
    """An exercise name as stored (lowercase, single spaces), or StoreError: the one check of the editor and
    of imports, so that no name reaches a page that the editor would refuse."""
    name = " ".join((name or "").lower().split())
    if not NAME.match(name):
        raise StoreError("an exercise name is 1-40 lowercase letters, digits, spaces, - or _")
    return name


def criterion_key(name: str) -> str:
    """A criterion name as stored (lowercase, underscores), or StoreError (the editor's and imports' check)."""
    key = "_".join((name or "").lower().split())
    if not re.match(r"^[a-z0-9_]{1,40}$", key):
        raise StoreError("a criterion name is 1-40 letters, digits or underscores")
    return key


def add_exercise(project: Project, name: str, description: str = "", joints: list[str] | None = None) -> str:
    """Add an exercise to the catalogue (coaches extend it); returns its key."""
    name = exercise_key(name)
    with connect(project) as db, transaction(db) as conn:
        if conn.execute("SELECT 1 FROM exercises WHERE name = ?", (name,)).fetchone():
            raise StoreError(f"exercise {name!r} exists already")
        conn.execute("INSERT INTO exercises (name, description, joints) VALUES (?, ?, ?)",
                     (name, (description or "").strip()[:300], json.dumps(list(joints or []))))
        _record_rubric(conn, name, None, "joints", {"joints": list(joints or [])}, "catalogue")
    return name


def add_criterion(project: Project, exercise: str, name: str, description: str = "",
                  annotator: str = "catalogue") -> str:
    """Add a biomechanical criterion to an exercise (last in its order, as a rubric event); returns its key
    (lowercase, underscores), which labels use for good: renaming changes the title shown, not the key."""
    key = criterion_key(name)
    with connect(project) as db, transaction(db) as conn:
        if not conn.execute("SELECT 1 FROM exercises WHERE name = ?", (exercise,)).fetchone():
            raise StoreError(f"no exercise {exercise!r}")
        row = conn.execute("SELECT retired FROM criteria WHERE exercise = ? AND name = ?", (exercise, key)).fetchone()
        if row:
            hint = " (retired: restore it instead)" if row[0] else ""
            raise StoreError(f"{exercise} has a criterion {key!r} already{hint}")
        _check_title(conn, exercise, key, key)
        _record_rubric(conn, exercise, key, "add", {"title": "", "description": _one_line(description, 300)},
                       annotator)
    return key


def ensure_exercise(conn: sqlite3.Connection, name: str) -> None:
    """Add an exercise met in imported data or typed by a user, with no criteria yet."""
    conn.execute("INSERT OR IGNORE INTO exercises (name) VALUES (?)", (name,))


def ensure_criteria(conn: sqlite3.Connection, exercise: str, names: list[str], annotator: str = "import") -> None:
    """Add criteria met in imported labels (as rubric events, so that the rubric's history holds them)."""
    known = {r[0] for r in conn.execute("SELECT name FROM criteria WHERE exercise = ?", (exercise,))}
    for name in dict.fromkeys(names):
        if name not in known:
            _record_rubric(conn, exercise, name, "add", {"title": "", "description": ""}, annotator)


# ---------------------------------------------------------------- videos and clips


def find_video(project: Project, source_key: str) -> dict | None:
    """The video ingested from this source before, with its clip count, or None."""
    with connect(project) as db:
        rows = _rows(
            db.conn,
            "SELECT v.*, (SELECT count(*) FROM clips c WHERE c.video_id = v.id AND c.active) AS clips "
            "FROM videos v WHERE source_key = ?",
            (source_key,),
        )
    return rows[0] if rows else None


def add_video(project: Project, video: dict, clips: list[dict],
              removed: list[tuple[int, int, str]] = (), cuts: list[int] = (),
              flagged: list[tuple] = (), people: dict | None = None) -> None:
    """Insert a video, all its clips, the spans the trim removed and flagged (start, end, reason[, source_start,
    source_end] for a replay) and its shot cuts (first frames of new shots) and how its people were handled
    (a video_people row) in one transaction: a killed worker leaves either all or nothing."""
    stamp = now()
    with connect(project) as db, transaction(db) as conn:
        if video.get("exercise"):
            ensure_exercise(conn, video["exercise"])
        _insert(conn, "videos", [{**video, "created_at": stamp}])
        _insert(conn, "clips", [{**clip, "created_at": stamp} for clip in clips])
        _insert(conn, "trim_spans", [{"video_id": video["id"], "start_frame": int(a), "end_frame": int(b),
                                      "reason": why} for a, b, why in removed])
        _insert(conn, "shot_cuts", [{"video_id": video["id"], "frame": int(f)} for f in sorted(set(cuts))])
        _insert(conn, "flagged_spans", [{"video_id": video["id"], "start_frame": int(f[0]), "end_frame": int(f[1]),
                                         "reason": f[2], **_replay_source(f)} for f in flagged])
        if people is not None:
            _insert(conn, "video_people", [{"video_id": video["id"], **people}])


def add_clips(project: Project, clips: list[dict], events: list[dict],
              criteria: list[tuple[str, str]] = (), before_commit: Callable[[], None] | None = None) -> int:
    """Insert imported clips, their criteria and label events in one transaction; existing clip ids are skipped.
    before_commit runs last inside the transaction (an import moves its files into place there)."""
    stamp = now()
    with connect(project) as db, transaction(db) as conn:
        existing = {r[0] for r in conn.execute("SELECT id FROM clips")}
        fresh = [c for c in clips if c["id"] not in existing]
        for exercise in sorted({c["exercise"] for c in clips}):
            ensure_exercise(conn, exercise)
        for exercise, name in criteria:
            ensure_criteria(conn, exercise, [name])
        _insert(conn, "clips", [{**c, "created_at": stamp} for c in fresh])
        by_id = {c["id"]: c for c in fresh}
        # An imported label judged the clip as imported: its frames and exercise, unless the event says otherwise.
        _insert(conn, "label_events", [_event_row({**_frames_of(by_id[e["clip_id"]]), **e}, stamp)
                                       for e in events if e["clip_id"] in by_id])
        if before_commit is not None:
            before_commit()
    return len(fresh)


def clip_ids(project: Project) -> list[str]:
    with connect(project) as db:
        return [r[0] for r in db.conn.execute("SELECT id FROM clips")]


def _clip_exercise(conn: sqlite3.Connection, clip_id: str) -> str:
    row = conn.execute("SELECT exercise FROM clips WHERE id = ?", (clip_id,)).fetchone()
    if row is None:
        raise StoreError(f"no clip {clip_id!r}")
    return row[0]


def list_videos(project: Project) -> list[dict]:
    """Videos, newest first, with their active clip counts."""
    with connect(project) as db:
        return _rows(
            db.conn,
            "SELECT v.*, (SELECT count(*) FROM clips c WHERE c.video_id = v.id AND c.active) AS clips "
            "FROM videos v ORDER BY created_at DESC",
        )


def get_video(project: Project, video_id: str) -> dict | None:
    with connect(project) as db:
        rows = _rows(db.conn, "SELECT * FROM videos WHERE id = ?", (video_id,))
    return rows[0] if rows else None


@memoised
def list_clips(project: Project, exercise: str | None = None, video_id: str | None = None,
               include_excluded: bool = False) -> list[dict]:
    """Active clips in a stable order (video, start frame), optionally filtered. Excluded clips (by themselves
    or with their video) are left out unless include_excluded: they leave every queue, training run and export."""
    where, params = ["c.active"], []
    if not include_excluded:
        where.append("c.id NOT IN (SELECT clip_id FROM excluded_clips)")
    if exercise is not None:
        where.append("c.exercise = ?")
        params.append(exercise)
    if video_id is not None:
        where.append("c.video_id = ?")
        params.append(video_id)
    with connect(project) as db:
        return _rows(
            db.conn,
            "SELECT c.* FROM clips c WHERE " + " AND ".join(where) + " ORDER BY c.video_id, c.start_frame, c.id",
            params,
        )


# ---------------------------------------------------------------- labels


def _event_row(event: dict, stamp: str) -> dict:
    return {
        "clip_id": event["clip_id"],
        "annotator": event["annotator"],
        "kind": event.get("kind", "verdict"),
        "verdict": event.get("verdict"),
        "undoes": event.get("undoes"),
        "criteria": json.dumps(event.get("criteria") or {}, sort_keys=True),
        "joints_engaged": event.get("joints_engaged"),
        "angular_sensitivity": event.get("angular_sensitivity"),
        "range_of_motion": event.get("range_of_motion"),
        "balance_demand": event.get("balance_demand"),
        "note": event.get("note") or "",
        "seconds": event.get("seconds"),
        "request_id": event.get("request_id"),
        "created_at": stamp,
        "start_frame": event.get("start_frame"),
        "end_frame": event.get("end_frame"),
        "exercise": event.get("exercise"),
        **_prediction_cells(event),
    }


def _frames_of(clip: dict) -> dict:
    """What a label event records of the clip it judged: its frames and its exercise."""
    return {k: clip[k] for k in ("start_frame", "end_frame", "exercise")}


def _on_frames(e: str, c: str) -> str:
    """SQL condition: label event `e` judged the frames and the exercise that clip `c` has now.

    A label follows the frames it judged: once a clip's bounds or exercise change, its earlier labels stop
    counting (they need a second look); moved back, they count again. Events made before m003 recorded no
    frames: they count while no bounds or exercise edit of their clip came after them.
    """
    return (f"(({e}.start_frame = {c}.start_frame AND {e}.end_frame = {c}.end_frame AND {e}.exercise = {c}.exercise)"
            f" OR ({e}.start_frame IS NULL AND NOT EXISTS (SELECT 1 FROM clip_edits x WHERE x.clip_id = {e}.clip_id"
            f" AND x.action IN ('bounds', 'exercise') AND x.created_at > {e}.created_at)))")


_NOT_UNDONE = "id NOT IN (SELECT undoes FROM label_events WHERE undoes IS NOT NULL)"


def add_label_event(project: Project, event: dict) -> int | None:
    """Append one label event; returns its id, or None when its request_id was already recorded.

    The event records the frames and exercise it judged: those given (start_frame, end_frame, exercise: what
    the coach was shown), else the clip's now. Model-assisted labelling adds `prediction` (the model's opinion
    of the clip when it was labelled: run_id, p_incorrect, verdict, failed; None when there was none) and
    `prediction_shown` (whether the coach saw it before the verdict): see _prediction_cells.
    """
    annotator = (event.get("annotator") or "").strip()
    if not annotator:
        raise StoreError("a label needs an annotator name")
    kind = event.get("kind", "verdict")
    if kind == "verdict" and event.get("verdict") not in VERDICTS:
        raise StoreError(f"verdict must be one of {', '.join(VERDICTS)}")
    stamp = now()
    with connect(project) as db, transaction(db) as conn:
        rows = _rows(conn, "SELECT start_frame, end_frame, exercise FROM clips WHERE id = ?", (event["clip_id"],))
        if not rows:
            raise StoreError(f"no clip {event['clip_id']!r}")
        shown = {k: event[k] for k in ("start_frame", "end_frame", "exercise") if event.get(k) is not None}
        cur = conn.execute(
            "INSERT OR IGNORE INTO label_events (clip_id, annotator, kind, verdict, undoes, criteria, joints_engaged, "
            "angular_sensitivity, range_of_motion, balance_demand, note, seconds, request_id, created_at, "
            "start_frame, end_frame, exercise, prediction, prediction_shown) "
            "VALUES (:clip_id, :annotator, :kind, :verdict, :undoes, :criteria, :joints_engaged, :angular_sensitivity, "
            ":range_of_motion, :balance_demand, :note, :seconds, :request_id, :created_at, "
            ":start_frame, :end_frame, :exercise, :prediction, :prediction_shown)",
            _event_row({**event, **rows[0], **shown, "annotator": annotator}, stamp),
        )
        return cur.lastrowid if cur.rowcount else None


_CURRENT_SQL = f"""
    WITH live AS (
        SELECT e.* FROM label_events e JOIN clips c ON c.id = e.clip_id
        WHERE e.kind = 'verdict' AND e.verdict IN ('correct', 'incorrect') AND e.{_NOT_UNDONE}
          AND {_on_frames("e", "c")}
    ), ranked AS (
        SELECT *, row_number() OVER (PARTITION BY clip_id, annotator ORDER BY id DESC) AS rn FROM live
    )
    SELECT * FROM ranked WHERE rn = 1
"""


@memoised
def current_labels(project: Project) -> list[dict]:
    """Each annotator's current label per clip: their latest correct/incorrect verdict not undone, among those
    made on the clip's present frames and exercise (see second_looks for the others)."""
    with connect(project) as db:  # m015's label_current: _CURRENT_SQL kept by triggers, clip by clip
        return _current_rows(db.conn)


def clips_labelled_since(project: Project, since: str) -> set[str]:
    """Clips with a verdict (skip included) or adjudication created after `since` (ISO time) and not undone."""
    stamp = datetime.fromisoformat(since).astimezone(timezone.utc).isoformat(timespec="microseconds")
    with connect(project) as db:
        rows = db.conn.execute(
            "SELECT DISTINCT clip_id FROM label_events WHERE created_at > ? AND kind IN ('verdict', 'adjudication') "
            "AND id NOT IN (SELECT undoes FROM label_events WHERE undoes IS NOT NULL)", (stamp,)).fetchall()
    return {r[0] for r in rows}


@memoised
def adjudications(project: Project) -> dict[str, dict]:
    """Per clip, the latest adjudication event not undone, made on the clip's present frames (a lead coach's
    final word)."""
    with connect(project) as db:
        rows = _rows(
            db.conn,
            "SELECT * FROM label_events WHERE id IN (SELECT max(e.id) FROM label_events e JOIN clips c ON c.id = "
            f"e.clip_id WHERE e.kind = 'adjudication' AND e.{_NOT_UNDONE} AND {_on_frames('e', 'c')} "
            "GROUP BY e.clip_id)",
        )
    return {r["clip_id"]: {**r, "criteria": json.loads(r["criteria"])} for r in rows}


@memoised
def consensus_labels(project: Project) -> dict[str, dict]:
    """Per clip: the adjudicated label if a lead set one, else the annotators' majority (None on a tie).

    Criteria verdicts follow the same rule, criterion by criterion, among the annotators who gave one.
    `source` says which: "adjudication" or "majority".
    """
    # Votes from m015's clip_labels, criteria from the current labels that mark any: not a read of every label.
    with connect(project) as db:
        counted = db.conn.execute("SELECT clip_id, correct, incorrect FROM clip_labels "
                                  "WHERE correct + incorrect > 0 ORDER BY clip_id").fetchall()
        marked = db.conn.execute("SELECT k.clip_id, e.criteria FROM label_current k CROSS JOIN label_events e "
                                 "ON e.id = k.event_id WHERE e.criteria != '{}' ORDER BY k.clip_id, k.annotator")
        marks_of: dict[str, list[dict]] = {}
        for clip_id, text in marked:
            marks_of.setdefault(clip_id, []).append(json.loads(text))
    out: dict[str, dict] = {}
    for clip_id, correct, incorrect in counted:
        votes = {"correct": correct, "incorrect": incorrect}
        label = None if votes["correct"] == votes["incorrect"] else max(votes, key=votes.get)
        criteria: dict[str, str] = {}
        rows = marks_of.get(clip_id, [])
        for name in sorted({n for r in rows for n in r}):
            marks = [r[name] for r in rows if r.get(name) in ("pass", "fail")]
            if marks and marks.count("pass") != marks.count("fail"):
                criteria[name] = max(("pass", "fail"), key=marks.count)
        out[clip_id] = {"label": label, "votes": votes, "criteria": criteria, "source": "majority"}
    for clip_id, event in adjudications(project).items():
        votes = out.get(clip_id, {}).get("votes", {lab: 0 for lab in LABELS})
        out[clip_id] = {"label": event["verdict"], "votes": votes, "criteria": event["criteria"],
                        "source": "adjudication"}
    return out


def label_history(project: Project, clip_id: str) -> list[dict]:
    """Every label event of a clip, oldest first (who, what, when)."""
    with connect(project) as db:
        rows = _rows(db.conn, "SELECT * FROM label_events WHERE clip_id = ? ORDER BY id", (clip_id,))
    for r in rows:
        r["criteria"] = json.loads(r["criteria"])
    return rows


def last_event(project: Project, clip_id: str, annotator: str) -> dict | None:
    """This annotator's latest verdict or adjudication on the clip that is not undone (what Undo takes back)."""
    with connect(project) as db:
        rows = _rows(
            db.conn,
            "SELECT * FROM label_events WHERE clip_id = ? AND annotator = ? AND kind IN ('verdict', 'adjudication') "
            "AND id NOT IN (SELECT undoes FROM label_events WHERE undoes IS NOT NULL) ORDER BY id DESC LIMIT 1",
            (clip_id, annotator),
        )
    return rows[0] if rows else None


def events_by_request(project: Project, request_ids: list[str]) -> dict[str, dict]:
    """The label events recorded under these request ids, by request id (the Label page's outbox: which of the
    verdicts a browser sent are saved, and which event an undo of one takes back)."""
    if not request_ids:
        return {}
    with connect(project) as db:
        rows = _rows(db.conn, "SELECT id, clip_id, annotator, kind, request_id FROM label_events WHERE request_id IN "
                     "(SELECT value FROM json_each(?))", (json.dumps(list(request_ids)),))
    return {r["request_id"]: r for r in rows}


# ---------------------------------------------------------------- annotators and the labelling queue


def add_annotator(project: Project, name: str, role: str = "coach") -> str:
    """Register a coach by name (idempotent); returns the cleaned name. A name that is too long or holds
    control characters is refused, never cut: a cut name could be somebody else's."""
    from curation.accounts import AccountError, clean_name  # accounts builds on this module

    try:
        name = clean_name(name)
    except AccountError as exc:
        raise StoreError(str(exc)) from None
    if role not in ("coach", "lead"):
        raise StoreError("role must be coach or lead")
    with connect(project) as db, transaction(db) as conn:
        conn.execute("INSERT OR IGNORE INTO annotators (name, role, created_at) VALUES (?, ?, ?)", (name, role, now()))
        if role == "lead":
            conn.execute("UPDATE annotators SET role = 'lead' WHERE name = ?", (name,))
    return name


def list_annotators(project: Project) -> list[dict]:
    with connect(project) as db:
        return _rows(db.conn, "SELECT * FROM annotators ORDER BY name")


CLAIM_SECONDS = 600  # a clip shown to a coach is theirs this long; then others may get it


# The clips coach :me has judged (a verdict or a skip, not undone) on their present frames: a clip whose frames
# or exercise changed since comes back to the coach's queue for a second look.
_JUDGED_BY_ME = f"""
    SELECT e.clip_id FROM label_events e JOIN clips j ON j.id = e.clip_id
    WHERE e.annotator = :me AND e.kind = 'verdict' AND e.{_NOT_UNDONE} AND {_on_frames("e", "j")}
"""

# The clips next_clip may hand out, in its order (clip_queue's index: no count or sort over the whole project).
# {exercise}: "" or a filter on :exercise; {held}: "NOT" for the clips no other coach holds now, "" for the others.
_QUEUE_SQL = f"""
    SELECT c.*, q.coaches FROM clip_queue q CROSS JOIN clips c ON c.id = q.clip_id
    WHERE q.active = 1 {{exercise}}
      AND q.clip_id NOT IN (SELECT clip_id FROM excluded_clips)
      AND NOT EXISTS ({_JUDGED_BY_ME} AND e.clip_id = q.clip_id)
      AND q.clip_id {{held}} IN (SELECT clip_id FROM claims WHERE annotator != :me AND expires_at >= :now)
    ORDER BY q.coaches, q.video_id, q.start_frame, q.clip_id
    LIMIT :limit
"""


def _queue(conn: sqlite3.Connection, annotator: str, exercise: str | None, stamp: float, limit: int) -> list[dict]:
    """The first `limit` clips of this coach's queue: clips no other coach holds first, then clips fewer coaches
    labelled, then video order (see next_clip)."""
    params = {"exercise": exercise, "me": annotator, "now": stamp, "limit": limit}
    only = "" if exercise is None else "AND q.exercise = :exercise"  # the planner then uses clip_queue_exercise
    rows = _rows(conn, _QUEUE_SQL.format(exercise=only, held="NOT"), params)
    if len(rows) < limit:
        rows += _rows(conn, _QUEUE_SQL.format(exercise=only, held=""), {**params, "limit": limit - len(rows)})
    return rows


def next_clip(project: Project, annotator: str, exercise: str | None = None,
              claim_seconds: float = CLAIM_SECONDS) -> dict | None:
    """The next clip for this coach, claimed for them: one they have not judged, preferably one no other coach
    holds right now.

    Clips no one holds come first, then clips fewer coaches have labelled (spreads the work), then video
    order. A claim steers, it does not lock: when every clip left is held by others, one of those is handed
    out too (two coaches on one clip is allowed). A claim lasts claim_seconds; a coach holds one at a time.
    Returns None when this coach has judged every clip.
    """
    stamp = datetime.now(timezone.utc).timestamp()
    with connect(project) as db, transaction(db) as conn:
        conn.execute("DELETE FROM claims WHERE annotator = ? OR expires_at < ?", (annotator, stamp))
        rows = _queue(conn, annotator, exercise, stamp, 1)
        if not rows:
            return None
        conn.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?)", (rows[0]["id"], annotator, stamp + claim_seconds))
    return rows[0]


_LISTED_SQL = f"""
    SELECT c.* FROM json_each(:ids) j JOIN clips c ON c.id = j.value
    WHERE c.active AND c.id NOT IN (SELECT clip_id FROM excluded_clips)
      AND (NOT :skip_judged OR c.id NOT IN ({_JUDGED_BY_ME}))
    ORDER BY c.id IN (SELECT clip_id FROM claims WHERE annotator != :me AND expires_at >= :now), j.key
    LIMIT :limit
"""


def next_listed_clip(project: Project, annotator: str, clip_ids: list[str], skip_judged: bool = True,
                     claim_seconds: float = CLAIM_SECONDS) -> dict | None:
    """The first clip of a ranked list (suggestions, a check-again queue) for this coach, claimed for them.

    Same rules as next_clip: inactive and excluded clips are passed over, and so are clips this coach has judged
    (on their present frames) when
    skip_judged (a check-again queue sets it False: the coach who gave a doubted label may look again);
    clips another coach holds go last, so two coaches working through one list get different clips.
    """
    stamp = datetime.now(timezone.utc).timestamp()
    params = {"ids": json.dumps(list(clip_ids)), "me": annotator, "now": stamp, "skip_judged": skip_judged,
              "limit": 1}
    with connect(project) as db, transaction(db) as conn:
        conn.execute("DELETE FROM claims WHERE annotator = ? OR expires_at < ?", (annotator, stamp))
        rows = _rows(conn, _LISTED_SQL, params)
        if not rows:
            return None
        conn.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?)", (rows[0]["id"], annotator, stamp + claim_seconds))
    return rows[0]


def upcoming_listed_clips(project: Project, annotator: str, clip_ids: list[str], skip_judged: bool = True,
                          limit: int = 4) -> list[dict]:
    """The first `limit` clips next_listed_clip would hand out from a ranked list, in its order, without claiming
    them (the Label page's browser holds them ready and claims them with hold_clips)."""
    stamp = datetime.now(timezone.utc).timestamp()
    params = {"ids": json.dumps(list(clip_ids)), "me": annotator, "now": stamp, "skip_judged": skip_judged,
              "limit": limit}
    with connect(project) as db:
        return _rows(db.conn, _LISTED_SQL, params)


def upcoming_clips(project: Project, annotator: str, exercise: str | None = None, current: str | None = None,
                   limit: int = 2) -> list[dict]:
    """The clips next_clip would hand out after `current`, without claiming them (to prepare them ahead)."""
    stamp = datetime.now(timezone.utc).timestamp()
    with connect(project) as db:
        rows = _queue(db.conn, annotator, exercise, stamp, limit + 1)
    return [r for r in rows if r["id"] != current][:limit]


def release_claims(project: Project, annotator: str) -> None:
    with connect(project) as db, transaction(db) as conn:
        conn.execute("DELETE FROM claims WHERE annotator = ?", (annotator,))


def hold_clips(project: Project, annotator: str, clip_ids: list[str], claim_seconds: float = CLAIM_SECONDS) -> None:
    """Claim these clips for this coach in place of their other claims: the clips a browser holds ready (the one
    on screen and the next few) go to other coaches last. A claim steers, it does not lock (see next_clip): the
    first clip (the one on screen) is claimed like next_clip's; the others only where no other coach holds them."""
    stamp = datetime.now(timezone.utc).timestamp()
    ids = list(dict.fromkeys(clip_ids))
    with connect(project) as db, transaction(db) as conn:
        conn.execute("DELETE FROM claims WHERE annotator = ? OR expires_at < ?", (annotator, stamp))
        if ids:
            conn.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?)", (ids[0], annotator, stamp + claim_seconds))
        conn.executemany("INSERT OR IGNORE INTO claims VALUES (?, ?, ?)",
                         [(c, annotator, stamp + claim_seconds) for c in ids[1:]])


def clip_exercises(project: Project) -> list[str]:
    """The exercises that have active clips."""
    with connect(project) as db:
        # One index probe per exercise of the catalogue (every clip's exercise is one: a foreign key).
        return [r[0] for r in db.conn.execute("SELECT name FROM exercises e WHERE EXISTS (SELECT 1 FROM clip_queue q "
                                              "WHERE q.active = 1 AND q.exercise = e.name) ORDER BY name")]


def get_clip(project: Project, clip_id: str) -> dict | None:
    with connect(project) as db:
        rows = _rows(db.conn, "SELECT * FROM clips WHERE id = ?", (clip_id,))
    return rows[0] if rows else None


def progress_of(project: Project, annotator: str, exercise: str | None = None) -> dict:
    """How many active clips there are (excluded ones left out), and how many this coach has judged (a verdict
    or a skip) on their present frames."""
    # Counted from the small sets (inactive clips, excluded clips, this coach's verdicts) and the table's stored
    # row count, not by a pass over every clip (one exercise: a pass over its index range).
    only = "" if exercise is None else " AND q.exercise = :exercise"
    active = ("SELECT (SELECT count(*) FROM clip_queue) - (SELECT count(*) FROM clip_queue WHERE active = 0)"
              if exercise is None else "SELECT count(*) FROM clip_queue q WHERE q.active = 1 AND q.exercise = :exercise")
    with connect(project) as db:
        total, excluded, mine = db.conn.execute(
            f"SELECT ({active}), "
            "(SELECT count(*) FROM excluded_clips x CROSS JOIN clip_queue q ON q.clip_id = x.clip_id "
            f"WHERE q.active = 1{only}), "
            f"(SELECT count(*) FROM (SELECT DISTINCT clip_id FROM ({_JUDGED_BY_ME})) m CROSS JOIN clip_queue q "
            f"ON q.clip_id = m.clip_id WHERE q.active = 1{only} "
            "AND q.clip_id NOT IN (SELECT clip_id FROM excluded_clips))",
            {"me": annotator, "exercise": exercise},
        ).fetchone()
    return {"clips": total - excluded, "judged": mine}


# ---------------------------------------------------------------- clip boundaries


def _clip_limit(conn: sqlite3.Connection, clip: dict, pose_frames: int | None) -> int:
    if clip["video_id"]:
        return conn.execute("SELECT frames FROM videos WHERE id = ?", (clip["video_id"],)).fetchone()[0]
    return pose_frames if pose_frames is not None else clip["end_frame"]


def set_bounds(project: Project, clip_id: str, start: int, end: int, annotator: str,
               pose_frames: int | None = None) -> dict:
    """Move a clip's start and end frames (its poses follow: they are sliced from the video's track)."""
    with connect(project) as db, transaction(db) as conn:
        rows = _rows(conn, "SELECT * FROM clips WHERE id = ? AND active", (clip_id,))
        if not rows:
            raise StoreError(f"no clip {clip_id!r}")
        clip = rows[0]
        limit = _clip_limit(conn, clip, pose_frames)
        if not 0 <= start < end <= limit:
            raise StoreError(f"a clip must keep at least one frame within 0..{limit}")
        conn.execute("UPDATE clips SET start_frame = ?, end_frame = ? WHERE id = ?", (start, end, clip_id))
        edit_id = _edit(conn, clip_id, annotator, "bounds",
                        {"from": [clip["start_frame"], clip["end_frame"]], "to": [start, end]})
    return {**clip, "start_frame": start, "end_frame": end, "edit_id": edit_id}


def _edit(conn: sqlite3.Connection, clip_id: str, annotator: str, action: str, detail: dict,
          undoes: int | None = None, stamp: str | None = None) -> int:
    """Record one clip edit (the history of bounds, splits, merges, exercise changes); returns its id."""
    cur = conn.execute(
        "INSERT INTO clip_edits (clip_id, annotator, action, detail, created_at, undoes) VALUES (?, ?, ?, ?, ?, ?)",
        (clip_id, annotator, action, json.dumps(detail), stamp or now(), undoes))
    return cur.lastrowid


def _new_clip_id(conn: sqlite3.Connection, base: str) -> str:
    """`base`, or base2, base3... when a clip (e.g. of an undone split) holds that id already."""
    candidate, n = base, 1
    while conn.execute("SELECT 1 FROM clips WHERE id = ?", (candidate,)).fetchone():
        n += 1
        candidate = f"{base}{n}"
    return candidate


def split_clip(project: Project, clip_id: str, at: int, annotator: str) -> tuple[str, str]:
    """Replace a clip by two at frame `at` (two repetitions cut as one). Labels stay with the old clip; the
    parts show them as inherited (clip_history) and need a second look (second_looks)."""
    with connect(project) as db, transaction(db) as conn:
        rows = _rows(conn, "SELECT * FROM clips WHERE id = ? AND active", (clip_id,))
        if not rows:
            raise StoreError(f"no clip {clip_id!r}")
        clip = rows[0]
        if not clip["start_frame"] < at < clip["end_frame"]:
            raise StoreError(f"split frame must lie inside the clip ({clip['start_frame']}..{clip['end_frame']})")
        ids = (_new_clip_id(conn, f"{clip_id}-a"), _new_clip_id(conn, f"{clip_id}-b"))
        base = {k: v for k, v in clip.items() if k != "id"}
        stamp = now()
        _insert(conn, "clips", [{**base, "id": ids[0], "end_frame": at, "created_at": stamp},
                                {**base, "id": ids[1], "start_frame": at, "created_at": stamp}])
        conn.execute("UPDATE clips SET active = 0 WHERE id = ?", (clip_id,))
        edit_id = _edit(conn, clip_id, annotator, "split", {"at": at, "into": ids}, stamp=stamp)
        _insert(conn, "clip_parents", [{"clip_id": i, "parent_id": clip_id, "edit_id": edit_id} for i in ids])
    return ids


def merge_clips(project: Project, first_id: str, second_id: str, annotator: str) -> str:
    """Replace two clips of one video by one spanning both (one repetition cut in two)."""
    with connect(project) as db, transaction(db) as conn:
        rows = _rows(conn, "SELECT * FROM clips WHERE id IN (?, ?) AND active ORDER BY start_frame", (first_id, second_id))
        if len(rows) != 2 or first_id == second_id:
            raise StoreError("merge needs two different active clips")
        a, b = rows
        if (a["video_id"], a["pose_path"]) != (b["video_id"], b["pose_path"]) or a["exercise"] != b["exercise"]:
            raise StoreError("only clips of the same video and exercise can be merged")
        new_id = _new_clip_id(conn, f"{a['id']}-m")
        base = {k: v for k, v in a.items() if k != "id"}
        stamp = now()
        _insert(conn, "clips", [{**base, "id": new_id, "end_frame": max(a["end_frame"], b["end_frame"]),
                                 "created_at": stamp}])
        conn.execute("UPDATE clips SET active = 0 WHERE id IN (?, ?)", (a["id"], b["id"]))
        edit_id = _edit(conn, a["id"], annotator, "merge", {"with": b["id"], "into": new_id}, stamp=stamp)
        _insert(conn, "clip_parents", [{"clip_id": new_id, "parent_id": p["id"], "edit_id": edit_id} for p in (a, b)])
    return new_id


# ---------------------------------------------------------------- counts


@memoised
def stats(project: Project) -> dict:
    """Counts of `python -m curation stats`: videos, clips, labelled, and per exercise clips and labelled;
    excluded clips are counted apart (excluded), not in the others."""
    return {
        **project_counts(project),
        **dataset_statistics(project),  # new keys only (issue 9): the keys above keep their meaning
    }


# ---------------------------------------------------------------- jobs


def _job(row: dict) -> dict:
    row["params"] = json.loads(row["params"])
    row["result"] = json.loads(row["result"]) if row["result"] else None
    return row


def create_job(project: Project, job_id: str, kind: str, params: dict) -> None:
    with connect(project) as db, transaction(db) as conn:
        conn.execute(
            "INSERT INTO jobs (id, kind, params, status, created_at) VALUES (?, ?, ?, 'queued', ?)",
            (job_id, kind, json.dumps(params), now()),
        )


def claim_job(project: Project, pid: int) -> dict | None:
    """Take the oldest queued job for this worker process, or None when the queue is empty."""
    with connect(project) as db, transaction(db) as conn:
        rows = _rows(conn, "SELECT * FROM jobs WHERE status = 'queued' ORDER BY created_at LIMIT 1")
        if not rows:
            return None
        stamp = now()
        conn.execute(
            "UPDATE jobs SET status = 'running', pid = ?, attempts = attempts + 1, started_at = ?, heartbeat_at = ? "
            "WHERE id = ?",
            (pid, stamp, stamp, rows[0]["id"]),
        )
    return _job(rows[0])


def heartbeat(project: Project, job_id: str, progress: float, message: str) -> bool:
    """Record progress; returns True when someone asked to cancel the job."""
    with connect(project) as db, transaction(db) as conn:
        conn.execute(
            "UPDATE jobs SET progress = ?, message = ?, heartbeat_at = ? WHERE id = ? AND status = 'running'",
            (max(0.0, min(1.0, progress)), message, now(), job_id),
        )
        row = conn.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return bool(row and row[0])


def finish_job(project: Project, job_id: str, status: str, result: Any = None, error: str | None = None,
               pid: int | None = None) -> bool:
    """Close a running job as done, failed or cancelled; with `pid`, only while that worker still owns it (a
    worker that stalled and was recovered must not overwrite the job's new state). Returns whether it did."""
    with connect(project) as db, transaction(db) as conn:
        return bool(conn.execute(
            "UPDATE jobs SET status = ?, result = ?, error = ?, progress = CASE WHEN ? = 'done' THEN 1 ELSE progress END, "
            "finished_at = ?, pid = NULL WHERE id = ? AND (? IS NULL OR (status = 'running' AND pid = ?))",
            (status, json.dumps(result) if result is not None else None, error, status, now(), job_id, pid, pid),
        ).rowcount)


def request_cancel(project: Project, job_id: str) -> str | None:
    """Ask for a job to stop: a queued job is cancelled at once, a running one at its worker's next heartbeat
    (jobs.cancel also ends one whose worker is gone). Returns the job's status after the request."""
    with connect(project) as db, transaction(db) as conn:
        conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND status IN ('queued', 'running')", (job_id,))
        conn.execute(
            "UPDATE jobs SET status = 'cancelled', finished_at = ? WHERE id = ? AND status = 'queued'", (now(), job_id)
        )
        row = conn.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return row[0] if row else None


def get_job(project: Project, job_id: str) -> dict | None:
    with connect(project) as db:
        rows = _rows(db.conn, "SELECT * FROM jobs WHERE id = ?", (job_id,))
    return _job(rows[0]) if rows else None


def list_jobs(project: Project, limit: int = 50) -> list[dict]:
    with connect(project) as db:
        return [_job(r) for r in _rows(db.conn, "SELECT * FROM jobs ORDER BY created_at DESC LIMIT ?", (limit,))]


def running_jobs(project: Project) -> list[dict]:
    with connect(project) as db:
        return [_job(r) for r in _rows(db.conn, "SELECT * FROM jobs WHERE status = 'running'")]


def count_queued(project: Project) -> int:
    with connect(project) as db:
        return db.conn.execute("SELECT count(*) FROM jobs WHERE status = 'queued'").fetchone()[0]


def requeue_or_fail(project: Project, job_id: str, max_attempts: int,
                    reason: str = "the worker stopped unexpectedly (killed or the server restarted)") -> str:
    """A job whose worker died: queue it again while attempts remain, else mark it failed with `reason`; a job
    whose cancel was asked is cancelled. Returns the new status ("gone" when it was no longer running)."""
    with connect(project) as db, transaction(db) as conn:
        row = conn.execute("SELECT attempts, cancel_requested FROM jobs WHERE id = ? AND status = 'running'", (job_id,)).fetchone()
        if row is None:
            return "gone"
        attempts, cancel = row
        if cancel:
            status, error = "cancelled", None
        elif attempts < max_attempts:
            status, error = "queued", None
        else:
            status, error = "failed", reason
        conn.execute(
            "UPDATE jobs SET status = ?, error = ?, pid = NULL, progress = 0, message = ?, "
            "finished_at = CASE WHEN ? = 'queued' THEN NULL ELSE ? END WHERE id = ?",
            (status, error, "recovered after the worker stopped" if status == "queued" else "", status, now(), job_id),
        )
    return status


# ---------------------------------------------------------------- label lineage, exclusions, exercise changes (m003)

COMPLEXITY_COLUMNS = ("joints_engaged", "angular_sensitivity", "range_of_motion", "balance_demand")


def set_complexity(project: Project, values: dict[str, dict]) -> None:
    """Store recomputed automatic complexity (the four components and the index) of clips: {clip_id: row}."""
    columns = (*COMPLEXITY_COLUMNS, "complexity")
    with connect(project) as db, transaction(db) as conn:
        conn.executemany(f"UPDATE clips SET {', '.join(f'{c} = ?' for c in columns)} WHERE id = ?",
                         [[row.get(c) for c in columns] + [clip_id] for clip_id, row in values.items()])


def undoable_edit(project: Project, clip_id: str) -> dict | None:
    """The latest edit of this clip that can be undone: a bounds or exercise change of it, or the split or merge
    that made it (not an undo itself, not undone yet). None when there is none."""
    with connect(project) as db:
        rows = _rows(
            db.conn,
            "SELECT * FROM clip_edits x WHERE x.undoes IS NULL "
            "AND x.id NOT IN (SELECT undoes FROM clip_edits WHERE undoes IS NOT NULL) "
            "AND ((x.clip_id = :c AND x.action IN ('bounds', 'exercise')) "
            "     OR x.id IN (SELECT edit_id FROM clip_parents WHERE clip_id = :c)) "
            "ORDER BY x.id DESC LIMIT 1",
            {"c": clip_id},
        )
    return {**rows[0], "detail": json.loads(rows[0]["detail"])} if rows else None


def _active_clip(conn: sqlite3.Connection, clip_id: str) -> dict:
    rows = _rows(conn, "SELECT * FROM clips WHERE id = ? AND active", (clip_id,))
    if not rows:
        raise StoreError(f"clip {clip_id} was replaced since (split or merged): undo that first")
    return rows[0]


def undo_edit(project: Project, edit_id: int, annotator: str) -> dict:
    """Take back a clip edit with a new edit (nothing is erased). Returns edit_id (the new edit), clip_id (the
    clip to show now) and moved (the clips whose frames changed: their complexity and cached videos are stale).

    A bounds or exercise change is reversed when the clip still has what it set (a whole video's exercise
    change: every clip of it and the video, from any of its clips); a split by making the parent
    active again in place of its parts, a merge by making both parts active again. Labels made meanwhile on the
    replaced clips stay in their history.
    """
    with connect(project) as db, transaction(db) as conn:
        rows = _rows(conn, "SELECT * FROM clip_edits WHERE id = ?", (edit_id,))
        if not rows:
            raise StoreError(f"no clip edit {edit_id}")
        edit, detail = rows[0], json.loads(rows[0]["detail"])
        if conn.execute("SELECT 1 FROM clip_edits WHERE undoes = ?", (edit_id,)).fetchone():
            raise StoreError("this edit was undone already")
        clip_id, action = edit["clip_id"], edit["action"]
        if action in ("bounds", "exercise"):
            batch = [edit]
            if detail.get("video"):  # a whole video's exercise change is undone whole, video included
                batch = _rows(conn, "SELECT * FROM clip_edits WHERE action = 'exercise' AND created_at = ? "
                                    "AND json_extract(detail, '$.video') = ? AND id NOT IN "
                                    "(SELECT undoes FROM clip_edits WHERE undoes IS NOT NULL) ORDER BY id",
                              (edit["created_at"], detail["video"]))
                conn.execute("UPDATE videos SET exercise = ? WHERE id = ?", (detail["from"], detail["video"]))
            for one in batch:
                change, clip = json.loads(one["detail"]), _active_clip(conn, one["clip_id"])
                now_value = [clip["start_frame"], clip["end_frame"]] if action == "bounds" else clip["exercise"]
                if now_value != change["to"]:
                    raise StoreError(f"clip {one['clip_id']} was edited again since: undo its later edits first")
                if action == "bounds":
                    conn.execute("UPDATE clips SET start_frame = ?, end_frame = ? WHERE id = ?",
                                 (*change["from"], one["clip_id"]))
                else:
                    conn.execute("UPDATE clips SET exercise = ? WHERE id = ?", (change["from"], one["clip_id"]))
                new = _edit(conn, one["clip_id"], annotator, action,
                            {**change, "from": change["to"], "to": change["from"]}, undoes=one["id"])
            return {"edit_id": new, "clip_id": clip_id, "moved": [clip_id] if action == "bounds" else []}
        if action == "split":
            parts = list(detail["into"])
            for part in parts:
                _active_clip(conn, part)
            conn.execute(f"UPDATE clips SET active = 0 WHERE id IN ({', '.join('?' * len(parts))})", parts)
            conn.execute("UPDATE clips SET active = 1 WHERE id = ?", (clip_id,))
            new = _edit(conn, clip_id, annotator, "unsplit", {"parts": parts}, undoes=edit_id)
            return {"edit_id": new, "clip_id": clip_id, "moved": []}
        if action == "merge":
            _active_clip(conn, detail["into"])
            conn.execute("UPDATE clips SET active = 0 WHERE id = ?", (detail["into"],))
            conn.execute("UPDATE clips SET active = 1 WHERE id IN (?, ?)", (clip_id, detail["with"]))
            new = _edit(conn, clip_id, annotator, "unmerge",
                        {"merged": detail["into"], "parts": [clip_id, detail["with"]]}, undoes=edit_id)
            return {"edit_id": new, "clip_id": clip_id, "moved": []}
        raise StoreError(f"a {action} edit cannot be undone")


def change_exercise(project: Project, exercise: str, annotator: str, clip_id: str | None = None,
                    video_id: str | None = None) -> list[str]:
    """Give a clip, or a video and all its active clips, another exercise; returns the clips that changed.

    One exercise edit per clip (undo_edit reverses it). Labels made under the old exercise, with their criteria
    verdicts, stay in the history and stop counting: the clip needs a second look under its new rubric.
    """
    if (clip_id is None) == (video_id is None):
        raise StoreError("name either a clip or a video")
    with connect(project) as db, transaction(db) as conn:
        if not conn.execute("SELECT 1 FROM exercises WHERE name = ?", (exercise,)).fetchone():
            raise StoreError(f"no exercise {exercise!r}")
        if video_id is not None:
            if conn.execute("UPDATE videos SET exercise = ? WHERE id = ?", (exercise, video_id)).rowcount == 0:
                raise StoreError(f"no video {video_id!r}")
            clips = _rows(conn, "SELECT * FROM clips WHERE video_id = ? AND active", (video_id,))
        else:
            clips = [_active_clip(conn, clip_id)]
        changed = [c for c in clips if c["exercise"] != exercise]
        stamp = now()
        for clip in changed:
            conn.execute("UPDATE clips SET exercise = ? WHERE id = ?", (exercise, clip["id"]))
            _edit(conn, clip["id"], annotator, "exercise",
                  {"from": clip["exercise"], "to": exercise, **({"video": video_id} if video_id else {})}, stamp=stamp)
    return [c["id"] for c in changed]


def set_excluded(project: Project, annotator: str, excluded: bool, reason: str = "", clip_id: str | None = None,
                 video_id: str | None = None) -> int | None:
    """Exclude (with a reason) or restore a clip or a whole video, as an appended event. Returns its id, or None
    when the clip or video is in that state already (a double click adds nothing).

    A clip is excluded while its own latest event or its video's is an exclusion: restoring a video brings back
    its clips except those excluded one by one.
    """
    if (clip_id is None) == (video_id is None):
        raise StoreError("name either a clip or a video")
    reason = " ".join((reason or "").split())[:500]
    if excluded and not reason:
        raise StoreError("say why it is excluded (a reason is kept with the exclusion)")
    column, target = ("clip_id", clip_id) if clip_id is not None else ("video_id", video_id)
    with connect(project) as db, transaction(db) as conn:
        table = "clips" if clip_id is not None else "videos"
        if not conn.execute(f"SELECT 1 FROM {table} WHERE id = ?", (target,)).fetchone():
            raise StoreError(f"no {table[:-1]} {target!r}")
        last = conn.execute(f"SELECT action FROM exclusions WHERE {column} = ? ORDER BY id DESC LIMIT 1",
                            (target,)).fetchone()
        if (last is not None and last[0] == "exclude") == excluded:
            return None
        cur = conn.execute(
            f"INSERT INTO exclusions ({column}, action, reason, annotator, created_at) VALUES (?, ?, ?, ?, ?)",
            (target, "exclude" if excluded else "restore", reason, annotator, now()))
        return cur.lastrowid


def exclusions(project: Project) -> list[dict]:
    """The exclusions in force, newest first: each with clip_id or video_id, reason, annotator, created_at."""
    with connect(project) as db:
        return _rows(db.conn, "SELECT * FROM exclusions WHERE action = 'exclude' AND id IN "
                              "(SELECT max(id) FROM exclusions GROUP BY clip_id, video_id) ORDER BY id DESC")


def excluded_clip_ids(project: Project) -> set[str]:
    """Every clip excluded, by itself or with its video (active or not)."""
    with connect(project) as db:
        return {r[0] for r in db.conn.execute("SELECT clip_id FROM excluded_clips")}


def exclusion_history(project: Project) -> list[dict]:
    """Every exclusion and restore event, oldest first."""
    with connect(project) as db:
        return _rows(db.conn, "SELECT * FROM exclusions ORDER BY id")


def _ancestors(conn: sqlite3.Connection) -> Callable[[str], list[str]]:
    """A function: clip id -> the clips it came from by splits and merges, nearest first."""
    parents: dict[str, list[str]] = {}
    for child, parent in conn.execute("SELECT clip_id, parent_id FROM clip_parents ORDER BY edit_id, parent_id"):
        parents.setdefault(child, []).append(parent)

    def walk(clip_id: str) -> list[str]:
        out, todo = [], list(parents.get(clip_id, []))
        while todo:
            parent = todo.pop(0)
            if parent not in out:
                out.append(parent)
                todo.extend(parents.get(parent, []))
        return out

    return walk


_LIVE_SQL = f"""
    SELECT e.*, {_on_frames("e", "c")} AS on_now FROM label_events e JOIN clips c ON c.id = e.clip_id
    WHERE e.kind IN ('verdict', 'adjudication') AND e.{_NOT_UNDONE}
"""


@memoised
def second_looks(project: Project, clip_ids: list[str] | None = None) -> dict[str, list[dict]]:
    """Active, not excluded clips (of clip_ids, when given: the Label page asks for the clip on screen) whose
    labels need a second look: per clip the labels that stopped counting.

    A coach's label needs a second look when it was made on other frames or another exercise than the clip has
    now, or on the clip it was split or merged from (inherited: from_clip names it), and that coach has given
    no verdict (a skip counts) on the present frames since. Each entry: annotator, kind, verdict, from_clip,
    start_frame, end_frame, exercise, created_at; one per coach, their latest.
    """
    with connect(project) as db:
        ancestors = _ancestors(db.conn)
        only = "" if clip_ids is None else " AND id IN (SELECT value FROM json_each(:ids))"
        clips = [r[0] for r in db.conn.execute("SELECT id FROM clips WHERE active AND id NOT IN "
                                               f"(SELECT clip_id FROM excluded_clips){only}",
                                               {"ids": json.dumps(clip_ids or [])})]
        if clip_ids is None:
            events = _rows(db.conn, _LIVE_SQL + " ORDER BY e.id")
        else:
            wanted = sorted({i for c in clips for i in [c, *ancestors(c)]})
            events = _rows(db.conn, _LIVE_SQL + " AND e.clip_id IN (SELECT value FROM json_each(?)) ORDER BY e.id",
                           (json.dumps(wanted),))
    looked: dict[str, set[str]] = {}  # clip -> coaches with a verdict on its present frames
    labels: dict[str, dict[str, dict]] = {}  # clip -> coach -> latest correct/incorrect/adjudication event
    for e in events:
        if e["on_now"]:
            looked.setdefault(e["clip_id"], set()).add(e["annotator"])
        if e["verdict"] in LABELS:
            labels.setdefault(e["clip_id"], {})[e["annotator"]] = e
    out: dict[str, list[dict]] = {}
    for clip_id in clips:
        entries: dict[str, dict] = {}
        for source in [clip_id, *ancestors(clip_id)]:
            for who, e in labels.get(source, {}).items():
                if who in entries or who in looked.get(clip_id, set()):
                    continue
                entries[who] = {"annotator": who, "kind": e["kind"], "verdict": e["verdict"],
                                "from_clip": source if source != clip_id else None,
                                **{k: e[k] for k in ("start_frame", "end_frame", "exercise", "created_at")}}
        if entries:
            out[clip_id] = sorted(entries.values(), key=lambda r: r["annotator"])
    return out


def clip_history(project: Project, clip_id: str) -> list[dict]:
    """A clip's whole story, oldest first: its label events and edits, and those of the clips it was split or
    merged from (inherited). Each row: id (of the label event; None for an edit), created_at, clip_id (where it
    happened), annotator, kind (verdict, undo, adjudication, or the edit: bounds, split, merge, exercise,
    unsplit, unmerge), verdict, criteria, note, complexity (the components the coach set), frames ("start-end"
    judged), exercise, state: "on these frames", "needs a second look" (other frames or exercise), "undone",
    "undo", "inherited from <clip>", or "edit"."""
    with connect(project) as db:
        ids = [clip_id, *_ancestors(db.conn)(clip_id)]
        marks = ", ".join("?" * len(ids))
        events = _rows(db.conn, f"SELECT e.*, {_on_frames('e', 'c')} AS on_now FROM label_events e "
                                f"JOIN clips c ON c.id = e.clip_id WHERE e.clip_id IN ({marks})", ids)
        undone = {r[0] for r in db.conn.execute(
            f"SELECT undoes FROM label_events WHERE undoes IS NOT NULL AND clip_id IN ({marks})", ids)}
        edits = _rows(db.conn, f"SELECT * FROM clip_edits WHERE clip_id IN ({marks})", ids)
    rows = []
    for e in events:
        if e["clip_id"] != clip_id:
            state = f"inherited from {e['clip_id']}"
        elif e["kind"] == "undo":
            state = "undo"
        elif e["id"] in undone:
            state = "undone"
        else:
            state = "on these frames" if e["on_now"] else "needs a second look"
        rows.append({"id": e["id"], "created_at": e["created_at"], "clip_id": e["clip_id"], "annotator": e["annotator"],
                     "kind": e["kind"], "verdict": e["verdict"], "criteria": json.loads(e["criteria"]),
                     "note": e["note"], "exercise": e["exercise"],
                     "complexity": {c: e[c] for c in COMPLEXITY_COLUMNS if e[c] is not None},
                     "frames": f"{e['start_frame']}-{e['end_frame']}" if e["start_frame"] is not None else "",
                     "state": state})
    for x in edits:
        rows.append({"id": None, "created_at": x["created_at"], "clip_id": x["clip_id"], "annotator": x["annotator"],
                     "kind": x["action"], "verdict": None, "criteria": {}, "note": x["detail"], "exercise": None,
                     "complexity": {}, "frames": "", "state": "edit"})
    return sorted(rows, key=lambda r: r["created_at"])


@memoised
def coach_complexity(project: Project, clip_ids: list[str] | None = None) -> dict[str, dict]:
    """Per clip the coaches' complexity: for each component the median over coaches of their current value (a
    coach's latest value set on the clip's present frames, not undone), `complexity` the mean of the medians
    known (as the automatic index), `coaches` how many coaches gave any. Clips without values are absent; with
    clip_ids, only those clips are looked at."""
    only = "" if clip_ids is None else " AND e.clip_id IN (SELECT value FROM json_each(:ids))"
    with connect(project) as db:
        events = _rows(db.conn, _LIVE_SQL + " AND (" + " OR ".join(f"e.{c} IS NOT NULL" for c in COMPLEXITY_COLUMNS)
                       + f") AND {_on_frames('e', 'c')}{only} ORDER BY e.id", {"ids": json.dumps(clip_ids or [])})
    latest: dict[str, dict[str, dict[str, float]]] = {}  # clip -> component -> coach -> value
    for e in events:
        for name in COMPLEXITY_COLUMNS:
            if e[name] is not None:
                latest.setdefault(e["clip_id"], {}).setdefault(name, {})[e["annotator"]] = float(e[name])
    out = {}
    for clip_id, parts in latest.items():
        medians = {name: statistics.median(parts[name].values()) for name in COMPLEXITY_COLUMNS if name in parts}
        out[clip_id] = {**{name: medians.get(name) for name in COMPLEXITY_COLUMNS},
                        "complexity": sum(medians.values()) / len(medians),
                        "coaches": len({who for by in parts.values() for who in by})}
    return out


# ---------------------------------------------------------------- rubric, provenance, athletes, trimmed spans, statistics (m004)

# The rubric of an exercise is the replay of its rubric events (undone ones skipped); the criteria rows and
# exercises.joints hold the replay's result so that every other query reads them directly.
_CRITERIA_SQL = ("SELECT exercise, name, title, description, cue, position, retired FROM criteria WHERE {where} "
                 "ORDER BY exercise, position, id")


def _criterion(row: dict) -> dict:
    """A criterion as pages use it: `name` is the key labels store, `title` what a coach reads."""
    return {"name": row["name"], "title": row["title"] or row["name"].replace("_", " "),
            "description": row["description"], "cue": row.get("cue") or "", "position": row["position"],
            "retired": bool(row["retired"])}


def _one_line(text: str | None, limit: int) -> str:
    return " ".join((text or "").split())[:limit]


def criteria_of(project: Project, exercise: str, include_retired: bool = False) -> list[dict]:
    """An exercise's criteria in the rubric's order: {name (the key), title, description, position, retired}.

    Retired criteria are left out unless include_retired: coaches are no longer asked about them, but the
    labels that used them keep their verdicts.
    """
    with connect(project) as db:
        rows = _rows(db.conn, _CRITERIA_SQL.format(where="exercise = :ex AND (:all OR NOT retired)"),
                     {"ex": exercise, "all": include_retired})
    return [_criterion(r) for r in rows]


def _replay(events: list[dict]) -> tuple[list[str] | None, dict[str, dict], list[str], str | None]:
    """Replay one exercise's rubric events: (joints or None when never set, criteria by key, key order,
    description or None)."""
    undone = {e["undoes"] for e in events if e["action"] == "undo"}
    joints, description, crits, order = None, None, {}, []
    for e in events:
        if e["id"] in undone or e["action"] == "undo":
            continue
        detail, key = json.loads(e["detail"]), e["criterion"]
        if e["action"] == "joints":
            joints = list(detail["joints"])
        elif e["action"] == "describe" and key is None:
            description = detail["description"]
        elif e["action"] == "add":
            crits[key] = {"title": detail.get("title", ""), "description": detail.get("description", ""),
                          "cue": detail.get("cue", ""), "retired": False}
            order = [k for k in order if k != key] + [key]
        elif key in crits and e["action"] == "rename":
            crits[key]["title"] = detail["title"]
        elif key in crits and e["action"] == "describe":  # the description, the coaching cue (m011) or both
            crits[key].update({k: detail[k] for k in ("description", "cue") if k in detail})
        elif key in crits and e["action"] in ("retire", "restore"):
            crits[key]["retired"] = e["action"] == "retire"
        elif e["action"] == "reorder":
            listed = [k for k in detail["order"] if k in crits]
            order = listed + [k for k in order if k not in listed]
    return joints, crits, order, description


def _materialise_rubric(conn: sqlite3.Connection, exercise: str) -> None:
    """Bring the exercise's criteria rows and joints in line with the replay of its rubric events.

    Only criteria named by an event are touched: one whose `add` was undone is retired, not deleted (an old
    label may still name it).
    """
    events = _rows(conn, "SELECT * FROM rubric_events WHERE exercise = ? ORDER BY id", (exercise,))
    joints, crits, order, description = _replay(events)
    if joints is not None:
        conn.execute("UPDATE exercises SET joints = ? WHERE name = ?", (json.dumps(joints), exercise))
    if description is not None:
        conn.execute("UPDATE exercises SET description = ? WHERE name = ?", (description, exercise))
    named = {e["criterion"] for e in events if e["criterion"]}
    position = {key: i for i, key in enumerate(order)}
    for key in sorted(named):
        c = crits.get(key, {"title": "", "description": "", "cue": "", "retired": True})
        values = (c["title"], c["description"], position.get(key, len(order)), int(c["retired"]), exercise, key)
        cur = conn.execute("UPDATE criteria SET title = ?, description = ?, position = ?, retired = ? "
                           "WHERE exercise = ? AND name = ?", values)
        if not cur.rowcount:
            conn.execute("INSERT INTO criteria (title, description, position, retired, exercise, name) "
                         "VALUES (?, ?, ?, ?, ?, ?)", values)
        if _has_cue_column(conn):  # the migrations before m011 replay rubrics too, without the column
            conn.execute("UPDATE criteria SET cue = ? WHERE exercise = ? AND name = ?", (c["cue"], exercise, key))


def _record_rubric(conn: sqlite3.Connection, exercise: str, criterion: str | None, action: str, detail: dict,
                   annotator: str, undoes: int | None = None) -> int:
    cur = conn.execute(
        "INSERT INTO rubric_events (exercise, criterion, action, detail, undoes, annotator, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (exercise, criterion, action, json.dumps(detail, sort_keys=True), undoes, annotator, now()))
    _materialise_rubric(conn, exercise)
    return cur.lastrowid


def _check_title(conn: sqlite3.Connection, exercise: str, key: str, title: str) -> None:
    """Two criteria of one exercise must not read the same to a coach."""
    for row in _rows(conn, "SELECT name, title FROM criteria WHERE exercise = ? AND name != ?", (exercise, key)):
        shown = row["title"] or row["name"].replace("_", " ")
        if shown.casefold() == title.replace("_", " ").casefold():
            raise StoreError(f"{exercise} has a criterion called {shown!r} already")


def _criterion_row(conn: sqlite3.Connection, exercise: str, key: str) -> dict:
    rows = _rows(conn, "SELECT * FROM criteria WHERE exercise = ? AND name = ?", (exercise, key))
    if not rows:
        raise StoreError(f"{exercise} has no criterion {key!r}")
    return rows[0]


def edit_criterion(project: Project, exercise: str, key: str, annotator: str, *, title: str | None = None,
                   description: str | None = None, retired: bool | None = None) -> list[int]:
    """Rename (the title shown; the key labels use stays), describe, retire or restore a criterion.

    Each change is one rubric event (nothing changed, nothing recorded); returns the new events' ids.
    """
    ids = []
    with connect(project) as db, transaction(db) as conn:
        row = _criterion_row(conn, exercise, key)
        if title is not None:
            title = _one_line(title, 60)
            if not title:
                raise StoreError("a criterion needs a name")
            if title != (row["title"] or row["name"].replace("_", " ")):
                _check_title(conn, exercise, key, title)
                ids.append(_record_rubric(conn, exercise, key, "rename", {"title": title}, annotator))
        if description is not None and _one_line(description, 300) != row["description"]:
            ids.append(_record_rubric(conn, exercise, key, "describe", {"description": _one_line(description, 300)},
                                      annotator))
        if retired is not None and bool(retired) != bool(row["retired"]):
            ids.append(_record_rubric(conn, exercise, key, "retire" if retired else "restore", {}, annotator))
    return ids


def reorder_criteria(project: Project, exercise: str, keys: list[str], annotator: str) -> int:
    """Put the exercise's criteria in this order (keys not listed follow in their present order)."""
    with connect(project) as db, transaction(db) as conn:
        known = {r[0] for r in conn.execute("SELECT name FROM criteria WHERE exercise = ?", (exercise,))}
        unknown = [k for k in keys if k not in known]
        if unknown:
            raise StoreError(f"{exercise} has no criterion {unknown[0]!r}")
        return _record_rubric(conn, exercise, None, "reorder", {"order": list(dict.fromkeys(keys))}, annotator)


def set_exercise(project: Project, exercise: str, annotator: str, *, joints: list[str] | None = None,
                 description: str | None = None) -> list[int]:
    """Change an exercise's joints of interest or description, as rubric events; returns their ids."""
    from curation.kinematics import ANGLES  # numpy-heavy: only for this check

    ids = []
    with connect(project) as db, transaction(db) as conn:
        rows = _rows(conn, "SELECT * FROM exercises WHERE name = ?", (exercise,))
        if not rows:
            raise StoreError(f"no exercise {exercise!r}")
        if joints is not None:
            bad = [j for j in joints if j not in ANGLES]
            if bad:
                raise StoreError(f"unknown joint {bad[0]!r} (one of {', '.join(ANGLES)})")
            if list(joints) != json.loads(rows[0]["joints"]):
                ids.append(_record_rubric(conn, exercise, None, "joints", {"joints": list(joints)}, annotator))
        if description is not None and _one_line(description, 300) != rows[0]["description"]:
            ids.append(_record_rubric(conn, exercise, None, "describe", {"description": _one_line(description, 300)},
                                      annotator))
    return ids


def _event_to_undo(conn: sqlite3.Connection, table: str, event_id: int, what: str) -> dict:
    """The row of an undoable event table (rubric, video, trim events) that event_id may undo: it exists, is no
    undo itself and is not undone yet; else StoreError naming `what`. table is this module's word."""
    rows = _rows(conn, f"SELECT * FROM {table} WHERE id = ?", (event_id,))
    if not rows or rows[0]["undoes"] is not None:
        raise StoreError(f"no {what} {event_id} to undo")
    if conn.execute(f"SELECT 1 FROM {table} WHERE undoes = ?", (event_id,)).fetchone():
        raise StoreError(f"{what} {event_id} is undone already")
    return rows[0]


def undo_rubric_event(project: Project, event_id: int, annotator: str) -> int:
    """Take back one rubric change (an event of its own); returns the undo event's id."""
    with connect(project) as db, transaction(db) as conn:
        e = _event_to_undo(conn, "rubric_events", event_id, "rubric change")
        return _record_rubric(conn, e["exercise"], e["criterion"], "undo", {}, annotator, undoes=event_id)


def _undoable_history(project: Project, table: str, column: str, value: str | None, order: str = "DESC",
                      json_columns: tuple[str, ...] = ()) -> list[dict]:
    """An append-only table of undoable events (rows with `undoes`), each with `undone` (a later event took it
    back), filtered on column = value unless value is None. table, column and order are this module's words."""
    with connect(project) as db:
        rows = _rows(db.conn, f"SELECT e.*, e.id IN (SELECT undoes FROM {table} WHERE undoes IS NOT NULL) "
                     f"AS undone FROM {table} e WHERE :v IS NULL OR {column} = :v ORDER BY id {order}", {"v": value})
    for r in rows:
        r["undone"] = bool(r["undone"])
        for name in json_columns:
            r[name] = json.loads(r[name])
    return rows


def rubric_events(project: Project, exercise: str | None = None) -> list[dict]:
    """The rubric's history, newest first, each with `undone` (a later event took it back)."""
    return _undoable_history(project, "rubric_events", "exercise", exercise, json_columns=("detail",))


def rubric_at(project: Project, exercise: str, at: str | None = None) -> dict:
    """The exercise's rubric as it stood at time `at` (ISO; None: now): {version, joints, criteria}.

    version is the id of the last rubric event up to then; criteria are in that rubric's order, retired
    ones included with retired True.
    """
    with connect(project) as db:
        events = _rows(db.conn, "SELECT * FROM rubric_events WHERE exercise = ? AND (? IS NULL OR created_at <= ?) "
                       "ORDER BY id", (exercise, at, at))
    joints, crits, order, _ = _replay(events)
    return {
        "exercise": exercise,
        "version": max((e["id"] for e in events), default=0),
        "joints": joints or [],
        "criteria": [_criterion({"name": k, **crits[k], "position": i}) for i, k in enumerate(order)],
    }


def label_rubric(project: Project, event_id: int) -> dict:
    """The rubric a label event was made with (its clip's exercise, as it stood when the label was saved)."""
    with connect(project) as db:
        # The label's own exercise (recorded since m003) when the clip's has changed since.
        row = db.conn.execute("SELECT coalesce(e.exercise, c.exercise), e.created_at FROM label_events e "
                              "JOIN clips c ON c.id = e.clip_id WHERE e.id = ?", (event_id,)).fetchone()
    if row is None:
        raise StoreError(f"no label event {event_id}")
    return rubric_at(project, row[0], row[1])


# Provenance: what the source said about a video (yt-dlp's fields, cleaned). The athlete is the project's own.
PROVENANCE = ("uploader", "channel", "channel_id", "upload_date", "duration", "license", "webpage_url")


def set_athlete(project: Project, video_ids: list[str], athlete: str, annotator: str) -> int:
    """Name the athlete of these videos ('' = unknown), one event per video whose athlete changes; returns
    how many changed."""
    athlete = _one_line(athlete, 80)
    changed = 0
    with connect(project) as db, transaction(db) as conn:
        for video_id in dict.fromkeys(video_ids):
            row = conn.execute("SELECT athlete FROM videos WHERE id = ?", (video_id,)).fetchone()
            if row is None:
                raise StoreError(f"no video {video_id!r}")
            if row[0] != athlete:
                _video_event(conn, video_id, "athlete", athlete, row[0], annotator)
                changed += 1
    return changed


def _video_event(conn: sqlite3.Connection, video_id: str, field: str, value: str, previous: str, annotator: str,
                 undoes: int | None = None) -> int:
    cur = conn.execute("INSERT INTO video_events (video_id, field, value, previous, undoes, annotator, created_at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)", (video_id, field, value, previous, undoes, annotator, now()))
    conn.execute(f"UPDATE videos SET {field} = ? WHERE id = ?", (value, video_id))  # field: CHECKed by the table
    return cur.lastrowid


def undo_video_event(project: Project, event_id: int, annotator: str) -> int:
    """Take back a video edit: its field gets back the value it had (an event of its own)."""
    with connect(project) as db, transaction(db) as conn:
        e = _event_to_undo(conn, "video_events", event_id, "video edit")
        current = conn.execute(f"SELECT {e['field']} FROM videos WHERE id = ?", (e["video_id"],)).fetchone()[0]
        return _video_event(conn, e["video_id"], e["field"], e["previous"], current, annotator, undoes=event_id)


def video_events(project: Project, video_id: str | None = None) -> list[dict]:
    """Edits of videos (athlete), newest first, each with `undone`."""
    return _undoable_history(project, "video_events", "video_id", video_id)


def removed_spans(project: Project, video_id: str) -> list[dict]:
    """What the automatic trim removed from a video: {start_frame, end_frame, reason}, in order."""
    with connect(project) as db:
        return _rows(db.conn, "SELECT start_frame, end_frame, reason FROM trim_spans WHERE video_id = ? "
                     "ORDER BY start_frame", (video_id,))


def trim_events(project: Project, video_id: str | None = None) -> list[dict]:
    """The coaches' review of the trim (restore / remove / undo), oldest first, each with `undone`."""
    return _undoable_history(project, "trim_events", "video_id", video_id, order="ASC", json_columns=("clips",))


def _video_frames(conn: sqlite3.Connection, video_id: str) -> int:
    row = conn.execute("SELECT frames FROM videos WHERE id = ?", (video_id,)).fetchone()
    if row is None:
        raise StoreError(f"no video {video_id!r}")
    return row[0]


def restore_span(project: Project, video_id: str, start: int, end: int, annotator: str, clips: list[dict]) -> dict:
    """Give frames [start, end) back to the dataset as these clips (rows without id: ids are made here, one
    event's clips named after it). Returns the event: {id, clips}."""
    with connect(project) as db, transaction(db) as conn:
        frames = _video_frames(conn, video_id)
        if not 0 <= start < end <= frames:
            raise StoreError(f"a span must lie within the video's frames 0..{frames}")
        if not clips:
            raise StoreError("nothing to restore: the span makes no clip")
        cur = conn.execute("INSERT INTO trim_events (video_id, action, start_frame, end_frame, annotator, created_at) "
                           "VALUES (?, 'restore', ?, ?, ?, ?)", (video_id, start, end, annotator, now()))
        event_id = cur.lastrowid
        stamp = now()
        rows = [{**c, "id": f"{video_id}_r{event_id}_{i:02d}", "video_id": video_id, "created_at": stamp}
                for i, c in enumerate(clips)]
        _insert(conn, "clips", rows)
        ids = [r["id"] for r in rows]
        conn.execute("UPDATE trim_events SET clips = ? WHERE id = ?", (json.dumps(ids), event_id))
    return {"id": event_id, "clips": ids}


def remove_span(project: Project, video_id: str, start: int, end: int, annotator: str) -> dict:
    """Take frames [start, end) of a kept part out of the dataset: the clips of the video that overlap it are
    excluded (exclusion events, their labels stay). Returns the trim event: {id, clips}."""
    with connect(project) as db, transaction(db) as conn:
        frames = _video_frames(conn, video_id)
        if not 0 <= start < end <= frames:
            raise StoreError(f"a span must lie within the video's frames 0..{frames}")
        ids = [r[0] for r in conn.execute(
            "SELECT id FROM clips WHERE video_id = ? AND active AND start_frame < ? AND end_frame > ? "
            "AND id NOT IN (SELECT clip_id FROM excluded_clips) ORDER BY start_frame", (video_id, end, start))]
        stamp = now()
        cur = conn.execute("INSERT INTO trim_events (video_id, action, start_frame, end_frame, clips, annotator, "
                           "created_at) VALUES (?, 'remove', ?, ?, ?, ?, ?)",
                           (video_id, start, end, json.dumps(ids), annotator, stamp))
        _insert(conn, "exclusions", [{"clip_id": i, "action": "exclude", "annotator": annotator, "created_at": stamp,
                                      "reason": f"trim review: frames {start}-{end} removed"} for i in ids])
    return {"id": cur.lastrowid, "clips": ids}


def undo_trim_event(project: Project, event_id: int, annotator: str) -> int:
    """Take back a restore (its clips, and the clips split or merged from them, are set aside) or a removal
    (its clips are restored from their exclusion, unless something else excluded them since). Returns the undo
    event's id."""
    with connect(project) as db, transaction(db) as conn:
        e = _event_to_undo(conn, "trim_events", event_id, "trim change")
        ids = json.loads(e["clips"])
        if e["action"] == "restore":
            conn.execute("WITH RECURSIVE made(id) AS (SELECT value FROM json_each(?) UNION SELECT p.clip_id "
                         "FROM clip_parents p JOIN made ON p.parent_id = made.id) "
                         "UPDATE clips SET active = 0 WHERE id IN made", (e["clips"],))
        else:
            ours = f"trim review: frames {e['start_frame']}-{e['end_frame']} removed"
            back = [i for i in ids if conn.execute(
                "SELECT action = 'exclude' AND reason = ? FROM exclusions WHERE clip_id = ? ORDER BY id DESC LIMIT 1",
                (ours, i)).fetchone() == (1,)]
            _insert(conn, "exclusions", [{"clip_id": i, "action": "restore", "annotator": annotator,
                                          "created_at": now(), "reason": "trim review: removal undone"} for i in back])
        cur = conn.execute("INSERT INTO trim_events (video_id, action, start_frame, end_frame, clips, undoes, "
                           "annotator, created_at) VALUES (?, 'undo', ?, ?, ?, ?, ?, ?)",
                           (e["video_id"], e["start_frame"], e["end_frame"], e["clips"], event_id, annotator, now()))
    return cur.lastrowid


def _trimmed_frames(video: dict, spans: list[dict], events: list[dict]) -> tuple[int, int]:
    """Frames of a video the automatic trim removed, and those removed now (after restores and removals).

    Kept as disjoint [start, end) intervals, not per frame: the Home page counts every video of the project.
    """
    frames = int(video["frames"])
    if spans:
        removed = [(s["start_frame"], s["end_frame"]) for s in spans]
    else:  # ingested before spans were kept: only the share is known, placed at the start for counting
        removed = [(0, int(round(video["trimmed_share"] * frames)))]
    automatic = sum(b - a for a, b in removed)
    for e in events:
        if e["action"] != "undo" and not e["undone"]:
            a, b = max(0, e["start_frame"]), min(frames, e["end_frame"])
            removed = [part for s, t in removed for part in ((s, min(t, a)), (max(s, b), t)) if part[1] > part[0]]
            if e["action"] == "remove" and b > a:
                removed.append((a, b))
    return automatic, sum(b - a for a, b in removed)


def trim_summary(project: Project) -> dict:
    """Trimmed shares per video and overall: `automatic` (what the trim cut) and `current` (after review)."""
    with connect(project) as db:
        videos = _rows(db.conn, "SELECT id, frames, trimmed_share FROM videos ORDER BY id")
        spans = _rows(db.conn, "SELECT * FROM trim_spans ORDER BY video_id, start_frame")
    events = trim_events(project)
    per_video, total, auto_sum, now_sum = {}, 0, 0, 0
    for v in videos:
        automatic, current = _trimmed_frames(v, [s for s in spans if s["video_id"] == v["id"]],
                                             [e for e in events if e["video_id"] == v["id"]])
        frames = max(1, v["frames"])
        per_video[v["id"]] = {"automatic": automatic / frames, "current": current / frames, "frames": v["frames"]}
        total, auto_sum, now_sum = total + v["frames"], auto_sum + automatic, now_sum + current
    return {"per_video": per_video, "automatic": auto_sum / total if total else None,
            "current": now_sum / total if total else None}


def _summary(values: list[float]) -> dict:
    """n, total, mean, median, min, max of a list of numbers (None where empty)."""
    import statistics

    values = [float(v) for v in values if v is not None]
    if not values:
        return {"n": 0, "total": 0.0, "mean": None, "median": None, "min": None, "max": None}
    return {"n": len(values), "total": sum(values), "mean": statistics.fmean(values),
            "median": statistics.median(values), "min": min(values), "max": max(values)}


def dataset_statistics(project: Project) -> dict:
    """The tables published exercise-video datasets report, for the Statistics tab and `curation stats`.

    Per exercise and class: videos, clips, labelled clips and frames; durations (video and clip seconds),
    resolutions and frame rates; person and trimmed shares per video and overall; complexity per exercise
    (automatic: the clips' index; coaches': the index of coach_complexity), each the mean over the clips;
    coaches' seconds per verdict (every verdict event, skips included). Labels: consensus_labels', read from
    m016's dataset_rows (its label state: correct and incorrect are the consensus labels).
    """
    coaches = coach_complexity(project)
    with connect(project) as db:
        videos = _rows(db.conn, "SELECT id, exercise, frames, fps, width, height, person_share, athlete, channel_id "
                       "FROM videos ORDER BY id")
        # Summed in SQL per exercise and label over m016's covering index (no row of a clip read into Python).
        kept = "d.active = 1 AND d.excluded = 0"
        groups = db.conn.execute("SELECT exercise, state, count(*), sum(frames), sum(seconds), sum(complexity), "
                                 f"count(complexity) FROM dataset_rows d WHERE {kept} GROUP BY 1, 2").fetchall()
        # Each duration once with its count (a handful of frame counts at a frame rate), in order.
        durations = db.conn.execute(f"SELECT seconds, count(*) FROM dataset_rows d WHERE {kept} "
                                    "GROUP BY seconds ORDER BY seconds").fetchall()
        exercise_of = dict(db.conn.execute(f"SELECT d.clip_id, d.exercise FROM json_each(?) j CROSS JOIN "
                                           f"dataset_rows d ON d.clip_id = j.value WHERE {kept}",
                                           (json.dumps(list(coaches)),)))
        timing = _rows(db.conn, "SELECT verdict, seconds FROM label_events WHERE kind = 'verdict' AND seconds IS NOT "
                       "NULL AND id NOT IN (SELECT undoes FROM label_events WHERE undoes IS NOT NULL)")
    per: dict[str, dict] = {}
    automatic: dict[str, list[float]] = {}  # exercise -> [sum, count] of the clips' automatic index

    def entry(exercise: str) -> dict:
        if exercise not in per:  # not setdefault: its default would be built for each of 100,000 clips
            per[exercise] = {"videos": 0, "clips": 0, "frames": 0, "labelled": 0, "labelled_frames": 0,
                             "seconds": 0.0, "per_class": {lab: {"clips": 0, "frames": 0} for lab in LABELS},
                             "complexity_auto": [], "complexity_coach": []}
        return per[exercise]

    for v in videos:
        entry(v["exercise"] or "unknown")["videos"] += 1
    for exercise, label, n_clips, n, seconds, complexity, rated in groups:
        e = entry(exercise)
        e["clips"] += n_clips
        e["frames"] += n
        e["seconds"] += seconds
        total = automatic.setdefault(exercise, [0.0, 0])
        total[0], total[1] = total[0] + (complexity or 0.0), total[1] + rated
        if label in LABELS:
            e["labelled"] += n_clips
            e["labelled_frames"] += n
            e["per_class"][label]["clips"] += n_clips
            e["per_class"][label]["frames"] += n
    for clip_id, values in coaches.items():
        if clip_id in exercise_of:
            entry(exercise_of[clip_id])["complexity_coach"].append(values["complexity"])
    for exercise, e in per.items():
        total, rated = automatic.get(exercise, (0.0, 0))
        e["complexity_auto"] = total / rated if rated else None
        e["complexity_coach"] = _summary(e["complexity_coach"])["mean"]
    trim = trim_summary(project)
    frames = sum(v["frames"] for v in videos)
    return {
        "exercises": dict(sorted(per.items())),
        "frames": frames,
        "labelled_frames": sum(e["labelled_frames"] for e in per.values()),
        "per_class": {lab: {"clips": sum(e["per_class"][lab]["clips"] for e in per.values()),
                            "frames": sum(e["per_class"][lab]["frames"] for e in per.values())} for lab in LABELS},
        "video_seconds": _summary([v["frames"] / v["fps"] for v in videos if v["fps"]]),
        "clip_seconds": _summary([seconds for seconds, n in durations for _ in range(n)]),
        "resolutions": _counts(f"{v['width']}x{v['height']}" for v in videos),
        "fps": _counts(f"{v['fps']:g}" for v in videos),
        "athletes": len({v["athlete"] for v in videos if v["athlete"]}),
        "channels": len({v["channel_id"] for v in videos if v["channel_id"]}),
        "person_share": {
            "overall": sum(v["person_share"] * v["frames"] for v in videos) / frames if frames else None,
            "per_video": {v["id"]: v["person_share"] for v in videos}},
        "trimmed_share": {"overall": trim["current"], "automatic": trim["automatic"],
                          "per_video": {k: v["current"] for k, v in trim["per_video"].items()}},
        "seconds_per_verdict": {verdict: _summary([t["seconds"] for t in timing if t["verdict"] == verdict])
                                for verdict in VERDICTS},
    }


def _counts(keys) -> dict[str, int]:
    out: dict[str, int] = {}
    for key in keys:
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


# ---------------------------------------------------------------- dataset exchange (m005)


def exchange_schema(project: Project, tables: list[str]) -> dict[str, list[tuple[str, str]]]:
    """Each listed table that exists, in list order, with its columns as (name, declared type)."""
    with connect(project) as db:
        existing = {r[0] for r in db.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return {t: [(r[1], r[2]) for r in db.conn.execute(f'PRAGMA table_info("{t}")')]
                for t in tables if t in existing}


def dump_tables(project: Project, tables: list[str]) -> dict[str, tuple[list[str], list[tuple]]]:
    """Every row of each listed table that exists, (column names, rows sorted by primary key), read in one
    transaction so that the tables fit together."""
    out = {}
    with connect(project) as db:
        db.conn.execute("BEGIN")
        try:
            for table in exchange_schema(project, tables):
                info = list(db.conn.execute(f'PRAGMA table_info("{table}")'))
                key = [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]] or [r[1] for r in info]
                cur = db.conn.execute(f'SELECT * FROM "{table}" ORDER BY ' + ", ".join(f'"{k}"' for k in key))
                out[table] = ([d[0] for d in cur.description], cur.fetchall())
        finally:
            db.conn.execute("ROLLBACK")
    return out


_HAS_DATA_SQL = "SELECT EXISTS (SELECT 1 FROM clips) OR EXISTS (SELECT 1 FROM videos)"


def has_project_data(project: Project) -> bool:
    """Whether the project has clips or videos (a whole exported project is restored only into one without)."""
    with connect(project) as db:
        return bool(db.conn.execute(_HAS_DATA_SQL).fetchone()[0])


def restore_tables(project: Project, tables: dict[str, tuple[list[str], list[tuple[int, list]]]],
                   before_commit: Callable[[], None] | None = None) -> None:
    """Replace the rows of these tables by the given ones (ids kept) in one transaction, in a project without
    clips or videos. Foreign keys are checked once all rows are in; a refused row is named by its line."""
    with connect(project) as db, transaction(db) as conn:
        if conn.execute(_HAS_DATA_SQL).fetchone()[0]:
            raise StoreError("the project has clips or videos: a whole project is restored only into an empty one")
        conn.execute("PRAGMA defer_foreign_keys = ON")  # rows may refer to rows further down (undoes, splits)
        for table in reversed(list(tables)):
            conn.execute(f'DELETE FROM "{table}"')
        for table, (columns, rows) in tables.items():
            sql = (f'INSERT INTO "{table}" (' + ", ".join(f'"{c}"' for c in columns) + ") VALUES ("
                   + ", ".join("?" * len(columns)) + ")")
            for line, values in rows:
                try:
                    conn.execute(sql, values)
                except sqlite3.IntegrityError as exc:
                    raise StoreError(f"tables/{table}.csv line {line}: {exc}") from None
        broken = conn.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            raise StoreError(f"tables/{broken[0][0]}.csv: {len(broken)} rows refer to {broken[0][2]} rows that are "
                             f"not there")
        if before_commit is not None:
            before_commit()


# ---------------------------------------------------------------- accounts, roles, audit (m006)


def get_account(project: Project, name: str) -> dict | None:
    """A person's role row, or None."""
    with connect(project) as db:
        rows = _rows(db.conn, "SELECT * FROM accounts WHERE name = ?", (name,))
    return rows[0] if rows else None


def list_accounts(project: Project) -> list[dict]:
    with connect(project) as db:
        return _rows(db.conn, "SELECT * FROM accounts ORDER BY name")


def _audit(conn: sqlite3.Connection, actor: str, action: str, target: str = "", detail: dict | None = None) -> None:
    _insert(conn, "audit", [{"at": now(), "actor": actor, "action": action, "target": target,
                             "detail": json.dumps(detail or {}, sort_keys=True)}])


def _keeps_an_admin(conn: sqlite3.Connection, name: str) -> None:
    """Refuse a change that would leave a project that had an admin without one (nobody could manage it)."""
    others = conn.execute("SELECT count(*) FROM accounts WHERE role = 'admin' AND name != ?", (name,)).fetchone()[0]
    was_admin = conn.execute("SELECT 1 FROM accounts WHERE name = ? AND role = 'admin'", (name,)).fetchone()
    if was_admin and not others:
        raise StoreError(f"{name} is the last admin: make someone else admin first")


def put_account(project: Project, name: str, role: str, actor: str) -> None:
    """Give `name` the role (adding the account if new), recorded in the audit log in the same transaction."""
    with connect(project) as db, transaction(db) as conn:
        before = conn.execute("SELECT role FROM accounts WHERE name = ?", (name,)).fetchone()
        if before and before[0] == role:
            return
        if role != "admin":
            _keeps_an_admin(conn, name)
        stamp = now()
        conn.execute("INSERT INTO accounts (name, role, created_at, updated_at) VALUES (?, ?, ?, ?) "
                     "ON CONFLICT (name) DO UPDATE SET role = excluded.role, updated_at = excluded.updated_at",
                     (name, role, stamp, stamp))
        _audit(conn, actor, "role set" if before else "user added", name,
               {"role": role, **({"was": before[0]} if before else {})})


def delete_account(project: Project, name: str, actor: str) -> None:
    """Remove `name`'s account (their label events stay); audited."""
    with connect(project) as db, transaction(db) as conn:
        _keeps_an_admin(conn, name)
        if conn.execute("DELETE FROM accounts WHERE name = ?", (name,)).rowcount:
            _audit(conn, actor, "user removed", name)


def record_audit(project: Project, actor: str, action: str, target: str = "", detail: dict | None = None) -> None:
    """Append one line to the audit log (an import, an export, a password set...)."""
    with connect(project) as db, transaction(db) as conn:
        _audit(conn, actor, action, target, detail)


def audit_log(project: Project, limit: int = 500) -> list[dict]:
    """The latest audit lines, newest first."""
    with connect(project) as db:
        return _rows(db.conn, "SELECT * FROM audit ORDER BY id DESC LIMIT ?", (limit,))


# ---------------------------------------------------------------- job liveness (m007)


def pid_alive(pid: int | None) -> bool:
    """Whether a process with this id runs on this machine (workers and ingests hold claims by pid)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    try:  # a zombie has exited but still answers kill(0)
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(") ", 1)[1][:1] not in "ZX"
    except OSError:
        return True


def claim_source(project: Project, source_key: str, owner: str, pid: int | None = None) -> bool:
    """Take the source for one ingest; False when a live process holds it (a claim of a dead one is taken over)."""
    pid = os.getpid() if pid is None else pid
    with connect(project) as db, transaction(db) as conn:
        row = conn.execute("SELECT owner, pid FROM source_claims WHERE source_key = ?", (source_key,)).fetchone()
        if row is not None and row[0] != owner and pid_alive(row[1]):
            return False
        conn.execute("INSERT OR REPLACE INTO source_claims VALUES (?, ?, ?, ?)", (source_key, owner, pid, now()))
    return True


def release_source(project: Project, source_key: str, owner: str) -> None:
    """Give the source back (the ingest ended in any way); a claim taken over by someone else stays theirs."""
    with connect(project) as db, transaction(db) as conn:
        conn.execute("DELETE FROM source_claims WHERE source_key = ? AND owner = ?", (source_key, owner))


def beat(project: Project, job_id: str, pid: int) -> bool | None:
    """The worker's liveness signal (every second, whatever the job does). True when cancel was asked, None
    when the job is no longer this worker's (recovered by someone else after a stall)."""
    with connect(project) as db, transaction(db) as conn:
        changed = conn.execute("UPDATE jobs SET heartbeat_at = ? WHERE id = ? AND status = 'running' AND pid = ?",
                               (now(), job_id, pid)).rowcount
        row = conn.execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return bool(row[0]) if changed and row else None


def oldest_queued_at(project: Project) -> str | None:
    """When the job waiting longest was queued (ISO time), or None when nothing waits."""
    with connect(project) as db:
        return db.conn.execute("SELECT min(created_at) FROM jobs WHERE status = 'queued'").fetchone()[0]


def active_job_ids(project: Project) -> set[str]:
    """Ids of the queued and running jobs (whose folders must stay)."""
    with connect(project) as db:
        return {r[0] for r in db.conn.execute("SELECT id FROM jobs WHERE status IN ('queued', 'running')")}


# ---------------------------------------------------------------- runs (m008)


def add_run_promotion(project: Project, run_id: str | None, annotator: str, note: str = "") -> dict:
    """Append a promotion event (run_id None: withdraw the promotion); returns the row written."""
    if not annotator.strip():
        raise StoreError("say who promotes the run")
    row = {"run_id": run_id, "annotator": annotator.strip(), "note": note, "created_at": now()}
    with connect(project) as db, transaction(db) as conn:
        _insert(conn, "run_promotions", [row])
    return row


def run_promotions(project: Project) -> list[dict]:
    """Every promotion event, oldest first (id, run_id or None for a withdrawal, annotator, note, created_at)."""
    with connect(project) as db:
        return _rows(db.conn, "SELECT id, run_id, annotator, note, created_at FROM run_promotions ORDER BY id")


# ---------------------------------------------------------------- shot cuts, flagged spans, camera views (m010)


def shot_cuts(project: Project, video_id: str) -> list[int]:
    """First frames of the video's shots after its hard camera cuts, in order."""
    with connect(project) as db:
        return [r[0] for r in db.conn.execute(
            "SELECT frame FROM shot_cuts WHERE video_id = ? ORDER BY frame", (video_id,))]


def flagged_spans(project: Project, video_id: str) -> list[dict]:
    """Spans the ingest kept but marked (start_frame, end_frame, reason), in frame order."""
    with connect(project) as db:
        return _rows(db.conn, "SELECT start_frame, end_frame, reason FROM flagged_spans WHERE video_id = ? "
                              "ORDER BY start_frame, end_frame", (video_id,))


# Query sections of session 4 (each stream writes under its own marker).
# @section cues (m011)

CUE_LIMIT = 160  # characters of a cue: one short sentence a coach says during a set


def _has_cue_column(conn: sqlite3.Connection) -> bool:
    return any(r[1] == "cue" for r in conn.execute("PRAGMA table_info(criteria)"))


def set_cue(project: Project, exercise: str, key: str, cue: str, annotator: str) -> int | None:
    """Write a criterion's coaching cue (one line, at most CUE_LIMIT characters; '' for none) as a rubric event
    (a `describe` whose detail holds `cue`: undoable like any rubric change); returns its id, None when the
    cue is unchanged."""
    cue = _one_line(cue, CUE_LIMIT)
    with connect(project) as db, transaction(db) as conn:
        row = _criterion_row(conn, exercise, key)
        if cue == row["cue"]:
            return None
        return _record_rubric(conn, exercise, key, "describe", {"cue": cue}, annotator)


def cues_of(project: Project, exercise: str) -> dict[str, str]:
    """criterion key -> coaching cue ('' where none) of an exercise's active criteria, in the rubric's order."""
    return {c["name"]: c["cue"] for c in criteria_of(project, exercise)}
# @section assisted labelling (m012)

PREDICTION_FIELDS = ("run_id", "p_incorrect", "verdict", "failed")  # what a label event keeps of an opinion


def _prediction_cells(event: dict) -> dict:
    """A label event's prediction (compact JSON of PREDICTION_FIELDS, or NULL) and prediction_shown (1, 0, or NULL
    when not recorded) cells. Refuses a malformed opinion and one said to be shown that is not recorded."""
    prediction, shown = event.get("prediction"), event.get("prediction_shown")
    if shown is not None and not isinstance(shown, (bool, int)):
        raise StoreError("prediction_shown must be true or false")
    flag = None if shown is None else int(bool(shown))
    if prediction is None:
        if flag:
            raise StoreError("a prediction shown to the coach must be recorded with the label (prediction is None)")
        return {"prediction": None, "prediction_shown": flag}
    if not isinstance(prediction, dict):
        raise StoreError("prediction must be a dict of run_id, p_incorrect, verdict, failed (or None)")
    p, failed = prediction.get("p_incorrect"), prediction.get("failed") or []
    if not (isinstance(prediction.get("run_id"), str) and isinstance(p, (int, float)) and not isinstance(p, bool)
            and 0 <= p <= 1 and prediction.get("verdict") in LABELS and isinstance(failed, (list, tuple))
            and all(isinstance(name, str) for name in failed)):
        raise StoreError("prediction needs run_id (text), p_incorrect (0-1), verdict (correct or incorrect) and "
                         "failed (a list of criterion names)")
    cell = {"run_id": prediction["run_id"], "p_incorrect": float(p), "verdict": prediction["verdict"],
            "failed": list(failed)}
    return {"prediction": json.dumps(cell, sort_keys=True), "prediction_shown": flag}


def assisted_verdicts(project: Project) -> list[dict]:
    """Every coach's correct/incorrect verdict that was not undone (imports and adjudications left out), oldest
    first: id, clip_id, annotator, verdict, seconds, created_at, prediction (the model's opinion then, a dict of
    PREDICTION_FIELDS, or None) and prediction_shown (True, False, or None when not recorded)."""
    with connect(project) as db:
        rows = _rows(db.conn, "SELECT id, clip_id, annotator, verdict, seconds, created_at, prediction, "
                              "prediction_shown FROM label_events WHERE kind = 'verdict' AND verdict IN ('correct', "
                              f"'incorrect') AND annotator != 'import' AND {_NOT_UNDONE} ORDER BY id")
    for r in rows:
        r["prediction"] = json.loads(r["prediction"]) if r["prediction"] else None
        r["prediction_shown"] = None if r["prediction_shown"] is None else bool(r["prediction_shown"])
    return rows


def clips_edited_since(project: Project, clip_ids: list[str], since: str) -> set[str]:
    """Those of clip_ids with a clip edit (bounds, exercise, split, merge, an undo) after `since` (ISO time):
    their frames may differ from what a run scored then."""
    if not clip_ids:
        return set()
    stamp = datetime.fromisoformat(since).astimezone(timezone.utc).isoformat(timespec="microseconds")
    marks = ", ".join("?" * len(clip_ids))
    with connect(project) as db:
        rows = db.conn.execute(f"SELECT DISTINCT clip_id FROM clip_edits WHERE created_at > ? AND clip_id IN ({marks})",
                               [stamp, *clip_ids]).fetchall()
    return {r[0] for r in rows}


def add_setting(project: Project, name: str, value: str | None, annotator: str) -> dict:
    """Append a project setting event (its value from now on; None withdraws it); returns the row written."""
    if not (annotator or "").strip():
        raise StoreError("say who changes the setting")
    row = {"name": name, "value": value, "annotator": annotator.strip(), "created_at": now()}
    with connect(project) as db, transaction(db) as conn:
        _insert(conn, "project_settings", [row])
    return row


def setting_events(project: Project, name: str) -> list[dict]:
    """The events of one project setting (id, name, value, annotator, created_at), oldest first."""
    with connect(project) as db:
        return _rows(db.conn, "SELECT * FROM project_settings WHERE name = ? ORDER BY id", (name,))


def setting(project: Project, name: str) -> str | None:
    """A project setting's value now: its last event's (None when never set or withdrawn)."""
    with connect(project) as db:
        row = db.conn.execute("SELECT value FROM project_settings WHERE name = ? ORDER BY id DESC LIMIT 1",
                              (name,)).fetchone()
    return row[0] if row else None


# @section run registry (m013)


def add_run_name(project: Project, run_id: str, name: str, note: str, annotator: str) -> dict:
    """Append a naming event of a run (its name and note from now on); returns the row written."""
    if not annotator.strip():
        raise StoreError("say who names the run")
    row = {"run_id": run_id, "name": name, "note": note, "annotator": annotator.strip(), "created_at": now()}
    with connect(project) as db, transaction(db) as conn:
        _insert(conn, "run_names", [row])
    return row


def run_name_events(project: Project, run_id: str | None = None) -> list[dict]:
    """Naming events (id, run_id, name, note, annotator, created_at), oldest first; of one run when given."""
    with connect(project) as db:
        if run_id is None:
            return _rows(db.conn, "SELECT * FROM run_names ORDER BY id")
        return _rows(db.conn, "SELECT * FROM run_names WHERE run_id = ? ORDER BY id", (run_id,))


def run_names(project: Project) -> dict[str, dict]:
    """Per run id its last naming event (the one that counts)."""
    with connect(project) as db:
        rows = _rows(db.conn, "SELECT n.* FROM run_names n JOIN (SELECT max(id) AS id FROM run_names GROUP BY run_id)"
                              " last ON last.id = n.id")
    return {r["run_id"]: r for r in rows}
# @section several people and replays (m014)


def _replay_source(flagged: tuple) -> dict:
    """The source_start, source_end columns of a flagged span given as (start, end, reason[, src_start, src_end])."""
    return {"source_start": int(flagged[3]), "source_end": int(flagged[4])} if len(flagged) >= 5 else {}


def flagged_details(project: Project, video_id: str) -> list[dict]:
    """Flagged spans with, for a replay, the span it repeats (source_start, source_end; else absent)."""
    with connect(project) as db:
        rows = _rows(db.conn, "SELECT start_frame, end_frame, reason, source_start, source_end FROM flagged_spans "
                              "WHERE video_id = ? ORDER BY start_frame, end_frame", (video_id,))
    return [{k: v for k, v in r.items() if v is not None} for r in rows]


def video_people(project: Project, video_id: str) -> dict | None:
    """How a video's people were handled at ingest (athlete rule, split screen, side), or None (older videos)."""
    with connect(project) as db:
        rows = _rows(db.conn, "SELECT athlete_rule, athlete_x, athlete_y, split, split_at, side FROM video_people "
                              "WHERE video_id = ?", (video_id,))
    return rows[0] if rows else None
# @section scale (m015)


@memoised
def project_counts(project: Project) -> dict:
    """The counts of stats without its dataset statistics (the Home page's): videos, clips, labelled, per
    exercise clips and labelled, excluded. Aggregates in SQL over m016's dataset_rows: milliseconds at 100,000
    clips, where stats reads every clip."""
    with connect(project) as db:
        videos = db.conn.execute("SELECT count(*) FROM videos").fetchone()[0]
        # Labelled: in consensus_labels (a current label or an adjudication).
        per = {exercise: {"clips": clips, "labelled": labelled} for exercise, clips, labelled in db.conn.execute(
            "SELECT exercise, count(*), sum(labelled) FROM dataset_rows WHERE active = 1 AND excluded = 0 "
            "GROUP BY exercise")}
        excluded = db.conn.execute("SELECT count(*) FROM dataset_rows WHERE active = 1 AND excluded = 1").fetchone()[0]
    return {
        "videos": videos,
        "clips": sum(e["clips"] for e in per.values()),
        "labelled": sum(e["labelled"] for e in per.values()),
        "per_exercise": dict(sorted(per.items())),
        "excluded": excluded,  # active clips left out of the dataset (not counted in clips)
    }


# The Dataset page's label state of clip c with clip_labels l (clip_overview's "label"): the consensus label,
# else disputed (both verdicts, no adjudication), else unlabelled.
_STATE_SQL = ("coalesce(l.label, CASE WHEN l.correct > 0 AND l.incorrect > 0 THEN 'disputed' ELSE 'unlabelled' END)")
# clip_table's clips: their m016 dataset_rows d (what the filters read), with clip c and clip_labels l for a page's
# rows, read in the clips' order (clips_order).
_TABLE_FROM = ("FROM clips c CROSS JOIN dataset_rows d ON d.clip_id = c.id LEFT JOIN clip_labels l ON l.clip_id = c.id "
               "LEFT JOIN videos v ON v.id = c.video_id WHERE d.active = 1 AND d.excluded = 0")


def clip_table(project: Project, exercises: list[str] = (), states: list[str] = (), coach: str | None = None,
               disagreement: bool = False, views: list[str] = (), complexity: tuple[float, float] | None = None,
               complexity_by: str = "automatic", offset: int = 0, limit: int = 200) -> tuple[list[dict], int]:
    """One page of dataset.clip_overview's rows (same columns and order) among the clips the filters keep, and
    how many they keep: filtered in SQL over m016's dataset_rows, so a page costs the same at 100,000 clips.

    exercises, states (correct / incorrect / disputed / unlabelled), views (front / side / oblique / unknown):
    any of them when given; coach: clips with a current label of theirs; disagreement: both verdicts and no
    adjudication; complexity (lo, hi), inclusive, of the automatic index or of the coaches' (coach_complexity).
    """
    where, params = [], {"offset": offset, "limit": limit}
    for name, values, condition in (("exercises", exercises, "d.exercise IN {}"), ("states", states, "d.state IN {}"),
                                    ("views", views, "d.clip_id IN (SELECT id FROM clips "
                                                     "WHERE coalesce(view, 'unknown') IN {})")):
        if values:
            where.append(condition.format(f"(SELECT value FROM json_each(:{name}))"))
            params[name] = json.dumps(list(values))
    if coach is not None:
        where.append("d.clip_id IN (SELECT clip_id FROM label_current WHERE annotator = :coach)")
        params["coach"] = coach
    if disagreement:
        where.append("d.clip_id IN (SELECT clip_id FROM clip_labels WHERE correct > 0 AND incorrect > 0 "
                     "AND NOT adjudicated)")
    coaches_say = coach_complexity(project)
    if complexity is not None:
        params["lo"], params["hi"] = complexity
        if complexity_by == "automatic":
            where.append("d.complexity BETWEEN :lo AND :hi")
        else:
            where.append("d.clip_id IN (SELECT value FROM json_each(:rated))")
            params["rated"] = json.dumps([k for k, v in coaches_say.items()
                                          if complexity[0] <= v["complexity"] <= complexity[1]])
    filters = "".join(f" AND {w}" for w in where)
    with connect(project) as db:
        total = db.conn.execute(f"SELECT count(*) FROM dataset_rows d WHERE d.active = 1 AND d.excluded = 0{filters}",
                                params).fetchone()[0]
        page = _rows(db.conn, "SELECT c.id, c.exercise, c.video_id, v.id AS known, v.title, c.source, c.start_frame, "
                              "c.end_frame, c.fps, c.method, c.complexity, c.view, d.state, "
                              "coalesce(l.adjudicated, 0) AS adjudicated, coalesce(l.correct, 0) AS correct, "
                              f"coalesce(l.incorrect, 0) AS incorrect {_TABLE_FROM}{filters} "
                              "ORDER BY c.video_id, c.start_frame, c.id LIMIT :limit OFFSET :offset", params)
        ids = json.dumps([r["id"] for r in page])
        names: dict[str, list[str]] = {}
        for clip_id, annotator in db.conn.execute("SELECT clip_id, annotator FROM label_current WHERE clip_id IN "
                                                  "(SELECT value FROM json_each(?)) ORDER BY annotator", (ids,)):
            names.setdefault(clip_id, []).append(annotator)
    looks = second_looks(project, [r["id"] for r in page]) if page else {}
    rows = [{
        "clip_id": r["id"],
        "exercise": r["exercise"],
        "video": (r["title"] if r["known"] else "") if r["video_id"] else (r["source"] or "imported"),
        "seconds": round((r["end_frame"] - r["start_frame"]) / r["fps"], 2),
        "method": r["method"],
        "label": r["state"],
        "final": bool(r["adjudicated"]),
        "correct_votes": r["correct"],
        "incorrect_votes": r["incorrect"],
        "disagreement": r["correct"] > 0 and r["incorrect"] > 0 and not r["adjudicated"],
        "coaches": ", ".join(names.get(r["id"], [])),
        "complexity": r["complexity"],
        "coach_complexity": coaches_say.get(r["id"], {}).get("complexity"),
        "view": r["view"],
        "second_look": r["id"] in looks,
    } for r in page]
    return rows, total


def label_balance(project: Project) -> list[dict]:
    """Per exercise and label state (as clip_table's `label`), how many active, not excluded clips: the Dataset
    page's class balance (and the Train page's counts)."""
    with connect(project) as db:
        return _rows(db.conn, "SELECT exercise, state AS label, count(*) AS clips FROM dataset_rows "
                              "WHERE active = 1 AND excluded = 0 GROUP BY 1, 2 ORDER BY 1, 2")


def dataset_exercises(project: Project) -> list[str]:
    """The exercises of the active, not excluded clips (the Dataset page's filter)."""
    with connect(project) as db:
        return [r[0] for r in db.conn.execute("SELECT name FROM exercises e WHERE EXISTS (SELECT 1 FROM dataset_rows d "
                                              "WHERE d.active = 1 AND d.excluded = 0 AND d.exercise = e.name) "
                                              "ORDER BY name")]


def _current_rows(conn: sqlite3.Connection, where: str = "1") -> list[dict]:
    """current_labels' rows (label events, criteria decoded) of the label_current rows k that `where` keeps."""
    rows = _rows(conn, "SELECT e.* FROM label_current k CROSS JOIN label_events e ON e.id = k.event_id "
                       f"WHERE {where} ORDER BY k.clip_id, k.annotator")
    for r in rows:
        r["criteria"] = json.loads(r["criteria"]) if r["criteria"] != "{}" else {}  # most: no criteria marked
    return rows


def disputed_labels(project: Project) -> list[dict]:
    """The current labels (clip_id, annotator, verdict, criteria) of the clips whose current labels hold both
    verdicts: what agreement.disagreements needs of current_labels, without reading every label."""
    with connect(project) as db:
        rows = _rows(db.conn, "SELECT k.clip_id, k.annotator, k.verdict, e.criteria FROM label_current k "
                              "CROSS JOIN label_events e ON e.id = k.event_id WHERE k.clip_id IN (SELECT clip_id "
                              "FROM clip_labels WHERE correct > 0 AND incorrect > 0) ORDER BY k.clip_id, k.annotator")
    for r in rows:
        r["criteria"] = json.loads(r["criteria"]) if r["criteria"] != "{}" else {}
    return rows


def open_disagreements(project: Project) -> int:
    """How many clips agreement.disagreements(current_labels) lists that no adjudication settles (the Suggest
    page's count), counted."""
    with connect(project) as db:
        return db.conn.execute("SELECT count(*) FROM clip_labels WHERE correct > 0 AND incorrect > 0 "
                               "AND NOT adjudicated").fetchone()[0]


def clips_in_order(project: Project, clip_ids: set[str]) -> list[dict]:
    """The rows of list_clips(project) whose ids are given, in its order: a sample's, without reading every clip."""
    with connect(project) as db:
        return _rows(db.conn, "SELECT c.* FROM json_each(?) j CROSS JOIN clips c ON c.id = j.value "
                              "WHERE c.active AND c.id NOT IN (SELECT clip_id FROM excluded_clips) "
                              "ORDER BY c.video_id, c.start_frame, c.id", (json.dumps(sorted(clip_ids)),))


def dataset_clip_order(project: Project, exercise: str | None = None) -> list[str]:
    """The ids of list_clips(project, exercise), in its order, without reading their rows."""
    only = "" if exercise is None else " AND c.exercise = :exercise"
    with connect(project) as db:
        return [r[0] for r in db.conn.execute(
            "SELECT c.id FROM clips c WHERE c.active AND c.id NOT IN (SELECT clip_id FROM excluded_clips)"
            f"{only} ORDER BY c.video_id, c.start_frame, c.id", {"exercise": exercise})]


def current_label_count(project: Project) -> int:
    """len(current_labels(project)), counted."""
    with connect(project) as db:
        return db.conn.execute("SELECT count(*) FROM label_current").fetchone()[0]


def judged_clip_ids(project: Project) -> set[str]:
    """The clips with a current correct/incorrect label of any annotator (those in current_labels)."""
    with connect(project) as db:
        return {r[0] for r in db.conn.execute("SELECT clip_id FROM clip_labels WHERE correct + incorrect > 0")}


def dataset_clip_ids(project: Project) -> set[str]:
    """The ids of list_clips(project) (active, not excluded clips), without reading their rows."""
    with connect(project) as db:
        return {r[0] for r in db.conn.execute("SELECT clip_id FROM dataset_rows WHERE active = 1 AND excluded = 0")}


def dataset_exercise_of(project: Project) -> dict[str, str]:
    """Clip id -> exercise of list_clips(project) (active, not excluded clips), without reading their rows."""
    with connect(project) as db:
        return dict(db.conn.execute("SELECT clip_id, exercise FROM dataset_rows WHERE active = 1 AND excluded = 0"))


def open_disagreement_labels(project: Project, limit: int = 200, without: str = "import") -> tuple[list[dict], int]:
    """The current labels (clip_id, annotator, verdict, criteria; annotator `without` left out) of the first
    `limit` clips agreement.disagreements lists that no adjudication settles, in its order (most split first, then
    most votes, then clip id), and how many such clips there are: the Dataset page's waiting list, ranked in SQL."""
    ranked = ("SELECT clip_id, CAST(min(c, n - c) AS REAL) / n AS split, n FROM (SELECT clip_id, "
              "sum(verdict = 'correct') AS c, count(*) AS n FROM label_current WHERE annotator != :without "
              "AND clip_id IN (SELECT clip_id FROM clip_labels WHERE correct > 0 AND incorrect > 0 "
              "AND NOT adjudicated) GROUP BY clip_id) WHERE c > 0 AND c < n")
    with connect(project) as db:
        total = db.conn.execute(f"SELECT count(*) FROM ({ranked})", {"without": without}).fetchone()[0]
        rows = _rows(db.conn, "SELECT k.clip_id, k.annotator, k.verdict, e.criteria FROM label_current k "
                              "CROSS JOIN label_events e ON e.id = k.event_id WHERE k.annotator != :without AND "
                              f"k.clip_id IN (SELECT clip_id FROM ({ranked}) ORDER BY split DESC, n DESC, clip_id "
                              "LIMIT :limit) ORDER BY k.clip_id, k.annotator", {"without": without, "limit": limit})
    for r in rows:
        r["criteria"] = json.loads(r["criteria"]) if r["criteria"] != "{}" else {}
    return rows, total


# @section dataset aggregates (m016, session 5)

# Clip c's exclusion as in the excluded_clips view: the latest exclusion event of the clip, or of its video,
# excludes (exclusions_clip and exclusions_video hold each one's events in id order).
_EXCLUDED_SQL = ("(coalesce((SELECT x.action = 'exclude' FROM exclusions x WHERE x.clip_id = c.id "
                 "ORDER BY x.id DESC LIMIT 1), 0) OR coalesce((SELECT x.action = 'exclude' FROM exclusions x "
                 "WHERE x.video_id = c.video_id ORDER BY x.id DESC LIMIT 1), 0))")


def _dataset_row_select(where: str) -> str:
    """SQL: the dataset_rows rows (columns in order) of the clips `where` selects (on clip c, clip_labels l)."""
    return (f"SELECT c.id, CASE WHEN c.active THEN 1 ELSE 0 END, {_EXCLUDED_SQL}, c.exercise, {_STATE_SQL}, "
            "CASE WHEN l.correct + l.incorrect > 0 OR l.adjudicated THEN 1 ELSE 0 END, c.end_frame - c.start_frame, "
            "(c.end_frame - c.start_frame) / c.fps, c.complexity "
            f"FROM clips c LEFT JOIN clip_labels l ON l.clip_id = c.id WHERE {where}")


def _dataset_refresh(clip: str) -> str:
    """SQL statements (for a trigger body) recomputing the dataset_rows row of clip `clip`."""
    return (f"DELETE FROM dataset_rows WHERE clip_id = {clip}; "
            f"INSERT INTO dataset_rows {_dataset_row_select(f'c.id = {clip}')};")


# @section labeller server (session 5)


def rubric_version(project: Project) -> tuple[int, int, int, int]:
    """What changes with every change of the exercise catalogue or of a rubric (every one is a rubric event, see
    _record_rubric; exercises met in imports are added without one): the Label page keeps its copy of
    list_exercises for the session until this changes, instead of reading it on every verdict."""
    with connect(project) as db:
        events, last, exercises = db.conn.execute(
            "SELECT (SELECT count(*) FROM rubric_events), (SELECT max(id) FROM rubric_events), "
            "(SELECT count(*) FROM exercises)").fetchone()
    return project.db_path.stat().st_ino, events, last or 0, exercises


# @section suggest (session 5)


@memoised
def consensus_label_of(project: Project) -> dict[str, str]:
    """Clip id -> consensus label of every clip that has one (consensus_labels' "label" where not None), from
    m015's clip_labels: a dict of strings, not of every labelled clip's votes and criteria."""
    with connect(project) as db:
        return dict(db.conn.execute("SELECT clip_id, label FROM clip_labels WHERE label IS NOT NULL"))


@memoised
def dataset_labels(project: Project) -> dict[str, tuple[str, str]]:
    """Clip id -> (consensus label, exercise) of the clips of list_clips(project) (active, not excluded) that
    have a consensus label."""
    with connect(project) as db:
        return {clip_id: (label, exercise) for clip_id, label, exercise in db.conn.execute(
            "SELECT clip_id, state, exercise FROM dataset_rows WHERE active = 1 AND excluded = 0 "
            "AND state IN ('correct', 'incorrect')")}  # m016's state: the consensus label where there is one
