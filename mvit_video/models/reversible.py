"""Reversible MViT (Rev-MViT, Mangalam et al., CVPR 2022), as PySlowFast's ``MVIT.REV`` builds it.

The blocks hold two streams (X1, X2) of equal width. A reversible block computes

    Y1 = X1 + F(X2)        F: LayerNorm + pooling attention
    Y2 = X2 + G(Y1)        G: LayerNorm + MLP

and is inverted exactly: X2 = Y2 - G(Y1), X1 = Y1 - F(X2). A stage of reversible blocks therefore keeps no
activations for backward: ``ReversibleStage`` runs the blocks without a graph, saves only the stage's output, and in
backward recomputes every block's input from its output while it back-propagates through F and G. Where the width or
the token grid changes (PySlowFast's ``MVIT.REV.BUFFER_LAYERS``), a ``StageTransitionBlock`` first fuses the two
streams into one, then runs an ordinary (stored-activation) MViT block whose skip path is pooled with the query's
own pooling conv. After the last stage the two streams are fused (``MVIT.REV.RESPATH_FUSE``).

State-dict names are PySlowFast's: ``rev_backbone.layers.{i}.F.{norm,attn.*}``, ``...G.{norm,mlp.fc1,mlp.fc2}``,
``...res_proj`` at transitions.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .attention import THW, MultiScaleAttention, pool_tokens
from .layers import DropPath, Mlp, round_width
from .mvit import BlockSpec

FUSE_MODES: tuple[str, ...] = ("concat", "avg", "add", "max", "min")
RES_PATHS: tuple[str, ...] = ("conv",)

_CUSTOM_BACKWARD = [True]


@contextlib.contextmanager
def plain_autograd() -> Iterator[None]:
    """Within this context reversible stages store activations and use ordinary autograd (the reference for
    gradient checks); outside it, training recomputes activations from the stage outputs."""
    _CUSTOM_BACKWARD.append(False)
    try:
        yield
    finally:
        _CUSTOM_BACKWARD.pop()


def custom_backward_enabled() -> bool:
    return _CUSTOM_BACKWARD[-1]


@dataclass
class RevLayerSpec(BlockSpec):
    """One layer of the reversible backbone: a block's widths, heads, pooling and grid, and whether it is a
    transition."""

    transition: bool


def rev_layer_specs(cfg) -> list[RevLayerSpec]:
    """PySlowFast's reversible widths: layer i takes ``embed * dim_mul[i-1]`` channels (rounded to its heads) and
    gives ``dim_mul[i]`` times that (rounded to the next layer's heads), so a width change happens inside one layer.

    Args:
        cfg: an ``MViTConfig`` with ``rev_enable``.

    Raises:
        ValueError: if a reversible (non-buffer) layer would change the width or the token grid, or a buffer layer
            sits where two streams cannot be fused (first or last layer, two in a row).
    """
    from .mvit import _per_layer, _pool_schedule

    dim_mul, head_mul = _per_layer(cfg.dim_mul, cfg.depth), _per_layer(cfg.head_mul, cfg.depth)
    kernel_q, kernel_kv, stride_q, stride_kv = _pool_schedule(cfg)
    drop_path = torch.linspace(0, cfg.drop_path_rate, cfg.depth).tolist()
    buffers = {int(i) for i in cfg.rev_buffer_layers}
    dim, heads, size, specs = cfg.embed_dim, cfg.num_heads, cfg.patch_dims, []
    for i in range(cfg.depth):
        heads = round_width(heads, head_mul[i])
        dim = round_width(dim, dim_mul[i - 1] if i > 0 else 1.0, divisor=heads)
        dim_out = round_width(dim, dim_mul[i], divisor=round_width(heads, head_mul[i + 1]))
        specs.append(RevLayerSpec(dim, dim_out, heads, size, kernel_q[i], kernel_kv[i], stride_q[i], stride_kv[i],
                                  drop_path[i], i in buffers))  # fmt: skip
        if stride_q[i]:
            size = tuple(s // st for s, st in zip(size, stride_q[i]))
    _check_layers(specs, buffers)
    return specs


def _check_layers(specs: list[RevLayerSpec], buffers: set[int]) -> None:
    depth = len(specs)
    for i in sorted(buffers):
        if not 0 < i < depth - 1:
            raise ValueError(f"buffer layer {i} must lie strictly inside 0..{depth - 1}: the first and last layers "
                             f"are reversible (two streams in, two out)")  # fmt: skip
        if i + 1 in buffers:
            raise ValueError(f"buffer layers {i} and {i + 1} are adjacent; a reversible layer must separate them")
    for i, spec in enumerate(specs):
        if i > 0 and spec.dim != specs[i - 1].dim_out:
            raise ValueError(f"layer {i} takes {spec.dim} channels but layer {i - 1} gives {specs[i - 1].dim_out}")
        changes = spec.dim != spec.dim_out or any(s > 1 for s in spec.stride_q)
        if changes and not spec.transition:
            raise ValueError(f"layer {i} changes the width or pools queries, so it must be a buffer layer "
                             f"(MVIT.REV.BUFFER_LAYERS); buffer layers: {sorted(buffers)}")  # fmt: skip


class TwoStreamFusion(nn.Module):
    """Fuses the two halves of the last axis: "concat" keeps them side by side, "avg"/"add"/"max"/"min" combine
    them elementwise (half the width)."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        if mode not in FUSE_MODES:
            raise ValueError(f"fusion mode must be one of {FUSE_MODES}, got {mode!r}")
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "concat":
            return x
        a, b = x.chunk(2, dim=-1)
        if self.mode == "avg":
            return (a + b) / 2
        if self.mode == "add":
            return a + b
        return torch.maximum(a, b) if self.mode == "max" else torch.minimum(a, b)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


class AttentionSubBlock(nn.Module):
    """F: pre-LayerNorm then pooling attention (widening to ``dim_out`` inside the attention)."""

    def __init__(self, dim: int, spec: RevLayerSpec, cfg) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = MultiScaleAttention(
            dim, spec.dim_out, spec.input_size, num_heads=spec.num_heads, qkv_bias=cfg.qkv_bias,
            kernel_q=spec.kernel_q, kernel_kv=spec.kernel_kv, stride_q=spec.stride_q, stride_kv=spec.stride_kv,
            mode=cfg.pool_mode, has_cls=False, rel_pos_spatial=cfg.rel_pos_spatial,
            rel_pos_temporal=cfg.rel_pos_temporal, rel_pos_zero_init=cfg.rel_pos_zero_init,
            residual_pooling=cfg.residual_pooling, separate_qkv=cfg.separate_qkv, drop_rate=cfg.drop_rate,
            norm_eps=cfg.norm_eps if cfg.pool_norm_eps is None else cfg.pool_norm_eps, attention=cfg.attention,
        )  # fmt: skip

    def forward(self, x: torch.Tensor, thw: THW) -> tuple[torch.Tensor, THW]:
        return self.attn(self.norm(x), thw)


class MlpSubBlock(nn.Module):
    """G: pre-LayerNorm then the MLP (no dropout inside, as PySlowFast's reversible MLP)."""

    def __init__(self, dim: int, cfg) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.norm(x))


