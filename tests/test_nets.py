"""Nets: output shapes, attention that sums to 1 over real frames, padding that changes nothing, focal loss."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from model.nets import BiLSTMAttention, PaddedBiLSTM, TransformerClassifier, focal_loss, masked_pool, reversal_index

N_FEATURES = 5


def small_net(kind: str, n_exercises: int = 0) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "bilstm":
        return BiLSTMAttention(N_FEATURES, n_exercises, hidden=(8, 4), heads=2).eval()
    return TransformerClassifier(N_FEATURES, n_exercises, d_model=8, heads=2, layers=2, max_len=32).eval()


def padded(clips: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded batch (B, T, F), padding filled with large values so that any leak would show, and mask."""
    t = max(c.shape[0] for c in clips)
    x = torch.full((len(clips), t, N_FEATURES), 50.0)
    mask = torch.zeros(len(clips), t, dtype=torch.bool)
    for i, c in enumerate(clips):
        x[i, : c.shape[0]] = c
        mask[i, : c.shape[0]] = True
    return x, mask


@pytest.mark.parametrize("kind", ["bilstm", "transformer"])
def test_outputs_two_logits_and_attention_summing_to_one_over_real_frames(kind):
    net = small_net(kind)
    torch.manual_seed(1)
    x, mask = padded([torch.randn(7, N_FEATURES), torch.randn(3, N_FEATURES), torch.randn(1, N_FEATURES)])
    with torch.no_grad():
        logits, attention = net(x, mask)
    assert logits.shape == (3, 2) and attention.shape == (3, 7)
    assert torch.isfinite(logits).all()
    assert torch.allclose(attention.sum(1), torch.ones(3), atol=1e-5)
    assert (attention[~mask] == 0).all()
    assert (attention[mask] >= 0).all()
    assert attention[2, 0] == pytest.approx(1.0)  # a one-frame clip can only attend to its frame


@pytest.mark.parametrize("kind", ["bilstm", "transformer"])
def test_padding_does_not_change_a_clips_output(kind):
    net = small_net(kind)
    torch.manual_seed(2)
    short, long = torch.randn(4, N_FEATURES), torch.randn(11, N_FEATURES)
    with torch.no_grad():
        alone_logits, alone_attention = net(*padded([short]))
        batched_logits, batched_attention = net(*padded([short, long]))
    assert torch.allclose(alone_logits[0], batched_logits[0], atol=1e-5)
    assert torch.allclose(alone_attention[0], batched_attention[0, :4], atol=1e-5)


@pytest.mark.parametrize("kind", ["bilstm", "transformer"])
def test_exercise_id_is_an_input_of_a_shared_model(kind):
    net = small_net(kind, n_exercises=3)
    torch.manual_seed(3)
    x, mask = padded([torch.randn(6, N_FEATURES)] * 2)
    with torch.no_grad():
        logits, _ = net(x, mask, torch.tensor([0, 2]))
    # Same frames, different exercise: the logits differ only through the exercise embedding.
    assert not torch.allclose(logits[0], logits[1])
    with pytest.raises(ValueError, match="exercise id"):
        net(x, mask)


def test_transformer_refuses_a_clip_longer_than_its_positions():
    net = small_net("transformer")
    with pytest.raises(ValueError, match="max_len"):
        net(*padded([torch.zeros(33, N_FEATURES)]))


def test_padded_bilstm_matches_torchs_packed_bidirectional_lstm():
    torch.manual_seed(5)
    reference = torch.nn.LSTM(N_FEATURES, 4, batch_first=True, bidirectional=True)
    layer = PaddedBiLSTM(N_FEATURES, 4)
    with torch.no_grad():
        for name, value in reference.named_parameters():
            target = layer.back if name.endswith("_reverse") else layer.ahead
            getattr(target, name.removesuffix("_reverse")).copy_(value)
    x, mask = padded([torch.randn(6, N_FEATURES), torch.randn(2, N_FEATURES), torch.randn(1, N_FEATURES)])
    lengths = mask.sum(1)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    expected = pad_packed_sequence(reference(packed)[0], batch_first=True)[0]
    with torch.no_grad():
        got = layer(x, reversal_index(mask))
    assert torch.allclose(got[mask], expected[mask], atol=1e-6)


def test_masked_pool_ignores_padded_frames():
    h = torch.tensor([[[1.0], [3.0], [100.0]]])
    mask = torch.tensor([[True, True, False]])
    assert masked_pool(h, mask).tolist() == [[2.0, 3.0]]  # mean of 1 and 3, max 3: the 100 is padding


def test_focal_loss_with_gamma_zero_equals_cross_entropy():
    torch.manual_seed(4)
    logits, y = torch.randn(9, 2), torch.tensor([0, 1, 1, 0, 1, 0, 0, 1, 1])
    weight = torch.tensor([0.7, 1.8])
    assert torch.allclose(focal_loss(logits, y, gamma=0.0), F.cross_entropy(logits, y))
    assert torch.allclose(focal_loss(logits, y, gamma=0.0, weight=weight), F.cross_entropy(logits, y, weight=weight))


def test_focal_loss_scales_each_sample_by_its_error_probability():
    logits = torch.tensor([[2.0, -1.0], [0.0, 0.0]])
    y = torch.tensor([0, 1])
    p_true = torch.softmax(logits, 1)[torch.arange(2), y]
    expected = (-(1 - p_true) ** 2 * torch.log(p_true)).mean()
    assert torch.allclose(focal_loss(logits, y, gamma=2.0), expected)
    # The confident, correct first sample is down-weighted far more than the undecided second one.
    assert focal_loss(logits, y) < F.cross_entropy(logits, y)
