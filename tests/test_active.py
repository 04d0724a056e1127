"""Active learning: scores with known rankings, k-centre, diverse and balanced batches, cold start, reasons, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model.active import (STRATEGIES, EmptyPool, Pool, PoolExhausted, Rows, bald, entropy, k_centre,
                          least_confidence, margin, select)

CENTRES = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0], [5.0, 20.0]])


def clusters(sizes: list[int], spread: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Points around CENTRES (well separated: 10 apart, spread 0.1) and the cluster of each point."""
    rng = np.random.default_rng(seed)
    which = np.repeat(np.arange(len(sizes)), sizes)
    return CENTRES[which] + rng.normal(0, spread, size=(len(which), 2)), which


def ids(n: int) -> list[str]:
    return [f"c{i}" for i in range(n)]


def index(batch) -> list[int]:
    return [int(s.clip_id[1:]) for s in batch]


def h(p: float) -> float:
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


# ---------------------------------------------------------------------------------------------- scores


@pytest.mark.parametrize("score", [least_confidence, margin, entropy])
def test_uncertainty_scores_rank_the_most_even_split_first(score):
    p = np.array([0.9, 0.5, 0.3, 0.02, 0.65])
    # |p - 0.5| = 0.4, 0, 0.2, 0.48, 0.15: the more even the split, the higher the score
    assert np.argsort(-score(p), kind="stable").tolist() == [1, 4, 2, 0, 3]


def test_uncertainty_scores_have_their_textbook_values():
    p = np.array([0.9, 0.5])
    np.testing.assert_allclose(least_confidence(p), [0.1, 0.5])
    np.testing.assert_allclose(margin(p), [1 - (0.9 - 0.1), 1.0])
    np.testing.assert_allclose(entropy(p), [h(0.9), 1.0])


@pytest.mark.parametrize("score, top", [(least_confidence, 0.5), (margin, 1.0), (entropy, 1.0)])
def test_a_clip_the_model_never_saw_gets_the_highest_score(score, top):
    out = score(np.array([0.5, np.nan, 0.9]))
    assert out[1] == pytest.approx(top) and out[1] >= out.max() - 1e-12


def test_bald_is_near_zero_when_samples_agree_and_high_when_they_contradict():
    samples = np.array([[0.97, 0.5, 0.05, 0.9],
                        [0.97, 0.5, 0.95, 0.1],
                        [0.97, 0.5, 0.05, 0.9],
                        [0.97, 0.5, 0.95, 0.1]])
    out = bald(samples)
    assert out[0] == pytest.approx(0, abs=1e-9)  # sure and agreeing
    assert out[1] == pytest.approx(0, abs=1e-9)  # unsure but agreeing: nothing to learn about the model
    assert out[2] == pytest.approx(1 - h(0.05))  # confident and contradicting: H(0.5) - mean H
    assert out[3] == pytest.approx(1 - h(0.1))
    assert out[2] > out[3] > 0.5


def test_bald_gives_a_clip_without_samples_the_maximum():
    out = bald(np.array([[np.nan, 0.2], [np.nan, 0.2]]))
    assert out.tolist() == pytest.approx([1.0, 0.0], abs=1e-9)


# ---------------------------------------------------------------------------------------------- k-centre


def test_k_centre_picks_one_point_per_well_separated_cluster():
    points, which = clusters([20, 20, 20, 20, 20])
    picks = k_centre(points, 5)
    assert sorted(which[picks].tolist()) == [0, 1, 2, 3, 4]


def test_k_centre_starts_from_the_labelled_clips():
    points, which = clusters([20, 20, 20, 20, 20])
    labelled, _ = clusters([5, 5, 5, 0, 0], seed=1)  # clusters 0, 1, 2 are covered already
    picks = k_centre(points, 2, already=labelled)
    assert sorted(which[picks].tolist()) == [3, 4]


def test_k_centre_returns_every_point_when_asked_for_more():
    points, _ = clusters([2, 1])
    assert sorted(k_centre(points, 10)) == [0, 1, 2]


# ---------------------------------------------------------------------------------------------- select


def test_a_diverse_batch_spans_the_clusters_instead_of_near_duplicates():
    # 30 near-identical clips the model is most unsure about, 10 a little less unsure in each other cluster.
    points, which = clusters([30, 10, 10, 10, 10])
    rng = np.random.default_rng(0)
    p = np.where(which == 0, rng.uniform(0.49, 0.51, len(which)), rng.uniform(0.3, 0.4, len(which)))
    pool = Pool(ids(len(p)), points, p)
    plain = index(select(pool, 5, "entropy", diversity=False, balance=False))
    assert set(which[plain]) == {0}  # without the diversity step: five repetitions of one kind of clip
    diverse = index(select(pool, 5, "entropy", diversity=True, balance=False))
    assert len(set(which[diverse])) == 5
    # ... and from each cluster the clip the model is least sure about
    for i in diverse:
        same = np.flatnonzero(which == which[i])
        assert abs(p[i] - 0.5) == np.abs(p[same] - 0.5).min()