class _RngState:
    """The CPU (and the tensor's CUDA device) generator state at one point, to replay random ops exactly."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    @contextlib.contextmanager
    def replay(self) -> Iterator[None]:
        devices = [self.device] if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, self.device)
            yield


class ReversibleBlock(nn.Module):
    """Y1 = X1 + F(X2), Y2 = X2 + G(Y1), with stochastic depth on both branches; invertible.

    Args:
        spec: the layer (``dim == dim_out``, no query stride).
        cfg: the model config.
    """

    def __init__(self, spec: RevLayerSpec, cfg) -> None:
        super().__init__()
        self.F = AttentionSubBlock(spec.dim, spec, cfg)
        self.G = MlpSubBlock(spec.dim, cfg)
        self.drop_path = DropPath(spec.drop_path) if spec.drop_path > 0 else nn.Identity()
        self.stochastic = spec.drop_path > 0 or cfg.drop_rate > 0

    def f(self, x2: torch.Tensor, thw: THW) -> torch.Tensor:
        return self.drop_path(self.F(x2, thw)[0])

    def g(self, y1: torch.Tensor) -> torch.Tensor:
        return self.drop_path(self.G(y1))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, thw: THW) -> tuple[torch.Tensor, torch.Tensor]:
        y1 = x1 + self.f(x2, thw)
        return y1, x2 + self.g(y1)

    def forward_recorded(self, x1, x2, thw: THW) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        """``forward`` that also returns the generator states before F and before G (None when deterministic)."""
        record = self.training and self.stochastic
        rng_f = _RngState(x2.device) if record else None
        y1 = x1 + self.f(x2, thw)
        rng_g = _RngState(x2.device) if record else None
        return y1, x2 + self.g(y1), (rng_f, rng_g)

    def backward_pass(self, y1, y2, dy1, dy2, thw: THW, rng: tuple, autocast: contextlib.AbstractContextManager):
        """Recomputes (X1, X2) from (Y1, Y2) and back-propagates (dY1, dY2) to (dX1, dX2) and this block's
        parameters. Returns ``(x1, x2, dx1, dx2, {param: grad})``."""
        grads: dict[nn.Parameter, Optional[torch.Tensor]] = {}
        y1 = y1.detach().requires_grad_(True)
        with torch.enable_grad(), _replay(rng[1]), autocast:
            g_y1 = self.g(y1)
        dy1_g = _grad(g_y1, y1, self.G, dy2, grads)
        with torch.no_grad():
            x2 = (y2 - g_y1).detach().requires_grad_(True)
            dy1 = dy1 + dy1_g
        with torch.enable_grad(), _replay(rng[0]), autocast:
            f_x2 = self.f(x2, thw)
        dx2_f = _grad(f_x2, x2, self.F, dy1, grads)
        with torch.no_grad():
            x1 = y1.detach() - f_x2
            dx2 = dy2 + dx2_f
        return x1, x2.detach(), dy1, dx2, grads


def _replay(rng: Optional[_RngState]) -> contextlib.AbstractContextManager:
    return rng.replay() if rng is not None else contextlib.nullcontext()


def _grad(out: torch.Tensor, inp: torch.Tensor, module: nn.Module, grad_out: torch.Tensor, grads: dict) -> torch.Tensor:
    """d(out)/d(inp) . grad_out, and the same for ``module``'s trainable parameters (stored in ``grads``)."""
    params = [p for p in module.parameters() if p.requires_grad]
    found = torch.autograd.grad(out, [inp, *params], grad_out, allow_unused=True)
    grads.update(zip(params, found[1:]))
    return found[0] if found[0] is not None else torch.zeros_like(inp)


