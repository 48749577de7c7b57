"""The Convolutional vision Transformer family on video (CvT, Wu et al. 2021; HF ``CvtForImageClassification``, the
official microsoft/CvT code): stages of transformer blocks over T x H x W token grids, each stage entered through a
convolutional token embedding, whose attention takes queries, keys and values from depthwise convolutions of the grid.

Clips are (B, C, T, H, W); an image (B, C, H, W) is a one-frame clip. With every time option at 1 (the default) the
model is CvT applied to each frame; the time options make it a video model:

- Convolutional token embedding of stage s: a Conv3d (kt_s, k_s, k_s), stride (st_s, s_s, s_s), padding
  (kt_s // 2, p_s, p_s) (``patch_time_kernels``, ``patch_time_strides``; CvT's k / s / p: 7 / 4 / 2, then 3 / 2 / 1
  twice), then a LayerNorm over channels. No position embedding: the convolutions carry position.
- Convolutional projection: q, k and v each come from a depthwise Conv3d (kq, 3, 3) (no bias, zero padding
  (kq // 2, 1, 1); ``qkv_time_kernel``) and a BatchNorm3d of the block's normed grid, queries at stride 1, keys and
  values at stride (kv_time_stride, 2, 2) (``kv_time_stride``), then a linear projection each (``proj_q``,
  ``proj_k``, ``proj_v``). Attention logits are scaled by 1 / sqrt(width), not 1 / sqrt(head width), as CvT does.
- The cls token exists only in the last stage. It skips the convolutions: it is split off the tokens before them and
  put back in front of q, k and v after them. On clips it is put in front of the keys and values once per frame of
  keys (``cls_key_per_frame``): a static clip's keys repeat each frame's keys T_k times, so the cls key must too
  for the softmax to weigh it as the image model does (with one cls key its weight would shrink by T_k). On one
  frame (T_k = 1) this is CvT exactly.
- Pre-norm blocks: ``x + attn(norm1(x))``, ``x + mlp(norm2(x))`` (GELU; ``mlp_act="quick_gelu"`` is the official
  code's ``x * sigmoid(1.702 x)``). The classifier reads the final-normed cls token.

Image weights in a video model (``load_pretrained(..., inflate=...)``): every kernel with a time axis > 1 is
inflated. With ``inflate="centre"`` a static clip (every frame the same) gives exactly the image model's logits,
whatever the time options: every conv sees the image kernel on its centre tap and zeros elsewhere, so features stay
static (BatchNorm3d in eval mode is BatchNorm2d on every frame), and attention over keys repeated in time, the cls
key repeated with them, equals attention over one frame's keys. A one-frame clip then equals the image model too (the
zero padding in time meets only zero taps). ``inflate="average"`` (I3D: kernel / kt on every tap) does not keep
static clips exact: every time kernel here is zero-padded, so the first and last frames see part of it.

State-dict names follow the official code with its stages in a list: ``stages.{s}.patch_embed.{proj,norm}``,
``stages.{s}.cls_token`` (last stage), ``stages.{s}.blocks.{j}.{norm1, attn.{conv_proj_q, conv_proj_k,
conv_proj_v}.{conv,bn}, attn.{proj_q, proj_k, proj_v, proj}, norm2, mlp.{fc1, fc2}}``, ``norm``, ``head``.
``formats/cvt.py`` maps HF transformers' layout and the official one (``stage{s}.``) onto them.

Differences from HF's code that do not change eval outputs: HF applies the MLP's drop path to the residual sum too
and gives all blocks of a stage one drop-path rate; here, as in the official code, drop path acts on the branches
and rises linearly over the last stage's blocks to ``drop_path_rate`` (the official DROP_PATH_RATE [0, 0, rate]:
no published CvT drops paths in its earlier stages). LayerNorm epsilon 1e-5 everywhere (HF's ``layer_norm_eps`` is
unused by its layers).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .layers import DropPath, Mlp
from .layers.attention import attend
from .layers.conv import Conv3d
from .registry import register_model

THW = tuple[int, int, int]

MLP_ACTS = ("gelu", "quick_gelu")


@dataclass
class CvTConfig:
    """Architecture of one CvT-family model, as plain data.

    Args:
        num_classes: classifier outputs (0: no classifier, ``forward`` returns the normed cls token).
        input_size: (T, H, W) of the clips the model is configured for (T=1 for image models; reports and FLOP
            counts use it, the model takes other sizes).
        in_chans: input channels.
        embed_dims: width of each stage.
        depths: blocks per stage.
        num_heads: attention heads per stage.
        mlp_ratios: MLP expansion per stage.
        patch_sizes: spatial kernel of each stage's token embedding.
        patch_strides: its spatial stride.
        patch_paddings: its spatial zero padding.
        patch_time_kernels: its time kernel (odd; zero-padded by kernel // 2).
        patch_time_strides: its time stride (at most the time kernel).
        kv_stride: spatial stride of the key/value projections (the query's is 1).
        qkv_time_kernel: time kernel of the depthwise q/k/v convolutions (odd; zero-padded by kernel // 2).
        kv_time_stride: time stride of the key/value convolutions (at most ``qkv_time_kernel``).
        qkv_bias: biases on the linear q, k and v projections.
        cls_key_per_frame: the last stage's cls token enters keys and values once per key frame (static clips then
            attend as the image does); False: once.
        mlp_act: "gelu" (HF) or "quick_gelu" (the official code's ``x * sigmoid(1.702 x)``).
        norm_eps: LayerNorm epsilon.
        drop_rate: dropout after the token embeddings, the attention projection and in the MLP.
        attn_drop_rate: dropout on the attention weights.
        drop_path_rate: stochastic depth of the last stage, linear from 0 at its first block to this at its last
            (the earlier stages have none, as in every published CvT).
        head_dropout: dropout before the classifier.
        detach_head: the classifier's input is detached (train the classifier only).
        act_checkpoint: recompute each block in backward.
        attention: "auto" (SDPA; explicit in float64 and FLOP counting), "sdpa" or "math" (the explicit reference).
    """

    num_classes: int = 1000
    input_size: tuple[int, int, int] = (1, 224, 224)
    in_chans: int = 3
    embed_dims: tuple[int, ...] = (64, 192, 384)
    depths: tuple[int, ...] = (1, 2, 10)
    num_heads: tuple[int, ...] = (1, 3, 6)
    mlp_ratios: tuple[float, ...] = (4.0, 4.0, 4.0)
    patch_sizes: tuple[int, ...] = (7, 3, 3)
    patch_strides: tuple[int, ...] = (4, 2, 2)
    patch_paddings: tuple[int, ...] = (2, 1, 1)
    patch_time_kernels: tuple[int, ...] = (1, 1, 1)
    patch_time_strides: tuple[int, ...] = (1, 1, 1)
    kv_stride: int = 2
    qkv_time_kernel: int = 1
    kv_time_stride: int = 1
    qkv_bias: bool = True
    cls_key_per_frame: bool = True
    mlp_act: str = "gelu"
    norm_eps: float = 1e-5
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    head_dropout: float = 0.0
    detach_head: bool = False
    act_checkpoint: bool = False
    attention: str = "auto"

    PER_STAGE = ("embed_dims", "num_heads", "mlp_ratios", "patch_sizes", "patch_strides", "patch_paddings",
                 "patch_time_kernels", "patch_time_strides")  # fmt: skip

    def __post_init__(self) -> None:
        if len(self.input_size) != 3 or any(int(v) < 1 for v in self.input_size):
            raise ValueError(f"CvTConfig.input_size={list(self.input_size)} must be three positive sizes (T, H, W)")
        if not self.depths or any(len(getattr(self, n)) != len(self.depths) for n in self.PER_STAGE):
            lengths = ", ".join(f"{n}={list(getattr(self, n))}" for n in ("depths",) + self.PER_STAGE)
            raise ValueError(f"CvTConfig: {lengths} need one entry per stage each")
        for stage, (dim, heads) in enumerate(zip(self.embed_dims, self.num_heads)):
            if dim % heads:
                raise ValueError(f"CvTConfig: stage {stage} width {dim} is not divisible by num_heads={heads}")
        kernels = [("patch_time_kernels", k, s) for k, s in zip(self.patch_time_kernels, self.patch_time_strides)]
        for name, kernel, stride in kernels + [("qkv_time_kernel", self.qkv_time_kernel, self.kv_time_stride)]:
            if kernel < 1 or kernel % 2 == 0:
                raise ValueError(f"CvTConfig.{name}: time kernel {kernel} must be odd and positive (padded by k // 2)")
            if not 1 <= stride <= kernel:
                raise ValueError(f"CvTConfig: time stride {stride} with time kernel {kernel} ({name}) must be in "
                                 f"[1, kernel]; a longer stride skips frames")  # fmt: skip
        if self.mlp_act not in MLP_ACTS:
            raise ValueError(f"CvTConfig.mlp_act={self.mlp_act!r} is not one of {MLP_ACTS}")
        if self.attention not in ("auto", "sdpa", "math"):
            raise ValueError(f"CvTConfig.attention={self.attention!r} is not one of ('auto', 'sdpa', 'math')")

    def replace(self, **changes) -> CvTConfig:
        """A copy with some fields changed (unknown names raise TypeError)."""
        return dataclasses.replace(self, **changes)

    @property
    def depth(self) -> int:
        """Blocks in all stages."""
        return sum(self.depths)

    def stage_grids(self, input_size: THW | None = None) -> list[THW]:
        """Token grid (T', H', W') of each stage for clips of ``input_size`` (default the configured one)."""
        grid, grids = tuple(input_size or self.input_size), []
        for kt, st, k, s, p in zip(self.patch_time_kernels, self.patch_time_strides, self.patch_sizes,
                                   self.patch_strides, self.patch_paddings):  # fmt: skip
            t, h, w = grid
            grid = ((t - 1) // st + 1, (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1)
            grids.append(grid)
        return grids


def _flat(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, THW, C)."""
    return x.flatten(2).transpose(1, 2)


def _grid(x: torch.Tensor, grid: THW) -> torch.Tensor:
    """(B, THW, C) -> (B, C, T, H, W)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *grid)


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``, the official CvT code's MLP activation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def mlp_activation(name: str) -> nn.Module:
    return QuickGELU() if name == "quick_gelu" else nn.GELU()


class ConvProjection(nn.Module):
    """CvT's ``dw_bn`` projection on a grid (B, C, T, H, W): depthwise Conv3d (kt, 3, 3) without bias, then
    BatchNorm3d; returns the grid (B, C, T', H', W')."""

    def __init__(self, dim: int, time_kernel: int, stride: THW) -> None:
        super().__init__()
        self.conv = Conv3d(dim, dim, (time_kernel, 3, 3), stride, (time_kernel // 2, 1, 1), groups=dim, bias=False)
        self.bn = nn.BatchNorm3d(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class ConvAttention(nn.Module):
    """Multi-head attention with convolutional q/k/v projections on (B, [1 +] THW, C) tokens of a grid.

    Args:
        dim: token width.
        heads: attention heads.
        cfg: the architecture (kernels, strides, biases, dropouts, attention kernel, the cls rule).
    """

    def __init__(self, dim: int, heads: int, cfg: CvTConfig) -> None:
        super().__init__()
        self.heads, self.impl, self.attn_drop = heads, cfg.attention, cfg.attn_drop_rate
        self.scale = dim**-0.5  # CvT: the width, not the head width
        self.cls_key_per_frame = cfg.cls_key_per_frame
        kt, kv_stride = cfg.qkv_time_kernel, (cfg.kv_time_stride, cfg.kv_stride, cfg.kv_stride)
        self.conv_proj_q = ConvProjection(dim, kt, (1, 1, 1))
        self.conv_proj_k = ConvProjection(dim, kt, kv_stride)
        self.conv_proj_v = ConvProjection(dim, kt, kv_stride)
        self.proj_q = nn.Linear(dim, dim, bias=cfg.qkv_bias)
        self.proj_k = nn.Linear(dim, dim, bias=cfg.qkv_bias)
        self.proj_v = nn.Linear(dim, dim, bias=cfg.qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(cfg.drop_rate) if cfg.drop_rate > 0 else nn.Identity()

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, C) -> (B, heads, N, C / heads)."""
        B, N, C = x.shape
        return x.reshape(B, N, self.heads, C // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, grid: THW, has_cls: bool) -> torch.Tensor:
        B, N, C = x.shape
        cls, tokens = (x[:, :1], x[:, 1:]) if has_cls else (None, x)
        fmap = _grid(tokens, grid)
        q = _flat(self.conv_proj_q(fmap))
        k_grid = self.conv_proj_k(fmap)  # (B, C, T_k, H_k, W_k)
        k, v = _flat(k_grid), _flat(self.conv_proj_v(fmap))
        if cls is not None:
            q = torch.cat((cls, q), dim=1)
            cls_kv = cls.expand(-1, k_grid.shape[2] if self.cls_key_per_frame else 1, -1)
            k, v = torch.cat((cls_kv, k), dim=1), torch.cat((cls_kv, v), dim=1)
        q, k, v = (self._split_heads(proj(t)) for proj, t in ((self.proj_q, q), (self.proj_k, k), (self.proj_v, v)))
        out = attend(q, k, v, self.impl, self.attn_drop if self.training else 0.0, scale=self.scale)
        # (B, heads, N, C / heads) -> (B, N, C)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, N, C)))


class CvTBlock(nn.Module):
    """Pre-norm block: convolutional-projection attention and MLP residuals on (B, [1 +] THW, C) tokens.

    Args:
        dim: token width.
        stage: the stage (heads and MLP ratio come from it).
        drop_path: stochastic depth rate of this block.
        cfg: the architecture.
    """

    def __init__(self, dim: int, stage: int, drop_path: float, cfg: CvTConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = ConvAttention(dim, cfg.num_heads[stage], cfg)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratios[stage]), dim, cfg.drop_rate, mlp_activation(cfg.mlp_act))

    def forward(self, x: torch.Tensor, grid: THW, has_cls: bool) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), grid, has_cls))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ConvEmbed(nn.Module):
    """CvT's convolutional token embedding: (B, C, T, H, W) -> Conv3d -> LayerNorm over channels; ``forward``
    returns channels-last tokens (B, T'H'W', C') and their grid."""

    def __init__(self, in_chans: int, dim: int, kernel: THW, stride: THW, padding: THW, eps: float) -> None:
        super().__init__()
        self.proj = Conv3d(in_chans, dim, kernel, stride, padding)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, THW]:
        x = self.proj(x)
        return self.norm(_flat(x)), tuple(x.shape[2:])


class CvTStage(nn.Module):
    """One stage: its token embedding, its cls token (the last stage only) and its blocks."""

    def __init__(self, stage: int, cfg: CvTConfig) -> None:
        super().__init__()
        dim, in_chans = cfg.embed_dims[stage], cfg.embed_dims[stage - 1] if stage else cfg.in_chans
        k, s, p = cfg.patch_sizes[stage], cfg.patch_strides[stage], cfg.patch_paddings[stage]
        kt, st = cfg.patch_time_kernels[stage], cfg.patch_time_strides[stage]
        self.patch_embed = ConvEmbed(in_chans, dim, (kt, k, k), (st, s, s), (kt // 2, p, p), cfg.norm_eps)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if stage == len(cfg.depths) - 1 else None
        self.pos_drop = nn.Dropout(cfg.drop_rate) if cfg.drop_rate > 0 else nn.Identity()
        last_rate = cfg.drop_path_rate if stage == len(cfg.depths) - 1 else 0.0
        rates = torch.linspace(0, last_rate, cfg.depths[stage], device="cpu").tolist()
        self.blocks = nn.ModuleList(CvTBlock(dim, stage, rate, cfg) for rate in rates)


class ConvolutionalVisionTransformer(nn.Module):
    """A CvT-family model for clips (B, C, T, H, W) and images (B, C, H, W); returns class logits.

    Args:
        cfg: the architecture.
    """

    def __init__(self, cfg: CvTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.stages = nn.ModuleList(CvTStage(s, cfg) for s in range(len(cfg.depths)))
        self.num_features = cfg.embed_dims[-1]
        self.num_layers = cfg.depth
        self.norm = nn.LayerNorm(self.num_features, eps=cfg.norm_eps)
        self.head_drop = nn.Dropout(cfg.head_dropout) if cfg.head_dropout > 0 else nn.Identity()
        self.head = nn.Linear(self.num_features, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        """The official initialisation: trunc-normal (std 0.02) Linear weights and cls token, zero Linear biases,
        norms at 1 and 0; convolutions keep PyTorch's default."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.stages[-1].cls_token, std=0.02)

    def position_tables(self) -> dict[str, tuple[int, THW]]:
        """The learned position tables: none in CvT (the convolutions carry position)."""
        return {}

    def no_weight_decay(self) -> set[str]:
        """Parameters without weight decay: the cls token (the official rule)."""
        return {f"stages.{len(self.stages) - 1}.cls_token"}

    def layer_id(self, name: str) -> int:
        """Depth index of a parameter for layer-wise LR decay: stage 0's token embedding 0, the k-th block of all
        stages (counted from 0) k + 1, a later stage's token embedding and cls token with its first block, the
        final norm and the head depth + 1."""
        if not name.startswith("stages."):
            return self.cfg.depth + 1
        parts = name.split(".")
        stage = int(parts[1])
        first = sum(self.cfg.depths[:stage])
        if parts[2] == "blocks":
            return first + 1 + int(parts[3])
        return first + 1 if stage else 0

    def match_source_numerics(self, fmt: str) -> list[str]:
        """Makes the model compute as the library the weights come from (``load_pretrained`` calls it): the official
        code's MLPs use QuickGELU, HF's and ours GELU."""
        act = "quick_gelu" if fmt == "cvt_official" else None
        if act is None or self.cfg.mlp_act == act:
            return []
        old, self.cfg = self.cfg.mlp_act, self.cfg.replace(mlp_act=act)
        for stage in self.stages:
            for block in stage.blocks:
                block.mlp.act = mlp_activation(act)
        return [f"MLP activation {old} -> {act}, as the official CvT code computes"]

    def _to_clip(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            return x.unsqueeze(2)  # an image is a one-frame clip
        if x.ndim != 5:
            raise ValueError(f"expected (B, C, T, H, W) or (B, C, H, W) input, got shape {tuple(x.shape)}")
        return x

    def _run_block(self, block: CvTBlock, x: torch.Tensor, grid: THW, has_cls: bool) -> torch.Tensor:
        if self.cfg.act_checkpoint and self.training and torch.is_grad_enabled():
            return checkpoint(block, x, grid, has_cls, use_reentrant=False)
        return block(x, grid, has_cls)

    def forward_stages(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each stage's output map (B, C_s, T', H_s, W_s) and the last stage's cls token (B, C), before the final
        norm."""
        x = self._to_clip(x)
        maps, cls = [], None
        for stage in self.stages:
            x, grid = stage.patch_embed(x)
            has_cls = stage.cls_token is not None
            if has_cls:
                x = torch.cat((stage.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
            x = stage.pos_drop(x)
            for block in stage.blocks:
                x = self._run_block(block, x, grid, has_cls)
            if has_cls:
                cls, x = x[:, 0], x[:, 1:]
            x = _grid(x, grid).contiguous()
            maps.append(x)
        return maps, cls

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's input: the final-normed cls token, (B, C)."""
        return self.norm(self.forward_stages(x)[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.forward_features(x)
        if self.cfg.detach_head:
            features = features.detach()
        return self.head(self.head_drop(features))

    def stage_specs(self, input_size: THW | None = None) -> list[tuple[tuple[int, int], int, int, THW]]:
        """Per stage: (first and last block, width, heads, token grid) for reports."""
        out, first = [], 0
        for s, grid in enumerate(self.cfg.stage_grids(input_size)):
            depth = self.cfg.depths[s]
            out.append(((first, first + depth - 1), self.cfg.embed_dims[s], self.cfg.num_heads[s], grid))
            first += depth
        return out


# ------------------------------------------------------------------------------------------- named variants


@register_model
def cvt_13_in1k() -> CvTConfig:
    """CvT-13, 224 (HF ``microsoft/cvt-13``, the official ``cvt-13-224x224``): 20.0M parameters."""
    return CvTConfig(drop_path_rate=0.1)
