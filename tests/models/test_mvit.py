"""MViT v1/v2: fidelity to PySlowFast, structure, image = T=1 case, input sizes, checkpointing."""

from __future__ import annotations

import pytest
import torch

from mvit_video.models import MViT, MViTConfig, block_specs, create_model, list_models, model_config
from tests.conftest import load_reference, reference_input, reference_weights, rel_l2

REFERENCE_CASES = {
    "slowfast_k400_mvitv2_s_16x4": "mvitv2_s_16x4",
    "slowfast_k400_mvitv2_b_32x3": "mvitv2_b_32x3",
    "slowfast_k400_mvitv1_b_16x4": "mvitv1_b_16x4",
    "slowfast_in1k_mvitv2_t": "mvitv2_t_in1k",
    "slowfast_in1k_mvitv2_s": "mvitv2_s_in1k",
}


def tiny_v2(**changes) -> MViTConfig:
    """A 3-block MViTv2 with every v2 feature, small enough for fast tests."""
    cfg = MViTConfig(
        num_classes=5, input_size=(4, 32, 32), embed_dim=16, depth=3,
        dim_mul=[[1, 2.0]], head_mul=[[1, 2.0]], pool_q_stride=[[0, 1, 1, 1], [1, 1, 2, 2], [2, 1, 1, 1]],
        pool_kv_stride_adaptive=(1, 4, 4), pool_kvq_kernel=(3, 3, 3), use_abs_pos=False,
        rel_pos_spatial=True, rel_pos_temporal=True, residual_pooling=True, dim_mul_in_att=True,
        drop_path_rate=0.0,
    )  # fmt: skip
    return cfg.replace(**changes)


def tiny_v1(**changes) -> MViTConfig:
    """A 3-block MViTv1 (separate space/time/cls position embeddings, width change in the MLP)."""
    cfg = MViTConfig(
        num_classes=5, input_size=(4, 32, 32), embed_dim=16, depth=3, dim_mul=[[1, 2.0]], head_mul=[[1, 2.0]],
        pool_q_stride=[[1, 1, 2, 2]], pool_kv_stride_adaptive=(1, 4, 4), pool_kvq_kernel=(3, 3, 3),
        sep_pos_embed=True, drop_path_rate=0.0,
    )  # fmt: skip
    return cfg.replace(**changes)


@pytest.mark.parametrize("ref_name,model_name", REFERENCE_CASES.items())
def test_state_dict_matches_pyslowfast(ref_name, model_name):
    ref = load_reference(ref_name)
    model = create_model(model_name)
    ours = [(k, list(v.shape)) for k, v in model.state_dict().items()]
    assert ours == [(k, list(s)) for k, s in ref["keys"]]
    assert sum(p.numel() for p in model.parameters()) == ref["num_params"]


def test_logits_match_pyslowfast_mvitv2_s():
    ref = load_reference("slowfast_k400_mvitv2_s_16x4")
    model = create_model("mvitv2_s_16x4")
    model.load_state_dict(reference_weights(ref))
    model = model.double().eval()
    with torch.no_grad():
        logits = model(reference_input(ref).double())
    expected = torch.tensor(ref["logits"], dtype=torch.float64)
    assert logits.shape == expected.shape
    assert rel_l2(logits, expected) < 1e-10


def test_block_specs_mvitv2_s():
    specs = block_specs(model_config("mvitv2_s_16x4"))
    assert [s.dim_out for s in specs] == [96] + [192] * 2 + [384] * 11 + [768] * 2
    assert [s.num_heads for s in specs] == [1] + [2] * 2 + [4] * 11 + [8] * 2
    assert specs[1].stride_q == (1, 2, 2) and specs[2].stride_q == (1, 1, 1)
    # adaptive K/V stride: (1, 8, 8) shrinks with every query stride
    assert [specs[i].stride_kv for i in (0, 1, 3, 14)] == [(1, 8, 8), (1, 4, 4), (1, 2, 2), (1, 1, 1)]
    assert specs[14].kernel_kv == (3, 3, 3)
    assert [specs[i].input_size for i in (0, 1, 2, 3, 14, 15)] == [
        (8, 56, 56), (8, 56, 56), (8, 28, 28), (8, 28, 28), (8, 14, 14), (8, 7, 7)
    ]  # fmt: skip


def test_block_specs_mvitv1_32x3_kernels_follow_strides():
    # PySlowFast's POOL_KVQ_KERNEL=None rule: kernel = stride + 1 where stride > 1
    specs = block_specs(model_config("mvitv1_b_32x3"))
    assert specs[0].stride_kv == (1, 8, 8) and specs[0].kernel_kv == (1, 9, 9)
    assert specs[2].stride_q == (1, 2, 2) and specs[2].kernel_q == (1, 3, 3)
    assert specs[1].kernel_q == () and specs[1].stride_q == ()
    # v1 grows the width at the end of the block before a stage
    assert [specs[i].dim_out for i in (0, 1, 2, 4, 20, 23)] == [96, 192, 192, 384, 768, 768]


def test_list_models_and_unknown_name():
    names = list_models()
    for name in ("mvitv2_s_16x4", "mvitv2_t_in1k", "mvitv1_b_16x4", "mvitv2_l_40x3_312", "mvitv2_s_16x4_ssv2"):
        assert name in names
    with pytest.raises(KeyError, match="mvitv2_s_16x4"):
        create_model("mvitv2_q")


