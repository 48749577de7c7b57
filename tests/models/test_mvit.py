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


def _final_tokens_and_logits(model: MViT, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens the last block outputs (before the final norm) and the model's logits."""
    seen = {}
    handle = model.blocks[-1].register_forward_hook(lambda module, inputs, output: seen.update(tokens=output[0]))
    with torch.no_grad():
        logits = model(x)
    handle.remove()
    return seen["tokens"], logits


@pytest.mark.parametrize("cls_embed", [True, False])
@pytest.mark.parametrize("mean_pooling", [True, False])
def test_classifier_input_follows_pyslowfast(cls_embed, mean_pooling):
    """PySlowFast's MViT.forward: USE_MEAN_POOLING averages the tokens (cls token dropped) and then normalises;
    otherwise the normalised cls token, or without one the mean of the normalised tokens."""
    torch.manual_seed(0)
    model = MViT(tiny_v2(cls_embed=cls_embed, use_mean_pooling=mean_pooling)).double().eval()
    with torch.no_grad():
        model.norm.weight.uniform_(0.5, 1.5)
        model.norm.bias.normal_()
    x = torch.randn(2, 3, 4, 32, 32, dtype=torch.float64)
    tokens, logits = _final_tokens_and_logits(model, x)

    def norm(t):
        return torch.nn.functional.layer_norm(t, t.shape[-1:], model.norm.weight, model.norm.bias, model.norm.eps)

    grid = tokens[:, int(cls_embed) :]
    if mean_pooling:
        features = norm(grid.mean(1))
    else:
        features = norm(tokens)[:, 0] if cls_embed else norm(tokens).mean(1)
    expected = features @ model.head.projection.weight.T + model.head.projection.bias
    torch.testing.assert_close(logits, expected, rtol=1e-12, atol=1e-12)
    if mean_pooling:  # normalising first gives other logits: the test tells the two orders apart
        other = norm(grid).mean(1) @ model.head.projection.weight.T + model.head.projection.bias
        assert (other - logits).abs().max() > 1e-3


def _trunc_normal_like(t: torch.Tensor, std: float) -> bool:
    """Sample mean and std of ``t`` agree with N(0, std) (within 25% for the std, 4 standard errors for the mean)."""
    return abs(t.std().item() - std) < 0.25 * std and abs(t.mean().item()) < 4 * std / t.numel() ** 0.5


@pytest.mark.parametrize("zero_rel_pos", [False, True])
def test_initialisation_follows_pyslowfast(zero_rel_pos):
    """PySlowFast's MViT._init_weights, re-derived per module: Linear and Conv weights trunc_normal(std 0.02),
    Linear biases 0.02, LayerNorm weight 1 and bias 0.02, conv biases at PyTorch's default, trunc_normal cls and
    position embeddings, rel-pos tables per REL_POS_ZERO_INIT, the classifier scaled by HEAD_INIT_SCALE."""
    torch.manual_seed(0)
    cfg = tiny_v2(embed_dim=32, use_abs_pos=True, rel_pos_zero_init=zero_rel_pos, head_init_scale=0.5,
                  num_classes=200)  # fmt: skip
    model = MViT(cfg)
    for name, module in model.named_modules():
        scale = 0.5 if name == "head.projection" else 1.0
        if isinstance(module, torch.nn.Linear):
            assert _trunc_normal_like(module.weight, 0.02 * scale), name
            assert torch.equal(module.bias, torch.full_like(module.bias, 0.02 * scale)), name
        elif isinstance(module, (torch.nn.Conv3d, torch.nn.Conv2d)):
            assert _trunc_normal_like(module.weight, 0.02), name
            if module.bias is not None:  # PyTorch's default: uniform within 1 / sqrt(fan_in)
                bound = 1 / (module.weight[0].numel() ** 0.5)
                assert module.bias.abs().max() <= bound and module.bias.std() > 0.2 * bound, name
        elif isinstance(module, torch.nn.LayerNorm):
            assert torch.equal(module.weight, torch.ones_like(module.weight)), name
            assert torch.equal(module.bias, torch.full_like(module.bias, 0.02)), name
    assert _trunc_normal_like(model.cls_token, 0.02) and _trunc_normal_like(model.pos_embed, 0.02)
    for block in model.blocks:
        for table in (block.attn.rel_pos_t, block.attn.rel_pos_h, block.attn.rel_pos_w):
            assert torch.equal(table, torch.zeros_like(table)) if zero_rel_pos else _trunc_normal_like(table, 0.02)


def test_rel_pos_key_codes_are_built_once_per_grid_and_device():
    from mvit_video.models.attention import rel_pos_key_codes

    with torch.inference_mode():
        codes = rel_pos_key_codes((2, 3, 4), (True, True, True), True, torch.float32, torch.device("cpu"))
    again = rel_pos_key_codes((2, 3, 4), (True, True, True), True, torch.float32, torch.device("cpu"))
    assert again is codes and not codes.is_inference()  # made under inference_mode, usable with autograd later
    t, h, w = torch.meshgrid(torch.arange(2), torch.arange(3), torch.arange(4), indexing="ij")
    expected = torch.zeros(1 + 24, 2 + 3 + 4)
    for j, (a, b, c) in enumerate(zip(t.flatten(), h.flatten(), w.flatten())):
        expected[1 + j, a], expected[1 + j, 2 + b], expected[1 + j, 5 + c] = 1, 1, 1
    assert torch.equal(codes, expected)
    assert rel_pos_key_codes((2, 3, 4), (False, True, True), False, torch.float64, "cpu").shape == (24, 7)


def test_separate_qkv_equals_the_fused_projection():
    """MVIT.SEPARATE_QKV: three q, k, v linears holding the rows of the fused qkv linear compute the same model."""
    torch.manual_seed(0)
    fused = MViT(tiny_v2()).double().eval()
    separate = MViT(tiny_v2(separate_qkv=True)).double().eval()
    state = {}
    for key, value in fused.state_dict().items():
        if ".attn.qkv." in key:
            for name, part in zip("qkv", value.chunk(3, dim=0)):
                state[key.replace(".qkv.", f".{name}.")] = part
        else:
            state[key] = value
    separate.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, 4, 32, 32, dtype=torch.float64)
    torch.testing.assert_close(separate(x), fused(x), rtol=1e-12, atol=1e-12)


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
