"""Store: the project's SQLite database (schema migrations and every query the app makes)."""

from __future__ import annotations

import json
import re
import sqlite3
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

_migrated: set[str] = set()
_migrate_lock = threading.Lock()


@contextmanager
def connect(project: Project) -> Iterator[sqlite_utils.Database]:
    """One short-lived connection: WAL, busy timeout, foreign keys; migrated on first use in this process."""
    conn = sqlite3.connect(project.db_path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL: a crash loses no committed transaction's integrity
        db = sqlite_utils.Database(conn)
        key = str(project.db_path)
        if key not in _migrated:
            with _migrate_lock:
                migrate(db)
                _migrated.add(key)
        yield db
    finally:
        conn.close()


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


@migration
def m004_rubric_provenance(conn: sqlite3.Connection) -> None:
    """Versioned rubric, video provenance and athlete, trimmed spans (issue 9)."""


@migration
def m005_exchange(conn: sqlite3.Connection) -> None:
    """What the lossless dataset exchange needs (frame size of imported clips...) (issues 9, 10)."""


@migration
def m006_accounts_audit(conn: sqlite3.Connection) -> None:
    """Accounts, roles, the admin audit log (issue 10)."""


@migration
def m007_jobs(conn: sqlite3.Connection) -> None:
    """Job liveness and temporary files (issue 10)."""


@migration
def m008_runs(conn: sqlite3.Connection) -> None:
    """Promoted runs and model choices (issue 11)."""


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


def list_exercises(project: Project) -> list[dict]:
    """Every exercise with its joints (list) and criteria (list of {name, description})."""
    with connect(project) as db:
        exercises = _rows(db.conn, "SELECT * FROM exercises ORDER BY name")
        criteria = _rows(db.conn, "SELECT exercise, name, description FROM criteria ORDER BY id")
    for ex in exercises:
        ex["joints"] = json.loads(ex["joints"])
        ex["criteria"] = [{"name": c["name"], "description": c["description"]} for c in criteria if c["exercise"] == ex["name"]]
    return exercises


NAME = re.compile(r"^[a-z0-9][a-z0-9 _-]{0,39}$")


def add_exercise(project: Project, name: str, description: str = "", joints: list[str] | None = None) -> str:
    """Add an exercise to the catalogue (coaches extend it); returns its key."""
    name = " ".join((name or "").lower().split())
    if not NAME.match(name):
        raise StoreError("an exercise name is 1-40 lowercase letters, digits, spaces, - or _")
    with connect(project) as db, transaction(db) as conn:
        if conn.execute("SELECT 1 FROM exercises WHERE name = ?", (name,)).fetchone():
            raise StoreError(f"exercise {name!r} exists already")
        conn.execute("INSERT INTO exercises (name, description, joints) VALUES (?, ?, ?)",
                     (name, (description or "").strip()[:300], json.dumps(list(joints or []))))
    return name


def add_criterion(project: Project, exercise: str, name: str, description: str = "") -> str:
    """Add a biomechanical criterion to an exercise; returns its key (lowercase, underscores)."""
    key = "_".join((name or "").lower().split())
    if not re.match(r"^[a-z0-9_]{1,40}$", key):
        raise StoreError("a criterion name is 1-40 letters, digits or underscores")
    with connect(project) as db, transaction(db) as conn:
        if not conn.execute("SELECT 1 FROM exercises WHERE name = ?", (exercise,)).fetchone():
            raise StoreError(f"no exercise {exercise!r}")
        if conn.execute("SELECT 1 FROM criteria WHERE exercise = ? AND name = ?", (exercise, key)).fetchone():
            raise StoreError(f"{exercise} has a criterion {key!r} already")
        conn.execute("INSERT INTO criteria (exercise, name, description) VALUES (?, ?, ?)",
                     (exercise, key, (description or "").strip()[:300]))
    return key


def ensure_exercise(conn: sqlite3.Connection, name: str) -> None:
    """Add an exercise met in imported data or typed by a user, with no criteria yet."""
    conn.execute("INSERT OR IGNORE INTO exercises (name) VALUES (?)", (name,))


def ensure_criteria(conn: sqlite3.Connection, exercise: str, names: list[str]) -> None:
    conn.executemany("INSERT OR IGNORE INTO criteria (exercise, name) VALUES (?, ?)", [(exercise, n) for n in names])


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


def add_video(project: Project, video: dict, clips: list[dict]) -> None:
    """Insert a video and all its clips in one transaction: a killed worker leaves either all or nothing."""
    stamp = now()
    with connect(project) as db, transaction(db) as conn:
        if video.get("exercise"):
            ensure_exercise(conn, video["exercise"])
        _insert(conn, "videos", [{**video, "created_at": stamp}])
        _insert(conn, "clips", [{**clip, "created_at": stamp} for clip in clips])


def add_clips(project: Project, clips: list[dict], events: list[dict],
              criteria: list[tuple[str, str]] = ()) -> int:
    """Insert imported clips, their criteria and label events in one transaction; existing clip ids are skipped."""
    stamp = now()
    with connect(project) as db, transaction(db) as conn:
        existing = {r[0] for r in conn.execute("SELECT id FROM clips")}
        fresh = [c for c in clips if c["id"] not in existing]
        for exercise in sorted({c["exercise"] for c in clips}):
            ensure_exercise(conn, exercise)
        for exercise, name in criteria:
            ensure_criteria(conn, exercise, [name])
        _insert(conn, "clips", [{**c, "created_at": stamp} for c in fresh])
        fresh_ids = {c["id"] for c in fresh}
        _insert(conn, "label_events", [_event_row(e, stamp) for e in events if e["clip_id"] in fresh_ids])
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


def list_clips(project: Project, exercise: str | None = None, video_id: str | None = None) -> list[dict]:
    """Active clips in a stable order (video, start frame), optionally filtered."""
    where, params = ["c.active"], []
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
    }


