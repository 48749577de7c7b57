"""Multiscale Vision Transformers, v1 and v2, for video (B, 3, T, H, W) and images (B, 3, H, W)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import THW, MultiScaleAttention, pool_tokens
from .layers import ClassificationHead, DropPath, Mlp, PatchEmbed, round_width
from .registry import register_model


@dataclass
class MViTConfig:
    """Architecture of one MViT model, as plain data (serialisable, no root config).

    Per-layer lists use PySlowFast's convention: ``dim_mul=[(1, 2.0), ...]`` means "multiply the width by 2
    at layer 1"; ``pool_q_stride=[(1, 1, 2, 2), ...]`` means "layer 1 pools queries with stride (1, 2, 2)".

    Args:
        num_classes: classifier outputs.
        input_size: (T, H, W) of the input clips the position tables are sized for (T=1 for images).
        in_chans: input channels.
        patch_2d: image model: Conv2d patch embedding on (B, C, H, W).
        patch_kernel, patch_stride, patch_padding: patch-embedding conv, (t, h, w) or (h, w) when ``patch_2d``.
        embed_dim: token width after patch embedding.
        num_heads: attention heads of the first stage.
        depth: number of blocks.
        mlp_ratio: MLP hidden width over its input width.
        qkv_bias: bias in the qkv projections.
        dim_mul, head_mul: (layer, multiplier) pairs for width and heads.
        pool_q_stride: (layer, st, sh, sw) entries; layers listed pool their queries.
        pool_kv_stride: (layer, st, sh, sw) entries for keys/values (ignored when adaptive is set).
        pool_kv_stride_adaptive: initial K/V stride, divided by each query stride along the depth.
        pool_kvq_kernel: pooling kernel of Q, K and V; None: stride + 1 where stride > 1.
        pool_mode: "conv", "avg" or "max".
        separate_qkv: separate q/k/v projections instead of one qkv.
        cls_embed: prepend a cls token (classify from it) instead of mean pooling the tokens.
        use_mean_pooling: classify the mean of the tokens (cls token excluded) taken before the final norm, as
            PySlowFast's ``MVIT.USE_MEAN_POOLING``; without it a model with a cls token reads the normalised cls
            token and one without averages the normalised tokens.
        use_abs_pos: learned absolute position embedding.
        sep_pos_embed: absolute embedding factorised into space + time (+ cls), as MViTv1.
        rel_pos_spatial, rel_pos_temporal: decomposed relative positions (MViTv2).
        rel_pos_zero_init: start rel-pos tables at zero.
        residual_pooling: add pooled queries to the attention output (MViTv2).
        dim_mul_in_att: expand channels in attention (v2) rather than in the MLP (v1).
        drop_path_rate: stochastic depth at the last block (linear from 0).
        drop_rate: dropout in attention output and MLP.
        head_dropout: dropout before the classifier.
        detach_head: train the classifier only: no gradient flows below it (linear probing).
        layer_scale_init_value: > 0 enables learnable per-channel residual scales.
        head_init_scale: scales the classifier's initial weights.
        norm_stem: LayerNorm right after patch embedding.
        norm_eps: LayerNorm epsilon.
        pool_norm_eps: epsilon of the Q/K/V pooling norms when it differs from ``norm_eps`` (pytorchvideo's
            MViT uses 1e-5 there).
        act_checkpoint: recompute each block in backward (activation checkpointing) to save memory.
        attention: "auto", "sdpa" (fused ``scaled_dot_product_attention`` with the rel-pos bias folded into q/k)
            or "math" (explicit logits; the reference). "auto" is "sdpa" except in float64 and under tracing.
        rev_enable: reversible MViT (PySlowFast's ``MVIT.REV.ENABLE``; see ``models/reversible.py``): two-stream
            reversible blocks that recompute activations in backward; needs ``cls_embed=False``.
        rev_respath_fuse: how the two streams are fused after the last block: "concat" (the classifier sees both,
            twice the width), "avg", "add", "max" or "min" (those need ``use_mean_pooling``, as in PySlowFast).
        rev_buffer_layers: the layers that change width or pool queries (stage transitions, stored activations).
        rev_res_path: how a transition pools its skip: "conv" (with the query's pooling conv and norm).
        rev_pre_q_fusion: how a transition fuses the two streams before it: "avg", "add", "max", "min" or
            "concat" (then the transition takes twice the width).
    """

    num_classes: int = 400
    input_size: tuple[int, int, int] = (16, 224, 224)
    in_chans: int = 3
    patch_2d: bool = False
    patch_kernel: tuple[int, ...] = (3, 7, 7)
    patch_stride: tuple[int, ...] = (2, 4, 4)
    patch_padding: tuple[int, ...] = (1, 3, 3)
    embed_dim: int = 96
    num_heads: int = 1
    depth: int = 16
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    dim_mul: list = field(default_factory=list)
    head_mul: list = field(default_factory=list)
    pool_q_stride: list = field(default_factory=list)
    pool_kv_stride: list = field(default_factory=list)
    pool_kv_stride_adaptive: Optional[tuple[int, int, int]] = None
    pool_kvq_kernel: Optional[tuple[int, int, int]] = None
    pool_mode: str = "conv"
    separate_qkv: bool = False
    cls_embed: bool = True
    use_mean_pooling: bool = False
    use_abs_pos: bool = True
    sep_pos_embed: bool = False
    rel_pos_spatial: bool = False
    rel_pos_temporal: bool = False
    rel_pos_zero_init: bool = False
    residual_pooling: bool = False
    dim_mul_in_att: bool = False
    drop_path_rate: float = 0.1
    drop_rate: float = 0.0
    head_dropout: float = 0.0
    detach_head: bool = False
    layer_scale_init_value: float = 0.0
    head_init_scale: float = 1.0
    norm_stem: bool = False
    norm_eps: float = 1e-6
    pool_norm_eps: Optional[float] = None
    act_checkpoint: bool = False
    attention: str = "auto"
    rev_enable: bool = False
    rev_respath_fuse: str = "concat"
    rev_buffer_layers: tuple[int, ...] = ()
    rev_res_path: str = "conv"
    rev_pre_q_fusion: str = "avg"

    def replace(self, **changes) -> "MViTConfig":
        """A copy with some fields changed (unknown names raise TypeError)."""
        return dataclasses.replace(self, **changes)

    @property
    def patch_dims(self) -> THW:
        """Token grid (T, H, W) after patch embedding of an ``input_size`` clip."""
        stride = (1, *self.patch_stride) if self.patch_2d else tuple(self.patch_stride)
        return tuple(s // p for s, p in zip(self.input_size, stride))


@dataclass
class BlockSpec:
    """Everything one MultiScaleBlock needs; derived from MViTConfig by ``block_specs``."""

    dim: int
    dim_out: int
    num_heads: int
    input_size: THW
    kernel_q: tuple[int, ...]
    kernel_kv: tuple[int, ...]
    stride_q: tuple[int, ...]
    stride_kv: tuple[int, ...]
    drop_path: float


def _per_layer(entries: Sequence[Sequence[float]], depth: int, default: float = 1.0) -> list:
    """Expands (layer, value) pairs to one value per layer (plus one past the end, as v1 looks ahead)."""
    values = [default] * (depth + 1)
    for layer, value in entries:
        values[int(layer)] = value
    return values


def _pool_schedule(cfg: MViTConfig) -> tuple[list, list, list, list]:
    """Per-layer (kernel_q, kernel_kv, stride_q, stride_kv); empty tuples where a layer does not pool."""
    kernel_q, kernel_kv = [()] * cfg.depth, [()] * cfg.depth
    stride_q, stride_kv = [()] * cfg.depth, [()] * cfg.depth

    def kernel_for(stride):
        if cfg.pool_kvq_kernel is not None:
            return tuple(cfg.pool_kvq_kernel)
        return tuple(s + 1 if s > 1 else s for s in stride)

    for layer, *stride in cfg.pool_q_stride:
        stride_q[layer], kernel_q[layer] = tuple(stride), kernel_for(stride)
    kv_entries = list(cfg.pool_kv_stride)
    if cfg.pool_kv_stride_adaptive is not None:
        current, kv_entries = list(cfg.pool_kv_stride_adaptive), []
        for layer in range(cfg.depth):
            if stride_q[layer]:
                current = [max(s // q, 1) for s, q in zip(current, stride_q[layer])]
            kv_entries.append((layer, *current))
    for layer, *stride in kv_entries:
        stride_kv[layer], kernel_kv[layer] = tuple(stride), kernel_for(stride)
    return kernel_q, kernel_kv, stride_q, stride_kv


def block_specs(cfg: MViTConfig) -> list[BlockSpec]:
    """Widths, heads, pooling and token grids of every block, following PySlowFast's rules exactly."""
    dim_mul = _per_layer(cfg.dim_mul, cfg.depth)
    head_mul = _per_layer(cfg.head_mul, cfg.depth)
    kernel_q, kernel_kv, stride_q, stride_kv = _pool_schedule(cfg)
    drop_path = torch.linspace(0, cfg.drop_path_rate, cfg.depth).tolist()
    dim, heads, size = cfg.embed_dim, cfg.num_heads, cfg.patch_dims
    specs = []
    for i in range(cfg.depth):
        heads = round_width(heads, head_mul[i])
        if cfg.dim_mul_in_att:
            dim_out = round_width(dim, dim_mul[i], divisor=round_width(heads, head_mul[i]))
        else:  # v1: the width grows at the end of the block before the one that changes heads
            dim_out = round_width(dim, dim_mul[i + 1], divisor=round_width(heads, head_mul[i + 1]))
        specs.append(
            BlockSpec(dim, dim_out, heads, size, kernel_q[i], kernel_kv[i], stride_q[i], stride_kv[i], drop_path[i])
        )
        if stride_q[i]:
            size = tuple(s // st for s, st in zip(size, stride_q[i]))
        dim = dim_out
    return specs


class MultiScaleBlock(nn.Module):
    """One MViT block: pooling attention and an MLP, each residual, with skip pooling and width change.

    Args:
        spec: the block's widths, heads and pooling.
        cfg: the model config (shared switches such as rel-pos and residual pooling).
    """

    def __init__(self, spec: BlockSpec, cfg: MViTConfig) -> None:
        super().__init__()
        self.dim, self.dim_out = spec.dim, spec.dim_out
        self.dim_mul_in_att = cfg.dim_mul_in_att
        self.has_cls = cfg.cls_embed
        att_dim = spec.dim_out if cfg.dim_mul_in_att else spec.dim
        self.norm1 = nn.LayerNorm(spec.dim, eps=cfg.norm_eps)
        self.attn = MultiScaleAttention(
            spec.dim, att_dim, spec.input_size, num_heads=spec.num_heads, qkv_bias=cfg.qkv_bias,
            kernel_q=spec.kernel_q, kernel_kv=spec.kernel_kv, stride_q=spec.stride_q, stride_kv=spec.stride_kv,
            mode=cfg.pool_mode, has_cls=cfg.cls_embed, rel_pos_spatial=cfg.rel_pos_spatial,
            rel_pos_temporal=cfg.rel_pos_temporal, rel_pos_zero_init=cfg.rel_pos_zero_init,
            residual_pooling=cfg.residual_pooling, separate_qkv=cfg.separate_qkv, drop_rate=cfg.drop_rate,
            norm_eps=cfg.norm_eps if cfg.pool_norm_eps is None else cfg.pool_norm_eps, attention=cfg.attention,
        )
        self.drop_path = DropPath(spec.drop_path) if spec.drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(att_dim, eps=cfg.norm_eps)
        self.mlp = Mlp(att_dim, int(att_dim * cfg.mlp_ratio), spec.dim_out, cfg.drop_rate)
        self.gamma_1 = self.gamma_2 = None
        if cfg.layer_scale_init_value > 0:
            self.gamma_1 = nn.Parameter(torch.full((att_dim,), cfg.layer_scale_init_value))
            self.gamma_2 = nn.Parameter(torch.full((spec.dim_out,), cfg.layer_scale_init_value))
        self.proj = nn.Linear(spec.dim, spec.dim_out) if spec.dim != spec.dim_out else None
        self.pool_skip = None
        if spec.stride_q and any(s > 1 for s in spec.stride_q):
            kernel = tuple(s + 1 if s > 1 else s for s in spec.stride_q)
            self.pool_skip = nn.MaxPool3d(kernel, spec.stride_q, tuple(k // 2 for k in kernel), ceil_mode=False)

    def _scaled(self, x: torch.Tensor, gamma: Optional[torch.Tensor]) -> torch.Tensor:
        return self.drop_path(x if gamma is None else gamma * x)

    def forward(self, x: torch.Tensor, thw: THW) -> tuple[torch.Tensor, THW]:
        x_norm = self.norm1(x)
        x_attn, thw_out = self.attn(x_norm, thw)
        if self.dim_mul_in_att and self.proj is not None:
            x = self.proj(x_norm)  # v2: the skip is projected from the normalised input
        x_skip, _ = pool_tokens(x, self.pool_skip, thw, self.has_cls)
        x = x_skip + self._scaled(x_attn, self.gamma_1)
        x_norm = self.norm2(x)
        x_mlp = self.mlp(x_norm)
        if not self.dim_mul_in_att and self.proj is not None:
            x = self.proj(x_norm)  # v1: the width grows after the attention
        return x + self._scaled(x_mlp, self.gamma_2), thw_out


class MViT(nn.Module):
    """Multiscale Vision Transformer (MViTv1 / MViTv2) for video clips and images.

    ``forward`` takes (B, C, T, H, W) clips or (B, C, H, W) images and returns class logits (no softmax) in
    both train and eval mode. Image models (``patch_2d``) also accept (B, C, 1, H, W); video models treat a
    4-D input as a one-frame clip. Inputs of other sizes than ``cfg.input_size`` work: absolute position
    embeddings and relative-position tables are interpolated to the token grid.

    The state-dict keys and shapes are PySlowFast's, so its checkpoints load directly.

    Args:
        cfg: the architecture.
    """

    def __init__(self, cfg: MViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        stride = tuple(cfg.patch_stride)
        self.patch_embed = PatchEmbed(cfg.in_chans, cfg.embed_dim, cfg.patch_kernel, stride, cfg.patch_padding)
        self.patch_dims = cfg.patch_dims
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim)) if cfg.cls_embed else None
        self._init_abs_pos(cfg)
        self.pos_drop = nn.Dropout(cfg.drop_rate) if cfg.drop_rate > 0 else nn.Identity()
        self.norm_stem = nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps) if cfg.norm_stem else None
        if cfg.rev_enable:
            self._init_reversible(cfg)
        else:
            specs = block_specs(cfg)
            self.blocks = nn.ModuleList(MultiScaleBlock(spec, cfg) for spec in specs)
            self.num_features = specs[-1].dim_out
        self.norm = nn.LayerNorm(self.num_features, eps=cfg.norm_eps)
        self.head = ClassificationHead(self.num_features, cfg.num_classes, cfg.head_dropout, cfg.detach_head)
        self._init_weights(cfg.head_init_scale)

    def _init_weights(self, head_init_scale: float) -> None:
        """PySlowFast's initialisation: trunc-normal (std 0.02) position embeddings and cls token, then every Linear
        and Conv weight trunc-normal (std 0.02), Linear biases 0.02, LayerNorm weight 1 and bias 0.02 (conv biases
        keep PyTorch's default), and the classifier scaled by ``head_init_scale``. Relative-position tables are
        initialised by their attention layers (``rel_pos_zero_init``)."""
        for param in (self.pos_embed, self.pos_embed_spatial, self.pos_embed_temporal, self.pos_embed_class,
                      self.cls_token):  # fmt: skip
            if param is not None:
                nn.init.trunc_normal_(param, std=0.02)
        self.apply(_init_module)
        with torch.no_grad():
            self.head.projection.weight.mul_(head_init_scale)
            self.head.projection.bias.mul_(head_init_scale)

    def _init_reversible(self, cfg: MViTConfig) -> None:
        """PySlowFast's Rev-MViT: ``rev_backbone`` (reversible stages and transitions), then ``fuse``."""
        from .reversible import ReversibleMViT, TwoStreamFusion, rev_layer_specs

        if cfg.cls_embed:
            raise ValueError("a reversible MViT has no cls token (PySlowFast's code asserts it); set cls_embed=False")
        if cfg.rev_respath_fuse != "concat" and not cfg.use_mean_pooling:
            raise ValueError(f"rev_respath_fuse={cfg.rev_respath_fuse!r} needs use_mean_pooling=True (PySlowFast "
                             f"normalises before fusing otherwise, at the wrong width)")  # fmt: skip
        specs = rev_layer_specs(cfg)
        self.rev_backbone = ReversibleMViT(specs, cfg)
        self.fuse = TwoStreamFusion(cfg.rev_respath_fuse)
        self.num_features = specs[-1].dim_out * (2 if cfg.rev_respath_fuse == "concat" else 1)

    def _init_abs_pos(self, cfg: MViTConfig) -> None:
        self.pos_embed = self.pos_embed_spatial = self.pos_embed_temporal = self.pos_embed_class = None
        if not cfg.use_abs_pos:
            return
        t, h, w = self.patch_dims
        if cfg.sep_pos_embed:
            self.pos_embed_spatial = nn.Parameter(torch.zeros(1, h * w, cfg.embed_dim))
            self.pos_embed_temporal = nn.Parameter(torch.zeros(1, t, cfg.embed_dim))
            if cfg.cls_embed:
                self.pos_embed_class = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, t * h * w + int(cfg.cls_embed), cfg.embed_dim))

    def position_tables(self) -> dict[str, tuple[int, THW]]:
        """The absolute position tables: ``{name: (cls rows, grid)}`` (for resizing checkpoints)."""
        t, h, w = self.patch_dims
        cls = int(self.cfg.cls_embed)
        if not self.cfg.use_abs_pos:
            return {}
        if self.cfg.sep_pos_embed:
            return {"pos_embed_spatial": (0, (1, h, w)), "pos_embed_temporal": (0, (t, 1, 1))}
        return {"pos_embed": (cls, (t, h, w))}

    def no_weight_decay(self) -> set[str]:
        """Names of parameters that are usually trained without weight decay (embeddings, rel-pos, cls)."""
        names = {n for n, _ in self.named_parameters() if "pos_embed" in n or "rel_pos" in n or n == "cls_token"}
        return names

    def _abs_pos_embed(self, thw: THW) -> torch.Tensor:
        """Absolute position embedding for grid ``thw``, (1, [1 +] THW, C), trilinearly resized if needed."""
        cls_pos = None
        if self.cfg.sep_pos_embed:
            t, h, w = self.patch_dims
            # space repeated over time + time repeated over space: (1, T*H*W, C)
            pos = self.pos_embed_spatial.repeat(1, t, 1) + torch.repeat_interleave(self.pos_embed_temporal, h * w, 1)
            cls_pos = self.pos_embed_class
        else:
            pos = self.pos_embed
            if self.cfg.cls_embed:
                cls_pos, pos = pos[:, :1], pos[:, 1:]
        if tuple(thw) != tuple(self.patch_dims):
            # (1, T*H*W, C) -> (1, C, T, H, W) -> resized -> (1, T'H'W', C)
            grid = pos.reshape(1, *self.patch_dims, -1).permute(0, 4, 1, 2, 3)
            pos = F.interpolate(grid, size=tuple(thw), mode="trilinear").flatten(2).transpose(1, 2)
        return pos if cls_pos is None else torch.cat((cls_pos, pos), dim=1)

    def _to_model_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.patch_2d and x.ndim == 5:
            if x.shape[2] != 1:
                raise ValueError(f"image model got a clip of {x.shape[2]} frames; expected (B, C, 1, H, W) or (B, C, H, W)")
            return x[:, :, 0]
        if not self.cfg.patch_2d and x.ndim == 4:
            return x.unsqueeze(2)  # an image is a one-frame clip
        if x.ndim not in (4, 5):
            raise ValueError(f"expected (B, C, T, H, W) or (B, C, H, W) input, got shape {tuple(x.shape)}")
        return x

    def _start_tokens(self, x: torch.Tensor, thw: THW) -> torch.Tensor:
        """Patch tokens (B, N, C) -> the first block's input: cls token, absolute positions, dropout, stem norm."""
        if self.cls_token is not None:
            x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        if self.cfg.use_abs_pos:
            x = x + self._abs_pos_embed(thw)
        x = self.pos_drop(x)
        return self.norm_stem(x) if self.norm_stem is not None else x

    def _run_block(self, block: nn.Module, x: torch.Tensor, thw: THW) -> tuple[torch.Tensor, THW]:
        """One block, recomputed in backward with ``act_checkpoint`` when training."""
        if self.cfg.act_checkpoint and self.training and torch.is_grad_enabled():
            return checkpoint(block, x, thw, use_reentrant=False)
        return block(x, thw)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens after the last block and the final norm handling: (B, num_features)."""
        x, thw = self.patch_embed(self._to_model_input(x))
        x = self._start_tokens(x, thw)
        if self.cfg.rev_enable:
            x, thw = self.rev_backbone(x, thw)
            if self.cfg.use_mean_pooling:  # PySlowFast: fuse the streams, average, normalise
                return self.norm(self.fuse(x).mean(1))
            return self.fuse(self.norm(x)).mean(1)
        for block in self.blocks:
            x, thw = self._run_block(block, x, thw)
        if self.cfg.use_mean_pooling:  # PySlowFast: average the tokens (not the cls token), then normalise
            return self.norm(x[:, int(self.cls_token is not None) :].mean(1))
        if self.cls_token is None:  # PySlowFast's default without a cls token: normalise, then average
            return self.norm(x).mean(1)
        return self.norm(x)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

    def token_grids(self, input_size: Optional[THW] = None) -> list[THW]:
        """Token grid (T, H, W) entering each block, and after the last one, for an input of ``input_size``.

        Computed with the convolution size arithmetic (what the layers really produce), so it also holds for
        sizes that the strides do not divide.
        """
        size = tuple(self.cfg.input_size if input_size is None else input_size)
        kernel, stride, padding = (tuple(v) for v in (self.cfg.patch_kernel, self.cfg.patch_stride, self.cfg.patch_padding))
        if self.cfg.patch_2d:
            kernel, stride, padding = (1, *kernel), (1, *stride), (0, *padding)
        size = _conv_out(size, kernel, stride, padding)
        grids = [size]
        for spec in block_specs(self.cfg):
            if spec.kernel_q:
                size = _conv_out(size, spec.kernel_q, spec.stride_q, tuple(k // 2 for k in spec.kernel_q))
            grids.append(size)
        return grids


def _conv_out(size: Sequence[int], kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int]) -> THW:
    return tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(size, kernel, stride, padding))


def _init_module(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.Conv3d)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.constant_(module.bias, 0.02)
    elif isinstance(module, nn.LayerNorm):
        nn.init.constant_(module.bias, 0.02)
        nn.init.ones_(module.weight)


# ------------------------------------------------------------------------------------------- named variants


def _v2_q_strides(depth: int, stage_starts: tuple[int, ...]) -> list:
    """MViTv2 pools queries in every layer: stride (1, 2, 2) where a stage starts, (1, 1, 1) elsewhere."""
    return [[i, 1, 2, 2] if i in stage_starts else [i, 1, 1, 1] for i in range(depth)]


def _stage_muls(stage_starts: tuple[int, ...]) -> list:
    return [[i, 2.0] for i in stage_starts]


def _mvitv2_video(depth: int, stage_starts: tuple[int, ...], **kw) -> MViTConfig:
    fields = dict(
        depth=depth,
        dim_mul=_stage_muls(stage_starts),
        head_mul=_stage_muls(stage_starts),
        pool_q_stride=_v2_q_strides(depth, stage_starts),
        pool_kv_stride_adaptive=(1, 8, 8),
        pool_kvq_kernel=(3, 3, 3),
        use_abs_pos=False,
        rel_pos_spatial=True,
        rel_pos_temporal=True,
        residual_pooling=True,
        dim_mul_in_att=True,
        head_dropout=0.5,
    )
    fields.update(kw)
    return MViTConfig(**fields)


def _mvitv2_image(depth: int, stage_starts: tuple[int, ...], **kw) -> MViTConfig:
    fields = dict(
        num_classes=1000,
        input_size=(1, 224, 224),
        patch_2d=True,
        patch_kernel=(7, 7),
        patch_stride=(4, 4),
        patch_padding=(3, 3),
        depth=depth,
        dim_mul=_stage_muls(stage_starts),
        head_mul=_stage_muls(stage_starts),
        pool_q_stride=_v2_q_strides(depth, stage_starts),
        pool_kvq_kernel=(1, 3, 3),
        cls_embed=False,
        use_abs_pos=False,
        rel_pos_spatial=True,
        residual_pooling=True,
        dim_mul_in_att=True,
    )
    fields.update(kw)
    return MViTConfig(**fields)


def _mvitv1_video(depth: int, stage_starts: tuple[int, ...], **kw) -> MViTConfig:
    fields = dict(
        depth=depth,
        dim_mul=_stage_muls(stage_starts),
        head_mul=_stage_muls(stage_starts),
        pool_q_stride=[[i, 1, 2, 2] for i in stage_starts],
        pool_kv_stride_adaptive=(1, 8, 8),
        sep_pos_embed=True,
        head_dropout=0.5,
    )
    fields.update(kw)
    return MViTConfig(**fields)


@register_model
def mvitv1_b_16x4() -> MViTConfig:
    """MViTv1-B 16x4, Kinetics-400 (36.6M params)."""
    return _mvitv1_video(16, (1, 3, 14), pool_kvq_kernel=(3, 3, 3), drop_path_rate=0.2)


@register_model
def mvitv1_b_32x3() -> MViTConfig:
    """MViTv1-B 32x3, Kinetics-400; pooling kernels follow the strides (PySlowFast's POOL_KVQ_KERNEL=None)."""
    return _mvitv1_video(24, (2, 5, 21), input_size=(32, 224, 224), drop_path_rate=0.3)


@register_model
def rev_mvit_b_16x4() -> MViTConfig:
    """Rev-MViT-B 16x4, Kinetics-400 (PySlowFast's REV_MVIT_B_16x4_CONV, without its cls token; 34.9M params)."""
    return _mvitv1_video(
        16, (1, 3, 14), pool_kvq_kernel=(3, 3, 3), cls_embed=False, qkv_bias=False, drop_path_rate=0.05,
        rev_enable=True, rev_buffer_layers=(1, 3, 14),
    )  # fmt: skip


@register_model
def mvitv2_s_16x4() -> MViTConfig:
    """MViTv2-S 16x4, Kinetics-400 (34.5M params)."""
    return _mvitv2_video(16, (1, 3, 14), drop_path_rate=0.2)


@register_model
def mvitv2_s_16x4_k600() -> MViTConfig:
    """MViTv2-S 16x4, Kinetics-600."""
    return mvitv2_s_16x4().replace(num_classes=600)


@register_model
def mvitv2_s_16x4_k700() -> MViTConfig:
    """MViTv2-S 16x4, Kinetics-700."""
    return mvitv2_s_16x4().replace(num_classes=700)


@register_model
def mvitv2_s_16x4_ssv2() -> MViTConfig:
    """MViTv2-S 16x4, Something-Something v2."""
    return mvitv2_s_16x4().replace(num_classes=174, drop_path_rate=0.4)


@register_model
def mvitv2_b_32x3() -> MViTConfig:
    """MViTv2-B 32x3, Kinetics-400 (51.2M params)."""
    return _mvitv2_video(24, (2, 5, 21), input_size=(32, 224, 224), drop_path_rate=0.3)


@register_model
def mvitv2_b_32x3_ssv2() -> MViTConfig:
    """MViTv2-B 32x3, Something-Something v2."""
    return mvitv2_b_32x3().replace(num_classes=174, drop_path_rate=0.4)


@register_model
def mvitv2_l_40x3_312() -> MViTConfig:
    """MViTv2-L 40x3 at 312px, Kinetics-400 (213.4M params as PySlowFast builds it)."""
    return _mvitv2_video(
        48, (2, 8, 44), input_size=(40, 312, 312), embed_dim=144, num_heads=2, drop_path_rate=0.75,
        act_checkpoint=True,
    )  # fmt: skip


@register_model
def mvitv2_t_in1k() -> MViTConfig:
    """MViTv2-T, ImageNet-1K (24.2M params)."""
    kv = [[0, 1, 4, 4], [1, 1, 2, 2], [2, 1, 2, 2]] + [[i, 1, 1, 1] for i in range(3, 10)]
    return _mvitv2_image(10, (1, 3, 8), pool_kv_stride=kv, drop_path_rate=0.1)


@register_model
def mvitv2_s_in1k() -> MViTConfig:
    """MViTv2-S, ImageNet-1K (34.9M params)."""
    kv = [[0, 1, 4, 4], [1, 1, 2, 2], [2, 1, 2, 2]] + [[i, 1, 1, 1] for i in range(3, 16)]
    return _mvitv2_image(16, (1, 3, 14), pool_kv_stride=kv, drop_path_rate=0.1)


@register_model
def mvitv2_b_in1k() -> MViTConfig:
    """MViTv2-B, ImageNet-1K (51.5M params)."""
    return _mvitv2_image(24, (2, 5, 21), pool_kv_stride_adaptive=(1, 4, 4), drop_path_rate=0.3)