class ReversibleStage(torch.autograd.Function):
    """A run of reversible blocks that stores only its output and recomputes activations in backward.

    ``apply(x, blocks, thw, *params)``: x (B, N, C) enters both streams; returns (B, N, 2C) = [Y1, Y2] of the last
    block. ``params`` are the blocks' trainable parameters, so autograd returns their gradients.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, blocks: tuple, thw: THW, *params: nn.Parameter) -> torch.Tensor:
        x1 = x2 = x.detach()
        records = []
        with torch.no_grad():
            for block in blocks:
                x1, x2, rng = block.forward_recorded(x1, x2, thw)
                records.append(rng)
        ctx.save_for_backward(x1, x2)
        ctx.blocks, ctx.thw, ctx.records, ctx.params = blocks, thw, records, params
        device = x.device.type
        ctx.autocast = (device, torch.is_autocast_enabled(device), torch.get_autocast_dtype(device))
        return torch.cat([x1, x2], dim=-1)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        y1, y2 = ctx.saved_tensors
        dy1, dy2 = dy.chunk(2, dim=-1)
        device, enabled, dtype = ctx.autocast
        grads: dict = {}
        for block, rng in zip(reversed(ctx.blocks), reversed(ctx.records)):
            autocast = torch.autocast(device, dtype=dtype, enabled=enabled)
            y1, y2, dy1, dy2, block_grads = block.backward_pass(y1, y2, dy1, dy2, ctx.thw, rng, autocast)
            grads.update(block_grads)
        return (dy1 + dy2, None, None, *(grads.get(p) for p in ctx.params))


class StageTransitionBlock(nn.Module):
    """Fuses the two streams (``MVIT.REV.PRE_Q_FUSION``), then one stored-activation MViT block that widens and pools:
    the skip is projected, then pooled per head with the query's pooling conv and norm (``MVIT.REV.RES_PATH`` conv).

    Args:
        spec: the layer.
        cfg: the model config.
    """

    def __init__(self, spec: RevLayerSpec, cfg) -> None:
        super().__init__()
        dim_in = spec.dim * (2 if cfg.rev_pre_q_fusion == "concat" else 1)
        self.num_heads = spec.num_heads
        self.F = AttentionSubBlock(dim_in, spec, cfg)
        self.G = MlpSubBlock(spec.dim_out, cfg)
        self.pre_q_fuse = TwoStreamFusion(cfg.rev_pre_q_fusion)
        self.res_proj = nn.Linear(dim_in, spec.dim_out) if dim_in != spec.dim_out else None
        self.drop_path = DropPath(spec.drop_path) if spec.drop_path > 0 else nn.Identity()

    def _skip(self, x: torch.Tensor, thw: THW) -> torch.Tensor:
        res = x if self.res_proj is None else self.res_proj(x)
        B, N, C = res.shape
        # (B, N, C) -> (B, heads, N, C/heads), pooled like the queries, -> (B, N', C)
        res = res.reshape(B, N, self.num_heads, C // self.num_heads).transpose(1, 2)
        res, _ = pool_tokens(res, self.F.attn.pool_q, thw, False, self.F.attn.norm_q)
        return res.transpose(1, 2).reshape(B, -1, C)

    def forward(self, x: torch.Tensor, thw: THW) -> tuple[torch.Tensor, THW]:
        x = self.pre_q_fuse(x)
        x_attn, thw_out = self.F(x, thw)
        x = self._skip(x, thw) + x_attn
        x = x + self.G(x)
        return self.drop_path(x), thw_out


class ReversibleMViT(nn.Module):
    """The reversible backbone: reversible stages separated by transitions, then dropout (``MVIT.DROPOUT_RATE``).

    ``forward(x, thw)`` takes tokens (B, N, C) on grid ``thw`` and returns the two streams side by side (B, N', 2C').
    In training with gradients on, each reversible stage runs as ``ReversibleStage`` (activations recomputed in
    backward) unless ``custom_backward`` is False or inside ``plain_autograd()``.

    Args:
        specs: one per layer, from ``rev_layer_specs``.
        cfg: the model config.
    """

    def __init__(self, specs: list[RevLayerSpec], cfg) -> None:
        super().__init__()
        self.layers = nn.ModuleList(StageTransitionBlock(s, cfg) if s.transition else ReversibleBlock(s, cfg)
                                    for s in specs)  # fmt: skip
        self.dropout = cfg.drop_rate
        self.custom_backward = True
        self.segments: list[tuple[bool, list[int]]] = []  # (is transition, layer ids)
        for i, spec in enumerate(specs):
            if spec.transition or not self.segments or self.segments[-1][0]:
                self.segments.append((spec.transition, [i]))
            else:
                self.segments[-1][1].append(i)

    def _stage(self, x: torch.Tensor, blocks: list[ReversibleBlock], thw: THW) -> torch.Tensor:
        if self.training and torch.is_grad_enabled() and self.custom_backward and custom_backward_enabled():
            params = [p for b in blocks for p in b.parameters() if p.requires_grad]
            return ReversibleStage.apply(x, tuple(blocks), thw, *params)
        x1 = x2 = x
        for block in blocks:
            x1, x2 = block(x1, x2, thw)
        return torch.cat([x1, x2], dim=-1)

    def forward(self, x: torch.Tensor, thw: THW) -> tuple[torch.Tensor, THW]:
        for transition, ids in self.segments:
            if transition:
                x, thw = self.layers[ids[0]](x, thw)
            else:
                x = self._stage(x, [self.layers[i] for i in ids], thw)
        return F.dropout(x, p=self.dropout, training=self.training), thw
