"""Reversible MViT (MVIT.REV): gradients of the recomputing backward equal plain autograd, the memory it saves for
backward does not grow with depth, PySlowFast's layout and forward are reproduced, and the config path works."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from mvit_video.benchmarks.reversible import saved_bytes
from mvit_video.config import ConfigError, load_config
from mvit_video.models import create_model, load_pretrained
from mvit_video.models.build import build_model, model_config_from_cfg
from mvit_video.models.mvit import MViT, MViTConfig, rev_mvit_b_16x4
from mvit_video.models.reversible import plain_autograd
from tests.conftest import ROOT

REV_YAML = ROOT / "configs" / "K400" / "REV_MVIT_B_16x4.yaml"


def small_rev(depth: int = 4, **kw) -> MViTConfig:
    """A tiny Rev-MViT: grid 2 x 4 x 4, one stage change (width 8 -> 16, heads 1 -> 2, query stride 2) at layer 2."""
    fields = dict(
        num_classes=5, input_size=(4, 16, 16), patch_kernel=(3, 7, 7), patch_stride=(2, 4, 4),
        patch_padding=(1, 3, 3), embed_dim=8, num_heads=1, depth=depth, dim_mul=[[2, 2.0]], head_mul=[[2, 2.0]],
        pool_q_stride=[[2, 1, 2, 2]], pool_kv_stride_adaptive=(1, 2, 2), pool_kvq_kernel=(3, 3, 3),
        sep_pos_embed=True, cls_embed=False, qkv_bias=False, drop_path_rate=0.0, rev_enable=True,
        rev_buffer_layers=(2,), attention="math",
    )  # fmt: skip
    fields.update(kw)
    return MViTConfig(**fields)


def randomised(cfg: MViTConfig, seed: int = 0) -> MViT:
    """A float64 model whose every tensor (LayerNorm weights and biases too) is random."""
    torch.manual_seed(seed)
    model = MViT(cfg).double()
    with torch.no_grad():
        for name, p in model.named_parameters():
            centre = 1.0 if p.ndim == 1 and name.endswith(".weight") else 0.0  # LayerNorm scales near 1
            p.copy_(centre + 0.3 * torch.randn_like(p))
    return model


def grads_of(model: MViT, x: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
    """Gradients of a fixed random projection of the logits w.r.t. every parameter and the input (train mode)."""
    model.train()
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    torch.manual_seed(seed)  # same dropout / drop-path masks for both backward implementations
    logits = model(x)
    weights = torch.linspace(-1.0, 1.0, logits.numel(), dtype=logits.dtype).reshape(logits.shape)
    (logits * weights).sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    grads["input"] = x.grad.clone()
    return grads


@pytest.mark.parametrize(
    "changes",
    [
        dict(drop_path_rate=0.3, drop_rate=0.2),  # Rev-MViT-B's structure; random masks replayed in backward
        dict(rel_pos_spatial=True, rel_pos_temporal=True, residual_pooling=True, rev_pre_q_fusion="concat",
             use_mean_pooling=True, rev_respath_fuse="avg", depth=6, rev_buffer_layers=(2, 4),
             dim_mul=[[2, 2.0], [4, 2.0]], head_mul=[[2, 2.0]], pool_q_stride=[[2, 1, 2, 2], [4, 1, 1, 1]]),
    ],
    ids=["rev_b_structure_dropout", "v2_attention_concat_prefuse"],
)  # fmt: skip
def test_recomputing_backward_equals_plain_autograd(changes):
    model = randomised(small_rev(**changes))
    x = torch.randn(2, 3, 4, 16, 16, dtype=torch.float64)
    reversible = grads_of(model, x, seed=7)
    with plain_autograd():
        plain = grads_of(model, x, seed=7)
    assert set(reversible) == set(plain) and len(plain) == len(list(model.parameters())) + 1
    overall = max(g.abs().max().item() for g in plain.values())
    for name, reference in plain.items():
        scale = reference.abs().max().item()
        if name.endswith("norm_k.bias"):  # a shift shared by all keys leaves the softmax unchanged: gradient 0
            assert max(scale, reversible[name].abs().max().item()) < 1e-12 * overall, name
            continue
        assert scale > 1e-6 * overall, f"{name} has almost no gradient: the test would not see it"
        error = (reversible[name] - reference).abs().max().item() / scale
        assert error < 1e-10, f"{name}: relative error {error:.2e}"


def test_recomputing_backward_is_the_one_used_in_training():
    """In train mode the stage is the custom Function (nothing of its blocks is kept); in eval it is plain."""
    model = randomised(small_rev()).train()
    x = torch.randn(1, 3, 4, 16, 16, dtype=torch.float64)
    tokens = model.patch_embed(x)[0]
    out, _ = model.rev_backbone(tokens, (2, 4, 4))
    names = set()
    stack = [out.grad_fn]
    while stack:
        fn = stack.pop()
        if fn is not None:
            names.add(type(fn).__name__)
            stack.extend(f for f, _ in fn.next_functions)
    assert "ReversibleStageBackward" in names
    with plain_autograd():
        out, _ = model.rev_backbone(tokens, (2, 4, 4))
    assert out.grad_fn is not None and "ReversibleStageBackward" not in type(out.grad_fn).__name__


def test_memory_saved_for_backward_does_not_grow_with_depth():
    x = torch.randn(2, 3, 4, 16, 16)
    rev = {d: saved_bytes(MViT(small_rev(depth=d)).train(), x) for d in (4, 8)}
    with plain_autograd():
        plain = {d: saved_bytes(MViT(small_rev(depth=d)).train(), x) for d in (4, 8)}
    assert rev[4] == rev[8]  # the four extra layers are reversible: nothing of theirs is kept
    assert plain[8] > plain[4] * 1.3 and rev[8] < plain[8] / 2  # the counter does see stored activations


# ------------------------------------------------------------------------------ PySlowFast's layout and forward


def pyslowfast_keys(cfg: MViTConfig, kv_pool: list[bool], q_pool: list[bool]) -> list[str]:
    """PySlowFast's ``MViT`` state-dict names for a reversible model, in order: own parameters (the position
    tables), then patch_embed, rev_backbone (F = norm + attn, G = norm + mlp, res_proj at transitions), norm, head."""
    keys = ["pos_embed_spatial", "pos_embed_temporal", "patch_embed.proj.weight", "patch_embed.proj.bias"]
    for i in range(cfg.depth):
        p = f"rev_backbone.layers.{i}."
        keys += [p + "F.norm.weight", p + "F.norm.bias", p + "F.attn.qkv.weight", p + "F.attn.proj.weight",
                 p + "F.attn.proj.bias"]  # fmt: skip
        for name, pooled in (("q", q_pool[i]), ("k", kv_pool[i]), ("v", kv_pool[i])):
            if pooled:
                keys += [p + f"F.attn.pool_{name}.weight", p + f"F.attn.norm_{name}.weight",
                         p + f"F.attn.norm_{name}.bias"]  # fmt: skip
        keys += [p + "G.norm.weight", p + "G.norm.bias", p + "G.mlp.fc1.weight", p + "G.mlp.fc1.bias",
                 p + "G.mlp.fc2.weight", p + "G.mlp.fc2.bias"]  # fmt: skip
        if i in cfg.rev_buffer_layers:
            keys += [p + "res_proj.weight", p + "res_proj.bias"]
    return keys + ["norm.weight", "norm.bias", "head.projection.weight", "head.projection.bias"]


def _ln(x, sd, name):
    return F.layer_norm(x, x.shape[-1:], sd[name + ".weight"], sd[name + ".bias"], eps=1e-6)


def _pool(x, sd, name, thw, stride):
    """Depthwise Conv3d (kernel 3, padding 1) over each head's (T, H, W) grid, then LayerNorm; x: (B, h, N, c)."""
    B, h, N, c = x.shape
    grid = x.reshape(B * h, *thw, c).permute(0, 4, 1, 2, 3)
    grid = F.conv3d(grid, sd[f"{name.replace('norm', 'pool')}.weight"], None, stride, 1, 1, c)
    out_thw = tuple(grid.shape[2:])
    x = grid.reshape(B, h, c, -1).transpose(2, 3)
    return _ln(x, sd, name), out_thw


