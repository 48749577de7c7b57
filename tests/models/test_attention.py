"""The fused attention path (SDPA with the rel-pos bias folded into q/k) equals the explicit reference path."""

from __future__ import annotations

import pytest
import torch

from mvit_video.models.attention import (
    decomposed_rel_pos_bias,
    fused_attention,
    rel_pos_key_codes,
    rel_pos_query_terms,
    resolve_attention,
    resolve_biased_attention,
)
from mvit_video.models.mvit import MViT
from mvit_video.models.stats import count_flops
from tests.models.test_mvit import tiny_v1, tiny_v2


def reference_attention(q, k, v, scale, q_thw, k_thw, rel_pos, has_cls):
    attn = (q * scale) @ k.transpose(-2, -1)
    if any(t is not None for t in rel_pos):
        attn = attn + decomposed_rel_pos_bias(q, q_thw, k_thw, *rel_pos, has_cls)
    return attn.softmax(dim=-1) @ v


def inputs(q_thw, k_thw, has_cls, axes, heads=2, c=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    nq, nk = (int(has_cls) + a * b * c_ for a, b, c_ in (q_thw, k_thw))
    q, k, v = (torch.randn(2, heads, n, c, generator=g, requires_grad=True) for n in (nq, nk, nk))
    tables = []
    for i, used in enumerate(axes):
        length = 2 * max(q_thw[i], k_thw[i]) - 1
        tables.append(torch.randn(length, c, generator=g, requires_grad=True) if used else None)
    return q, k, v, tuple(tables)


CASES = [  # (q grid, k grid, cls, (t, h, w) tables)
    ((2, 4, 4), (2, 2, 2), True, (True, True, True)),  # pooled keys, cls token
    ((2, 4, 4), (2, 4, 4), False, (True, True, True)),  # no pooling, no cls
    ((1, 4, 6), (1, 2, 3), True, (False, True, True)),  # image (T=1), spatial tables only, non-square
    ((4, 2, 2), (2, 2, 2), False, (True, False, False)),  # temporal table only
    ((2, 2, 2), (2, 1, 1), True, (False, False, False)),  # no rel-pos: plain SDPA
]


@pytest.mark.parametrize("pad", [1, 8])
@pytest.mark.parametrize(("q_thw", "k_thw", "has_cls", "axes"), CASES)
def test_fused_attention_outputs_and_gradients_equal_reference(q_thw, k_thw, has_cls, axes, pad):
    q, k, v, tables = inputs(q_thw, k_thw, has_cls, axes)
    scale = 8**-0.5
    expected = reference_attention(q, k, v, scale, q_thw, k_thw, tables, has_cls)
    leaves = [q, k, v, *(t for t in tables if t is not None)]
    grads_expected = torch.autograd.grad(expected.square().sum(), leaves)
    out = fused_attention(q, k, v, scale, q_thw, k_thw, tables, has_cls, pad_multiple=pad)
    grads = torch.autograd.grad(out.square().sum(), leaves)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    for got, want in zip(grads, grads_expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_query_terms_times_key_codes_is_the_bias():
    q_thw, k_thw = (2, 4, 4), (2, 2, 2)
    q, _, _, tables = inputs(q_thw, k_thw, True, (True, True, True))
    terms = rel_pos_query_terms(q, q_thw, k_thw, *tables, True)
    codes = rel_pos_key_codes(k_thw, (True, True, True), True, q.dtype, q.device)
    assert terms.shape == (2, 2, 33, 2 + 2 + 2) and codes.shape == (9, 6)
    assert codes[0].abs().sum() == 0 and codes[1:].sum(dim=1).tolist() == [3.0] * 8  # one hot per axis
    # key 5 = (t=1, h=0, w=1): its codes select t=1, h=0, w=1
    assert codes[6].tolist() == [0, 1, 1, 0, 0, 1]
    bias = decomposed_rel_pos_bias(q, q_thw, k_thw, *tables, True)
    torch.testing.assert_close(terms @ codes.T, bias, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make", [tiny_v2, tiny_v1])
def test_model_outputs_and_gradients_equal_between_paths(make):
    torch.manual_seed(0)
    reference = MViT(make(attention="math"))
    fused = MViT(make(attention="sdpa"))
    fused.load_state_dict(reference.state_dict())
    x = torch.randn(2, 3, 4, 32, 32)
    out_ref, out = reference(x), fused(x)
    torch.testing.assert_close(out, out_ref, rtol=1e-5, atol=1e-6)
    out_ref.square().sum().backward()
    out.square().sum().backward()
    for (name, p_ref), p in zip(reference.named_parameters(), fused.parameters()):
        torch.testing.assert_close(p.grad, p_ref.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_auto_picks_reference_in_float64_and_for_flop_counting():
    assert resolve_attention("auto", torch.zeros(1)) == "sdpa"
    assert resolve_attention("auto", torch.zeros(1, dtype=torch.float64)) == "math"
    assert resolve_attention("math", torch.zeros(1)) == "math"
    torch.manual_seed(0)
    auto, math_model = MViT(tiny_v2()), MViT(tiny_v2(attention="math"))
    assert count_flops(auto) == count_flops(math_model) > 0  # fvcore sees the same matmuls


def test_auto_takes_the_plain_path_where_a_learned_bias_needs_its_gradient_on_a_cpu():
    """SDPA on a CPU gives no gradient for its mask through the fused kernels (it falls back to its own slower
    unfused path), so "auto" takes the plain path there; without a gradient, and when asked for, it stays SDPA."""
    q, bias = torch.zeros(1, 1, 4, 8), torch.zeros(1, 1, 4, 4, requires_grad=True)
    assert resolve_biased_attention("auto", q, bias) == "math"
    assert resolve_biased_attention("auto", q, bias.detach()) == "sdpa"
    assert resolve_biased_attention("sdpa", q, bias) == "sdpa"
    assert resolve_biased_attention("auto", q.double(), bias.detach()) == "math"