def add_label_event(project: Project, event: dict) -> int | None:
    """Append one label event; returns its id, or None when its request_id was already recorded."""
    annotator = (event.get("annotator") or "").strip()
    if not annotator:
        raise StoreError("a label needs an annotator name")
    kind = event.get("kind", "verdict")
    if kind == "verdict" and event.get("verdict") not in VERDICTS:
        raise StoreError(f"verdict must be one of {', '.join(VERDICTS)}")
    stamp = now()
    with connect(project) as db, transaction(db) as conn:
        _clip_exercise(conn, event["clip_id"])
        cur = conn.execute(
            "INSERT OR IGNORE INTO label_events (clip_id, annotator, kind, verdict, undoes, criteria, joints_engaged, "
            "angular_sensitivity, range_of_motion, balance_demand, note, seconds, request_id, created_at) "
            "VALUES (:clip_id, :annotator, :kind, :verdict, :undoes, :criteria, :joints_engaged, :angular_sensitivity, "
            ":range_of_motion, :balance_demand, :note, :seconds, :request_id, :created_at)",
            _event_row({**event, "annotator": annotator}, stamp),
        )
        return cur.lastrowid if cur.rowcount else None


_CURRENT_SQL = """
    WITH live AS (
        SELECT * FROM label_events
        WHERE kind = 'verdict' AND verdict IN ('correct', 'incorrect')
          AND id NOT IN (SELECT undoes FROM label_events WHERE undoes IS NOT NULL)
    ), ranked AS (
        SELECT *, row_number() OVER (PARTITION BY clip_id, annotator ORDER BY id DESC) AS rn FROM live
    )
    SELECT * FROM ranked WHERE rn = 1
"""


def current_labels(project: Project) -> list[dict]:
    """Each annotator's current label per clip: their latest correct/incorrect verdict not undone."""
    with connect(project) as db:
        rows = _rows(db.conn, _CURRENT_SQL)
    for r in rows:
        r["criteria"] = json.loads(r["criteria"])
        del r["rn"]
    return rows


