"""The CoaT family on video (timm ``CoaT``: ``coat_lite_*`` and ``coat_*``, the mlpc-ucsd code): four stages of
conv-attentional blocks, each stage starting with a patch embedding and a class token of its own; CoaT adds
parallel blocks that mix the scales of stages 2-4.

Clips are (B, C, T, H, W); an image (B, C, H, W) is a one-frame clip. Stage i's patch embedding is a Conv3d of
kernel (kt_i, p, p), stride (st_i, p, p), time padding (kt_i - st_i + 1) // 2 (p = ``patch_size`` for stage 1, 2
after; kt = st = 1 for images) and a LayerNorm (eps 1e-5, timm's ``PatchEmbed``), then its class token goes first.
A serial block is: the convolutional position encoding (CPE: a depthwise Conv3d (kt, 3, 3) of the patch tokens added
to them, the class token passed through), then a pre-norm factorised attention and a pre-norm MLP, each a residual
branch (LayerNorm eps 1e-6, timm's). The factorised attention is ``scale * q (softmax_N(k)^T v)`` with the softmax
over the N tokens (class token included), so it is linear in N; the convolutional relative position encoding (CRPE)
adds ``q * dwconv(v)`` over the patch tokens (zero for the class token), with head splits of windows {3: 2, 5: 3,
7: 3} (depthwise Conv3d (kt, w, w) each).

The CPE and CRPE of stage i (``cpe{i}``, ``crpe{i}``) are single modules used by every serial block of the stage
(and CRPE 2-4, CPE 2-4 by every parallel block), and a parallel block's three MLPs are one module (``mlp2``). timm
registers each shared module under every user, so its ``state_dict()`` lists them under several keys (coat_tiny:
7.86M numbers in the state dict for 5.50M parameters); here each is registered once, at timm's first name, and
passed to the blocks at forward (``formats/coat.py`` maps timm's other keys onto these, checking that copies
agree). Parameter counts equal timm's.

Parallel blocks (CoaT): stages 2-4 attend on their own scale, then each adds the other two resampled to its grid
(trilinear, align_corners=False, to the target grid's size: timm's bilinear by factors 2^k on one-frame clips whose
grids halve exactly; odd grids, which timm refuses, are resampled to the exact target size), then the shared MLP. CoaT classifies by a Conv1d(3, 1, 1) (``aggregate``) over the normed class tokens of stages 2-4;
CoaT-Lite by ``norm4`` of stage 4's class token.

Image weights in a video model: patch, CPE and CRPE kernels are inflated as every 2-D kernel. A clip whose stage
grids all have one frame (T' = 1, e.g. a patch embedding whose time kernel covers the clip) equals the image model
with the centre tap (zero-padded taps see nothing). With T' > 1 a static clip does *not* equal the image, whatever
the inflation: every patch token appears T' times in the key softmax but the class token once, so the class token's
share of ``softmax_N(k)^T v`` shrinks (tested). There is no fused kernel for factorised attention, so
``MODEL.ATTN_IMPL`` does not apply to this family.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .attention import THW
from .layers import DropPath, Mlp
from .layers.conv import Conv3d
from .registry import register_model

_NORM_EPS = 1e-6  # timm's LayerNorm in the blocks and final norms (the patch embeddings' is nn.LayerNorm, 1e-5)


@dataclass
class CoaTConfig:
    """Architecture of one CoaT-family model, as plain data.

    Args:
        num_classes: classifier outputs (0: no classifier, ``forward`` returns the pooled features).
        input_size: (T, H, W) of the clips the model is built for (T=1 for image models; other sizes work too).
        in_chans: input channels.
        patch_size: spatial patch of stage 1's embedding (stages 2-4: 2).
        embed_dims: width of each of the four stages.
        serial_depths: serial blocks per stage.
        parallel_depth: parallel (co-scale) blocks after the serial ones (0: CoaT-Lite); needs embed_dims[1:] equal.
        num_heads: attention heads in every stage.
        mlp_ratios: MLP expansion per stage (parallel blocks use stage 2's).
        qkv_bias: biases in the q, k, v projection.
        crpe_windows: CRPE window sizes (spatial kernels), one per head split.
        crpe_head_splits: heads per CRPE window (sums to num_heads).
        patch_time_kernel: time kernel of each stage's patch embedding.
        patch_time_stride: time stride of each stage's patch embedding.
        cpe_time_kernel: time kernel of the CPE convs (odd; padding kt // 2).
        crpe_time_kernel: time kernel of the CRPE convs (odd; padding kt // 2).
        drop_path_rate: stochastic depth of every residual branch (timm's CoaT: the same rate everywhere).
        head_dropout: dropout before the classifier.
        detach_head: the classifier's input is detached (train the classifier only).
        act_checkpoint: recompute each block in backward.
    """

    num_classes: int = 1000
    input_size: tuple[int, int, int] = (1, 224, 224)
    in_chans: int = 3
    patch_size: int = 4
    embed_dims: tuple[int, int, int, int] = (64, 128, 256, 320)
    serial_depths: tuple[int, int, int, int] = (2, 2, 2, 2)
    parallel_depth: int = 0
    num_heads: int = 8
    mlp_ratios: tuple[float, float, float, float] = (8.0, 8.0, 4.0, 4.0)
    qkv_bias: bool = True
    crpe_windows: tuple[int, ...] = (3, 5, 7)
    crpe_head_splits: tuple[int, ...] = (2, 3, 3)
    patch_time_kernel: tuple[int, int, int, int] = (1, 1, 1, 1)
    patch_time_stride: tuple[int, int, int, int] = (1, 1, 1, 1)
    cpe_time_kernel: int = 1
    crpe_time_kernel: int = 1
    drop_path_rate: float = 0.0
    head_dropout: float = 0.0
    detach_head: bool = False
    act_checkpoint: bool = False

    def __post_init__(self) -> None:
        if len(self.input_size) != 3 or any(int(v) < 1 for v in self.input_size):
            raise ValueError(f"CoaTConfig.input_size={list(self.input_size)} must be three positive sizes (T, H, W)")
        for name in ("embed_dims", "serial_depths", "mlp_ratios", "patch_time_kernel", "patch_time_stride"):
            if len(getattr(self, name)) != 4:
                raise ValueError(f"CoaTConfig.{name}={list(getattr(self, name))} needs one entry per stage (4)")
        if any(int(v) < 1 for v in (*self.patch_time_kernel, *self.patch_time_stride)):
            raise ValueError("CoaTConfig.patch_time_kernel / patch_time_stride must be positive sizes")
        for dim in self.embed_dims:
            if dim % self.num_heads:
                raise ValueError(f"CoaTConfig: embed_dims={list(self.embed_dims)} must be divisible by "
                                 f"num_heads={self.num_heads}")  # fmt: skip
        if len(self.crpe_windows) != len(self.crpe_head_splits) or sum(self.crpe_head_splits) != self.num_heads:
            raise ValueError(f"CoaTConfig: crpe_head_splits={list(self.crpe_head_splits)} need one entry per window "
                             f"({list(self.crpe_windows)}) and must sum to num_heads={self.num_heads}")  # fmt: skip
        for name in ("cpe_time_kernel", "crpe_time_kernel"):
            if getattr(self, name) < 1 or getattr(self, name) % 2 == 0:
                raise ValueError(f"CoaTConfig.{name}={getattr(self, name)} must be odd and positive")
        if any(w < 1 or w % 2 == 0 for w in self.crpe_windows):
            raise ValueError(f"CoaTConfig.crpe_windows={list(self.crpe_windows)} must be odd and positive")
        if self.parallel_depth < 0:
            raise ValueError(f"CoaTConfig.parallel_depth={self.parallel_depth} must be 0 or more")
        if self.parallel_depth and not (self.embed_dims[1] == self.embed_dims[2] == self.embed_dims[3]):
            raise ValueError(f"CoaTConfig: parallel blocks need embed_dims[1:] equal, got {list(self.embed_dims)}")
        if self.parallel_depth and not (self.mlp_ratios[1] == self.mlp_ratios[2] == self.mlp_ratios[3]):
            raise ValueError(f"CoaTConfig: parallel blocks need mlp_ratios[1:] equal, got {list(self.mlp_ratios)}")

    def replace(self, **changes) -> CoaTConfig:
        """A copy with some fields changed (unknown names raise TypeError)."""
        return dataclasses.replace(self, **changes)

    @property
    def depth(self) -> int:
        """Layers of layer decay: the four stage embeddings and every block (``CoaT.layer_id``)."""
        return sum(self.serial_depths) + 3 + self.parallel_depth

    def stage_grids(self, input_size: THW | None = None) -> list[THW]:
        """Token grid (T', H', W') of each stage for clips of ``input_size`` (default the configured one)."""
        t, h, w = input_size or self.input_size
        grids = []
        for i, (kt, st) in enumerate(zip(self.patch_time_kernel, self.patch_time_stride)):
            p = self.patch_size if i == 0 else 2
            t, h, w = (t + 2 * ((kt - st + 1) // 2) - kt) // st + 1, h // p, w // p
            grids.append((t, h, w))
        return grids


class PatchEmbed3d(nn.Module):
    """Conv3d (kt, p, p) / (st, p, p), then LayerNorm over the tokens: (B, C, T, H, W) -> (B, T'H'W', D), grid."""

    def __init__(self, in_chans: int, dim: int, patch: int, time_kernel: int, time_stride: int) -> None:
        super().__init__()
        padding = ((time_kernel - time_stride + 1) // 2, 0, 0)
        self.proj = Conv3d(in_chans, dim, (time_kernel, patch, patch), (time_stride, patch, patch), padding)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, THW]:
        x = self.proj(x)
        grid = tuple(x.shape[2:])
        return self.norm(x.flatten(2).transpose(1, 2)), grid  # (B, D, T', H', W') -> (B, T'H'W', D)


class ConvPosEnc(nn.Module):
    """CPE: the patch tokens plus a depthwise Conv3d (kt, 3, 3) of them; the class token (first) passes."""

    def __init__(self, dim: int, time_kernel: int) -> None:
        super().__init__()
        self.proj = Conv3d(dim, dim, (time_kernel, 3, 3), 1, (time_kernel // 2, 1, 1), groups=dim)

    def forward(self, x: torch.Tensor, grid: THW) -> torch.Tensor:
        B, _, C = x.shape
        cls_token, feat = x[:, :1], x[:, 1:].transpose(1, 2).reshape(B, C, *grid)  # (B, THW, C) -> (B, C, T, H, W)
        feat = self.proj(feat) + feat
        return torch.cat((cls_token, feat.flatten(2).transpose(1, 2)), dim=1)


class ConvRelPosEnc(nn.Module):
    """CRPE: ``q * dwconv(v)`` on the patch tokens, a depthwise Conv3d (kt, w, w) per head split; zero for the
    class token. q, v: (B, heads, N, Ch) -> (B, heads, N, Ch)."""

    def __init__(self, head_chs: int, windows: tuple[int, ...], head_splits: tuple[int, ...], time_kernel: int):
        super().__init__()
        self.conv_list = nn.ModuleList(
            Conv3d(
                s * head_chs,
                s * head_chs,
                (time_kernel, w, w),
                1,
                (time_kernel // 2, w // 2, w // 2),
                groups=s * head_chs,
            )
            for w, s in zip(windows, head_splits)
        )
        self.channel_splits = [s * head_chs for s in head_splits]

    def forward(self, q: torch.Tensor, v: torch.Tensor, grid: THW) -> torch.Tensor:
        B, heads, N, Ch = q.shape
        # (B, heads, THW, Ch) -> (B, heads * Ch, T, H, W)
        v_img = v[:, :, 1:].transpose(-1, -2).reshape(B, heads * Ch, *grid)
        parts = [conv(part) for conv, part in zip(self.conv_list, v_img.split(self.channel_splits, dim=1))]
        conv_v = torch.cat(parts, dim=1).reshape(B, heads, Ch, N - 1).transpose(-1, -2)
        return F.pad(q[:, :, 1:] * conv_v, (0, 0, 1, 0))  # zero row for the class token


class FactorAttention(nn.Module):
    """Factorised attention ``scale * q (softmax_N(k)^T v)`` plus the (shared, passed-in) CRPE: (B, N, C) ->
    (B, N, C)."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, grid: THW, crpe: ConvRelPosEnc) -> torch.Tensor:
        B, N, C = x.shape
        # (B, N, 3C) -> q, k, v of (B, heads, N, Ch)
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        context = k.softmax(dim=2).transpose(-1, -2) @ v  # (B, heads, Ch, Ch): linear in N
        x = self.scale * (q @ context) + crpe(q, v, grid)
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


def _drop_path(rate: float) -> nn.Module:
    return DropPath(rate) if rate > 0 else nn.Identity()


class SerialBlock(nn.Module):
    """CPE, then factorised attention and MLP residuals, on (B, 1 + T'H'W', C) tokens; the stage's CPE and CRPE
    are passed in (shared by all the blocks of a stage)."""

    def __init__(self, dim: int, mlp_ratio: float, cfg: CoaTConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=_NORM_EPS)
        self.factoratt_crpe = FactorAttention(dim, cfg.num_heads, cfg.qkv_bias)
        self.drop_path = _drop_path(cfg.drop_path_rate)
        self.norm2 = nn.LayerNorm(dim, eps=_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), dim)

    def forward(self, x: torch.Tensor, grid: THW, cpe: ConvPosEnc, crpe: ConvRelPosEnc) -> torch.Tensor:
        x = cpe(x, grid)
        x = x + self.drop_path(self.factoratt_crpe(self.norm1(x), grid, crpe))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def _resample(x: torch.Tensor, grid: THW, target: THW) -> torch.Tensor:
    """Patch tokens of ``grid`` resampled to ``target`` (trilinear, align_corners=False); the class token passes.
    (B, 1 + N, C) -> (B, 1 + N', C). Where the grids halve exactly this is timm's bilinear by scale factors 2^k."""
    B, _, C = x.shape
    img = x[:, 1:].transpose(1, 2).reshape(B, C, *grid)
    if grid[0] == target[0]:  # time kept: trilinear is bilinear per frame (its time weights are exactly 1), faster
        # (B, C, T, H, W) -> (BT, C, H, W) -> (BT, C, H', W') -> (B, C, T, H', W'); views when T = 1
        frames = img.transpose(1, 2).reshape(B * grid[0], C, *grid[1:])
        frames = F.interpolate(frames, size=tuple(target[1:]), mode="bilinear", align_corners=False)
        img = frames.reshape(B, target[0], C, *target[1:]).transpose(1, 2)
    else:
        img = F.interpolate(img, size=tuple(target), mode="trilinear", align_corners=False)
    return torch.cat((x[:, :1], img.flatten(2).transpose(1, 2)), dim=1)


class ParallelBlock(nn.Module):
    """Co-scale block on the tokens of stages 2-4: attention per scale with the shared CRPE, each scale adding the
    other two resampled to its grid, then one MLP (``mlp2``, timm's ``mlp2 = mlp3 = mlp4``) on each scale."""

    def __init__(self, cfg: CoaTConfig) -> None:
        super().__init__()
        dim = cfg.embed_dims[1]
        for s in (2, 3, 4):
            self.add_module(f"norm1{s}", nn.LayerNorm(dim, eps=_NORM_EPS))
            self.add_module(f"factoratt_crpe{s}", FactorAttention(dim, cfg.num_heads, cfg.qkv_bias))
        self.drop_path = _drop_path(cfg.drop_path_rate)
        for s in (2, 3, 4):
            self.add_module(f"norm2{s}", nn.LayerNorm(dim, eps=_NORM_EPS))
        self.mlp2 = Mlp(dim, int(dim * cfg.mlp_ratios[1]), dim)

    def forward(self, xs: list[torch.Tensor], grids: list[THW], crpes: list[ConvRelPosEnc]) -> list[torch.Tensor]:
        """xs, grids, crpes: of stages 2, 3, 4."""
        cur = [getattr(self, f"factoratt_crpe{s}")(getattr(self, f"norm1{s}")(x), g, c)
               for s, x, g, c in zip((2, 3, 4), xs, grids, crpes)]  # fmt: skip
        mixed = [cur[i] + sum(_resample(cur[j], grids[j], grids[i]) for j in range(3) if j != i) for i in range(3)]
        xs = [x + self.drop_path(m) for x, m in zip(xs, mixed)]
        return [x + self.drop_path(self.mlp2(getattr(self, f"norm2{s}")(x))) for s, x in zip((2, 3, 4), xs)]


class CoaT(nn.Module):
    """A CoaT-family model for clips (B, C, T, H, W) and images (B, C, H, W); returns class logits.

    Args:
        cfg: the architecture.
    """

    def __init__(self, cfg: CoaTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dims = cfg.embed_dims
        ins = (cfg.in_chans, *dims[:3])
        for i in range(4):
            patch = cfg.patch_size if i == 0 else 2
            embed = PatchEmbed3d(ins[i], dims[i], patch, cfg.patch_time_kernel[i], cfg.patch_time_stride[i])
            self.add_module(f"patch_embed{i + 1}", embed)
        for i in range(4):
            self.register_parameter(f"cls_token{i + 1}", nn.Parameter(torch.zeros(1, 1, dims[i])))
        for i in range(4):
            self.add_module(f"cpe{i + 1}", ConvPosEnc(dims[i], cfg.cpe_time_kernel))
        for i in range(4):
            crpe = ConvRelPosEnc(dims[i] // cfg.num_heads, cfg.crpe_windows, cfg.crpe_head_splits, cfg.crpe_time_kernel)
            self.add_module(f"crpe{i + 1}", crpe)
        for i in range(4):
            blocks = nn.ModuleList(SerialBlock(dims[i], cfg.mlp_ratios[i], cfg) for _ in range(cfg.serial_depths[i]))
            self.add_module(f"serial_blocks{i + 1}", blocks)
        self.parallel_blocks = nn.ModuleList(ParallelBlock(cfg) for _ in range(cfg.parallel_depth))
        if cfg.parallel_depth:
            self.norm2 = nn.LayerNorm(dims[1], eps=_NORM_EPS)
            self.norm3 = nn.LayerNorm(dims[2], eps=_NORM_EPS)
        self.norm4 = nn.LayerNorm(dims[3], eps=_NORM_EPS)
        self.aggregate = nn.Conv1d(3, 1, 1) if cfg.parallel_depth else None
        self.num_features = dims[3]
        self.num_layers = cfg.depth
        self.head_drop = nn.Dropout(cfg.head_dropout) if cfg.head_dropout > 0 else nn.Identity()
        self.head = nn.Linear(self.num_features, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for i in range(4):
            nn.init.trunc_normal_(getattr(self, f"cls_token{i + 1}"), std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def position_tables(self) -> dict[str, tuple[int, THW]]:
        """No position tables: CPE and CRPE are convolutions (inflated as every kernel)."""
        return {}

    def no_weight_decay(self) -> set[str]:
        """The class tokens (timm's rule)."""
        return {f"cls_token{i + 1}" for i in range(4)}

    def layer_id(self, name: str) -> int:
        """Depth index of a parameter for layer-wise LR decay (timm's groups, in order): stage i's patch embedding,
        class token, CPE and CRPE are one layer before its serial blocks (stage 1's: 0), then the parallel blocks;
        the final norms, ``aggregate`` and the classifier ``depth + 1``."""
        depths = self.cfg.serial_depths
        root = name.split(".")[0]
        for i in range(4):
            start = sum(depths[:i]) + i  # the stage's embedding layer
            if root in (f"patch_embed{i + 1}", f"cls_token{i + 1}", f"cpe{i + 1}", f"crpe{i + 1}"):
                return start
            if root == f"serial_blocks{i + 1}":
                return start + 1 + int(name.split(".")[1])
        if root == "parallel_blocks":
            return sum(depths) + 4 + int(name.split(".")[1])
        return self.cfg.depth + 1

    def _to_clip(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            x = x.unsqueeze(2)  # an image is a one-frame clip
        if x.ndim != 5:
            raise ValueError(f"expected (B, C, T, H, W) or (B, C, H, W) input, got shape {tuple(x.shape)}")
        return x

    def _run(self, block: nn.Module, *args):
        if self.cfg.act_checkpoint and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def forward_stages(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[THW]]:
        """The tokens (B, 1 + T'H'W', C) of the four stages (class token first) and their grids, after the serial
        and parallel blocks (not normed)."""
        x = self._to_clip(x)
        xs, grids = [], []
        for i in range(4):
            if i > 0:
                # (B, 1 + THW, C) -> (B, C, T, H, W), class token dropped
                x = xs[-1][:, 1:].transpose(1, 2).reshape(x.shape[0], -1, *grids[-1])
            x, grid = getattr(self, f"patch_embed{i + 1}")(x)
            x = torch.cat((getattr(self, f"cls_token{i + 1}").expand(x.shape[0], -1, -1), x), dim=1)
            cpe, crpe = getattr(self, f"cpe{i + 1}"), getattr(self, f"crpe{i + 1}")
            for block in getattr(self, f"serial_blocks{i + 1}"):
                x = self._run(block, x, grid, cpe, crpe)
            xs.append(x)
            grids.append(grid)
        if len(self.parallel_blocks):
            cpes = [self.cpe2, self.cpe3, self.cpe4]
            crpes = [self.crpe2, self.crpe3, self.crpe4]
            scales = xs[1:]
            for block in self.parallel_blocks:
                scales = [cpe(s, g) for cpe, s, g in zip(cpes, scales, grids[1:])]
                scales = self._run(block, scales, grids[1:], crpes)
            xs[1:] = scales
        return xs, grids

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's input (B, C): ``norm4`` of stage 4's class token (CoaT-Lite), or ``aggregate`` over the
        normed class tokens of stages 2-4 (CoaT)."""
        xs, _ = self.forward_stages(x)
        if self.aggregate is None:
            return self.norm4(xs[3])[:, 0]
        tokens = torch.stack([norm(s)[:, 0] for norm, s in zip((self.norm2, self.norm3, self.norm4), xs[1:])], 1)
        return self.aggregate(tokens).squeeze(1)  # (B, 3, C) -> (B, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.forward_features(x)
        if self.cfg.detach_head:
            features = features.detach()
        return self.head(self.head_drop(features))

    def stage_specs(self, input_size: THW | None = None) -> list[tuple[tuple[int, int], int, int, THW]]:
        """Per stage: (first and last serial block, counted from 0 over all stages; width, heads, token grid); with
        parallel blocks a fifth row for them (on stage 2's grid, the finest they work on)."""
        out, first = [], 0
        grids = self.cfg.stage_grids(input_size)
        for i, grid in enumerate(grids):
            count = self.cfg.serial_depths[i]
            out.append(((first, first + count - 1), self.cfg.embed_dims[i], self.cfg.num_heads, grid))
            first += count
        if self.cfg.parallel_depth:
            last = first + self.cfg.parallel_depth - 1
            out.append(((first, last), self.cfg.embed_dims[1], self.cfg.num_heads, grids[1]))
        return out


# ------------------------------------------------------------------------------------------- named variants


@register_model
def coat_lite_ti_in1k() -> CoaTConfig:
    """CoaT-Lite Tiny, 224 (timm ``coat_lite_tiny``; 5.72M parameters)."""
    return CoaTConfig(embed_dims=(64, 128, 256, 320), serial_depths=(2, 2, 2, 2), mlp_ratios=(8, 8, 4, 4))


@register_model
def coat_lite_mi_in1k() -> CoaTConfig:
    """CoaT-Lite Mini, 224 (timm ``coat_lite_mini``)."""
    return CoaTConfig(embed_dims=(64, 128, 320, 512), serial_depths=(2, 2, 2, 2), mlp_ratios=(8, 8, 4, 4))


@register_model
def coat_lite_s_in1k() -> CoaTConfig:
    """CoaT-Lite Small, 224 (timm ``coat_lite_small``)."""
    return CoaTConfig(embed_dims=(64, 128, 320, 512), serial_depths=(3, 4, 6, 3), mlp_ratios=(8, 8, 4, 4))


@register_model
def coat_ti_in1k() -> CoaTConfig:
    """CoaT Tiny, 224: serial and six parallel blocks (timm ``coat_tiny``; 5.50M parameters)."""
    return CoaTConfig(embed_dims=(152, 152, 152, 152), serial_depths=(2, 2, 2, 2), parallel_depth=6,
                      mlp_ratios=(4, 4, 4, 4))  # fmt: skip