def test_create_model_overrides():
    model = create_model("mvitv2_t_in1k", num_classes=10, depth=10, drop_path_rate=0.0)
    assert model.head.projection.out_features == 10
    with pytest.raises(TypeError):
        create_model("mvitv2_t_in1k", not_a_field=1)


@pytest.mark.parametrize("make", [tiny_v2, tiny_v1])
def test_logits_not_softmax_and_train_equals_eval_without_dropout(make):
    torch.manual_seed(0)
    model = MViT(make())
    x = torch.randn(2, 3, 4, 32, 32)
    train_out = model.train()(x)
    eval_out = model.eval()(x)
    torch.testing.assert_close(train_out, eval_out)
    assert not torch.allclose(eval_out.sum(1), torch.ones(2))  # logits, not probabilities


def test_double_precision():
    model = MViT(tiny_v2()).double().eval()
    out = model(torch.randn(1, 3, 4, 32, 32, dtype=torch.float64))
    assert out.dtype == torch.float64


def test_image_model_accepts_4d_and_one_frame_5d():
    torch.manual_seed(0)
    model = create_model("mvitv2_t_in1k", num_classes=7).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        a, b = model(x), model(x.unsqueeze(2))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="2 frames"):
        model(torch.randn(1, 3, 2, 224, 224))


def test_video_model_takes_image_as_one_frame_clip():
    model = MViT(tiny_v2()).eval()
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(model(x), model(x.unsqueeze(2)))


@pytest.mark.parametrize("make", [tiny_v2, tiny_v1])
def test_other_input_sizes_interpolate_positions(make):
    """A model built for 4x32x32 runs on 8x48x48; the grid follows the conv arithmetic."""
    model = MViT(make()).eval()
    x = torch.randn(1, 3, 8, 48, 48)
    out = model(x)
    assert out.shape == (1, 5) and torch.isfinite(out).all()
    assert model.token_grids((8, 48, 48))[0] == (4, 12, 12)
    assert model.token_grids((8, 48, 48))[-1] == (4, 6, 6)


def test_rel_pos_interpolation_is_identity_at_native_size():
    """At the size the tables were built for, the interpolation path must not change anything."""
    from mvit_video.models.attention import gather_rel_pos, resize_rel_pos

    table = torch.randn(15, 4)
    assert resize_rel_pos(table, 15) is table
    rel = gather_rel_pos(table, 8, 8)
    # offset q - k + 7 indexes the table
    assert torch.equal(rel[3, 5], table[3 - 5 + 7])
    # queries pooled 2x relative to keys: distances measured on the finer (key) grid
    rel = gather_rel_pos(torch.randn(15, 4), 4, 8)
    assert rel.shape == (4, 8, 4)


def test_activation_checkpointing_same_gradients():
    torch.manual_seed(0)
    plain = MViT(tiny_v2())
    ckpt = MViT(tiny_v2(act_checkpoint=True))
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 4, 32, 32)
    plain(x).sum().backward()
    ckpt(x).sum().backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), ckpt.named_parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_stochastic_depth_and_layer_scale():
    torch.manual_seed(0)
    model = MViT(tiny_v2(drop_path_rate=0.5, layer_scale_init_value=1e-4))
    assert model.blocks[2].gamma_1.shape == (32,) and model.blocks[0].gamma_2.shape == (16,)
    x = torch.randn(4, 3, 4, 32, 32)
    model.train()
    a, b = model(x), model(x)
    assert not torch.allclose(a, b)  # different paths dropped
    model.eval()
    torch.testing.assert_close(model(x), model(x))


def test_mean_pooling_and_pool_modes():
    x = torch.randn(1, 3, 8, 32, 32)  # avg/max pooling need at least kernel-size frames (T=4 tokens)
    for changes in ({"use_mean_pooling": True}, {"pool_mode": "avg"}, {"pool_mode": "max"}, {"separate_qkv": True}):
        model = MViT(tiny_v2(**changes)).eval()
        assert torch.isfinite(model(x)).all(), changes
    assert MViT(tiny_v2(pool_mode="max")).blocks[1].attn.norm_q is None


def test_no_weight_decay_names():
    names = MViT(tiny_v1()).no_weight_decay()
    assert {"cls_token", "pos_embed_spatial", "pos_embed_temporal", "pos_embed_class"} <= names
    assert "blocks.0.attn.rel_pos_h" in MViT(tiny_v2()).no_weight_decay()


def test_whole_model_compiles_as_one_graph():
    """torch.compile captures forward and backward without graph breaks (aot_eager: no C++ build needed)."""
    torch.manual_seed(0)
    model = MViT(tiny_v2(attention="sdpa", drop_path_rate=0.1))
    x = torch.randn(2, 3, 4, 32, 32)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    model.eval()
    torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-6)
    model.train()
    compiled(x).square().sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.slow
def test_inductor_compiled_model_matches_eager():
    torch.manual_seed(0)
    model = MViT(tiny_v2()).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    torch.testing.assert_close(torch.compile(model)(x), model(x), rtol=1e-4, atol=1e-5)
