"""Suggestions from a project: cold start, the latest run's saved scores, clips newer than the run, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from curation import store
from curation.project import Project
from curation.sample import make_sample, sample_project
from curation.dataset import import_folder
from model import active, runs
from model.suggest import suggest
from model.train import RunConfig, train_run
from tests.conftest import ROOT
from tests.test_train import edited_sample


def unjudged(project: Project) -> set[str]:
    return set(store.clip_ids(project)) - {r["clip_id"] for r in store.current_labels(project)}


@pytest.fixture
def sample(data_dir) -> Project:
    project = Project.open(data_dir)
    sample_project(project, clips_per_class=6)
    return project


def test_without_a_run_a_cold_start_batch_is_spread_over_the_pool(sample):
    result = suggest(sample, k=6)
    assert result.run_id is None and result.strategy == "cold start"
    ids = [s.clip_id for s in result.items]
    assert len(ids) == len(set(ids)) == 6 and set(ids) <= unjudged(sample)
    assert all(s.p_incorrect is None and "no model yet" in s.reason for s in result.items)


def test_a_first_batch_on_a_project_without_labels_covers_every_exercise(data_dir, tmp_path):
    project = Project.open(data_dir)
    import_folder(project, edited_sample(tmp_path / "unlabelled", unlabel))
    assert not store.current_labels(project)
    ids = [s.clip_id for s in suggest(project, k=6).items]
    # three exercises whose poses differ (standing, curling, lying): a spread-out batch holds all three
    assert {store.get_clip(project, i)["exercise"] for i in ids} == set(store.clip_exercises(project))


def unlabel(rows: list[dict]) -> list[dict]:
    return [{k: ("" if k == "label" or k.startswith("criterion:") else v) for k, v in r.items()} for r in rows]


def test_with_a_run_the_batch_comes_from_its_saved_scores(sample):
    run = train_run(sample, RunConfig(model="baseline"))
    result = suggest(sample, k=5, strategy="least_confidence")
    assert result.run_id == run["run_id"] and result.scored_live == 0
    scores = runs.read_scores(sample, run["run_id"]).set_index("clip_id")
    for s in result.items:
        assert s.clip_id in unjudged(sample)
        assert s.p_incorrect == pytest.approx(scores.loc[s.clip_id, "p_incorrect"])
        assert s.reason
    # the most uncertain clip of the pool is in the batch (the diversity step keeps the best of its candidates)
    pool = scores.loc[sorted(unjudged(sample))]
    assert (pool.p_incorrect - 0.5).abs().idxmin() in {s.clip_id for s in result.items}


def test_clips_added_after_the_run_are_scored_with_its_model(sample, tmp_path):
    run = train_run(sample, RunConfig(model="baseline"))
    before = set(store.clip_ids(sample))
    more = tmp_path / "more"

    def renamed(rows: list[dict]) -> list[dict]:  # the same poses again, as new clips
        for row in rows:
            (more / "poses" / f"{row['clip_id']}.npy").rename(more / "poses" / f"late-{row['clip_id']}.npy")
            row["clip_id"] = f"late-{row['clip_id']}"
        return rows

    import_folder(sample, edited_sample(more, renamed))
    new = set(store.clip_ids(sample)) - before
    assert new
    result = suggest(sample, k=len(unjudged(sample)))  # the whole pool
    assert result.run_id == run["run_id"]
    assert result.scored_live == len(new & unjudged(sample))
    live = [s for s in result.items if s.clip_id in new]
    assert live and all(s.p_incorrect is not None and 0 <= s.p_incorrect <= 1 for s in live)


def test_an_empty_project_and_a_fully_labelled_one_are_refused_clearly(data_dir):
    project = Project.open(data_dir)
    with pytest.raises(active.EmptyPool, match="no clips"):
        suggest(project)
    sample_project(project, clips_per_class=2)
    for clip_id in unjudged(project):
        store.add_label_event(project, {"clip_id": clip_id, "annotator": "kim", "verdict": "correct"})
    with pytest.raises(active.PoolExhausted, match="nothing left"):
        suggest(project)


def test_an_unknown_strategy_is_refused(sample):
    with pytest.raises(ValueError, match="unknown strategy"):
        suggest(sample, strategy="psychic")


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "model", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)


def test_cli_suggest_writes_each_clip_with_score_and_reason(sample, tmp_path):
    train_run(sample, RunConfig(model="baseline"))
    out = tmp_path / "s.json"
    done = run_cli("suggest", "--data", str(sample.root), "--k", "4", "--strategy", "entropy", "--json", str(out))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["strategy"] == "entropy" and len(result["suggestions"]) == 4
    for item in result["suggestions"]:
        assert {"clip_id", "score", "reason", "p_incorrect"} <= set(item) and item["reason"]
        assert item["clip_id"] in done.stdout  # the human summary names each clip
    bad = run_cli("suggest", "--data", str(sample.root), "--strategy", "psychic")
    assert bad.returncode != 0 and len(bad.stderr.strip().splitlines()) == 1


def posed_project(data_dir) -> Project:
    """add_video_and_imports' project (a video cut into 4 clips, 6 imported clips, i0 labelled) with random
    poses written for the video's track and each imported array."""
    from curation.pose import PoseTrack, save_track
    from tests.conftest import add_video_and_imports

    project = Project.open(data_dir)
    add_video_and_imports(project, repetitions=4, imported=6)
    rng = np.random.default_rng(5)
    track = rng.random((200, 33, 4)).astype(np.float32)
    save_track(PoseTrack(track, np.arange(200) / 30.0, np.ones(200, bool), np.zeros(200, np.float32), 30.0, 640, 480),
               project.path("poses/v1.npz"))
    for i in range(6):
        np.save(project.path(f"poses/i{i}.npy"), rng.random((30, 33, 4)).astype(np.float32))
    return project