def _attention(x, sd, p, heads, thw, q_stride, kv_stride):
    """PySlowFast's MultiScaleAttention (conv pooling, no cls token, no rel-pos) on normalised tokens x."""
    B, N, _ = x.shape
    dim_out = sd[p + "proj.weight"].shape[0]
    qkv = F.linear(x, sd[p + "qkv.weight"]).reshape(B, N, 3, heads, dim_out // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    q_thw = thw
    if q_stride is not None:
        q, q_thw = _pool(q, sd, p + "norm_q", thw, q_stride)
    k, _ = _pool(k, sd, p + "norm_k", thw, kv_stride)
    v, _ = _pool(v, sd, p + "norm_v", thw, kv_stride)
    attn = (q @ k.transpose(-2, -1) * (dim_out // heads) ** -0.5).softmax(-1)
    out = (attn @ v).transpose(1, 2).reshape(B, -1, dim_out)
    return F.linear(out, sd[p + "proj.weight"], sd[p + "proj.bias"]), q_thw, q_stride


def _mlp(x, sd, p):
    return F.linear(F.gelu(F.linear(_ln(x, sd, p + "norm"), sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])),
                    sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])  # fmt: skip


def pyslowfast_rev_forward(sd, clip, layers):
    """PySlowFast's Rev-MViT forward in eval mode (REV_MVIT_B's options: conv pooling, sep. pos embed, concat final
    fusion, avg pre-Q fusion, conv res path), written from its published structure on a bare state dict.

    ``layers``: per layer (heads, q stride or None, kv stride, is transition)."""
    x = F.conv3d(clip, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], (2, 4, 4), (1, 3, 3))
    thw = tuple(x.shape[2:])
    x = x.flatten(2).transpose(1, 2)
    t, hw = sd["pos_embed_temporal"].shape[1], sd["pos_embed_spatial"].shape[1]
    x = x + sd["pos_embed_spatial"].repeat(1, t, 1) + sd["pos_embed_temporal"].repeat_interleave(hw, 1)
    i, depth = 0, len(layers)
    while i < depth:
        heads, q_stride, kv_stride, transition = layers[i]
        p = f"rev_backbone.layers.{i}."
        if transition:
            a, b = x.chunk(2, -1)
            x = (a + b) / 2  # pre-Q fusion "avg"
            res = F.linear(x, sd[p + "res_proj.weight"], sd[p + "res_proj.bias"])
            B, N, C = res.shape
            res, _ = _pool(res.reshape(B, N, heads, C // heads).transpose(1, 2), sd, p + "F.attn.norm_q", thw, q_stride)
            res = res.transpose(1, 2).reshape(B, -1, C)
            out, thw, _ = _attention(_ln(x, sd, p + "F.norm"), sd, p + "F.attn.", heads, thw, q_stride, kv_stride)
            x = res + out
            x = x + _mlp(x, sd, p + "G.")
            i += 1
            continue
        x1 = x2 = x  # a reversible run: both streams start as the tokens
        while i < depth and not layers[i][3]:
            heads, _, kv_stride, _ = layers[i]
            p = f"rev_backbone.layers.{i}."
            x1 = x1 + _attention(_ln(x2, sd, p + "F.norm"), sd, p + "F.attn.", heads, thw, None, kv_stride)[0]
            x2 = x2 + _mlp(x1, sd, p + "G.")
            i += 1
        x = torch.cat([x1, x2], -1)
    x = _ln(x, sd, "norm").mean(1)  # norm, concat fusion (no-op), mean over tokens
    return F.linear(x, sd["head.projection.weight"], sd["head.projection.bias"])


SMALL_LAYERS = [(1, None, (1, 2, 2), False), (1, None, (1, 2, 2), False), (2, (1, 2, 2), (1, 1, 1), True),
                (2, None, (1, 1, 1), False)]  # fmt: skip


def test_state_dict_has_pyslowfast_names_in_pyslowfast_order():
    cfg = small_rev()
    assert list(MViT(cfg).state_dict()) == pyslowfast_keys(cfg, [True] * 4, [False, False, True, False])
    big = rev_mvit_b_16x4()
    q_pool = [i in (1, 3, 14) for i in range(16)]
    assert list(MViT(big).state_dict()) == pyslowfast_keys(big, [True] * 16, q_pool)


def test_pyslowfast_checkpoint_loads_and_reproduces_its_logits(tmp_path):
    source = randomised(small_rev(), seed=3)
    state = {k: v.clone() for k, v in source.state_dict().items()}
    path = tmp_path / "rev.pyth"
    torch.save({"model_state": state, "epoch": 10}, path)  # PySlowFast's .pyth layout
    model = MViT(small_rev()).double()
    report = load_pretrained(model, path)
    assert report.source_format == "slowfast" and not report.missing and not report.unexpected and not report.adapted
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    clip = torch.randn(2, 3, 4, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        expected = pyslowfast_rev_forward(state, clip, SMALL_LAYERS)
        got = model.eval()(clip)
    assert expected.abs().max() > 0.1
    assert (got - expected).abs().max().item() < 1e-10 * expected.abs().max().item()


# ------------------------------------------------------------------------------------------ config and registry


def rev_b_param_count() -> int:
    """Rev-MViT-B 16x4's parameters counted from its structure (PySlowFast's widths and heads)."""
    widths = [(96, 96), (96, 192), (192, 192), (192, 384)] + [(384, 384)] * 10 + [(384, 768), (768, 768)]
    heads = [1, 2, 2, 4] + [4] * 10 + [8, 8]
    total = 3 * 96 * 3 * 7 * 7 + 96 + 56 * 56 * 96 + 8 * 96  # patch conv, spatial and temporal tables
    for i, ((d, d_out), h) in enumerate(zip(widths, heads)):
        pools = 3 if i in (1, 3, 14) else 2  # K and V pool everywhere (kernel 3), Q at the transitions
        c = d_out // h
        total += 2 * d + 3 * d * d_out + d_out * d_out + d_out + pools * (c * 27 + 2 * c)  # F, qkv has no bias
        total += 2 * d_out + 2 * 4 * d_out * d_out + 4 * d_out + d_out  # G
        total += (d * d_out + d_out) if d != d_out else 0  # res_proj
    return total + 2 * 1536 + 1536 * 400 + 400  # norm over both streams, head


def test_rev_mvit_b_parameter_count_matches_its_structure():
    count = sum(p.numel() for p in create_model("rev_mvit_b_16x4").parameters())
    assert count == rev_b_param_count() == 34_963_120


def test_k400_config_builds_the_registered_model():
    cfg = load_config(REV_YAML)
    assert model_config_from_cfg(cfg) == rev_mvit_b_16x4()
    model = build_model(cfg)
    assert isinstance(model, MViT) and not hasattr(model, "blocks") and len(model.rev_backbone.layers) == 16


def _error(tmp_path, text: str, *opts: str) -> str:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        build_model(load_config(path, list(opts)))
    message = str(info.value)
    assert "\n" not in message
    return message


PYSLOWFAST_REV = REV_YAML.read_text().replace("CLS_EMBED_ON: False", "CLS_EMBED_ON: True")


def test_pyslowfast_yaml_with_cls_token_is_one_clear_line(tmp_path):
    message = _error(tmp_path, PYSLOWFAST_REV)
    assert "MVIT.CLS_EMBED_ON=True cannot be combined with MVIT.REV.ENABLE" in message
    assert message.endswith("set MVIT.CLS_EMBED_ON False")


@pytest.mark.parametrize(
    ("opts", "expected"),
    [
        (["MVIT.REV.RES_PATH", "max"], "MVIT.REV.RES_PATH='max' is not supported by mvit_video; use 'conv'"),
        (["MVIT.REV.RESPATH_FUSE", "concat_linear_2.0"], "concat_linear fusions are not built"),
        (["MVIT.REV.RESPATH_FUSE", "avg"], "needs MVIT.USE_MEAN_POOLING True"),
        (["MVIT.REV.BUFFER_LAYERS", "[1, 3]"], "misses layers [14]"),
        (["MVIT.REV.BUFFER_LAYERS", "[1, 2, 3, 14]"], "must not hold two adjacent layers"),
        (["MVIT.REV.BUFFER_LAYERS", "[0, 1, 3, 14]"], "must hold layers in 1..14"),
        (["MODEL.ACT_CHECKPOINT", "True"], "MODEL.ACT_CHECKPOINT=True cannot be combined with MVIT.REV.ENABLE"),
        (["MODEL.ARCH", "vit"], "is a setting of the mvit family"),
    ],
)
def test_unsupported_reversible_settings_are_refused(tmp_path, opts, expected):
    assert expected in _error(tmp_path, REV_YAML.read_text(), *opts)


def test_rev_model_trains_a_step_in_float32():
    """One optimiser step through the recomputing backward lowers the loss of a fixed batch."""
    torch.manual_seed(0)
    model = MViT(dataclasses.replace(small_rev(), drop_path_rate=0.1)).train()
    x, y = torch.randn(4, 3, 4, 16, 16), torch.tensor([0, 1, 2, 3])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(3):
        torch.manual_seed(1)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(math.isfinite(v) for v in losses) and losses[-1] < losses[0]


def test_layer_decay_counts_reversible_layers_as_blocks():
    """SOLVER.LAYER_DECAY on a Rev-MViT: layer i of ``rev_backbone`` is depth i + 1, as block i of a plain MViT."""
    from mvit_video.engine.optim import layer_id

    model = MViT(small_rev(depth=4))
    ids = {name: layer_id(name, 4) for name, _ in model.named_parameters()}
    for name, i in ids.items():
        if name.startswith("rev_backbone.layers."):
            assert i == int(name.split(".")[2]) + 1, name
    assert {i for n, i in ids.items() if n.startswith("rev_backbone.")} == {1, 2, 3, 4}
    assert ids["patch_embed.proj.weight"] == 0 and ids["norm.weight"] == 5 and ids["head.projection.weight"] == 5


def test_tools_that_read_single_blocks_refuse_a_reversible_model_in_one_line():
    from mvit_video.inference.explain import ExplainError, block_views, check_rollout
    from mvit_video.models.intermediates import check_point

    model = MViT(small_rev())
    for call in (lambda: block_views(model), lambda: check_rollout(model)):
        with pytest.raises(ExplainError, match=r"reversible MViT \(MVIT.REV\) runs two token streams") as info:
            call()
        assert "\n" not in str(info.value)
    for point in (("stage", 1), ("block", 0)):
        with pytest.raises(ValueError, match="use pre_logits or logits"):
            check_point(model, point)
