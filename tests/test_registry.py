"""Registry: every model fits, scores, explains, saves and loads the same way, deterministically."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from model.registry import (
    MODELS,
    BadTrainingData,
    Model,
    TrainConfig,
    UnknownModel,
    make_model,
    time_matrix,
)

N_FEATURES = 6
# Small enough that the whole file runs in seconds; a frame step of 2 and max_frames of 16 are exercised too.
TINY = TrainConfig(epochs=40, hidden=16, heads=2, batch_size=16, patience=40, frame_step=2, max_frames=16)
NAMES = sorted(MODELS)


def sinusoids(n: int, seed: int, informative: tuple[int, ...] = tuple(range(N_FEATURES)),
              lengths: tuple[int, int] = (6, 30)) -> tuple[list[np.ndarray], np.ndarray]:
    """n standardised-looking clips: one sine per feature; in the informative features an incorrect clip (1)
    moves with twice the amplitude and a shifted phase; noise everywhere; lengths vary."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    clips = []
    for label in y:
        t = int(rng.integers(*lengths))
        phase = np.linspace(0, 2 * np.pi, t)[:, None] + rng.uniform(0, 0.5)
        amplitude = np.ones(N_FEATURES)
        amplitude[list(informative)] = 1.0 + label
        shift = np.zeros(N_FEATURES)
        shift[list(informative)] = 0.8 * label
        x = amplitude * np.sin(phase + shift) + 0.2 * rng.standard_normal((t, N_FEATURES))
        clips.append(x.astype(np.float32))
    return clips, y


@pytest.fixture(scope="module")
def data():
    return sinusoids(32, seed=0)


@pytest.fixture(scope="module")
def fitted(data):
    """One fitted model per registry name, shared by the read-only tests."""
    X, y = data
    models = {}
    for name in NAMES:
        model = make_model(name, N_FEATURES, 0, TINY)
        model.fit(X, y)
        models[name] = model
    return models


@pytest.mark.parametrize("name", NAMES)
def test_each_model_overfits_a_small_synthetic_set(fitted, data, name):
    X, y = data
    p = fitted[name].predict_proba(X)
    assert ((p >= 0.5) == y).mean() >= 0.95


@pytest.mark.parametrize("name", NAMES)
def test_predict_proba_is_one_probability_per_clip_for_any_length(fitted, name):
    rng = np.random.default_rng(5)
    # One frame (a held photo), short, and longer than frame_step * max_frames (resampled down).
    clips = [rng.standard_normal((t, N_FEATURES)).astype(np.float32) for t in (1, 2, 7, 29, 90)]
    p = fitted[name].predict_proba(clips)
    assert p.shape == (5,)
    assert np.all((p >= 0) & (p <= 1))
    assert fitted[name].predict_proba([]).shape == (0,)


@pytest.mark.parametrize("name", NAMES)
def test_a_clip_gets_the_same_prediction_alone_and_batched_with_a_longer_clip(fitted, data, name):
    X, _ = data
    short, long = X[0][:5], np.concatenate([X[1], X[2]])
    alone = fitted[name].predict_proba([short])
    batched = fitted[name].predict_proba([short, long])
    assert batched[0] == pytest.approx(alone[0], abs=1e-6)


def test_nan_frames_count_as_the_mean_not_as_errors(fitted, data):
    X, _ = data
    clip = X[3].copy()
    holes = clip.copy()
    holes[2] = np.nan
    filled = clip.copy()
    filled[2] = 0.0  # inputs are standardised: 0 is the training mean
    for model in fitted.values():
        assert model.predict_proba([holes])[0] == pytest.approx(model.predict_proba([filled])[0], abs=1e-9)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("t", [1, 9, 45])
def test_explain_gives_frame_attention_summing_to_one_and_frame_feature_saliency(fitted, data, name, t):
    rng = np.random.default_rng(t)
    clip = rng.standard_normal((t, N_FEATURES)).astype(np.float32)
    why = fitted[name].explain(clip)
    assert why["attention"].shape == (t,)
    assert why["saliency"].shape == (t, N_FEATURES)
    assert why["attention"].sum() == pytest.approx(1.0)
    assert np.all(why["attention"] >= 0) and np.all(why["saliency"] >= 0)
    assert np.isfinite(why["saliency"]).all()