def clips_labelled_since(project: Project, since: str) -> set[str]:
    """Clips with a verdict (skip included) or adjudication created after `since` (ISO time) and not undone."""
    stamp = datetime.fromisoformat(since).astimezone(timezone.utc).isoformat(timespec="microseconds")
    with connect(project) as db:
        rows = db.conn.execute(
            "SELECT DISTINCT clip_id FROM label_events WHERE created_at > ? AND kind IN ('verdict', 'adjudication') "
            "AND id NOT IN (SELECT undoes FROM label_events WHERE undoes IS NOT NULL)", (stamp,)).fetchall()
    return {r[0] for r in rows}


def adjudications(project: Project) -> dict[str, dict]:
    """Per clip, the latest adjudication event not undone (a lead coach's final word)."""
    with connect(project) as db:
        rows = _rows(
            db.conn,
            "SELECT * FROM label_events WHERE id IN (SELECT max(id) FROM label_events WHERE kind = 'adjudication' "
            "AND id NOT IN (SELECT undoes FROM label_events WHERE undoes IS NOT NULL) GROUP BY clip_id)",
        )
    return {r["clip_id"]: {**r, "criteria": json.loads(r["criteria"])} for r in rows}


def consensus_labels(project: Project) -> dict[str, dict]:
    """Per clip: the adjudicated label if a lead set one, else the annotators' majority (None on a tie).

    Criteria verdicts follow the same rule, criterion by criterion, among the annotators who gave one.
    `source` says which: "adjudication" or "majority".
    """
    by_clip: dict[str, list[dict]] = {}
    for row in current_labels(project):
        by_clip.setdefault(row["clip_id"], []).append(row)
    out: dict[str, dict] = {}
    for clip_id, rows in by_clip.items():
        votes = {lab: sum(r["verdict"] == lab for r in rows) for lab in LABELS}
        label = None if votes["correct"] == votes["incorrect"] else max(votes, key=votes.get)
        criteria: dict[str, str] = {}
        for name in sorted({n for r in rows for n in r["criteria"]}):
            marks = [r["criteria"][name] for r in rows if r["criteria"].get(name) in ("pass", "fail")]
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


# ---------------------------------------------------------------- annotators and the labelling queue


def add_annotator(project: Project, name: str, role: str = "coach") -> str:
    """Register a coach by name (idempotent); returns the cleaned name."""
    name = " ".join((name or "").split())[:60]
    if not name:
        raise StoreError("type a name")
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


_QUEUE_SQL = """
    SELECT c.*, coalesce(n.coaches, 0) AS coaches FROM clips c
    LEFT JOIN (SELECT clip_id, count(DISTINCT annotator) AS coaches FROM label_events
               WHERE kind = 'verdict' AND verdict != 'skip' GROUP BY clip_id) n ON n.clip_id = c.id
    WHERE c.active AND (:exercise IS NULL OR c.exercise = :exercise)
      AND c.id NOT IN (SELECT clip_id FROM label_events WHERE annotator = :me AND kind = 'verdict'
                       AND id NOT IN (SELECT undoes FROM label_events WHERE undoes IS NOT NULL))
    ORDER BY c.id IN (SELECT clip_id FROM claims WHERE annotator != :me AND expires_at >= :now),
             coaches, c.video_id, c.start_frame, c.id
    LIMIT :limit
"""


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
        rows = _rows(conn, _QUEUE_SQL, {"exercise": exercise, "me": annotator, "now": stamp, "limit": 1})
        if not rows:
            return None
        conn.execute("INSERT OR REPLACE INTO claims VALUES (?, ?, ?)", (rows[0]["id"], annotator, stamp + claim_seconds))
    return rows[0]