def test_pose_statistics_are_those_of_the_clips_features(data_dir):
    from model.features import clip_statistics, load_clipset
    from model.suggest import pose_statistics

    project = posed_project(data_dir)
    ids = store.clip_ids(project)
    every = load_clipset(project, labelled_only=False)
    expected = {cid: clip_statistics(every.features(i)) for i, cid in enumerate(every.clip_ids)}
    got = pose_statistics(project, [*ids, "no-such-clip"])
    assert list(got) == every.clip_ids  # in list_clips' order, the unknown id left out
    for cid in ids:
        np.testing.assert_array_equal(got[cid], expected[cid])


def test_a_cold_start_reads_each_clip_once_until_its_pose_or_bounds_change(data_dir, monkeypatch):
    from model import suggest as module

    project = posed_project(data_dir)
    read = []
    real = module.clip_landmarks
    monkeypatch.setattr(module, "clip_landmarks", lambda p, clip, *a: read.append(clip["id"]) or real(p, clip, *a))
    first = suggest(project, k=4)
    assert sorted(read) == sorted(store.clip_ids(project))  # pool and labelled clips: all of them here
    store.set_complexity(project, {"i1": {"complexity": 0.5}})  # a write that changes no pose
    read.clear()
    assert suggest(project, k=4).items == first.items and read == []
    store.set_bounds(project, "v1_2", 65, 90, "lead")
    np.save(project.path("poses/i3.npy"), np.random.default_rng(6).random((30, 33, 4)).astype(np.float32))
    read.clear()
    suggest(project, k=4)
    assert sorted(read) == ["i3", "v1_2"]  # moved frames, a new pose file: read again; no other clip


def test_the_label_reads_of_choice_and_quality_equal_consensus_labels_after_random_writes(data_dir):
    import random

    from tests.conftest import add_video_and_imports
    from tests.test_store_scale import _random_write

    project = Project.open(data_dir)
    add_video_and_imports(project, repetitions=8, imported=4)
    rng = random.Random(7)
    for step in range(80):
        _random_write(project, rng, step)
        consensus = {cid: e["label"] for cid, e in store.consensus_labels(project).items() if e["label"]}
        assert store.consensus_label_of(project) == consensus
        exercise = {c["id"]: c["exercise"] for c in store.list_clips(project)}
        assert store.dataset_labels(project) == {cid: (label, exercise[cid]) for cid, label in consensus.items()
                                                 if cid in exercise}
    assert len(store.dataset_labels(project)) > 3  # the walk labelled some clips