@pytest.mark.parametrize("name", NAMES)
def test_embed_gives_one_vector_per_clip_in_input_order(fitted, data, name):
    X, _ = data
    vectors = fitted[name].embed(X[:5])
    assert vectors.ndim == 2 and vectors.shape[0] == 5 and np.isfinite(vectors).all()
    np.testing.assert_allclose(fitted[name].embed([X[3]])[0], vectors[3], atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1])


def test_an_unfitted_network_refuses_to_score(data):
    with pytest.raises(RuntimeError, match="fit the model first"):
        make_model("bilstm", N_FEATURES, 0, TINY).predict_proba(data[0])


@pytest.mark.parametrize("name", NAMES)
def test_saliency_points_at_the_features_that_carry_the_class(name):
    X, y = sinusoids(40, seed=7, informative=(1, 4))
    model = make_model(name, N_FEATURES, 0, TINY)
    model.fit(X, y)
    saliency = np.mean([model.explain(x)["saliency"].mean(0) for x, label in zip(X, y) if label == 1], axis=0)
    assert set(np.argsort(saliency)[-2:]) == {1, 4}


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trips_through_torch_save_with_weights_only(fitted, data, tmp_path, name):
    X, _ = data
    path = tmp_path / "weights.pt"
    torch.save(fitted[name].state(), path)
    loaded = Model.load(torch.load(path, weights_only=True))
    assert type(loaded) is type(fitted[name])
    assert loaded.config == fitted[name].config
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted[name].predict_proba(X))
    np.testing.assert_array_equal(loaded.explain(X[0])["saliency"], fitted[name].explain(X[0])["saliency"])


@pytest.mark.parametrize("name", ["bilstm", "transformer"])
def test_same_seed_and_data_give_identical_predictions(data, name):
    X, y = data
    config = dataclasses.replace(TINY, epochs=4)
    runs = [make_model(name, N_FEATURES, 0, config) for _ in range(2)]
    for model in runs:
        torch.rand(7)  # the caller's random state in between must not matter
        model.fit(X, y)
    np.testing.assert_array_equal(runs[0].predict_proba(X), runs[1].predict_proba(X))
    other = make_model(name, N_FEATURES, 0, dataclasses.replace(config, seed=1))
    other.fit(X, y)
    assert not np.array_equal(other.predict_proba(X), runs[0].predict_proba(X))


@pytest.mark.parametrize("name", ["bilstm", "transformer"])
def test_early_stopping_keeps_the_best_validation_epoch(data, name):
    X, y = data
    # The validation part is the training part with its labels flipped: the better the fit, the worse the
    # validation, so the best epoch is early and training stops `patience` epochs later.
    config = dataclasses.replace(TINY, epochs=40, patience=3)
    seen = []
    history = make_model(name, N_FEATURES, 0, config).fit(
        X, y, X_val=X, y_val=1 - y, progress=lambda *args: seen.append(args))
    assert history["epochs"] == history["best_epoch"] + 3 < 40
    assert [s[0] for s in seen] == list(range(1, history["epochs"] + 1))
    assert all(s[1] == 40 and s[3] is not None and 0 <= s[4] <= 1 for s in seen)
    assert len(history["train_loss"]) == len(history["val_f1"]) == history["epochs"]


@pytest.mark.parametrize("name", ["bilstm", "transformer"])
def test_without_validation_training_runs_all_epochs(data, name):
    X, y = data
    seen = []
    history = make_model(name, N_FEATURES, 0, dataclasses.replace(TINY, epochs=3)).fit(
        X, y, progress=lambda *args: seen.append(args))
    assert history["epochs"] == 3
    assert [(s[0], s[1], s[3], s[4]) for s in seen] == [(1, 3, None, None), (2, 3, None, None), (3, 3, None, None)]


@pytest.mark.parametrize("name", NAMES)
def test_a_shared_model_takes_the_exercise_as_an_input(name):
    X, y = sinusoids(32, seed=3)
    # Same clips, but the class only shows for exercise 1: for exercise 0 every clip is labelled correct.
    exercise = np.repeat([0, 1], 16)
    y = np.where(exercise == 1, y, 0)
    model = make_model(name, N_FEATURES, 2, dataclasses.replace(TINY, epochs=80))
    model.fit(X, y, exercise)
    p = model.predict_proba(X, exercise)
    assert ((p >= 0.5) == y).mean() >= 0.9
    assert model.explain(X[0], 1)["saliency"].shape == X[0].shape
    with pytest.raises(ValueError, match="exercise"):
        model.predict_proba(X)
    with pytest.raises(ValueError, match="exercise"):
        model.predict_proba(X, np.full(len(X), 2))