def test_balancing_fills_the_batch_half_and_half_when_the_candidates_allow():
    rng = np.random.default_rng(1)
    p = np.concatenate([rng.uniform(0.5, 0.6, 40), rng.uniform(0.3, 0.38, 20)])  # leaning correct: surer
    pool = Pool(ids(60), rng.normal(size=(60, 4)), p)
    unbalanced = pool.p[index(select(pool, 10, "entropy", diversity=False, balance=False))]
    assert (unbalanced >= 0.5).all()
    balanced = pool.p[index(select(pool, 10, "entropy", diversity=False, balance=True))]
    assert (balanced >= 0.5).sum() == 5 and (balanced < 0.5).sum() == 5
    balanced = pool.p[index(select(pool, 10, "entropy", diversity=True, balance=True))]
    assert (balanced >= 0.5).sum() == 5 and (balanced < 0.5).sum() == 5


def test_balancing_gives_way_when_one_predicted_class_runs_out():
    rng = np.random.default_rng(2)
    p = np.concatenate([rng.uniform(0.5, 0.7, 40), [0.3, 0.2]])  # all 42 are candidates, 2 lean correct
    pool = Pool(ids(42), rng.normal(size=(42, 4)), p)
    batch = pool.p[index(select(pool, 10, "margin"))]
    assert len(batch) == 10 and (batch < 0.5).sum() == 2


def test_cold_start_covers_the_variety_of_clips():
    points, which = clusters([40, 5, 5, 5, 5])
    batch = select(Pool(ids(len(points)), points), 5)
    assert len(set(which[index(batch)])) == 5
    assert all(s.reason == "no model yet: picked to cover the variety of clips" and s.p_incorrect is None
               for s in batch)


def test_cold_start_skips_what_is_labelled_already():
    points, which = clusters([10, 10, 10, 10, 10])
    labelled, _ = clusters([3, 3, 3, 0, 0], seed=4)
    batch = select(Pool(ids(len(points)), points, labelled_embeddings=labelled), 2)
    assert sorted(which[index(batch)].tolist()) == [3, 4]


def test_an_empty_project_and_a_fully_labelled_one_are_told_apart():
    with pytest.raises(EmptyPool, match="no clips"):
        select(Pool([], np.zeros((0, 3)), np.zeros(0)), 5)
    with pytest.raises(PoolExhausted, match="all 4 clips are labelled"):
        select(Pool([], np.zeros((0, 3)), np.zeros(0), labelled_embeddings=np.zeros((4, 3))), 5)


def test_asking_for_more_clips_than_the_pool_holds_returns_them_all():
    rng = np.random.default_rng(3)
    pool = Pool(ids(7), rng.normal(size=(7, 3)), rng.random(7))
    for strategy in STRATEGIES:
        assert sorted(index(select(pool, 20, strategy))) == list(range(7))


def test_a_batch_is_sorted_by_score():
    rng = np.random.default_rng(5)
    pool = Pool(ids(80), rng.normal(size=(80, 3)), rng.random(80))
    scores = [s.score for s in select(pool, 10)]
    assert scores == sorted(scores, reverse=True)


def test_reasons_say_the_split_and_each_signal_that_stands_out():
    # Clip 0: split 52/48, models disagree; clip 1: windows disagree; clip 2: an exercise the model never saw;
    # clip 3: far from everything labelled. The labelled clips sit around the origin like clips 0-2.
    points = np.array([[0.0, 0.1], [0.1, 0.0], [-0.1, 0.0], [50.0, 50.0]])
    pool = Pool(ids(4), points, np.array([0.52, 0.9, np.nan, 0.3]),
                committee_sd=np.array([0.3, 0.01, 0.0, 0.0]), window_spread=np.array([0.1, 0.7, 0.0, 0.0]),
                labelled_embeddings=np.random.default_rng(6).normal(0, 0.3, size=(20, 2)))
    # entropy, not the default "mixed" (whose drawn half adds "picked at random" to its reasons)
    reasons = {s.clip_id: s.reason for s in select(pool, 4, "entropy")}
    assert reasons["c0"] == ("the model is split 52/48 between incorrect and correct, "
                             "models trained on different videos disagree")
    assert reasons["c1"] == ("the model leans incorrect (90% sure), "
                             "its windows disagree (one part looks correct, another incorrect)")
    assert reasons["c2"] == "the model has never seen this exercise"
    assert reasons["c3"] == "the model leans correct (70% sure), unlike anything labelled so far"
    assert {s.clip_id: s.p_incorrect for s in select(pool, 4, "entropy")}["c2"] is None


