"""The CeiT family on video (Convolution-enhanced image Transformer, Yuan et al. 2021; the official code is
coeusguo/ceit ``ceit_model.py``, not packaged): a convolutional image-to-tokens stem, transformer blocks whose
feed-forward is the locally-enhanced LeFF, and a layer-wise class-token attention (LCA) over every block's cls token.

Clips are (B, C, T, H, W); an image (B, C, H, W) is a one-frame clip. With every time option at 1 (the default) the
model is the official CeiT applied to one frame; the time options make it a video model:

- Image-to-tokens (``i2t``): ``backbone.conv`` a Conv3d (kt, 7, 7), stride (st, 2, 2), padding (kt // 2, 3, 3), no
  bias (``stem_time_kernel``, ``stem_time_stride``); ``backbone.bn`` BatchNorm3d; ``backbone.maxpool`` MaxPool3d
  (kp, 3, 3), stride (sp, 2, 2), padding (kp // 2, 1, 1) (``pool_time_kernel``, ``pool_time_stride``); no
  activation anywhere (as the official ``Image2Tokens``). Then ``proj``: a Conv3d of kernel = stride
  (tubelet, patch, patch) with bias to the token width (the clip zero-padded at its end to a multiple of the
  tubelet). 224 pixels give 112, 56, then 14 tokens a side for patch 4.
- Tokens: a cls token and one learned position table over cls + the T' x H' x W' grid (resized to other grids at run
  time: bicubic for images, trilinear for clips).
- Blocks: pre-norm attention, then pre-norm LeFF: the patch tokens on their grid go through ``conv1`` (1 x 1 x 1 up to
  ``mlp_ratio`` x width) + ``bn1`` + GELU, ``conv2`` (a depthwise Conv3d (kf, k, k), zero padding (kf // 2, k // 2,
  k // 2); ``leff_time_kernel``, ``leff_kernel``) + ``bn2`` + GELU, ``conv3`` (1 x 1 x 1 back to the width) + ``bn3``
  (no activation). The cls token bypasses the LeFF *as the official code has it*: the branch returns the cls token it
  was given, i.e. the cls token after ``norm2``, so the block's cls output is ``x_cls + norm2(x)_cls`` (a residual of
  its own LayerNorm). ``feedforward="mlp"`` puts a plain MLP (``mlp.fc1``, ``mlp.fc2``, all tokens) in its place: the
  DeiT block.
- LCA: the cls token after each of the ``depth`` blocks, plus ``pos_layer_embed``, goes through one more pre-norm
  block (full self-attention over the ``depth`` tokens, an MLP ``feedforward.{fc1,fc2}``, no stochastic depth); its
  last token, after ``norm``, feeds ``head``. ``lca=False`` classifies from the last block's cls token after ``norm``
  (DeiT).

Image weights in a video model (``load_pretrained(..., inflate=...)``): 2-D kernels are inflated and the position
table is repeated over the T' token frames. With ``inflate="centre"`` a one-frame clip equals the image model (the
zero-padded taps of the stem conv and the LeFF's depthwise conv see nothing; max pooling pads with -inf), and so does a
static clip (every frame the same) whose token grid has one frame. With T' > 1 a static clip cannot, whatever the
inflation: every patch key appears T' times in the attention softmax but the cls key once. ``inflate="average"`` (I3D)
also gives the zero-padded first and last frames part of each kernel.

State-dict names are the official ones (``i2t.backbone.{conv,bn}``, ``i2t.proj``, ``cls_token``, ``pos_embed``,
``blocks.{i}.{norm1, attn.qkv, attn.proj, norm2, leff.{conv1,bn1,conv2,bn2,conv3,bn3}}``, ``lca.{norm1, attn.qkv,
attn.proj, norm2, feedforward.fc1, feedforward.fc2}``, ``pos_layer_embed``, ``norm``, ``head``); the official files'
2-D kernels get a time axis in ``formats/ceit.py``. LayerNorm eps 1e-6 and PyTorch's BatchNorm defaults, as there.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .layers import DropPath, Mlp
from .layers.attention import Attention
from .layers.conv import Conv3d
from .layers.embedding import pad_time_to
from .layers.position import resize_grid_embedding
from .registry import register_model

THW = tuple[int, int, int]
FEEDFORWARDS = ("leff", "mlp")


@dataclass
class CeiTConfig:
    """Architecture of one CeiT-family model, as plain data.

    Args:
        num_classes: classifier outputs (0: no classifier, ``forward`` returns the features).
        input_size: (T, H, W) the position table is sized for (T=1 for image models).
        in_chans: input channels.
        stem_channels: width of the image-to-tokens conv (64 in CeiT).
        stem_time_kernel: odd time kernel of the stem conv (zero-padded by k // 2).
        stem_time_stride: time stride of the stem conv.
        pool_time_kernel: odd time kernel of the stem's max pooling (padded by k // 2).
        pool_time_stride: its time stride.
        patch_size: pixels of the stem's feature map per token side (4 in CeiT: 16 image pixels).
        tubelet_size: stem frames per token of ``i2t.proj``.
        embed_dim, depth, num_heads, mlp_ratio: width, blocks, heads and feed-forward expansion.
        qkv_bias: biases on q, k and v.
        feedforward: "leff" (CeiT) or "mlp" (the plain MLP of DeiT, on every token).
        leff_kernel: odd spatial kernel of the LeFF's depthwise conv.
        leff_time_kernel: odd time kernel of the LeFF's depthwise conv (zero-padded by k // 2).
        leff_bn: BatchNorm after each LeFF conv (the official ``leff_with_bn``).
        lca: the layer-wise class-token attention over every block's cls token (False: DeiT's cls readout).
        norm_eps: LayerNorm epsilon.
        drop_rate, attn_drop_rate, drop_path_rate: dropout after projections and in the MLPs, on attention weights,
            stochastic depth (linear from 0 at the first block to this at the last; never in the LCA).
        head_dropout: dropout before the classifier.
        detach_head: the classifier's input is detached (train the classifier only).
        act_checkpoint: recompute each block in backward (its BatchNorm statistics are then updated twice per
            step).
        attention: "auto" (SDPA; explicit in float64 and FLOP counting), "sdpa" or "math".
    """

    num_classes: int = 1000
    input_size: tuple[int, int, int] = (1, 224, 224)
    in_chans: int = 3
    stem_channels: int = 64
    stem_time_kernel: int = 1
    stem_time_stride: int = 1
    pool_time_kernel: int = 1
    pool_time_stride: int = 1
    patch_size: int = 4
    tubelet_size: int = 1
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    feedforward: str = "leff"
    leff_kernel: int = 3
    leff_time_kernel: int = 1
    leff_bn: bool = True
    lca: bool = True
    norm_eps: float = 1e-6
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    head_dropout: float = 0.0
    detach_head: bool = False
    act_checkpoint: bool = False
    attention: str = "auto"

    def __post_init__(self) -> None:
        if len(self.input_size) != 3 or any(int(v) < 1 for v in self.input_size):
            raise ValueError(f"CeiTConfig.input_size={list(self.input_size)} must be three positive sizes (T, H, W)")
        if self.feedforward not in FEEDFORWARDS:
            raise ValueError(f"CeiTConfig.feedforward={self.feedforward!r} is not one of {FEEDFORWARDS}")
        if self.attention not in ("auto", "sdpa", "math"):
            raise ValueError(f"CeiTConfig.attention={self.attention!r} is not one of ('auto', 'sdpa', 'math')")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"CeiTConfig.embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}")
        for name in ("stem_time_kernel", "pool_time_kernel", "leff_kernel", "leff_time_kernel"):
            if getattr(self, name) < 1 or getattr(self, name) % 2 == 0:
                raise ValueError(f"CeiTConfig.{name}={getattr(self, name)} must be odd and positive (padded by k // 2)")
        for name in ("stem_time_stride", "pool_time_stride", "patch_size", "tubelet_size", "depth", "stem_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"CeiTConfig.{name}={getattr(self, name)} must be >= 1")
        if min(self.token_grid(self.input_size)) < 1:
            raise ValueError(f"CeiTConfig.input_size={list(self.input_size)} gives no tokens (patch_size "
                             f"{self.patch_size} on a quarter-size feature map)")  # fmt: skip

    def replace(self, **changes) -> CeiTConfig:
        """A copy with some fields changed (unknown names raise TypeError)."""
        return dataclasses.replace(self, **changes)

    @property
    def patch_dims(self) -> THW:
        """Token grid (T', H', W') of an ``input_size`` clip."""
        return self.token_grid(self.input_size)

    def token_grid(self, input_size: THW) -> THW:
        """Token grid (T', H', W') of a clip of ``input_size`` (T, H, W): conv (stride 2), max pool (stride 2),
        then the (tubelet, patch, patch) projection."""
        t, h, w = input_size
        kt, kp = self.stem_time_kernel, self.pool_time_kernel
        t = (t + 2 * (kt // 2) - kt) // self.stem_time_stride + 1
        t = (t + 2 * (kp // 2) - kp) // self.pool_time_stride + 1
        h, w = ((h - 1) // 2 - 1) // 2 + 1, ((w - 1) // 2 - 1) // 2 + 1  # conv 7/2 pad 3, then pool 3/2 pad 1
        return (-(-t // self.tubelet_size), h // self.patch_size, w // self.patch_size)


def _grid(tokens: torch.Tensor, thw: THW) -> torch.Tensor:
    """(B, THW, C) tokens -> a (B, C, T, H, W) view of them (channels-last 3-D memory)."""
    return tokens.reshape(tokens.shape[0], *thw, tokens.shape[2]).permute(0, 4, 1, 2, 3)


def _tokens(grid: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, THW, C) (a view when the grid is channels-last)."""
    return grid.flatten(2).transpose(1, 2)


class ConvPoolStem(nn.Module):
    """The I2T ``backbone``: ``conv`` (kt, 7, 7) stride (st, 2, 2) without bias, ``bn``, ``maxpool`` (kp, 3, 3)
    stride (sp, 2, 2); no activation (the official ``Image2Tokens``)."""

    def __init__(self, cfg: CeiTConfig) -> None:
        super().__init__()
        kt, kp, ch = cfg.stem_time_kernel, cfg.pool_time_kernel, cfg.stem_channels
        self.conv = Conv3d(cfg.in_chans, ch, (kt, 7, 7), (cfg.stem_time_stride, 2, 2), (kt // 2, 3, 3), bias=False)
        self.bn = nn.BatchNorm3d(ch)
        self.maxpool = nn.MaxPool3d((kp, 3, 3), (cfg.pool_time_stride, 2, 2), (kp // 2, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last_3d)  # the layout of the fast CPU conv / pool kernels
        return self.maxpool(self.bn(self.conv(x)))  # (B, C, T, H, W) -> (B, 64, T', H/4, W/4)


class ImageToTokens(nn.Module):
    """CeiT's I2T on clips: ``backbone`` (``ConvPoolStem``) then ``proj``, a Conv3d of kernel = stride (tubelet,
    patch, patch) with bias to the token width (the stem's output zero-padded at its end to a multiple of the
    tubelet).

    Args:
        cfg: the architecture.
    """

    def __init__(self, cfg: CeiTConfig) -> None:
        super().__init__()
        self.backbone = ConvPoolStem(cfg)
        kernel = (cfg.tubelet_size, cfg.patch_size, cfg.patch_size)
        self.proj = Conv3d(cfg.stem_channels, cfg.embed_dim, kernel, kernel)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, THW]:
        x = self.proj(pad_time_to(self.backbone(x), self.proj.stride[0]))
        # (B, C, T', H', W') -> (B, T'H'W', C)
        return x.flatten(2).transpose(1, 2), tuple(x.shape[2:])


class LeFF(nn.Module):
    """The locally-enhanced feed-forward on (B, 1 + THW, C) tokens: the patch tokens on their grid through
    1 x 1 x 1 conv + BN + GELU, depthwise (kt, k, k) conv + BN + GELU, 1 x 1 x 1 conv + BN; the cls token is returned
    as given (official behaviour).

    Args:
        dim: token width.
        hidden: expanded width.
        kernel: spatial kernel of the depthwise conv (odd).
        time_kernel: its time kernel (odd; zero padding).
        bn: BatchNorm after each conv (without it: conv1, GELU, conv2, GELU, conv3, as the official ``with_bn``).
    """

    def __init__(self, dim: int, hidden: int, kernel: int = 3, time_kernel: int = 1, bn: bool = True) -> None:
        super().__init__()
        self.conv1 = Conv3d(dim, hidden, 1)
        self.conv2 = Conv3d(hidden, hidden, (time_kernel, kernel, kernel), 1,
                               (time_kernel // 2, kernel // 2, kernel // 2), groups=hidden)  # fmt: skip
        self.conv3 = Conv3d(hidden, dim, 1)
        self.act = nn.GELU()
        self.bn1 = nn.BatchNorm3d(hidden) if bn else nn.Identity()
        self.bn2 = nn.BatchNorm3d(hidden) if bn else nn.Identity()
        self.bn3 = nn.BatchNorm3d(dim) if bn else nn.Identity()

    def forward(self, x: torch.Tensor, thw: THW) -> torch.Tensor:
        cls, tokens = x[:, :1], x[:, 1:]
        # the 1 x 1 x 1 convs act on channels-last tokens as the linear maps they are; the grid in between is a
        # channels-last view (B, C', T, H, W) (fast depthwise conv, no copies)
        grid = _grid(F.linear(tokens, self.conv1.weight.flatten(1), self.conv1.bias), thw)
        grid = self.act(self.bn1(grid))
        grid = self.act(self.bn2(self.conv2(grid)))
        out = F.linear(_tokens(grid), self.conv3.weight.flatten(1), self.conv3.bias)
        return torch.cat((cls, _tokens(self.bn3(_grid(out, thw)))), dim=1)


class CeiTBlock(nn.Module):
    """Pre-norm block: attention, then the LeFF (or, with ``feedforward="mlp"``, DeiT's MLP), both residual.

    Args:
        cfg: the architecture.
        drop_path: stochastic depth rate of this block.
    """

    def __init__(self, cfg: CeiTConfig, drop_path: float) -> None:
        super().__init__()
        dim, hidden = cfg.embed_dim, int(cfg.embed_dim * cfg.mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = Attention(dim, cfg.num_heads, "qkv" if cfg.qkv_bias else "none", cfg.attn_drop_rate,
                              cfg.drop_rate, impl=cfg.attention)  # fmt: skip
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.leff = self.mlp = None
        if cfg.feedforward == "leff":
            self.leff = LeFF(dim, hidden, cfg.leff_kernel, cfg.leff_time_kernel, cfg.leff_bn)
        else:
            self.mlp = Mlp(dim, hidden, dim, cfg.drop_rate)

    def forward(self, x: torch.Tensor, thw: THW) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        ff = self.leff(self.norm2(x), thw) if self.leff is not None else self.mlp(self.norm2(x))
        return x + self.drop_path(ff)


class LayerClassAttention(nn.Module):
    """CeiT's LCA: one pre-norm block (self-attention, MLP ``feedforward``) over the cls tokens of every layer
    (B, depth, C); returns its last token (B, C).

    Args:
        cfg: the architecture.
    """

    def __init__(self, cfg: CeiTConfig) -> None:
        super().__init__()
        dim = cfg.embed_dim
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = Attention(dim, cfg.num_heads, "qkv" if cfg.qkv_bias else "none", cfg.attn_drop_rate,
                              cfg.drop_rate, impl=cfg.attention)  # fmt: skip
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.feedforward = Mlp(dim, int(dim * cfg.mlp_ratio), dim, cfg.drop_rate)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = tokens + self.attn(self.norm1(tokens))
        last = x[:, -1]  # the MLP acts per token: only the last one is read
        return last + self.feedforward(self.norm2(last))


class CeiT(nn.Module):
    """A CeiT-family model for clips (B, C, T, H, W) and images (B, C, H, W); returns class logits.

    Args:
        cfg: the architecture.
    """

    def __init__(self, cfg: CeiTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_dims = cfg.patch_dims
        dim = cfg.embed_dim
        self.i2t = ImageToTokens(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + math.prod(self.patch_dims), dim))
        self.pos_drop = nn.Dropout(cfg.drop_rate) if cfg.drop_rate > 0 else nn.Identity()
        rates = torch.linspace(0, cfg.drop_path_rate, cfg.depth, device="cpu").tolist()
        self.blocks = nn.ModuleList(CeiTBlock(cfg, rate) for rate in rates)
        self.lca = LayerClassAttention(cfg) if cfg.lca else None
        self.pos_layer_embed = nn.Parameter(torch.zeros(1, cfg.depth, dim)) if cfg.lca else None
        self.norm = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.num_features = dim
        self.head_drop = nn.Dropout(cfg.head_dropout) if cfg.head_dropout > 0 else nn.Identity()
        self.head = nn.Linear(dim, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        """The official initialisation: trunc-normal (std 0.02) position table, cls token and Linear weights, zero
        Linear biases; convolutions and BatchNorm keep PyTorch's defaults, ``pos_layer_embed`` starts at zero."""
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def position_tables(self) -> dict[str, tuple[int, THW]]:
        """The learned position table: ``{name: (prefix rows, grid)}`` (for resizing checkpoints)."""
        return {"pos_embed": (1, self.patch_dims)}

    def no_weight_decay(self) -> set[str]:
        """The official ``no_weight_decay``: the position table and the cls token."""
        return {"pos_embed", "cls_token"}

    def layer_id(self, name: str) -> int:
        """Depth index of a parameter for layer-wise LR decay: embeddings 0, block i i + 1, the rest (LCA, its
        layer table, norm, head) depth + 1."""
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        if name.startswith(("i2t.", "cls_token", "pos_embed")):
            return 0
        return self.cfg.depth + 1

    def _to_clip(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            return x.unsqueeze(2)  # an image is a one-frame clip
        if x.ndim != 5:
            raise ValueError(f"expected (B, C, T, H, W) or (B, C, H, W) input, got shape {tuple(x.shape)}")
        return x

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, THW]:
        """Tokens with the cls token and positions: (B, 1 + T'H'W', C) and the grid."""
        x, thw = self.i2t(self._to_clip(x))
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        grid = resize_grid_embedding(self.pos_embed[:, 1:], self.patch_dims, thw)
        return self.pos_drop(x + torch.cat((self.pos_embed[:, :1], grid), dim=1)), thw

    def _run_block(self, block: CeiTBlock, x: torch.Tensor, thw: THW) -> torch.Tensor:
        if self.cfg.act_checkpoint and self.training and torch.is_grad_enabled():
            return checkpoint(block, x, thw, use_reentrant=False)
        return block(x, thw)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's input (B, C): the normed LCA output (or, without LCA, the normed last cls token)."""
        x, thw = self._embed(x)
        cls_tokens = []
        for block in self.blocks:
            x = self._run_block(block, x, thw)
            cls_tokens.append(x[:, 0])
        if self.lca is None:
            return self.norm(x[:, 0])
        # (B, depth, C): one token per layer, with its layer position
        return self.norm(self.lca(torch.stack(cls_tokens, dim=1) + self.pos_layer_embed))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head_drop(self.forward_features(x))
        if self.cfg.detach_head:
            features = features.detach()
        return self.head(features)

    def token_grids(self, input_size: THW | None = None) -> list[THW]:
        """Token grid entering each block and after the last (the same grid throughout)."""
        return [self.cfg.token_grid(input_size or self.cfg.input_size)] * (self.cfg.depth + 1)


# ------------------------------------------------------------------------------------------- named variants


@register_model
def ceit_t_in1k() -> CeiTConfig:
    """CeiT-T at 224 (official ``ceit_tiny_patch16_224``): the I2T stem to 64 channels, patch 4, 12 blocks of width
    192 with 3 heads, LeFF of hidden width 768 with BatchNorm, LCA. 6,356,904 parameters; ImageNet top-1 76.4%
    (paper). No published weights (the official README's links are TODO)."""
    return CeiTConfig()
