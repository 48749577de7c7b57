"""The Pyramid Vision Transformer family on video (PVT v1, whai362/PVT ``pvt_tiny``; PVTv2, timm ``pvt_v2_*``): four
stages of spatial-reduction attention over T x H x W token grids, each stage entered through a convolutional patch
embedding.

Clips are (B, C, T, H, W); an image (B, C, H, W) is a one-frame clip. With every time option at 1 (the default) the
model is the image model applied to each frame; the time options make it a video model.

PVTv2 (``version=2``):

- Patch embeddings: a Conv3d (kt, 7, 7), stride (st, 4, 4), padding (kt // 2, 3, 3) before stage 0
  (``patch_time_kernel``, ``patch_time_stride``), a Conv3d (kt', 3, 3), stride (1, 2, 2), padding (kt' // 2, 1, 1)
  before stages 1.. (``downsample_time_kernel``), each followed by a LayerNorm.
- Blocks: pre-norm spatial-reduction attention and a conv-FFN (fc1, [ReLU,] depthwise Conv3d (kf, 3, 3) with zero
  padding (kf // 2, 1, 1) (``dwconv_time_kernel``), GELU, fc2). Keys and values come from the grid reduced by a
  Conv3d of kernel = stride (rt, r, r) (``sr_time_ratio``, ``sr_ratios``) and a LayerNorm; a grid whose T' is not a
  multiple of rt is zero-padded at its end in time first, while H', W' that are not multiples of r lose their
  remainder (timm's Conv2d). The linear variant (``linear``, timm's ``_li``) reduces every stage's keys/values with
  AdaptiveAvgPool3d((t, 7, 7)) (``linear_pool_time``: t, 0 keeps T'), a 1 x 1 x 1 conv, LayerNorm and GELU, and adds a
  ReLU after fc1.
- Each stage ends with its own LayerNorm (timm's ``stages.{s}.norm``); the classifier reads the mean token of the
  last stage.

PVT v1 (``version=1``, the official ``classification/pvt.py``; HF ``PvtForImageClassification``):

- Patch embeddings do not overlap: a Conv3d (kt, 4, 4), stride (st, 4, 4), padding (kt // 2, 0, 0) before stage 0, a
  Conv3d (kt', 2, 2), stride (1, 2, 2), padding (kt' // 2, 0, 0) before stages 1.., each followed by a LayerNorm;
  H', W' that are not multiples of the patch lose their remainder.
- Each stage adds its learned position table (``stages.{s}.pos_embed``, one row per token of the stage's grid
  (T', H', W') at ``input_size``); the last stage first prepends the cls token (``cls_token``), whose position is the
  table's first row. A clip of another size resizes each table (the cls row kept) linearly over (T', H', W') at run
  time: trilinear, align_corners False, which on one-frame grids is the official code's bilinear resizing of image
  tables. Image weights in a video model get each table repeated over the model's T' (the checkpoint's one-frame
  table interpolated to T' frames, ``adapt.resize_position_table``), so every frame starts from the image positions.
- Blocks: the same spatial-reduction attention (the cls stage has r = 1: full attention, cls included) and a plain
  MLP (fc1, GELU, fc2). One final LayerNorm (``norm``) over all tokens; the classifier reads the cls token.
- On clips of T' > 1 token frames the cls token's key and value enter the last stage's attention once per frame
  (``cls_key_per_frame``; the same as adding log T' to the cls logits): without that, a static clip would weigh its
  repeated patch keys T' times against one cls key and drift from the image model.

Image weights in a video model (``load_pretrained(..., inflate=...)``): every kernel with a time axis > 1 is
inflated. With ``inflate="centre"`` a static clip (every frame the same) gives exactly the image model's logits,
whatever the time options: every conv sees the image kernel on one tap and zeros elsewhere, so features stay static
(PVT v1's repeated position tables too), and attention over keys repeated in time equals attention over one frame's
keys (the softmax weights of a repeated key split evenly over its copies). ``inflate="average"`` (I3D: the kernel /
kt on every tap) also keeps static clips exact through unpadded convs: the SRA conv when T' is a multiple of rt, and
any conv of time kernel 1. It does not through convs zero-padded in time (patch embeddings of kt > 1, the FFN's
dwconv of kf > 1, the SRA conv of a T' not a multiple of rt): there the first and last frames see part of the kernel.
A one-frame clip equals the image model with centre inflation; with average inflation only where every time kernel
is 1.

State-dict names are timm's PVTv2 names (``patch_embed.{proj,norm}``, ``stages.{s}.downsample.{proj,norm}`` for
s >= 1, ``stages.{s}.blocks.{j}.{norm1, attn.{q, kv, sr, norm, proj}, norm2, mlp.{fc1, dwconv, fc2}}``,
``stages.{s}.norm``, ``head``), so timm's published ``pvt_v2_*.in1k`` files load directly (2-D kernels get a time
axis); PVT v1 adds ``stages.{s}.pos_embed``, ``cls_token`` and ``norm`` and has no ``stages.{s}.norm`` nor ``dwconv``.
``formats/pvt.py`` maps the original releases' layouts (``patch_embed{1..4}``, ``block{1..4}``, ``norm{1..4}`` /
``pos_embed{1..4}``) and HF's ``PvtForImageClassification``.

Norm epsilons as the official code has them: 1e-6 in the blocks and the stage / final norms (``norm_eps``), PyTorch's
1e-5 after the convolutions (patch embeddings and spatial reduction, ``conv_norm_eps``; HF's PVT v1 port computes
these at 1e-6).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .layers import DropPath
from .layers.attention import attend
from .layers.conv import Conv3d
from .layers.position import resize_grid_embedding
from .registry import register_model

THW = tuple[int, int, int]


@dataclass
class PVTConfig:
    """Architecture of one PVT-family model, as plain data.

    Args:
        version: 2 (PVTv2: overlapping patch embeddings, conv-FFN, stage norms, mean-token head) or 1 (PVT v1:
            non-overlapping patch embeddings, learned position tables, a cls token in the last stage, plain MLP,
            one final norm, cls-token head).
        num_classes: classifier outputs (0: no classifier, ``forward`` returns the pooled features).
        input_size: (T, H, W) of the clips the model is configured for (T=1 for image models; reports and FLOP
            counts use it, the model takes other sizes).
        in_chans: input channels.
        embed_dims: width of each stage.
        depths: blocks per stage.
        num_heads: attention heads per stage.
        sr_ratios: spatial reduction r of each stage's keys/values (kernel = stride r x r; 1: none).
        mlp_ratios: FFN expansion per stage.
        qkv_bias: biases on q, k and v.
        linear: the linear variant (timm ``_li``, PVTv2 only): pooled keys/values, a ReLU in the FFN.
        linear_pool_time: time length of the linear variant's pooled keys/values (0: the grid's T').
        patch_time_kernel: time kernel of the first patch embedding (odd; padded by kernel // 2).
        patch_time_stride: its time stride.
        downsample_time_kernel: time kernel of the patch embeddings of stages 1.. (odd; stride 1 in time).
        dwconv_time_kernel: time kernel of the FFN's depthwise conv (PVTv2 only; odd; zero-padded by kernel // 2).
        sr_time_ratio: time kernel = stride of the spatial-reduction conv (stages with r > 1).
        cls_key_per_frame: PVT v1 on clips: the cls token's key and value count once per token frame T' in the last
            stage's attention (as if the cls token were repeated in every frame), so a static clip attends as the
            image does; False: once among the T'H'W' patch keys.
        norm_eps: LayerNorm epsilon in the blocks and the stage / final norms (timm, official: 1e-6).
        conv_norm_eps: LayerNorm epsilon after the patch embeddings and the spatial reduction (timm, official:
            1e-5; HF's PVT v1: 1e-6).
        drop_rate: dropout after the attention projection and in the FFN (PVT v1: also after adding positions).
        attn_drop_rate: dropout on the attention weights.
        drop_path_rate: stochastic depth, linear from 0 at the first block to this at the last.
        head_dropout: dropout before the classifier.
        detach_head: the classifier's input is detached (train the classifier only).
        act_checkpoint: recompute each block in backward.
        attention: "auto" (SDPA; explicit in float64 and FLOP counting), "sdpa" or "math" (the explicit reference).
    """

    version: int = 2
    num_classes: int = 1000
    input_size: tuple[int, int, int] = (1, 224, 224)
    in_chans: int = 3
    embed_dims: tuple[int, ...] = (64, 128, 320, 512)
    depths: tuple[int, ...] = (3, 4, 6, 3)
    num_heads: tuple[int, ...] = (1, 2, 5, 8)
    sr_ratios: tuple[int, ...] = (8, 4, 2, 1)
    mlp_ratios: tuple[float, ...] = (8.0, 8.0, 4.0, 4.0)
    qkv_bias: bool = True
    linear: bool = False
    linear_pool_time: int = 0
    patch_time_kernel: int = 1
    patch_time_stride: int = 1
    downsample_time_kernel: int = 1
    dwconv_time_kernel: int = 1
    sr_time_ratio: int = 1
    cls_key_per_frame: bool = True
    norm_eps: float = 1e-6
    conv_norm_eps: float = 1e-5
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    head_dropout: float = 0.0
    detach_head: bool = False
    act_checkpoint: bool = False
    attention: str = "auto"

    def __post_init__(self) -> None:
        if len(self.input_size) != 3 or any(int(v) < 1 for v in self.input_size):
            raise ValueError(f"PVTConfig.input_size={list(self.input_size)} must be three positive sizes (T, H, W)")
        per_stage = ("embed_dims", "num_heads", "sr_ratios", "mlp_ratios")
        if not self.depths or any(len(getattr(self, n)) != len(self.depths) for n in per_stage):
            lengths = ", ".join(f"{n}={list(getattr(self, n))}" for n in ("depths",) + per_stage)
            raise ValueError(f"PVTConfig: {lengths} need one entry per stage each")
        for stage, (dim, heads) in enumerate(zip(self.embed_dims, self.num_heads)):
            if dim % heads:
                raise ValueError(f"PVTConfig: stage {stage} width {dim} is not divisible by num_heads={heads}")
        for name in ("patch_time_kernel", "downsample_time_kernel", "dwconv_time_kernel"):
            if getattr(self, name) < 1 or getattr(self, name) % 2 == 0:
                raise ValueError(f"PVTConfig.{name}={getattr(self, name)} must be odd and positive (padded by k // 2)")
        if min(self.patch_time_stride, self.sr_time_ratio, *self.sr_ratios) < 1 or self.linear_pool_time < 0:
            raise ValueError("PVTConfig: patch_time_stride, sr_time_ratio and sr_ratios must be >= 1, "
                             "linear_pool_time >= 0")  # fmt: skip
        if self.attention not in ("auto", "sdpa", "math"):
            raise ValueError(f"PVTConfig.attention={self.attention!r} is not one of ('auto', 'sdpa', 'math')")
        self._check_version()

    def _check_version(self) -> None:
        if self.version not in (1, 2):
            raise ValueError(f"PVTConfig.version={self.version} is not 1 (PVT v1) or 2 (PVTv2)")
        if self.version == 1 and (self.linear or self.dwconv_time_kernel != 1):
            raise ValueError("PVTConfig: linear and dwconv_time_kernel are PVTv2 options (PVT v1 has neither); "
                             "leave them at False and 1 with version=1")  # fmt: skip
        if self.version == 1 and self.sr_ratios[-1] != 1:
            raise ValueError(f"PVTConfig.sr_ratios={list(self.sr_ratios)}: PVT v1's last stage (with the cls token) "
                             "needs r = 1")  # fmt: skip

    def replace(self, **changes) -> PVTConfig:
        """A copy with some fields changed (unknown names raise TypeError)."""
        return dataclasses.replace(self, **changes)

    @property
    def depth(self) -> int:
        """Blocks in all stages."""
        return sum(self.depths)

    def stage_grids(self, input_size: THW | None = None) -> list[THW]:
        """Token grid (T', H', W') of each stage for clips of ``input_size`` (default the configured one)."""
        t, h, w = input_size or self.input_size
        kt, st = self.patch_time_kernel, self.patch_time_stride
        t = (t + 2 * (kt // 2) - kt) // st + 1

        def down(n: int, stride: int) -> int:  # v2: kernels 7 / 3 padded by 3 / 1; v1: kernel = stride, no padding
            return (n - 1) // stride + 1 if self.version == 2 else n // stride

        grids = [(t, down(h, 4), down(w, 4))]
        for _ in self.depths[1:]:
            grids.append((t, down(grids[-1][1], 2), down(grids[-1][2], 2)))
        return grids


def _flat(x: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, THW, C)."""
    return x.flatten(2).transpose(1, 2)


def _grid(x: torch.Tensor, grid: THW) -> torch.Tensor:
    """(B, THW, C) -> (B, C, T, H, W)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *grid)


class SpatialReductionAttention(nn.Module):
    """Multi-head attention whose keys and values come from a reduced grid (PVT's SRA), on (B, THW, C) tokens.

    Args:
        dim: token width.
        heads: attention heads.
        sr_ratio: spatial reduction r (kernel = stride (rt, r, r)); 1 and not ``linear``: full attention.
        cfg: the architecture (linear variant, time ratio, dropouts, attention kernel).
    """

    def __init__(self, dim: int, heads: int, sr_ratio: int, cfg: PVTConfig) -> None:
        super().__init__()
        self.heads, self.impl, self.attn_drop = heads, cfg.attention, cfg.attn_drop_rate
        self.q = nn.Linear(dim, dim, bias=cfg.qkv_bias)
        self.kv = nn.Linear(dim, dim * 2, bias=cfg.qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(cfg.drop_rate) if cfg.drop_rate > 0 else nn.Identity()
        self.pool = self.sr = self.norm = self.act = None
        self.sr_time, self.prefix_per_frame = 1, cfg.cls_key_per_frame
        if cfg.linear:
            self.pool = nn.AdaptiveAvgPool3d((cfg.linear_pool_time or None, 7, 7))
            self.sr = Conv3d(dim, dim, 1)
            self.norm = nn.LayerNorm(dim, eps=cfg.conv_norm_eps)
            self.act = nn.GELU()
        elif sr_ratio > 1:
            self.sr_time = cfg.sr_time_ratio
            kernel = (cfg.sr_time_ratio, sr_ratio, sr_ratio)
            self.sr = Conv3d(dim, dim, kernel, kernel)
            self.norm = nn.LayerNorm(dim, eps=cfg.conv_norm_eps)

    def _reduce(self, x: torch.Tensor, grid: THW) -> torch.Tensor:
        """Tokens (B, THW, C) -> the key/value source (B, N', C)."""
        if self.sr is None:
            return x
        x = _grid(x, grid)
        if self.pool is not None:
            return self.act(self.norm(_flat(self.sr(self.pool(x)))))
        pad = -grid[0] % self.sr_time
        if pad:
            x = F.pad(x, (0, 0, 0, 0, 0, pad))  # zeros at the end in time
        return self.norm(_flat(self.sr(x)))

    def forward(self, x: torch.Tensor, grid: THW) -> torch.Tensor:
        B, N, C = x.shape
        d = C // self.heads
        q = self.q(x).reshape(B, N, self.heads, d).transpose(1, 2)
        kv = self.kv(self._reduce(x, grid))  # (B, N', 2C)
        prefix = N - math.prod(grid)  # PVT v1's cls token (its stage has no reduction)
        if prefix and self.prefix_per_frame and grid[0] > 1:  # one cls key and value per token frame
            kv = torch.cat((kv[:, :prefix].repeat(1, grid[0], 1), kv[:, prefix:]), dim=1)
        # (B, N', 2C) -> (2, B, heads, N', d)
        kv = kv.reshape(B, -1, 2, self.heads, d).permute(2, 0, 3, 1, 4)
        out = attend(q, kv[0], kv[1], self.impl, self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(out.transpose(1, 2).reshape(B, N, C)))


class ConvFFN(nn.Module):
    """PVTv2's FFN on (B, THW, C): fc1, [ReLU (linear variant),] depthwise Conv3d (kf, 3, 3), GELU, fc2."""

    def __init__(self, dim: int, hidden: int, cfg: PVTConfig) -> None:
        super().__init__()
        kt = cfg.dwconv_time_kernel
        self.fc1 = nn.Linear(dim, hidden)
        self.relu = nn.ReLU() if cfg.linear else nn.Identity()
        self.dwconv = Conv3d(hidden, hidden, (kt, 3, 3), 1, (kt // 2, 1, 1), groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(cfg.drop_rate) if cfg.drop_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, grid: THW) -> torch.Tensor:
        x = self.relu(self.fc1(x))
        if self.dwconv.kernel_size[0] == 1:
            x = self._per_frame(x, grid)
        else:
            x = _flat(self.dwconv(_grid(x, grid)))
        return self.drop(self.fc2(self.drop(self.act(x))))

    def _per_frame(self, x: torch.Tensor, grid: THW) -> torch.Tensor:
        """The dwconv of time kernel 1 as a Conv2d over channels-last frames: the same function, about 3x faster than
        Conv3d (forward and backward) on CPUs, and no transposing copies."""
        B, N, C = x.shape
        _, h, w = grid
        conv = self.dwconv
        # (B, THW, C) -> (BT, C, H, W), channels-last strides
        frames = x.reshape(-1, h, w, C).permute(0, 3, 1, 2)
        out = F.conv2d(frames, conv.weight[:, :, 0], conv.bias, conv.stride[1:], conv.padding[1:], 1, conv.groups)
        return out.permute(0, 2, 3, 1).reshape(B, N, C)


class Mlp(nn.Module):
    """PVT v1's FFN on (B, N, C) tokens: fc1, GELU, fc2 (the grid is not used)."""

    def __init__(self, dim: int, hidden: int, cfg: PVTConfig) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(cfg.drop_rate) if cfg.drop_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, grid: THW) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class PVTBlock(nn.Module):
    """Pre-norm block: spatial-reduction attention and FFN residuals (PVTv2's conv-FFN, PVT v1's MLP) on (B, N, C)
    tokens of a grid (PVT v1's last stage: the cls token, then the grid's tokens).

    Args:
        dim: token width.
        stage: the stage (heads, reduction and FFN ratio come from it).
        drop_path: stochastic depth rate of this block.
        cfg: the architecture.
    """

    def __init__(self, dim: int, stage: int, drop_path: float, cfg: PVTConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = SpatialReductionAttention(dim, cfg.num_heads[stage], cfg.sr_ratios[stage], cfg)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = (ConvFFN if cfg.version == 2 else Mlp)(dim, int(dim * cfg.mlp_ratios[stage]), cfg)

    def forward(self, x: torch.Tensor, grid: THW) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), grid))
        return x + self.drop_path(self.mlp(self.norm2(x), grid))


class PatchEmbed(nn.Module):
    """(B, C, T, H, W) -> (B, C', T', H', W') tokens: a Conv3d (PVTv2: overlapping, kernel k > stride, padding k // 2;
    PVT v1: kernel = stride in space, padding k // 2 in time only), then LayerNorm over channels; ``forward`` returns
    channels-last tokens (B, T'H'W', C') and their grid."""

    def __init__(self, in_chans: int, dim: int, kernel: THW, stride: THW, overlap: bool, eps: float) -> None:
        super().__init__()
        padding = tuple(k // 2 for k in kernel) if overlap else (kernel[0] // 2, 0, 0)
        self.proj = Conv3d(in_chans, dim, kernel, stride, padding)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, THW]:
        x = self.proj(x)
        return self.norm(_flat(x)), tuple(x.shape[2:])


class PVTStage(nn.Module):
    """One stage: the patch embedding of stages 1.. (``downsample``; stage 0's is the model's ``patch_embed``), PVT
    v1's position table (``pos_embed``: (1, prefix + T'H'W', C), prefix 1 for the cls stage), the blocks and PVTv2's
    stage norm."""

    def __init__(self, stage: int, rates: list[float], cfg: PVTConfig) -> None:
        super().__init__()
        dim, v2 = cfg.embed_dims[stage], cfg.version == 2
        self.downsample = self.pos_embed = None
        if stage > 0:
            kt, k = cfg.downsample_time_kernel, 3 if v2 else 2
            self.downsample = PatchEmbed(cfg.embed_dims[stage - 1], dim, (kt, k, k), (1, 2, 2), v2, cfg.conv_norm_eps)
        if not v2:
            prefix = int(stage == len(cfg.depths) - 1)
            self.pos_embed = nn.Parameter(torch.zeros(1, prefix + math.prod(cfg.stage_grids()[stage]), dim))
        self.blocks = nn.ModuleList(PVTBlock(dim, stage, rate, cfg) for rate in rates)
        self.norm = nn.LayerNorm(dim, eps=cfg.norm_eps) if v2 else None


class PyramidVisionTransformer(nn.Module):
    """A PVT-family model (PVTv2 or PVT v1, ``cfg.version``) for clips (B, C, T, H, W) and images (B, C, H, W);
    returns class logits.

    Args:
        cfg: the architecture.
    """

    def __init__(self, cfg: PVTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        v2 = cfg.version == 2
        kt, st, k = cfg.patch_time_kernel, cfg.patch_time_stride, 7 if v2 else 4
        self.patch_embed = PatchEmbed(cfg.in_chans, cfg.embed_dims[0], (kt, k, k), (st, 4, 4), v2, cfg.conv_norm_eps)
        rates = torch.linspace(0, cfg.drop_path_rate, cfg.depth, device="cpu").tolist()
        firsts = [sum(cfg.depths[:s]) for s in range(len(cfg.depths))]
        self.stages = nn.ModuleList(
            PVTStage(s, rates[firsts[s] : firsts[s] + d], cfg) for s, d in enumerate(cfg.depths)
        )
        self.num_features = cfg.embed_dims[-1]
        self.num_layers = cfg.depth
        # PVT v1: the cls token (joins the last stage), dropout after adding positions, the final norm
        self.cls_token = None if v2 else nn.Parameter(torch.zeros(1, 1, self.num_features))
        self.pos_drop = nn.Dropout(cfg.drop_rate) if cfg.drop_rate > 0 and not v2 else nn.Identity()
        self.norm = None if v2 else nn.LayerNorm(self.num_features, eps=cfg.norm_eps)
        self.head_drop = nn.Dropout(cfg.head_dropout) if cfg.head_dropout > 0 else nn.Identity()
        self.head = nn.Linear(self.num_features, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        """The reference initialisations: trunc-normal (std 0.02) Linear weights, zero biases; PVTv2 (timm): conv
        weights normal with std sqrt(2 / fan_out) (fan_out = kernel volume x outputs / groups), zero conv biases;
        PVT v1 (official): position tables and the cls token trunc-normal (std 0.02), PyTorch's default conv init."""
        for table in [stage.pos_embed for stage in self.stages if stage.pos_embed is not None] + [self.cls_token]:
            if table is not None:
                nn.init.trunc_normal_(table, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Conv3d) and self.cfg.version == 2:
                fan_out = math.prod(module.kernel_size) * module.out_channels // module.groups
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def position_tables(self) -> dict[str, tuple[int, THW]]:
        """The learned position tables, ``{name: (prefix rows, grid)}``: PVT v1's per stage (the last with the cls
        row); none in PVTv2 (the convolutions carry position)."""
        if self.cfg.version == 2:
            return {}
        last = len(self.stages) - 1
        return {f"stages.{s}.pos_embed": (int(s == last), grid) for s, grid in enumerate(self.cfg.stage_grids())}

    def no_weight_decay(self) -> set[str]:
        """Parameters without weight decay, as the references: PVT v1 the cls token (the official rule; its position
        tables decay), PVTv2 none (timm's rule)."""
        return set() if self.cfg.version == 2 else {"cls_token"}

    def layer_id(self, name: str) -> int:
        """Depth index of a parameter for layer-wise LR decay: the patch embedding (and PVT v1's first position
        table) 0, the k-th block of all stages (counted from 0) k + 1, a stage's patch embedding and position table
        (the cls token with the last stage's) with its first block and its norm with its last block, the final norm
        and the head depth + 1."""
        if name.startswith("patch_embed.") or name == "stages.0.pos_embed":
            return 0
        if name == "cls_token":
            return sum(self.cfg.depths[:-1]) + 1
        if name.startswith("stages."):
            parts = name.split(".")
            stage = int(parts[1])
            first = sum(self.cfg.depths[:stage])
            if parts[2] == "blocks":
                return first + 1 + int(parts[3])
            return first + (self.cfg.depths[stage] if parts[2] == "norm" else 1)
        return self.cfg.depth + 1

    def _to_clip(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            return x.unsqueeze(2)  # an image is a one-frame clip
        if x.ndim != 5:
            raise ValueError(f"expected (B, C, T, H, W) or (B, C, H, W) input, got shape {tuple(x.shape)}")
        return x

    def _run_block(self, block: PVTBlock, x: torch.Tensor, grid: THW) -> torch.Tensor:
        if self.cfg.act_checkpoint and self.training and torch.is_grad_enabled():
            return checkpoint(block, x, grid, use_reentrant=False)
        return block(x, grid)

    def _add_positions(self, x: torch.Tensor, stage: int, grid: THW) -> tuple[torch.Tensor, int]:
        """PVT v1: tokens (B, T'H'W', C) -> (B, prefix + T'H'W', C) with the cls token (last stage) and the stage's
        position table, resized linearly from the configured grid to ``grid``; also the prefix length."""
        table, prefix = self.stages[stage].pos_embed, int(stage == len(self.stages) - 1)
        positions = resize_grid_embedding(table[:, prefix:], self.cfg.stage_grids()[stage], grid, mode="linear")
        if prefix:
            x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
            positions = torch.cat((table[:, :1], positions), dim=1)
        return self.pos_drop(x + positions), prefix

    def _forward_stages(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """Each stage's output map (B, C_s, T', H_s, W_s) and PVT v1's cls token after the final norm (B, C)."""
        x = self._to_clip(x)
        maps, cls, last = [], None, len(self.stages) - 1
        for s, stage in enumerate(self.stages):
            x, grid = (self.patch_embed if s == 0 else stage.downsample)(x)
            prefix = 0
            if stage.pos_embed is not None:
                x, prefix = self._add_positions(x, s, grid)
            for block in stage.blocks:
                x = self._run_block(block, x, grid)
            norm = stage.norm if stage.norm is not None else (self.norm if s == last else None)
            if norm is not None:
                x = norm(x)
            if prefix:
                cls, x = x[:, 0], x[:, prefix:]
            x = _grid(x, grid).contiguous()
            maps.append(x)
        return maps, cls

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each stage's output map (B, C_s, T', H_s, W_s) (timm's ``forward_intermediates``): PVTv2's after its stage
        norm, PVT v1's as the next stage reads it (the last after the final norm, without the cls token)."""
        return self._forward_stages(x)[0]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's input (B, C): the mean token of the last stage (PVTv2), the cls token (PVT v1)."""
        maps, cls = self._forward_stages(x)
        return maps[-1].mean(dim=(2, 3, 4)) if cls is None else cls

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
def pvt_t_in1k() -> PVTConfig:
    """PVT-Tiny, 224 (PVT v1: whai362/PVT ``pvt_tiny``, HF ``PvtForImageClassification`` with ``PvtConfig()``)."""
    return PVTConfig(version=1, embed_dims=(64, 128, 320, 512), depths=(2, 2, 2, 2), num_heads=(1, 2, 5, 8),
                     sr_ratios=(8, 4, 2, 1), mlp_ratios=(8.0, 8.0, 4.0, 4.0), drop_path_rate=0.1)  # fmt: skip


@register_model
def pvtv2_b0_in1k() -> PVTConfig:
    """PVTv2-B0, 224 (timm ``pvt_v2_b0``)."""
    return PVTConfig(embed_dims=(32, 64, 160, 256), depths=(2, 2, 2, 2), num_heads=(1, 2, 5, 8), drop_path_rate=0.1)


@register_model
def pvtv2_b2_in1k() -> PVTConfig:
    """PVTv2-B2, 224 (timm ``pvt_v2_b2``)."""
    return PVTConfig(embed_dims=(64, 128, 320, 512), depths=(3, 4, 6, 3), num_heads=(1, 2, 5, 8), drop_path_rate=0.1)


@register_model
def pvtv2_b2_li_in1k() -> PVTConfig:
    """PVTv2-B2-Li (linear spatial reduction), 224 (timm ``pvt_v2_b2_li``)."""
    return pvtv2_b2_in1k().replace(linear=True)