_LISTED_SQL = """
    SELECT c.* FROM json_each(:ids) j JOIN clips c ON c.id = j.value
    WHERE c.active
      AND (NOT :skip_judged OR c.id NOT IN (
           SELECT clip_id FROM label_events WHERE annotator = :me AND kind = 'verdict'
           AND id NOT IN (SELECT undoes FROM label_events WHERE undoes IS NOT NULL)))
    ORDER BY c.id IN (SELECT clip_id FROM claims WHERE annotator != :me AND expires_at >= :now), j.key
    LIMIT :limit
"""


def next_listed_clip(project: Project, annotator: str, clip_ids: list[str], skip_judged: bool = True,
                     claim_seconds: float = CLAIM_SECONDS) -> dict | None:
    """The first clip of a ranked list (suggestions, a check-again queue) for this coach, claimed for them.

    Same rules as next_clip: inactive clips are passed over, and so are clips this coach has judged when
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


def upcoming_clips(project: Project, annotator: str, exercise: str | None = None, current: str | None = None,
                   limit: int = 2) -> list[dict]:
    """The clips next_clip would hand out after `current`, without claiming them (to prepare them ahead)."""
    stamp = datetime.now(timezone.utc).timestamp()
    with connect(project) as db:
        rows = _rows(db.conn, _QUEUE_SQL, {"exercise": exercise, "me": annotator, "now": stamp, "limit": limit + 1})
    return [r for r in rows if r["id"] != current][:limit]


def release_claims(project: Project, annotator: str) -> None:
    with connect(project) as db, transaction(db) as conn:
        conn.execute("DELETE FROM claims WHERE annotator = ?", (annotator,))


def clip_exercises(project: Project) -> list[str]:
    """The exercises that have active clips."""
    with connect(project) as db:
        return [r[0] for r in db.conn.execute("SELECT DISTINCT exercise FROM clips WHERE active ORDER BY exercise")]


def get_clip(project: Project, clip_id: str) -> dict | None:
    with connect(project) as db:
        rows = _rows(db.conn, "SELECT * FROM clips WHERE id = ?", (clip_id,))
    return rows[0] if rows else None


def progress_of(project: Project, annotator: str, exercise: str | None = None) -> dict:
    """How many active clips there are, and how many this coach has judged (a verdict or a skip)."""
    with connect(project) as db:
        total, mine = db.conn.execute(
            "SELECT count(*), sum(c.id IN (SELECT clip_id FROM label_events WHERE annotator = :me AND kind = 'verdict' "
            "AND id NOT IN (SELECT undoes FROM label_events WHERE undoes IS NOT NULL))) FROM clips c "
            "WHERE c.active AND (:exercise IS NULL OR c.exercise = :exercise)",
            {"me": annotator, "exercise": exercise},
        ).fetchone()
    return {"clips": total, "judged": mine or 0}


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
        _insert(conn, "clip_edits", [{"clip_id": clip_id, "annotator": annotator, "action": "bounds",
                                      "detail": json.dumps({"from": [clip["start_frame"], clip["end_frame"]],
                                                            "to": [start, end]}), "created_at": now()}])
    return {**clip, "start_frame": start, "end_frame": end}


def split_clip(project: Project, clip_id: str, at: int, annotator: str) -> tuple[str, str]:
    """Replace a clip by two at frame `at` (two repetitions cut as one). Labels stay with the old clip."""
    with connect(project) as db, transaction(db) as conn:
        rows = _rows(conn, "SELECT * FROM clips WHERE id = ? AND active", (clip_id,))
        if not rows:
            raise StoreError(f"no clip {clip_id!r}")
        clip = rows[0]
        if not clip["start_frame"] < at < clip["end_frame"]:
            raise StoreError(f"split frame must lie inside the clip ({clip['start_frame']}..{clip['end_frame']})")
        ids = (f"{clip_id}-a", f"{clip_id}-b")
        base = {k: v for k, v in clip.items() if k != "id"}
        stamp = now()
        _insert(conn, "clips", [{**base, "id": ids[0], "end_frame": at, "created_at": stamp},
                                {**base, "id": ids[1], "start_frame": at, "created_at": stamp}])
        conn.execute("UPDATE clips SET active = 0 WHERE id = ?", (clip_id,))
        _insert(conn, "clip_edits", [{"clip_id": clip_id, "annotator": annotator, "action": "split",
                                      "detail": json.dumps({"at": at, "into": ids}), "created_at": stamp}])
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
        new_id = f"{a['id']}-m"
        base = {k: v for k, v in a.items() if k != "id"}
        stamp = now()
        _insert(conn, "clips", [{**base, "id": new_id, "end_frame": max(a["end_frame"], b["end_frame"]),
                                 "created_at": stamp}])
        conn.execute("UPDATE clips SET active = 0 WHERE id IN (?, ?)", (a["id"], b["id"]))
        _insert(conn, "clip_edits", [{"clip_id": a["id"], "annotator": annotator, "action": "merge",
                                      "detail": json.dumps({"with": b["id"], "into": new_id}), "created_at": stamp}])
    return new_id


# ---------------------------------------------------------------- counts


def stats(project: Project) -> dict:
    """Counts of `python -m curation stats`: videos, clips, labelled, and per exercise clips and labelled."""
    consensus = consensus_labels(project)
    with connect(project) as db:
        videos = db.conn.execute("SELECT count(*) FROM videos").fetchone()[0]
        clips = _rows(db.conn, "SELECT id, exercise FROM clips WHERE active")
    per: dict[str, dict[str, int]] = {}
    for clip in clips:
        entry = per.setdefault(clip["exercise"], {"clips": 0, "labelled": 0})
        entry["clips"] += 1
        entry["labelled"] += int(clip["id"] in consensus)
    return {
        "videos": videos,
        "clips": len(clips),
        "labelled": sum(e["labelled"] for e in per.values()),
        "per_exercise": dict(sorted(per.items())),
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


def finish_job(project: Project, job_id: str, status: str, result: Any = None, error: str | None = None) -> None:
    """Close a job as done, failed or cancelled."""
    with connect(project) as db, transaction(db) as conn:
        conn.execute(
            "UPDATE jobs SET status = ?, result = ?, error = ?, progress = CASE WHEN ? = 'done' THEN 1 ELSE progress END, "
            "finished_at = ?, pid = NULL WHERE id = ?",
            (status, json.dumps(result) if result is not None else None, error, status, now(), job_id),
        )


def request_cancel(project: Project, job_id: str) -> None:
    """Ask for a job to stop: a queued job is cancelled at once, a running one at its next heartbeat."""
    with connect(project) as db, transaction(db) as conn:
        conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
        conn.execute(
            "UPDATE jobs SET status = 'cancelled', finished_at = ? WHERE id = ? AND status = 'queued'", (now(), job_id)
        )


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


def requeue_or_fail(project: Project, job_id: str, max_attempts: int) -> str:
    """A job whose worker died: queue it again while attempts remain, else mark it failed. Returns the status."""
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
            status, error = "failed", "the worker stopped unexpectedly (killed or the server restarted)"
        conn.execute(
            "UPDATE jobs SET status = ?, error = ?, pid = NULL, progress = 0, message = ?, "
            "finished_at = CASE WHEN ? = 'queued' THEN NULL ELSE ? END WHERE id = ?",
            (status, error, "recovered after the worker stopped" if status == "queued" else "", status, now(), job_id),
        )
    return status


# ---------------------------------------------------------------- label lineage, exclusions, exercise changes (m003)


# ---------------------------------------------------------------- rubric, provenance, athletes, trimmed spans, statistics (m004)


# ---------------------------------------------------------------- dataset exchange (m005)


# ---------------------------------------------------------------- accounts, roles, audit (m006)


# ---------------------------------------------------------------- job liveness (m007)


# ---------------------------------------------------------------- runs (m008)
