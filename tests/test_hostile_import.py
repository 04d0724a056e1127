"""Hostile and malformed imports (issue 10): each case as it was found, refused in one line with nothing
written, never a traceback."""

from __future__ import annotations

import csv
import errno
import io
import json
import shutil
import subprocess
import sys
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from curation import dataset, store
from curation.dataset import DatasetError, export_folder, extract_zip_safely, import_folder, import_zip
from curation.project import Project
from tests.conftest import ROOT
from tests.test_dataset import write_folder

GOOD = {"clip_id": "c1", "exercise": "squat", "label": "correct", "fps": "30"}


def good_array(frames: int = 5) -> np.ndarray:
    return np.random.default_rng(0).random((frames, 33, 4)).astype(np.float32)


def assert_nothing_written(project: Project) -> None:
    assert store.stats(project)["clips"] == 0
    assert list(project.poses.iterdir()) == []
    assert list(project.work.iterdir()) == []


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curation", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def assert_one_line_refusal(folder: Path, data_dir: Path, words: str) -> None:
    """The command line says why in one line, exit status 2, no traceback; the project stays empty."""
    out = run_cli("import", str(folder), "--data", str(data_dir))
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr and out.stderr.strip().count("\n") == 0, out.stderr
    assert words in out.stderr
    assert_nothing_written(Project.open(data_dir))


# ---------------------------------------------------------------- malformed files (issue 10 item 6)


def _npz_named_npy(path: Path) -> None:
    np.savez(path.with_suffix(".tmp.npz"), a=good_array())
    path.with_suffix(".tmp.npz").replace(path)


