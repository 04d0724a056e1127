"""Ordinary faults on the command line (issue 10): one clear line on stderr, exit status 2, never a traceback.

Each case printed a Python traceback on the old code.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from curation import store
from curation.project import Project
from tests.conftest import ROOT


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_an_unwritable_json_path_is_refused_before_any_work(data_dir, videos):
    out = data_dir / "no-such-folder" / "out.json"
    proc = run("curation", "ingest", str(videos / "twix" / "correct-squat.mp4"), "--data", str(data_dir),
               "--json", str(out))
    assert one_line(proc) == f"error: cannot write --json {out}: No such file or directory"
    assert store.stats(Project.open(data_dir))["videos"] == 0  # refused before the ingest, not after it


def test_a_full_disk_is_one_line(data_dir):
    # /dev/full answers every write with ENOSPC, as a full disk does.
    proc = run("curation", "stats", "--data", str(data_dir), "--json", "/dev/full")
    assert one_line(proc) == "error: cannot write --json /dev/full: No space left on device"


def test_suggest_k_zero_is_refused_by_the_argument_parser(data_dir):
    proc = run("model", "suggest", "--k", "0", "--data", str(data_dir))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith("error: argument --k: must be at least 1, not 0")


def test_a_malformed_allowlist_is_one_line(data_dir):
    proc = run("curation", "ingest", "https://youtu.be/dQw4w9WgXcQ", "--data", str(data_dir),
               env={"FORMCHECK_ALLOWED_HOSTS": "http://127.0.0.1:8000"})
    assert one_line(proc) == ("error: FORMCHECK_ALLOWED_HOSTS: allowed hosts are bare host names or IP addresses "
                              "(no scheme, port or path): 'http://127.0.0.1:8000'")


@pytest.mark.parametrize("damage", ["not sqlite", "overwritten header"])
def test_a_damaged_or_foreign_database_is_one_line(data_dir, damage):
    db = data_dir / "formcheck.db"
    if damage == "not sqlite":
        db.write_text("these are a coach's notes, saved under the wrong name\n" * 20)
    else:
        store.stats(Project.open(data_dir))  # a real project database ...
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        for extra in ("-wal", "-shm"):
            Path(f"{db}{extra}").unlink(missing_ok=True)
        data = bytearray(db.read_bytes())
        data[:100] = b"\xff" * 100  # ... whose header a disk error overwrote
        db.write_bytes(bytes(data))
    proc = run("curation", "stats", "--data", str(data_dir))
    assert one_line(proc) == f"error: not a Formcheck project database: {db} (file is not a database)"


def test_the_model_commands_share_the_one_line_runner(data_dir):
    shutil.rmtree(data_dir)
    data_dir.mkdir()
    (data_dir / "formcheck.db").write_bytes(b"\x00" * 4096)
    proc = run("model", "suggest", "--data", str(data_dir))
    assert one_line(proc).startswith("error: not a Formcheck project database:")


def test_every_page_says_a_damaged_database_in_one_line(data_dir, monkeypatch):
    from tests.test_app import open_page

    (data_dir / "formcheck.db").write_text("not a database\n" * 100)
    monkeypatch.setenv("FORMCHECK_DATA", str(data_dir))
    for page in ("app.py", "pages/1_Ingest.py"):
        at = open_page(page)  # no exception
        assert [e.value.replace("\\", "") for e in at.error] == [
            f"not a Formcheck project database: {data_dir / 'formcheck.db'} (file is not a database)"]
