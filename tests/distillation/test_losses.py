"""Pure distillation losses against hand computations on planted tensors."""

import math

import pytest
import torch

from modelpress.distillation.losses import (
    attention_kl,
    attention_probs,
    hidden_mse,
    kd_loss,
    uniform_layer_map,
)


def test_kd_loss_equals_the_planted_value_with_t_squared():
    # At T = 2 the teacher's logits (2 ln 4, 0, 0) soften to p = (2/3, 1/6, 1/6); zero student logits give
    # q = 1/3 each. KL(p‖q) = 2/3 ln 2 + 2 · 1/6 ln 1/2 = ln 2 / 3, times T² = 4.
    teacher = torch.tensor([[2 * math.log(4.0), 0.0, 0.0]])
    student = torch.zeros(1, 3)
    assert kd_loss(student, teacher, 2.0).item() == pytest.approx(4 * math.log(2) / 3, rel=1e-6)


def test_kd_loss_equals_a_hand_computation_on_a_batch():
    s = torch.tensor([[1.0, -2.0, 0.5, 3.0], [0.0, 0.1, -0.3, 2.0]])
    t = torch.tensor([[2.0, 0.0, -1.0, 1.5], [-1.0, 1.0, 0.0, 0.5]])
    temp = 3.0
    total = 0.0
    for row_s, row_t in zip(s.tolist(), t.tolist(), strict=True):
        zs = sum(math.exp(v / temp) for v in row_s)
        zt = sum(math.exp(v / temp) for v in row_t)
        p = [math.exp(v / temp) / zt for v in row_t]
        q = [math.exp(v / temp) / zs for v in row_s]
        total += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    expected = temp**2 * total / 2  # mean over the batch of 2
    assert kd_loss(s, t, temp).item() == pytest.approx(expected, rel=1e-6)
    assert kd_loss(t, t, temp).item() == pytest.approx(0.0, abs=1e-7)


def test_uniform_layer_map_is_tinybert_g():
    assert uniform_layer_map(4, 12) == [(0, 2), (1, 5), (2, 8), (3, 11)]  # g(m) = 3m, 1-based
    assert uniform_layer_map(3, 6) == [(0, 1), (1, 3), (2, 5)]
    assert uniform_layer_map(2, 2) == [(0, 0), (1, 1)]
    assert [t for _, t in uniform_layer_map(6, 3)] == [0, 0, 1, 1, 2, 2]


def test_attention_probs_rows_sum_to_one_and_ignore_padding():
    torch.manual_seed(0)
    q, k = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    a = attention_probs(q, k, heads=2, mask=mask)
    assert a.shape == (2, 2, 5, 5)
    assert torch.allclose(a.sum(-1), torch.ones(2, 2, 5))
    assert a[0, :, :, 3:].abs().max().item() == 0.0
    # head 0 of example 1 by hand: softmax(q_h k_hᵀ / √4)
    qh, kh = q[1, :, :4], k[1, :, :4]
    assert torch.allclose(a[1, 0], (qh @ kh.T / 2).softmax(-1), atol=1e-6)


def test_attention_kl_zero_for_equal_maps_and_positive_otherwise():
    torch.manual_seed(1)
    a = torch.randn(2, 3, 4, 4).softmax(-1)
    b = torch.randn(2, 3, 4, 4).softmax(-1)
    assert attention_kl(a, a).item() == pytest.approx(0.0, abs=1e-7)
    assert attention_kl(b, a).item() > 0.01
    # different head counts: compared on head-averaged maps
    assert attention_kl(b[:, :1], a).item() == pytest.approx(attention_kl(b[:, :1], a.mean(1, keepdim=True)).item())


def test_hidden_mse():
    assert hidden_mse(torch.ones(2, 3), torch.zeros(2, 3)).item() == 1.0
