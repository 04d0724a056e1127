"""Registry: every model fits, scores, explains, saves and loads the same way, deterministically."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from model.features import windows
from model.registry import (
    INPUT_BY_MODEL,
    MODELS,
    BadTrainingData,
    Model,
    NoDropout,
    TrainConfig,
    UnknownModel,
    make_model,
    time_matrix,
    vote,
)

N_FEATURES = 6
# Small enough that the whole file runs in seconds; a frame step of 2 and max_frames of 16 are exercised too.
TINY = TrainConfig(epochs=40, hidden=16, heads=2, batch_size=16, patience=40, frame_step=2, max_frames=16)
# Windowed: windows of 8 frames (step 2) over the 6-30 frame sinusoids, so most clips have several windows.
WINDOWS = dataclasses.replace(TINY, input="windows", window_size=8)
NAMES = sorted(MODELS)
NETWORKS = ["bilstm", "transformer"]


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
    """One fitted whole-clip model per registry name, shared by the read-only tests."""
    X, y = data
    models = {}
    for name in NAMES:
        model = make_model(name, N_FEATURES, 0, dataclasses.replace(TINY, input="whole"))
        model.fit(X, y)
        models[name] = model
    return models


@pytest.fixture(scope="module")
def windowed(data):
    """One fitted windowed model per registry name."""
    X, y = data
    models = {}
    for name in NAMES:
        model = make_model(name, N_FEATURES, 0, WINDOWS)
        model.fit(X, y)
        models[name] = model
    return models


def as_whole(model: Model) -> Model:
    """The same fitted weights taking whole clips: what a windowed model does to each of its windows."""
    state = model.state()
    return Model.load({**state, "config": {**state["config"], "input": "whole"}})


@pytest.mark.parametrize("name", NAMES)
def test_each_model_overfits_a_small_synthetic_set(fitted, data, name):
    X, y = data
    p = fitted[name].predict_proba(X)
    assert ((p >= 0.5) == y).mean() >= 0.95


@pytest.fixture(params=["whole", "windows"])
def models(request, fitted, windowed):
    """The fitted models of either input."""
    return fitted if request.param == "whole" else windowed


@pytest.mark.parametrize("name", NAMES)
def test_predict_proba_is_one_probability_per_clip_for_any_length(models, name):
    rng = np.random.default_rng(5)
    # One frame (a held photo), short, and longer than frame_step * max_frames (resampled down).
    clips = [rng.standard_normal((t, N_FEATURES)).astype(np.float32) for t in (1, 2, 7, 29, 90)]
    p = models[name].predict_proba(clips)
    assert p.shape == (5,)
    assert np.all((p >= 0) & (p <= 1))
    assert models[name].predict_proba([]).shape == (0,)
    assert models[name].embed([]).shape == (0, models[name].embed(clips[:1]).shape[1])


@pytest.mark.parametrize("name", NAMES)
def test_a_clip_gets_the_same_prediction_alone_and_batched_with_a_longer_clip(models, data, name):
    X, _ = data
    short, long = X[0][:5], np.concatenate([X[1], X[2]])
    alone = models[name].predict_proba([short])
    batched = models[name].predict_proba([short, long])
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
def test_explain_gives_frame_attention_summing_to_one_and_frame_feature_saliency(models, name, t):
    rng = np.random.default_rng(t)
    clip = rng.standard_normal((t, N_FEATURES)).astype(np.float32)
    why = models[name].explain(clip)
    assert why["attention"].shape == (t,)
    assert why["saliency"].shape == (t, N_FEATURES)
    assert why["attention"].sum() == pytest.approx(1.0)
    assert np.all(why["attention"] >= 0) and np.all(why["saliency"] >= 0)
    assert np.isfinite(why["saliency"]).all()


@pytest.mark.parametrize("name", NAMES)
def test_embed_gives_one_vector_per_clip_in_input_order(models, data, name):
    X, _ = data
    vectors = models[name].embed(X[:5])
    assert vectors.ndim == 2 and vectors.shape[0] == 5 and np.isfinite(vectors).all()
    np.testing.assert_allclose(models[name].embed([X[3]])[0], vectors[3], atol=1e-5)
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
def test_state_round_trips_through_torch_save_with_weights_only(models, data, tmp_path, name):
    X, _ = data
    path = tmp_path / "weights.pt"
    torch.save(models[name].state(), path)
    loaded = Model.load(torch.load(path, weights_only=True))
    assert type(loaded) is type(models[name])
    assert loaded.config == models[name].config
    np.testing.assert_array_equal(loaded.predict_proba(X), models[name].predict_proba(X))
    np.testing.assert_array_equal(loaded.embed(X), models[name].embed(X))
    np.testing.assert_array_equal(loaded.explain(X[0])["saliency"], models[name].explain(X[0])["saliency"])


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
@pytest.mark.parametrize("mode", ["whole", "windows"])
def test_real_pose_clips_with_missing_frames_fit_score_and_explain(real_clips, name, mode):
    X, y = real_clips
    assert any(np.isnan(x).all(1).any() for x in X)  # frames where MediaPipe found no person
    model = make_model(name, X[0].shape[1], 0, dataclasses.replace(TINY, max_frames=64, input=mode))
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


# ---- windowed input ----


def test_vote_weighs_each_window_by_its_confidence():
    # Clip 0: weights |2p - 1| = 0.8, 0.2, 0.6 -> (0.8 * 0.9 + 0.2 * 0.6 + 0.6 * 0.2) / 1.6 = 0.6.
    # Clip 1: one window. Clip 2: every window at 0.5 -> the plain mean.
    p, spread = vote(np.array([0.9, 0.6, 0.2, 0.7, 0.5, 0.5]), np.array([0, 0, 0, 1, 2, 2]), 3)
    assert p == pytest.approx([0.6, 0.7, 0.5])
    assert spread == pytest.approx([np.std([0.9, 0.6, 0.2]), 0.0, 0.0])
    # Windows split evenly between confident "correct" and unsure "incorrect" lean to the confident side.
    assert vote(np.array([0.05, 0.05, 0.6, 0.6]), np.zeros(4, dtype=int), 1)[0][0] < 0.25


@pytest.mark.parametrize("name", NAMES)
def test_a_windowed_clip_is_the_confidence_weighted_vote_of_its_windows(windowed, data, name):
    X, _ = data
    model, whole = windowed[name], as_whole(windowed[name])
    for x in (X[5], X[6][:1], X[7][:5], X[8][:20]):
        parts, starts = windows(x, 8, 0.7)
        p_windows = whole.predict_proba(list(parts))
        weight = np.abs(2 * p_windows - 1)
        expected = (weight * p_windows).sum() / weight.sum()
        assert model.predict_proba([x])[0] == pytest.approx(expected, abs=1e-6)
        assert model.predict_details([x])["window_spread"][0] == pytest.approx(p_windows.std(), abs=1e-6)
        np.testing.assert_allclose(model.embed([x])[0], whole.embed(list(parts)).mean(0), atol=1e-5)
    # A clip shorter than a window, down to one frame, is one window padded with its last frame.
    short = X[9][:3]
    padded = np.concatenate([short, np.repeat(short[-1:], 5, axis=0)])
    assert model.predict_proba([short])[0] == pytest.approx(whole.predict_proba([padded])[0], abs=1e-6)
    assert model.predict_details([short[:1]])["window_spread"][0] == 0.0


@pytest.mark.parametrize("name", NAMES)
def test_window_spread_is_nan_for_whole_clips_and_large_when_the_windows_disagree(fitted, windowed, data, name):
    X, y = data
    assert np.isnan(fitted[name].predict_details(X[:4])["window_spread"]).all()
    # A clip made of a correct clip followed by an incorrect one: its early windows say "correct", its late
    # windows "incorrect".
    correct = max((x for x, label in zip(X, y) if label == 0), key=len)
    incorrect = max((x for x, label in zip(X, y) if label == 1), key=len)
    details = windowed[name].predict_details([np.concatenate([correct, incorrect]), correct])
    assert details["window_spread"][0] > 0.2
    assert details["window_spread"][0] > details["window_spread"][1]
    assert np.isfinite(details["window_spread"]).all()


def test_windowed_explanation_puts_each_window_back_on_its_frames(windowed, data):
    X, _ = data
    model = windowed["baseline"]
    # The baseline's saliency is constant within a window and differs between windows: the stitched clip
    # gets, per frame, the vote-weighted mean of the windows covering it.
    clip = np.concatenate([X[10], X[11]])
    parts, starts = windows(clip, 8, 0.7)
    whole = as_whole(model)
    weight = np.abs(2 * whole.predict_proba(list(parts)) - 1)
    per_window = np.stack([whole.explain(w)["saliency"][0] for w in parts])
    covering = [(starts <= f) & (f < starts + 8) for f in range(len(clip))]
    expected = np.stack([(weight[c, None] * per_window[c]).sum(0) / weight[c].sum() for c in covering])
    why = model.explain(clip)
    np.testing.assert_allclose(why["saliency"], expected, rtol=1e-6)
    assert why["attention"] == pytest.approx(np.full(len(clip), 1 / len(clip)))


def test_windowed_training_stops_early_on_the_clip_level_vote(data):
    from sklearn.metrics import f1_score

    X, y = data
    # Validation = the training clips with flipped labels: the better the fit, the worse the validation, so
    # early stopping keeps an early epoch; the F1 it recorded for that epoch is the F1 of the clips' votes
    # (windows scored one by one would give another number).
    config = dataclasses.replace(WINDOWS, epochs=40, patience=3)
    model = make_model("bilstm", N_FEATURES, 0, config)
    history = model.fit(X, y, X_val=X, y_val=1 - y)
    assert history["epochs"] == history["best_epoch"] + 3 < 40
    votes = model.predict_proba(X) >= 0.5
    assert history["val_f1"][history["best_epoch"] - 1] == pytest.approx(f1_score(1 - y, votes, average="macro"))


def test_auto_input_is_the_models_measured_default_fixed_when_built(windowed):
    for name in NAMES:
        model = make_model(name, N_FEATURES, 0, TrainConfig())
        assert model.config.input == INPUT_BY_MODEL[name] and INPUT_BY_MODEL[name] in ("whole", "windows")
    # A saved state from before windowed input (no "input" field) was a whole-clip model.
    state = windowed["baseline"].state()
    assert Model.load(state).config.input == "windows"
    old = {**state, "config": {k: v for k, v in state["config"].items() if k != "input"}}
    assert Model.load(old).config.input == "whole"
    with pytest.raises(ValueError, match="input"):
        make_model("bilstm", N_FEATURES, 0, TrainConfig(input="frames"))


# ---- MC dropout ----


@pytest.mark.parametrize("name", NETWORKS)
@pytest.mark.parametrize("mode", ["whole", "windows"])
def test_mc_dropout_samples_repeat_for_a_seed_and_differ_between_samples(fitted, windowed, data, name, mode):
    X, _ = data
    model = (fitted if mode == "whole" else windowed)[name]
    p = model.predict_proba(X)
    rng_before = torch.random.get_rng_state()
    first = model.predict_samples(X, n=6, seed=3)
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert first.shape == (6, len(X)) and ((first >= 0) & (first <= 1)).all()
    np.testing.assert_array_equal(model.predict_samples(X, n=6, seed=3), first)
    assert not np.array_equal(model.predict_samples(X, n=6, seed=4), first)
    assert (first.std(0) > 1e-4).mean() > 0.5  # dropout moves most clips' p
    np.testing.assert_array_equal(model.predict_proba(X), p)  # scoring is back in eval mode


def test_models_without_dropout_refuse_mc_samples(fitted, data):
    X, y = data
    assert not fitted["baseline"].has_dropout and fitted["bilstm"].has_dropout
    with pytest.raises(NoDropout, match="no dropout"):
        fitted["baseline"].predict_samples(X)
    no_dropout = make_model("transformer", N_FEATURES, 0, dataclasses.replace(TINY, dropout=0.0, epochs=1))
    no_dropout.fit(X, y)
    assert not no_dropout.has_dropout
    with pytest.raises(NoDropout):
        no_dropout.predict_samples(X)