def test_bald_ranks_by_disagreement_prefers_mc_dropout_and_else_falls_back_to_entropy():
    rng = np.random.default_rng(7)
    p = np.array([0.5, 0.8, 0.7, 0.9])
    committee = np.array([0.0, 0.6, 0.1, 0.0])
    mc = np.array([0.0, 0.0, 0.0, 0.4])
    emb = rng.normal(size=(4, 3))
    by_committee = select(Pool(ids(4), emb, p, committee_mi=committee), 1, "bald", diversity=False, balance=False)
    assert by_committee[0].clip_id == "c1" and "models trained on different videos disagree" in by_committee[0].reason
    by_mc = select(Pool(ids(4), emb, p, committee_mi=committee, mc_mi=mc), 1, "bald", diversity=False,
                   balance=False)
    assert by_mc[0].clip_id == "c3" and "repeated guesses disagree" in by_mc[0].reason
    fallback = select(Pool(ids(4), emb, p), 1, "bald", diversity=False, balance=False)
    assert fallback[0].clip_id == "c0" and "no disagreement measure" in fallback[0].reason


def test_the_same_seed_gives_the_same_batch_and_ties_follow_the_seed():
    rng = np.random.default_rng(8)
    pool = Pool(ids(200), rng.normal(size=(200, 5)), np.full(200, 0.5))  # every clip ties
    for strategy in STRATEGIES:
        assert select(pool, 10, strategy, seed=3) == select(pool, 10, strategy, seed=3)
    assert index(select(pool, 10, "entropy", diversity=False, balance=False, seed=1)) != index(
        select(pool, 10, "entropy", diversity=False, balance=False, seed=2))
    assert index(select(pool, 10, "random", seed=1)) != index(select(pool, 10, "random", seed=2))


def test_bad_requests_are_refused():
    pool = Pool(ids(3), np.zeros((3, 2)), np.full(3, 0.5))
    with pytest.raises(ValueError, match="unknown strategy"):
        select(pool, 2, "coin")
    with pytest.raises(ValueError, match="at least 1"):
        select(pool, 0)
    with pytest.raises(ValueError, match="one value per clip"):
        Pool(ids(3), np.zeros((3, 2)), np.full(2, 0.5))
    with pytest.raises(ValueError, match="embeddings"):
        Pool(ids(3), np.zeros((2, 2)))


# ---------------------------------------------------------------------------------------------- mixed, big batches


def test_mixed_draws_half_the_batch_at_random_and_takes_the_rest_by_entropy():
    rng = np.random.default_rng(11)
    p = rng.random(300)
    pool = Pool(ids(300), rng.normal(size=(300, 4)), p)
    batch = select(pool, 10, "mixed", diversity=False, balance=False, seed=4)
    drawn = [s for s in batch if "picked at random" in s.reason]
    chosen = [s for s in batch if "picked at random" not in s.reason]
    assert len(drawn) == len(chosen) == 5 and len({s.clip_id for s in batch}) == 10
    assert all("so the labels stay a fair sample" in s.reason for s in drawn)
    # the other half: the most uncertain clips among those not drawn
    rest = np.setdiff1d(np.arange(300), index(drawn))
    top = rest[np.argsort(-entropy(p[rest]), kind="stable")[:5]]
    assert sorted(index(chosen)) == sorted(top.tolist())
    # the drawn half follows the seed, not the scores
    assert index(drawn) != index(select(pool, 10, "mixed", diversity=False, balance=False, seed=5))[:5]


def test_a_batch_larger_than_the_cluster_cap_takes_distinct_clips_from_every_cluster():
    # A simulation's late rounds ask for hundreds of clips: the clusters are capped and visited in turn.
    points, which = clusters([400, 400, 400, 400, 400], spread=1.0)
    rng = np.random.default_rng(2)
    p = rng.random(len(points))
    batch = select(Pool(ids(len(points)), points, p), 300, "entropy", balance=False)
    picked = index(batch)
    assert len(picked) == len(set(picked)) == 300
    assert set(which[picked]) == set(range(5))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_pool_of_rows_of_saved_arrays_picks_as_one_holding_them(strategy, tmp_path):
    rng = np.random.default_rng(8)
    saved, fresh = rng.normal(size=(300, 6)).astype(np.float32), rng.normal(size=(20, 6))  # e.g. a run's, and new
    saved[7] = np.nan  # a clip the run could not score
    np.save(tmp_path / "e.npy", saved)
    every = np.concatenate([saved, fresh])
    rows = np.concatenate([[7], rng.permutation(np.delete(np.arange(len(every)), 7))[:249]])  # rows 7 first
    p, mi = rng.random(250), rng.random(250)
    held = Pool(ids(250), every[rows], p, mc_mi=mi, labelled_embeddings=every[:40])
    read = Pool(ids(250), Rows([np.load(tmp_path / "e.npy", mmap_mode="r"), fresh], rows), p, mc_mi=mi,
                labelled_embeddings=every[:40])
    assert select(read, 12, strategy, seed=3) == select(held, 12, strategy, seed=3)
    assert np.isnan(Rows([saved, fresh], rows).take([0])).all()  # take: the rows as saved
    np.testing.assert_array_equal(Rows([saved, fresh], rows)[[0, 5]], np.nan_to_num(every[rows[[0, 5]]]))
