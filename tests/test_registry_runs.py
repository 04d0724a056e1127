"""Runs as a registry (issue 12): named and annotated by events, promoted, deleted with confirmation, compared.

Not the model registry (tests/test_registry.py). Two real baseline runs on the sample project, made once: run A
with 3 folds and seed 0 on one clip fewer, run B with 4 folds and seed 1 after three labels were flipped and that
clip restored, so settings, label sets, metrics and verdicts really differ.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from curation import accounts, store
from curation.project import Project
from curation.sample import sample_project
from model import choice, compare, runs
from model.__main__ import main as model_cli
from model.train import RunConfig, train_run
from tests.conftest import flip_labels, open_page

TRAIN = "pages/4_Train.py"


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Project, dict, dict, list[str], str]:
    """(project, metrics of A, metrics of B, the clips relabelled between them, the clip only B saw)."""
    project = Project.open(tmp_path_factory.mktemp("registry") / "project")
    sample_project(project, clips_per_class=6)
    held_back = sorted(store.consensus_labels(project))[-1]
    store.set_excluded(project, "lead", True, "not yet", clip_id=held_back)
    a = train_run(project, RunConfig(model="baseline", folds=3, seed=0))
    before = {c: v["label"] for c, v in store.consensus_labels(project).items()}
    flip_labels(project, 3)
    after = {c: v["label"] for c, v in store.consensus_labels(project).items()}
    store.set_excluded(project, "lead", False, clip_id=held_back)
    b = train_run(project, RunConfig(model="baseline", folds=4, seed=1))
    relabelled = sorted(c for c in before if c != held_back and before[c] != after[c])
    assert len(relabelled) == 3
    return project, a, b, relabelled, held_back


@pytest.fixture
def project(two_runs, tmp_path, monkeypatch) -> Project:
    """A copy of the two-run project that a test may name, promote and delete runs in (the pages open it)."""
    shutil.copytree(two_runs[0].root, tmp_path / "copy")
    monkeypatch.setenv("FORMCHECK_DATA", str(tmp_path / "copy"))
    return Project.open(tmp_path / "copy")


def listed(project: Project) -> list[str]:
    return [r["run_id"] for r in runs.list_runs(project)]


# ---------------------------------------------------------------- names and notes


def test_a_run_is_named_and_annotated_by_events_and_the_last_one_counts(project, two_runs):
    _, a, b, _, _ = two_runs
    meta = (runs.run_dir(project, a["run_id"]) / runs.META).read_bytes()
    runs.name_run(project, a["run_id"], "Ana", "first try", "3 folds")
    runs.name_run(project, a["run_id"], "Ben", "  the\u202e fold test ", None)  # None keeps the note
    runs.name_run(project, b["run_id"], "Ana", None, "line one\nline two")
    names = runs.run_names(project)
    assert (names[a["run_id"]]["name"], names[a["run_id"]]["note"], names[a["run_id"]]["annotator"]) == \
        ("the fold test", "3 folds", "Ben")  # the bidi override went, the spaces were collapsed
    assert (names[b["run_id"]]["name"], names[b["run_id"]]["note"]) == ("", "line one\nline two")
    events = store.run_name_events(project, a["run_id"])
    assert [e["name"] for e in events] == ["first try", "the fold test"] and all(e["created_at"] for e in events)
    assert (runs.run_dir(project, a["run_id"]) / runs.META).read_bytes() == meta  # the folder is never rewritten
    listing = choice.table(project)["runs"]
    assert {r["run_id"]: r["name"] for r in listing} == {a["run_id"]: "the fold test", b["run_id"]: ""}


def test_a_name_too_long_or_an_unknown_run_is_refused_and_nothing_is_written(project, two_runs):
    _, a, _, _, _ = two_runs
    with pytest.raises(runs.RunTextRefused, match="at most 80 characters"):
        runs.name_run(project, a["run_id"], "Ana", "x" * 81)
    with pytest.raises(runs.RunTextRefused, match="note has at most 1000"):
        runs.name_run(project, a["run_id"], "Ana", "ok", "y" * 1001)
    with pytest.raises(runs.RunNotFound):
        runs.name_run(project, "20990101-000000-abcdef", "Ana", "ghost")
    with pytest.raises(runs.RunNotFound):
        runs.name_run(project, runs.new_run_dir(project).name, "Ana", "unfinished")
    assert store.run_name_events(project) == []


# ---------------------------------------------------------------- delete


def test_deleting_a_run_removes_its_folder_lists_it_no_more_and_is_audited(project, two_runs):
    _, a, b, _, _ = two_runs
    runs.name_run(project, a["run_id"], "Ana", "doomed")
    gone = runs.delete_run(project, a["run_id"], "leo")
    assert gone["run_id"] == a["run_id"] and gone["name"] == "doomed" and gone["macro_f1"] == a["macro_f1"]
    assert not runs.run_dir(project, a["run_id"]).exists()
    assert [p.name for p in project.runs.iterdir()] == [b["run_id"]]  # no trash left behind
    assert listed(project) == [b["run_id"]]
    with pytest.raises(runs.RunNotFound):
        runs.load_run(project, a["run_id"])
    entry = store.audit_log(project)[0]
    assert (entry["actor"], entry["action"], entry["target"]) == ("leo", "run deleted", a["run_id"])
    assert json.loads(entry["detail"])["model"] == "baseline"


def test_deleting_the_promoted_run_falls_back_to_the_best_remaining_run(project, two_runs):
    _, a, b, _, _ = two_runs
    choice.promote(project, a["run_id"], "leo")
    assert choice.current(project).run_id == a["run_id"]
    runs.delete_run(project, a["run_id"], "leo")
    chosen = choice.current(project)
    assert chosen.run_id == b["run_id"] and f"the promoted run {a['run_id']} is gone" in chosen.reason


def test_a_run_on_its_way_to_the_trash_is_never_listed_and_goes_at_the_next_deletion(project, two_runs):
    _, a, b, _, _ = two_runs
    half = project.runs / f"{runs.TRASH}{a['run_id']}-000000"
    runs.run_dir(project, a["run_id"]).rename(half)  # as an interrupted deletion leaves it: every file, done too
    assert (half / runs.DONE).is_file() and listed(project) == [b["run_id"]]
    assert choice.current(project).run_id == b["run_id"]
    runs.delete_run(project, b["run_id"], "leo")
    assert list(project.runs.iterdir()) == []


def test_a_run_deleted_while_the_runs_are_listed_is_left_out_not_a_crash(project, two_runs, monkeypatch):
    _, a, b, _, _ = two_runs
    read = runs._read_json

    def vanished(path):  # the folder was seen, then moved to the trash before its files were read
        if path.parent.name == a["run_id"]:
            raise FileNotFoundError(path)
        return read(path)

    monkeypatch.setattr(runs, "_read_json", vanished)
    assert listed(project) == [b["run_id"]]


def test_a_deletion_that_cannot_be_recorded_leaves_the_run_in_place(project, two_runs, monkeypatch):
    _, a, b, _, _ = two_runs

    def refuse(*args, **kwargs):
        raise store.StoreError("database is locked")

    monkeypatch.setattr(store, "record_audit", refuse)
    with pytest.raises(store.StoreError):
        runs.delete_run(project, a["run_id"], "leo")
    assert sorted(listed(project)) == sorted([a["run_id"], b["run_id"]])
    assert sorted(p.name for p in project.runs.iterdir()) == sorted([a["run_id"], b["run_id"]])


def test_deleting_an_unknown_unfinished_or_unsafe_run_is_refused(project, two_runs):
    unfinished = runs.new_run_dir(project)
    with pytest.raises(runs.RunNotFound):
        runs.delete_run(project, unfinished.name, "leo")
    with pytest.raises(runs.RunNotFound):
        runs.delete_run(project, "20990101-000000-abcdef", "leo")
    with pytest.raises(runs.UnsafePath):
        runs.delete_run(project, "../copy", "leo")
    assert unfinished.is_dir() and len(listed(project)) == 2 and store.audit_log(project) == []


# ---------------------------------------------------------------- compare


def test_compare_names_the_settings_and_label_sets_that_differ(two_runs):
    project, a, b, relabelled, held_back = two_runs
    diff = compare.compare(project, a["run_id"], b["run_id"])
    differing = {s["setting"]: (s["a"], s["b"]) for s in diff.settings if not s["same"]}
    assert differing["folds"] == ("3", "4") and differing["seed"] == ("0", "1")
    assert "data_hash" in differing and "model" not in differing
    assert [r["clip_id"] for r in diff.relabelled] == relabelled
    flipped = {r["label_a"] + ">" + r["label_b"] for r in diff.relabelled}
    assert flipped <= {"correct>incorrect", "incorrect>correct"}
    assert diff.only_a == [] and [r["clip_id"] for r in diff.only_b] == [held_back]
    counts = {r["exercise"]: r for r in diff.label_counts}
    assert sum(r["correct_a"] + r["incorrect_a"] for r in counts.values()) == a["n_clips"]
    assert sum(r["correct_b"] + r["incorrect_b"] for r in counts.values()) == b["n_clips"] == a["n_clips"] + 1
    assert diff.holdout_note is None


def test_compare_puts_metrics_per_exercise_and_per_criterion_side_by_side(two_runs):
    project, a, b, _, _ = two_runs
    diff = compare.compare(project, a["run_id"], b["run_id"])
    headline = {m["metric"]: m for m in diff.metrics}
    for key in ("macro_f1", "balanced_accuracy", "kappa", "n_clips"):
        assert headline[key]["a"] == pytest.approx(a[key]) and headline[key]["b"] == pytest.approx(b[key])
        assert headline[key]["diff"] == pytest.approx(b[key] - a[key])
    assert headline["auc"]["a"] == pytest.approx(compare.auc(runs.read_oof(project, a["run_id"])))
    per_ex = {r["exercise"]: r for r in diff.per_exercise}
    assert set(per_ex) == set(a["per_exercise"]) | set(b["per_exercise"])
    for ex, row in per_ex.items():
        assert row["macro_f1_a"] == pytest.approx(a["per_exercise"][ex]["macro_f1"])
        assert row["diff"] == pytest.approx(b["per_exercise"][ex]["macro_f1"] - a["per_exercise"][ex]["macro_f1"])
    crit = {r["criterion"]: r for r in diff.per_criterion}
    assert set(crit) == set(a["per_criterion"]) | set(b["per_criterion"])
    key = next(k for k, v in a["per_criterion"].items() if v["auc_p_incorrect"] is not None)
    assert crit[key]["auc_p_incorrect_b"] == pytest.approx(b["per_criterion"][key]["auc_p_incorrect"])
    assert crit[key]["n_a"] == a["per_criterion"][key]["n"]
    assert diff.confusion["a"] == a["confusion"] and diff.confusion["b"] == b["confusion"]
    assert diff.confusion["a"] != diff.confusion["b"]


def test_compare_lists_exactly_the_clips_whose_verdict_changed(two_runs):
    project, a, b, _, held_back = two_runs
    diff = compare.compare(project, a["run_id"], b["run_id"])
    p = {}
    for run in (a, b):  # each run's out-of-fold p, else its final model's
        oof = runs.read_oof(project, run["run_id"])
        p[run["run_id"]] = {c: v[0] for c, v in runs.read_predictions(project, run["run_id"]).items()}
        p[run["run_id"]].update(dict(zip(oof.clip_id, oof.p_incorrect)))
    both = set(p[a["run_id"]]) & set(p[b["run_id"]])
    expected = {c for c in both if (p[a["run_id"]][c] >= 0.5) != (p[b["run_id"]][c] >= 0.5)}
    assert diff.n_both == len(both) and {r["clip_id"] for r in diff.changed} == expected and expected
    labels = store.consensus_labels(project)
    for row in diff.changed:
        assert row["p_a"] == pytest.approx(p[a["run_id"]][row["clip_id"]])
        assert row["verdict_b"] == ("incorrect" if row["p_b"] >= 0.5 else "correct") != row["verdict_a"]
        now = (labels.get(row["clip_id"]) or {}).get("label")  # the sample also has unlabelled clips
        assert row["right"] == ("" if not now else "a" if row["verdict_a"] == now else "b")
        for side, run in (("a", a), ("b", b)):  # out-of-fold for a clip of the run's evaluation, else final
            evaluated = row["clip_id"] in set(runs.read_oof(project, run["run_id"]).clip_id)
            assert row[f"source_{side}"] == ("out-of-fold" if evaluated else "final model")
    assert np.all(np.diff([abs(r["p_b"] - r["p_a"]) for r in diff.changed]) <= 1e-12)
    assert held_back not in p[a["run_id"]]  # excluded when A ran: A never judged it, so it is not compared


def test_comparing_a_run_with_itself_or_an_unknown_run_is_refused(two_runs):
    project, a, _, _, _ = two_runs
    with pytest.raises(compare.SameRun):
        compare.compare(project, a["run_id"], a["run_id"])
    with pytest.raises(runs.RunNotFound):
        compare.compare(project, a["run_id"], "20990101-000000-abcdef")


# ---------------------------------------------------------------- command line


def test_cli_runs_json_lists_key_metrics_names_and_the_current_run(project, two_runs, tmp_path, capsys):
    _, a, b, _, _ = two_runs
    runs.name_run(project, a["run_id"], "Ana", "baseline, 3 folds", "the reference")
    assert model_cli(["promote", a["run_id"], "--by", "Ana", "--data", str(project.root)]) == 0
    out = tmp_path / "runs.json"
    assert model_cli(["runs", "--data", str(project.root), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    listing = json.loads(out.read_text())
    assert listing["current"] == a["run_id"] and listing["promoted"] is True
    rows = {r["run_id"]: r for r in listing["runs"]}
    assert set(rows) == {a["run_id"], b["run_id"]}
    row = rows[a["run_id"]]
    assert {"model", "split", "macro_f1", "balanced_accuracy", "auc", "n_clips", "created_at", "name", "note",
            "current"} <= set(row)
    assert row["current"] and not rows[b["run_id"]]["current"]
    assert (row["name"], row["note"], row["n_clips"]) == ("baseline, 3 folds", "the reference", a["n_clips"])
    assert row["macro_f1"] == pytest.approx(a["macro_f1"]) and row["balanced_accuracy"] == pytest.approx(
        a["balanced_accuracy"])
    assert row["auc"] == pytest.approx(compare.auc(runs.read_oof(project, a["run_id"])))
    assert f"* {a['run_id']}" in printed and "name: baseline, 3 folds" in printed


def test_cli_names_and_deletes_only_with_confirmation(project, two_runs, tmp_path, capsys):
    _, a, b, _, _ = two_runs
    data = ["--data", str(project.root)]
    assert model_cli(["delete", a["run_id"], *data]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "--yes" in err and "\n" not in err
    assert runs.run_dir(project, a["run_id"]).is_dir()
    assert model_cli(["name", a["run_id"], "--name", "x" * 81, *data]) == 2
    assert "80 characters" in capsys.readouterr().err and store.run_name_events(project) == []
    assert model_cli(["name", a["run_id"], "--note", "kept", *data]) == 0
    assert runs.run_names(project)[a["run_id"]]["note"] == "kept"
    out = tmp_path / "deleted.json"
    assert model_cli(["delete", a["run_id"], "--yes", *data, "--json", str(out)]) == 0
    assert json.loads(out.read_text())["deleted"]["run_id"] == a["run_id"]
    assert listed(project) == [b["run_id"]]
    assert store.audit_log(project)[0]["actor"].startswith("cli:")
    assert model_cli(["delete", a["run_id"], "--yes", *data]) == 2
    assert "no finished run" in capsys.readouterr().err


def test_cli_compares_two_runs_as_the_train_page_does(project, two_runs, tmp_path, capsys):
    _, a, b, relabelled, _ = two_runs
    data = ["--data", str(project.root)]
    out = tmp_path / "compare.json"
    assert model_cli(["compare", a["run_id"], b["run_id"], *data, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    got = json.loads(out.read_text())
    want = compare.compare(project, a["run_id"], b["run_id"]).as_dict()
    assert json.dumps(got, sort_keys=True) == json.dumps(json.loads(json.dumps(want, default=str)), sort_keys=True)
    assert sorted(r["clip_id"] for r in got["relabelled"]) == relabelled
    assert f"A = {a['run_id']}, B = {b['run_id']}" in printed and f"{len(relabelled)} relabelled" in printed
    assert "setting train.folds" in printed or "setting folds" in printed  # 3 folds against 4
    assert model_cli(["compare", a["run_id"], a["run_id"], *data]) == 2
    assert "two different runs" in capsys.readouterr().err
    assert model_cli(["compare", a["run_id"], "no-such-run", *data]) == 2
    assert "no finished run" in capsys.readouterr().err


# ---------------------------------------------------------------- the Train page


def shown(at: AppTest) -> str:
    return " ".join(str(e.value) for kind in (at.markdown, at.caption, at.warning, at.success, at.error, at.text)
                    for e in kind)


@pytest.mark.slow
def test_train_page_compares_two_runs_side_by_side(project, two_runs):
    _, a, b, relabelled, _ = two_runs
    at = open_page(TRAIN)
    assert at.selectbox(key="train_compare_a").value == a["run_id"]
    assert at.selectbox(key="train_compare_b").value == b["run_id"]
    assert len(at.get("plotly_chart")) >= 7  # the inspected run's 4, per exercise A and B, the 2 confusion matrices
    assert any(m.label == "Label changed" and m.value == str(len(relabelled)) for m in at.metric)
    assert any(m.label == "Clips only in B" and m.value == "1" for m in at.metric)
    settings = next(d.value for d in at.dataframe if "setting" in d.value.columns)
    assert {"folds", "seed"} <= set(settings.setting)
    changed = compare.compare(project, a["run_id"], b["run_id"]).changed
    assert at.selectbox(key="train_compare_clip").options == [r["clip_id"] for r in changed]
    at.selectbox(key="train_compare_a").set_value(b["run_id"]).run()
    assert any("two different runs" in i.value for i in at.info)


@pytest.mark.slow
def test_train_page_names_escaped_and_deletes_only_after_confirmation(project, two_runs):
    _, a, b, _, _ = two_runs
    runs.name_run(project, b["run_id"], "Ana", "**bold** [x](http://evil.example)", "<b>note</b>")
    at = open_page(TRAIN)
    text = shown(at)
    assert "\\*\\*bold\\*\\*" in text and "](http" not in text and "<b>note</b>" in text  # note: st.text
    at.selectbox(key="train_run").set_value(a["run_id"]).run()
    at.button(key="train_delete").click().run()
    assert not at.exception
    assert any("for good" in w.value for w in at.warning)
    assert runs.run_dir(project, a["run_id"]).is_dir()  # asked, not done
    at.button(key="train_delete_cancel").click().run()
    assert runs.run_dir(project, a["run_id"]).is_dir() and not any("for good" in w.value for w in at.warning)
    at.button(key="train_delete").click().run()
    at.button(key="train_delete_confirm").click().run()
    assert not at.exception
    assert listed(project) == [b["run_id"]] and not runs.run_dir(project, a["run_id"]).exists()
    assert any(f"Deleted run {a['run_id']}" in s.value for s in at.success)
    assert at.selectbox(key="train_run").value == b["run_id"]


@pytest.mark.slow
def test_train_page_refuses_registry_actions_to_a_signed_in_viewer(project, two_runs, tmp_path, monkeypatch):
    _, a, _, _, _ = two_runs
    path = tmp_path / "passwords"
    accounts.set_password(path, "vic", "a long enough password")
    monkeypatch.setenv(accounts.PASSWORDS_ENV, str(path))
    accounts.add_user(project, "vic", "viewer", "test")
    at = open_page(TRAIN, auth_account="vic", train_run=a["run_id"])
    assert at.button(key="train_delete").disabled and at.button(key="train_promote").disabled
    # A forged confirmation (the state a lead's first click leaves) still does nothing.
    at.session_state["train_delete_pending"] = a["run_id"]
    at.run()
    at.button(key="train_delete_confirm").click().run()
    assert any("needs the lead role" in e.value for e in at.error)
    at.button(key="train_promote").click().run()
    form = next(b for b in at.button if b.label == "Save name and note")
    assert form.disabled
    at.text_input(key=f"train_name_{a['run_id']}").input("mine now")
    form.click().run()
    assert runs.run_dir(project, a["run_id"]).is_dir() and store.run_promotions(project) == []
    assert store.run_name_events(project) == [] and [e["action"] for e in store.audit_log(project)] == ["user added"]