MALFORMED = {
    "width abc": ({"width": "abc", "height": "640"}, None, "width 'abc' is not a number"),
    "width nan": ({"width": "nan", "height": "640"}, None, "width must be a whole number"),
    "fps 1e308": ({"fps": "1e308"}, None, "fps must be a number from 1 to 1000"),
    "fps 1e-300": ({"fps": "1e-300"}, None, "fps must be a number from 1 to 1000"),
    "string array": ({}, lambda p: np.save(p, np.array([["a", "b"]] * 3)), "not numbers"),
    "npz as npy": ({}, _npz_named_npy, "zip archive"),
    "zero-byte npy": ({}, lambda p: p.write_bytes(b""), "is empty"),
    "text as npy": ({}, lambda p: p.write_text("hello"), "not a .npy array"),
    "truncated npy": ({}, lambda p: p.write_bytes(p.read_bytes()[:200]), "truncated"),
    "infinite values": ({}, lambda p: np.save(p, np.full((3, 33, 4), np.inf, dtype=np.float32)), "infinite"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_a_malformed_folder_is_refused_in_one_line(case, tmp_path, data_dir):
    update, spoil, words = MALFORMED[case]
    folder = write_folder(tmp_path / "bad", [{**GOOD, **update}], {"c1": good_array()})
    if spoil:
        spoil(folder / "poses" / "c1.npy")
    with pytest.raises(DatasetError, match=words) as caught:
        import_folder(Project.open(data_dir), folder)
    assert "\n" not in str(caught.value)
    assert_nothing_written(Project.open(data_dir))


def test_a_row_shorter_than_the_header_is_refused(tmp_path, data_dir):
    folder = write_folder(tmp_path / "short", [GOOD, {**GOOD, "clip_id": "c2"}], {"c1": good_array(),
                                                                                  "c2": good_array()})
    lines = (folder / "clips.csv").read_text().splitlines()
    (folder / "clips.csv").write_text("\n".join(lines[:2] + ["c2,squat"]) + "\n")
    with pytest.raises(DatasetError, match="line 3: 2 cells, the header has 4"):
        import_folder(Project.open(data_dir), folder)
    assert_nothing_written(Project.open(data_dir))


@pytest.mark.parametrize("case", ["width abc", "string array", "zero-byte npy", "fps 1e308"])
def test_the_command_line_refuses_malformed_files_without_a_traceback(case, tmp_path, data_dir):
    update, spoil, words = MALFORMED[case]
    folder = write_folder(tmp_path / "bad", [{**GOOD, **update}], {"c1": good_array()})
    if spoil:
        spoil(folder / "poses" / "c1.npy")
    assert_one_line_refusal(folder, data_dir, words)


def test_a_file_that_is_not_utf8_csv_is_refused(tmp_path, data_dir):
    folder = write_folder(tmp_path / "latin", [GOOD], {"c1": good_array()})
    (folder / "clips.csv").write_bytes("clip_id,exercise,fps\nc1,sentadilla\xf1,30\n".encode("latin-1"))
    assert_one_line_refusal(folder, data_dir, "not UTF-8")


# ---------------------------------------------------------------- limits (issue 10 item 3)


def zip_of(entries: dict[str, bytes | Path]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, content in entries.items():
            if isinstance(content, Path):
                zf.write(content, name)
            else:
                zf.writestr(name, content)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def zip_bomb(tmp_path_factory) -> bytes:
    """About 1 MB of zip that unpacks to 1 GiB (one entry of zeros beside a good clips.csv)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("clips.csv", "clip_id,exercise,fps\nc1,squat,30\n")
        with zf.open("poses/c1.npy", "w", force_zip64=True) as fh:
            chunk = bytes(64 << 20)
            for _ in range(16):
                fh.write(chunk)
    return buffer.getvalue()


@pytest.mark.slow  # making the 1 GiB takes ~10 s
def test_a_zip_bomb_is_refused_before_anything_is_unpacked(zip_bomb, tmp_path, data_dir):
    assert len(zip_bomb) < 2 << 20
    with pytest.raises(DatasetError, match="zip bomb"):
        extract_zip_safely(zip_bomb, tmp_path / "out")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").rglob("*")) == []
    project = Project.open(data_dir)
    with pytest.raises(DatasetError, match="zip bomb"):
        import_zip(project, zip_bomb)
    assert_nothing_written(project)


def test_a_small_zip_of_a_300000_frame_clip_is_refused(tmp_path, data_dir):
    # As found: a 154 KB zip made a 300,000-frame clip and 1.1 GB of peak memory.
    folder = write_folder(tmp_path / "long", [GOOD], {"c1": np.zeros((300_000, 33, 4), dtype=np.float32)})
    packed = zip_of({"clips.csv": folder / "clips.csv", "poses/c1.npy": folder / "poses" / "c1.npy"})
    assert len(packed) < 400_000
    project = Project.open(data_dir)
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match="zip bomb|300000 frames"):
            import_zip(project, packed)
        _size, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20
    assert_nothing_written(project)


def test_a_folder_with_a_300000_frame_array_is_refused_before_it_is_read(tmp_path, data_dir):
    folder = write_folder(tmp_path / "long", [GOOD], {})
    np.lib.format.open_memmap(folder / "poses" / "c1.npy", mode="w+", dtype=np.float32, shape=(300_000, 33, 4))
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match="300000 frames; at most 108000"):
            import_folder(Project.open(data_dir), folder)
        _size, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20
    assert_one_line_refusal(folder, data_dir, "at most 108000")


@pytest.mark.parametrize("name, words", [
    ("../escape.csv", "unsafe path"), ("/etc/escape.csv", "unsafe path"), ("C:/x.csv", "unsafe path"),
])
def test_a_zip_with_a_path_leaving_its_folder_is_refused(name, words, tmp_path):
    with pytest.raises(DatasetError, match=words):
        extract_zip_safely(zip_of({"clips.csv": b"clip_id\n", name: b"x"}), tmp_path / "out")
    assert not (tmp_path / "escape.csv").exists()


def test_a_zip_with_a_link_or_too_many_entries_is_refused(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        link = zipfile.ZipInfo("poses/c1.npy")
        link.external_attr = 0o120777 << 16  # a symbolic link to /etc/passwd
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(DatasetError, match="link"):
        extract_zip_safely(buffer.getvalue(), tmp_path / "out")
    many = zip_of({f"f{i}": b"" for i in range(30)})
    with pytest.raises(DatasetError, match="at most 20"):
        extract_zip_safely(many, tmp_path / "out2", dataset.ImportLimits(max_zip_entries=20))
    with pytest.raises(DatasetError, match="not a .zip"):
        extract_zip_safely(b"PK but no zip", tmp_path / "out3")


def test_too_many_clips_are_refused(tmp_path, data_dir):
    rows = [{**GOOD, "clip_id": f"c{i}"} for i in range(4)]
    folder = write_folder(tmp_path / "many", rows, {r["clip_id"]: good_array() for r in rows})
    with pytest.raises(DatasetError, match="at most 3"):
        import_folder(Project.open(data_dir), folder, limits=dataset.ImportLimits(max_clips=3))


# ---------------------------------------------------------------- names (issue 10 item 5, import part)


@pytest.mark.parametrize("row", [
    {"exercise": "![x](http://127.0.0.1:9/track.png)"},
    {"criterion:[Session expired: log in again](http://127.0.0.1:9/login)": "fail"},
    {"exercise": "<img src=x onerror=alert(1)>"},
])
def test_names_the_editor_refuses_are_refused_at_import(row, tmp_path, data_dir):
    folder = write_folder(tmp_path / "names", [{**GOOD, **row}], {"c1": good_array()})
    with pytest.raises(DatasetError, match="name is 1-40"):
        import_folder(Project.open(data_dir), folder)
    project = Project.open(data_dir)
    assert_nothing_written(project)
    assert all("(" not in e["name"] for e in store.list_exercises(project))


def test_an_imported_exercise_name_is_stored_as_the_editor_would(tmp_path, data_dir):
    folder = write_folder(tmp_path / "case", [{**GOOD, "exercise": "  Goblet   Squat "}], {"c1": good_array()})
    project = Project.open(data_dir)
    import_folder(project, folder)
    assert store.get_clip(project, "c1")["exercise"] == "goblet squat"


# ---------------------------------------------------------------- all or nothing (issue 10 item 11, part)


def test_a_full_disk_during_import_leaves_no_orphan_arrays(tmp_path, data_dir, monkeypatch):
    rows = [{**GOOD, "clip_id": f"c{i}"} for i in range(3)]
    folder = write_folder(tmp_path / "three", rows, {r["clip_id"]: good_array() for r in rows})
    real_save, calls = np.save, []

    def save_until_full(path, array, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(path, array, *args, **kwargs)

    monkeypatch.setattr(np, "save", save_until_full)
    project = Project.open(data_dir)
    with pytest.raises(DatasetError, match="No space left on device") as caught:
        import_folder(project, folder)
    assert str(project.root) not in str(caught.value)
    assert_nothing_written(project)


def test_a_database_failure_after_the_files_moved_removes_them(tmp_path, data_dir, monkeypatch):
    folder = write_folder(tmp_path / "one", [GOOD], {"c1": good_array()})
    real_add = store.add_clips

    def add_then_fail(*args, before_commit, **kwargs):
        def place_then_fail():
            before_commit()
            assert list(Project.open(data_dir).poses.iterdir())  # the array was in place
            raise OSError(errno.ENOSPC, "database or disk is full")
        return real_add(*args, before_commit=place_then_fail, **kwargs)

    monkeypatch.setattr(store, "add_clips", add_then_fail)
    with pytest.raises(DatasetError, match="disk is full"):
        import_folder(Project.open(data_dir), folder)
    assert_nothing_written(Project.open(data_dir))


# ---------------------------------------------------------------- a whole exported project, tampered with


@pytest.fixture
def export(tmp_path) -> Path:
    """A whole exported project (the synthetic sample, one labelled clip per class)."""
    from curation.sample import sample_project

    source = Project.open(tmp_path / "source")
    sample_project(source, clips_per_class=1)
    export_folder(source, tmp_path / "export")
    return tmp_path / "export"


def edit_table(folder: Path, table: str, change) -> None:
    path = folder / "tables" / f"{table}.csv"
    with path.open(newline="", encoding="utf-8") as fh:
        header, *rows = list(csv.reader(fh))
    change(header, rows)
    with path.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([header, *rows])


def _set(table: str, column: str, value: str, row: int = 0):
    return lambda header, rows: rows[row].__setitem__(header.index(column), value)


TAMPERED = {
    "path out of the project": ("clips", _set("clips", "pose_path", "poses/../../escape.npy"), "poses/<name>"),
    "exercise as markdown": ("exercises", _set("exercises", "name", "[log in](http://127.0.0.1:9)"), "name is 1-40"),
    "criteria JSON": ("label_events", _set("label_events", "criteria", '{"depth": "maybe"}'), "pass | fail"),
    "event of no clip": ("label_events", _set("label_events", "clip_id", "nowhere"), "rows refer to clips"),
    "text in a number": ("clips", _set("clips", "start_frame", "two"), "is not a number"),
    "bounds past the array": ("clips", _set("clips", "end_frame", "5000"), "not within"),
    "unknown column": ("clips", lambda h, rows: (h.append("extra"), [r.append("1") for r in rows]), "not in this"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_a_tampered_export_is_refused_whole(case, export, tmp_path):
    table, change, words = TAMPERED[case]
    edit_table(export, table, change)
    project = Project.open(tmp_path / "target")
    with pytest.raises(DatasetError, match=words) as caught:
        import_folder(project, export)
    assert "\n" not in str(caught.value)
    assert_nothing_written(project)
    assert not (tmp_path / "escape.npy").exists()


def test_an_unknown_table_or_a_missing_array_is_refused(export, tmp_path):
    (export / "tables" / "secrets.csv").write_text("a\n1\n")
    with pytest.raises(DatasetError, match="not a table"):
        import_folder(Project.open(tmp_path / "t1"), export)
    (export / "tables" / "secrets.csv").unlink()
    next((export / "files" / "poses").glob("*.npy")).unlink()
    with pytest.raises(DatasetError, match="is missing"):
        import_folder(Project.open(tmp_path / "t2"), export)
    assert_nothing_written(Project.open(tmp_path / "t2"))


def test_the_command_line_restores_an_export_given_as_a_zip(export, tmp_path):
    packed = tmp_path / "export.zip"
    shutil.make_archive(str(packed.with_suffix("")), "zip", export)
    out = run_cli("import", str(packed), "--data", str(tmp_path / "target"), "--json", str(tmp_path / "r.json"))
    assert out.returncode == 0, out.stderr
    assert json.loads((tmp_path / "r.json").read_text())["mode"] == "full"
    assert "restored the whole" in out.stdout


# ---------------------------------------------------------------- the Dataset page


@pytest.mark.parametrize("case", ["width abc", "zero-byte npy", "npz as npy", "not a zip", "path out"])
def test_the_dataset_page_says_why_in_one_line_and_imports_nothing(case, tmp_path, data_dir, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("FORMCHECK_DATA", str(data_dir))
    if case == "not a zip":
        packed = b"this is not a zip"
    elif case == "path out":
        packed = zip_of({"clips.csv": b"clip_id,exercise,fps\n", "../../escape.csv": b"x"})
    else:
        update, spoil, _words = MALFORMED[case]
        folder = write_folder(tmp_path / "bad", [{**GOOD, **update}], {"c1": good_array()})
        if spoil:
            spoil(folder / "poses" / "c1.npy")
        packed = zip_of({str(p.relative_to(folder)): p for p in folder.rglob("*") if p.is_file()})
    at = AppTest.from_file(str(ROOT / "pages/3_Dataset.py"), default_timeout=120)
    at.run()
    at.file_uploader(key="dataset_import_zip").set_value(("upload.zip", packed, "application/zip"))
    at.run()
    at.button(key="dataset_import").click()
    at.run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("Nothing imported") and "\n" not in errors[0], errors
    assert "Traceback" not in errors[0] and str(data_dir) not in errors[0]
    assert_nothing_written(Project.open(data_dir))


def test_the_dataset_page_restores_an_exported_project(export, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    target = tmp_path / "target"
    monkeypatch.setenv("FORMCHECK_DATA", str(target))
    packed = zip_of({f"dataset/{p.relative_to(export)}": p for p in export.rglob("*") if p.is_file()})
    at = AppTest.from_file(str(ROOT / "pages/3_Dataset.py"), default_timeout=120)
    at.run()
    at.file_uploader(key="dataset_import_zip").set_value(("export.zip", packed, "application/zip"))
    at.run()
    at.button(key="dataset_import").click()
    at.run()
    assert not at.exception, at.exception
    assert any(s.value.startswith("Restored the whole exported project") for s in at.success), \
        [e.value for e in at.error]
    assert store.stats(Project.open(target))["clips"] == store.stats(Project.open(tmp_path / "source"))["clips"]



def test_a_pose_track_whose_header_lies_about_its_size_is_refused(tmp_path):
    # A tiny .npz member whose .npy header announces 10^10 values would make numpy allocate 40 GB on load.
    from tests.test_exchange import synthetic_video

    source = Project.open(tmp_path / "source")
    synthetic_video(source)
    export_folder(source, tmp_path / "export")
    track = tmp_path / "export/files/poses/vtall.npz"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**10,)})
    with zipfile.ZipFile(track) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    members["motion.npy"] = header.getvalue() + bytes(16)
    track.write_bytes(zip_of(members))
    project = Project.open(tmp_path / "target")
    with pytest.raises(DatasetError, match="motion.npy is truncated"):
        import_folder(project, tmp_path / "export")
    assert_nothing_written(project)