def test_loss_can_be_class_weighted_cross_entropy(data):
    X, y = data
    model = make_model("transformer", N_FEATURES, 0, dataclasses.replace(TINY, loss="weighted_ce"))
    model.fit(X, y)
    assert ((model.predict_proba(X) >= 0.5) == y).mean() >= 0.95


@pytest.mark.parametrize("name", NAMES)
def test_one_class_or_misshaped_training_data_is_refused(data, name):
    X, y = data
    model = make_model(name, N_FEATURES, 0, TINY)
    with pytest.raises(BadTrainingData, match="both classes"):
        model.fit(X, np.zeros(len(X), dtype=int))
    with pytest.raises(BadTrainingData, match="shape"):
        model.fit([x[:, :3] for x in X], y)
    with pytest.raises(BadTrainingData, match="labels"):
        model.fit(X, y[:-1])


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(UnknownModel, match="unknown model 'lstm'.*baseline"):
        make_model("lstm", N_FEATURES)
    with pytest.raises(ValueError, match="loss"):
        make_model("bilstm", N_FEATURES, 0, TrainConfig(loss="hinge"))


def test_time_matrix_averages_frame_groups_and_resamples_long_clips():
    assert time_matrix(1, 2, 8) is None and time_matrix(7, 1, 8) is None
    pooled = time_matrix(5, 2, 8)
    x = np.arange(5.0)
    assert pooled @ x == pytest.approx([0.5, 2.5, 4.0])
    long = time_matrix(40, 2, 8)
    assert long.shape == (8, 40)
    assert long.sum(1) == pytest.approx(np.ones(8))
    ramp = np.arange(40.0)
    # First and last rows are the first and last averaged pairs; a ramp stays a ramp.
    assert (long @ ramp)[[0, -1]] == pytest.approx([0.5, 38.5])
    assert np.diff(long @ ramp) == pytest.approx(np.full(7, 38.0 / 7))


@pytest.fixture(scope="module")
def real_clips(videos):
    """Labelled reference poses of the shared videos as standardised per-frame features (NaN where no person)."""
    import csv

    from curation.kinematics import frame_features

    clips, labels = [], []
    with open(videos / "manifest.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["label"] not in ("correct", "incorrect"):
                continue
            with np.load(videos / row["poses_bp33"]) as d:
                features, _ = frame_features(d["landmarks"], float(d["fps"]), float(d["width"]) / float(d["height"]))
            clips.append(features)
            labels.append(int(row["label"] == "incorrect"))
    frames = np.concatenate(clips)
    mean, sd = np.nanmean(frames, 0), np.nanstd(frames, 0)
    sd = np.where(sd > 0, sd, 1.0)
    return [((x - mean) / sd).astype(np.float32) for x in clips], np.array(labels)


@pytest.mark.parametrize("name", NAMES)
def test_real_pose_clips_with_missing_frames_fit_score_and_explain(real_clips, name):
    X, y = real_clips
    assert any(np.isnan(x).all(1).any() for x in X)  # frames where MediaPipe found no person
    model = make_model(name, X[0].shape[1], 0, dataclasses.replace(TINY, max_frames=64))
    model.fit(X, y)
    p = model.predict_proba(X)
    assert ((p >= 0.5) == y).mean() >= 0.9
    longest = max(X, key=len)
    why = model.explain(longest)
    assert why["saliency"].shape == longest.shape and np.isfinite(why["saliency"]).all()
    assert why["attention"].sum() == pytest.approx(1.0)


def test_fitting_and_scoring_leave_the_callers_torch_threads_as_they_were(data):
    X, y = data
    before = torch.get_num_threads()
    model = make_model("transformer", N_FEATURES, 0, dataclasses.replace(TINY, epochs=1, threads=1))
    model.fit(X, y)
    model.predict_proba(X)
    assert torch.get_num_threads() == before
