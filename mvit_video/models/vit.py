"""The plain-ViT family on video, one implementation with options: ViT, DeiT (distillation token), CaiT (talking
heads, LayerScale, class attention), CPVT (positional encoding generator), VideoMAE (q/v biases, fixed sin-cos
positions, mean pooling), ViViT (joint space-time), TimeSformer (divided space-time attention) and DeepViT
(re-attention in the last blocks, a CNN patch stem, scale adjustment).

Clips are (B, C, T, H, W); an image (B, C, H, W) is a one-frame clip. Tokens come from a Conv3d tubelet embedding
(``tubelet_size`` frames x ``patch_size`` pixels; 1 frame for the image variants) or DeepViT's CNN stem (Conv3d and
BatchNorm3d); a clip whose length is not a multiple of the tubelet is zero-padded at its end. The state-dict keys
follow timm's ViT/DeiT/CaiT layout (so its files load with only the patch kernel unsqueezed to 3-D), the original
TimeSformer's names for the temporal parts (``time_embed``, ``temporal_norm1``, ``temporal_attn``, ``temporal_fc``)
and the official DeepViT's for its parts (``patch_embed.{conv1,bn1,conv2,bn2,proj}``, ``attn.reatten_matrix``,
``attn.var_norm``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .layers import ConvPatchEmbed, DropPath, Mlp, PatchEmbed
from .layers.attention import QKV_BIASES, Attention, ClassAttention, ReAttention, TalkingHeadAttention
from .layers.position import PositionGenerator, resize_grid_embedding, sinusoid_table
from .registry import register_model

THW = tuple[int, int, int]
POSITIONS = ("learned", "space_time", "sincos", "none")
ATTENTION_TYPES = ("joint", "divided")
POOLS = ("token", "avg")
ACTIVATIONS = ("gelu", "gelu_tanh")
STEMS = ("patch", "cnn")


@dataclass
class ViTConfig:
    """Architecture of one ViT-family model, as plain data.

    Args:
        num_classes: classifier outputs (0: no classifier, ``forward`` returns features).
        input_size: (T, H, W) the position embeddings are sized for (T=1 for image models).
        in_chans: input channels.
        patch_size: spatial patch side in pixels.
        tubelet_size: frames per token (1 for image models).
        stem: "patch" (one strided conv ``patch_embed.proj``) or "cnn" (DeepViT's stem: conv 7x7/2 to 64, BN, ReLU,
            conv 3x3 to 64, BN, ReLU, then ``proj`` over patch_size / 2; Conv3d and BatchNorm3d, see
            ``layers.ConvPatchEmbed``).
        stem_temporal_kernel: "cnn" stem: odd time kernel of its two convs (padded to keep the length); 1 for image
            models (inflating image weights onto the centre tap keeps a one-frame clip equal to the image model).
        stem_temporal_stride: "cnn" stem: time stride of its first conv.
        embed_dim, depth, num_heads, mlp_ratio: width, blocks, heads and MLP expansion.
        qkv_bias: "qkv" (bias on q, k and v), "qv" (VideoMAE: on q and v only) or "none".
        class_token: a cls token (classify from it with ``global_pool="token"``).
        dist_token: DeiT's distillation token and second head; in eval ``forward`` returns the mean of both heads.
        pos_embed: "learned" (one table over prefix tokens and the T x H x W grid), "space_time" (TimeSformer: a
            spatial table with the cls position, plus ``time_embed`` per frame), "sincos" (VideoMAE's fixed 1-D table
            over the grid) or "none".
        pos_resize: how learned tables follow another grid at run time: "auto" (bicubic for images, trilinear for
            clips) or "nearest" (TimeSformer).
        peg_kernel: CPVT: a positional encoding generator (depthwise Conv3d of this (t, h, w) kernel) after the
            first block; None for none.
        attention_type: "joint" (all tokens attend to all) or "divided" (TimeSformer: over time, then over space).
        talking_heads: CaiT's talking-heads attention in the self-attention blocks (explicit attention map).
        class_attention_depth: CaiT: the cls token joins only in this many final class-attention blocks.
        reattention_depth: DeepViT: re-attention (``layers.attention.ReAttention``: the softmax maps mixed across
            heads, BatchNorm-ed; explicit attention map, no SDPA) in this many last blocks; 0 for none.
        reattention_scale: DeepViT's ``transform_scale``: the re-attention maps are multiplied by head_dim ** -0.5.
        scale_adjustment: DeepViT's ``scale_adjustment`` s: every self-attention block computes ``norm(x * s)``
            and divides each branch's output by s (1.0: the plain block).
        layer_scale_init: > 0: learnable per-channel residual scales (``gamma_1``, ``gamma_2``) starting there.
        global_pool: "token" (cls token after the final norm) or "avg" (VideoMAE: mean of the patch tokens, then
            ``fc_norm``; no final norm).
        norm_eps: LayerNorm epsilon.
        fc_norm_eps: epsilon of ``fc_norm`` when it differs (HF's VideoMAE builds it with PyTorch's default 1e-5).
        act: "gelu" or "gelu_tanh" (ViViT's ``gelu_fast``).
        drop_rate, attn_drop_rate, drop_path_rate: dropout after projections, on attention weights, stochastic
            depth (linear from 0 to this at the last block).
        head_dropout: dropout before the classifier.
        detach_head: the classifier's input is detached (train the classifier only).
        act_checkpoint: recompute each block in backward (the recomputation updates the BatchNorm statistics of
            re-attention blocks a second time per step: their momentum acts as 1 - (1 - m)^2).
        attention: "auto", "sdpa" or "math" (the explicit reference); talking heads are always explicit.
    """

    num_classes: int = 1000
    input_size: tuple[int, int, int] = (1, 224, 224)
    in_chans: int = 3
    patch_size: int = 16
    tubelet_size: int = 1
    stem: str = "patch"
    stem_temporal_kernel: int = 1
    stem_temporal_stride: int = 1
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: str = "qkv"
    class_token: bool = True
    dist_token: bool = False
    pos_embed: str = "learned"
    pos_resize: str = "auto"
    peg_kernel: Optional[tuple[int, int, int]] = None
    attention_type: str = "joint"
    talking_heads: bool = False
    class_attention_depth: int = 0
    reattention_depth: int = 0
    reattention_scale: bool = False
    scale_adjustment: float = 1.0
    layer_scale_init: float = 0.0
    global_pool: str = "token"
    norm_eps: float = 1e-6
    fc_norm_eps: Optional[float] = None
    act: str = "gelu"
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    head_dropout: float = 0.0
    detach_head: bool = False
    act_checkpoint: bool = False
    attention: str = "auto"

    def __post_init__(self) -> None:
        for name, value, allowed in (("qkv_bias", self.qkv_bias, QKV_BIASES), ("pos_embed", self.pos_embed, POSITIONS),
                                     ("attention_type", self.attention_type, ATTENTION_TYPES),
                                     ("global_pool", self.global_pool, POOLS), ("act", self.act, ACTIVATIONS),
                                     ("pos_resize", self.pos_resize, ("auto", "nearest")),
                                     ("stem", self.stem, STEMS)):  # fmt: skip
            if value not in allowed:
                raise ValueError(f"ViTConfig.{name}={value!r} is not one of {allowed}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"ViTConfig.embed_dim={self.embed_dim} is not divisible by num_heads={self.num_heads}")
        if self.class_attention_depth and not self.class_token:
            raise ValueError("ViTConfig: class attention blocks need class_token=True")
        self._check_deepvit()

    def _check_deepvit(self) -> None:
        """DeepViT's options: a stem that can be built, re-attention and scale adjustment only where they apply."""
        if self.stem == "patch" and (self.stem_temporal_kernel, self.stem_temporal_stride) != (1, 1):
            raise ValueError("ViTConfig: stem_temporal_kernel and stem_temporal_stride apply to stem='cnn' only")
        if self.stem == "cnn" and (self.patch_size % 2 or self.stem_temporal_kernel % 2 == 0):
            raise ValueError(f"ViTConfig: stem='cnn' needs an even patch_size and an odd stem_temporal_kernel, got "
                             f"{self.patch_size} and {self.stem_temporal_kernel}")  # fmt: skip
        if not 0 <= self.reattention_depth <= self.depth:
            raise ValueError(f"ViTConfig.reattention_depth={self.reattention_depth} is not between 0 and "
                             f"depth={self.depth}")  # fmt: skip
        plain = self.attention_type == "joint" and not self.talking_heads and not self.class_attention_depth
        if (self.reattention_depth or self.scale_adjustment != 1.0) and not plain:
            raise ValueError("ViTConfig: reattention_depth and scale_adjustment apply to joint attention blocks only "
                             "(no talking heads, no class attention)")  # fmt: skip
        if self.scale_adjustment <= 0:
            raise ValueError(f"ViTConfig.scale_adjustment={self.scale_adjustment} must be > 0")

    def replace(self, **changes) -> ViTConfig:
        """A copy with some fields changed (unknown names raise TypeError)."""
        return dataclasses.replace(self, **changes)

    @property
    def patch_dims(self) -> THW:
        """Token grid (T', H', W') of an ``input_size`` clip."""
        return self.token_grid(self.input_size)

    def token_grid(self, input_size: THW) -> THW:
        """Token grid (T', H', W') of a clip of ``input_size`` (T, H, W)."""
        t, h, w = input_size
        patch = self.patch_size
        if self.stem == "cnn":  # conv1 (padded, stride 2 in space): ceil halves; proj over patch / 2
            t, h, w, patch = -(-t // self.stem_temporal_stride), -(-h // 2), -(-w // 2), patch // 2
        return (-(-t // self.tubelet_size), h // patch, w // patch)

    @property
    def num_prefix(self) -> int:
        """Tokens before the grid inside the self-attention blocks (cls and dist; none for CaiT)."""
        if self.class_attention_depth:
            return 0
        return int(self.class_token) + int(self.dist_token)


def _activation(name: str) -> nn.Module:
    return nn.GELU(approximate="tanh") if name == "gelu_tanh" else nn.GELU()


class Block(nn.Module):
    """Pre-norm transformer block: attention and MLP residuals, with LayerScale when ``cfg.layer_scale_init`` > 0,
    DeepViT's scale adjustment s (``x + branch(norm(x * s)) / s``) when ``cfg.scale_adjustment`` != 1.

    Args:
        cfg: the architecture.
        drop_path: stochastic depth rate of this block.
        reattention: DeepViT's re-attention instead of plain attention.
    """

    def __init__(self, cfg: ViTConfig, drop_path: float, reattention: bool = False) -> None:
        super().__init__()
        dim = cfg.embed_dim
        attention = TalkingHeadAttention if cfg.talking_heads else Attention
        self.scale_adjustment = cfg.scale_adjustment
        if cfg.layer_scale_init > 0:
            self.gamma_1 = nn.Parameter(torch.full((dim,), cfg.layer_scale_init))
            self.gamma_2 = nn.Parameter(torch.full((dim,), cfg.layer_scale_init))
        else:
            self.gamma_1 = self.gamma_2 = None
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        if reattention:
            self.attn = ReAttention(dim, cfg.num_heads, cfg.qkv_bias, cfg.attn_drop_rate, cfg.drop_rate,
                                    scale=cfg.reattention_scale)  # fmt: skip
        else:
            self.attn = attention(dim, cfg.num_heads, cfg.qkv_bias, cfg.attn_drop_rate, cfg.drop_rate,
                                  impl=cfg.attention)  # fmt: skip
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio), dim, cfg.drop_rate, act=_activation(cfg.act))

    def _scaled(self, x: torch.Tensor, gamma: Optional[torch.Tensor]) -> torch.Tensor:
        return self.drop_path(x if gamma is None else gamma * x)

    def _branch(self, x: torch.Tensor, norm: nn.Module, fn: nn.Module) -> torch.Tensor:
        s = self.scale_adjustment
        if s == 1.0:
            return fn(norm(x))
        return fn(norm(x * s)) / s  # DeepViT: the branch sees norm(x * s), its output is divided by s

    def forward(self, x: torch.Tensor, thw: THW, num_prefix: int) -> torch.Tensor:
        x = x + self._scaled(self._branch(x, self.norm1, self.attn), self.gamma_1)
        return x + self._scaled(self._branch(x, self.norm2, self.mlp), self.gamma_2)


class DividedBlock(Block):
    """TimeSformer's divided space-time block: attention over time at every spatial location (``temporal_*``,
    then ``temporal_fc``), then over space within every frame (the cls token replicated per frame, its outputs
    averaged), then the MLP. The cls token is token 0."""

    def __init__(self, cfg: ViTConfig, drop_path: float, reattention: bool = False) -> None:
        super().__init__(cfg, drop_path, reattention)
        dim = cfg.embed_dim
        self.temporal_norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.temporal_attn = Attention(dim, cfg.num_heads, cfg.qkv_bias, cfg.attn_drop_rate, cfg.drop_rate,
                                       impl=cfg.attention)  # fmt: skip
        self.temporal_fc = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, thw: THW, num_prefix: int) -> torch.Tensor:
        (t, h, w), B, C = thw, x.shape[0], x.shape[2]
        cls, grid = x[:, :1], x[:, 1:]
        # temporal: (B, T*H*W, C) -> (B*H*W, T, C)
        seq = grid.reshape(B, t, h * w, C).transpose(1, 2).reshape(B * h * w, t, C)
        res = self.drop_path(self.temporal_attn(self.temporal_norm1(seq)))
        res = res.reshape(B, h * w, t, C).transpose(1, 2).reshape(B, t * h * w, C)
        grid = grid + self.temporal_fc(res)
        # spatial: (B, T*H*W, C) -> (B*T, 1 + H*W, C), the cls token replicated per frame
        frames = grid.reshape(B * t, h * w, C)
        frames = torch.cat((cls.repeat_interleave(t, dim=0), frames), dim=1)
        res = self.drop_path(self.attn(self.norm1(frames)))
        res_cls = res[:, :1].reshape(B, t, C).mean(dim=1, keepdim=True)
        x = torch.cat((cls, grid), dim=1) + torch.cat((res_cls, res[:, 1:].reshape(B, t * h * w, C)), dim=1)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ClassAttentionBlock(nn.Module):
    """CaiT's class-attention block: only the cls token is updated, from itself and the patch tokens."""

    def __init__(self, cfg: ViTConfig, drop_path: float) -> None:
        super().__init__()
        dim, init = cfg.embed_dim, cfg.layer_scale_init
        self.gamma_1 = nn.Parameter(torch.full((dim,), init)) if init > 0 else None
        self.gamma_2 = nn.Parameter(torch.full((dim,), init)) if init > 0 else None
        self.norm1 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.attn = ClassAttention(dim, cfg.num_heads, cfg.qkv_bias != "none", cfg.attn_drop_rate, cfg.drop_rate,
                                   impl=cfg.attention)  # fmt: skip
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = Mlp(dim, int(dim * cfg.mlp_ratio), dim, cfg.drop_rate, act=_activation(cfg.act))

    def _scaled(self, x: torch.Tensor, gamma: Optional[torch.Tensor]) -> torch.Tensor:
        return self.drop_path(x if gamma is None else gamma * x)

    def forward(self, x: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        cls = cls + self._scaled(self.attn(self.norm1(torch.cat((cls, x), dim=1))), self.gamma_1)
        return cls + self._scaled(self.mlp(self.norm2(cls)), self.gamma_2)


class VisionTransformer(nn.Module):
    """A ViT-family model for clips (B, C, T, H, W) and images (B, C, H, W); returns class logits.

    Args:
        cfg: the architecture.
    """

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_dims = cfg.patch_dims
        self.patch_embed = self._patch_embed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim)) if cfg.class_token else None
        self.dist_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim)) if cfg.dist_token else None
        self._init_positions(cfg)
        self.pos_drop = nn.Dropout(cfg.drop_rate) if cfg.drop_rate > 0 else nn.Identity()
        rates = torch.linspace(0, cfg.drop_path_rate, cfg.depth, device="cpu").tolist()
        block = DividedBlock if cfg.attention_type == "divided" else Block
        first_reattention = cfg.depth - cfg.reattention_depth  # DeepViT: re-attention in the last blocks only
        self.blocks = nn.ModuleList(block(cfg, rate, i >= first_reattention) for i, rate in enumerate(rates))
        self.pos_block = nn.ModuleList([PositionGenerator(cfg.embed_dim, cfg.peg_kernel)]) if cfg.peg_kernel else None
        self.blocks_token_only = None
        if cfg.class_attention_depth:
            self.blocks_token_only = nn.ModuleList(ClassAttentionBlock(cfg, 0.0) for _ in range(cfg.class_attention_depth))
        avg = cfg.global_pool == "avg"
        self.norm = nn.Identity() if avg else nn.LayerNorm(cfg.embed_dim, eps=cfg.norm_eps)
        fc_eps = cfg.norm_eps if cfg.fc_norm_eps is None else cfg.fc_norm_eps
        self.fc_norm = nn.LayerNorm(cfg.embed_dim, eps=fc_eps) if avg else None
        self.head_drop = nn.Dropout(cfg.head_dropout) if cfg.head_dropout > 0 else nn.Identity()
        self.head = nn.Linear(cfg.embed_dim, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self.head_dist = None
        if cfg.dist_token:
            self.head_dist = nn.Linear(cfg.embed_dim, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self.num_features = cfg.embed_dim
        self._init_weights()

    @staticmethod
    def _patch_embed(cfg: ViTConfig) -> nn.Module:
        if cfg.stem == "cnn":
            return ConvPatchEmbed(cfg.in_chans, cfg.embed_dim, cfg.patch_size, cfg.tubelet_size,
                                  cfg.stem_temporal_kernel, cfg.stem_temporal_stride)  # fmt: skip
        kernel = (cfg.tubelet_size, cfg.patch_size, cfg.patch_size)
        return PatchEmbed(cfg.in_chans, cfg.embed_dim, kernel, kernel, (0, 0, 0), pad_time=True)

    def _init_positions(self, cfg: ViTConfig) -> None:
        t, h, w = self.patch_dims
        self.pos_embed = self.time_embed = None
        if cfg.pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_prefix + t * h * w, cfg.embed_dim))
        elif cfg.pos_embed == "space_time":
            self.pos_embed = nn.Parameter(torch.zeros(1, int(cfg.class_token) + h * w, cfg.embed_dim))
            self.time_embed = nn.Parameter(torch.zeros(1, t, cfg.embed_dim))

    def _init_weights(self) -> None:
        """timm's ViT initialisation: trunc-normal (std 0.02) Linear weights and position tables, zero biases,
        cls/dist tokens std 1e-6 (timm), LayerNorm 1/0."""
        for param in (self.pos_embed, self.time_embed):
            if param is not None:
                nn.init.trunc_normal_(param, std=0.02)
        for token in (self.cls_token, self.dist_token):
            if token is not None:
                nn.init.normal_(token, std=1e-6)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def position_tables(self) -> dict[str, tuple[int, THW]]:
        """The learned position tables: ``{name: (prefix rows, grid)}`` (for resizing checkpoints)."""
        t, h, w = self.patch_dims
        if self.cfg.pos_embed == "learned":
            return {"pos_embed": (self.cfg.num_prefix, (t, h, w))}
        if self.cfg.pos_embed == "space_time":
            return {"pos_embed": (int(self.cfg.class_token), (1, h, w)), "time_embed": (0, (t, 1, 1))}
        return {}

    def no_weight_decay(self) -> set[str]:
        """Position tables and prefix tokens, trained without weight decay (timm's rule)."""
        return {name for name, _ in self.named_parameters() if name in ("pos_embed", "time_embed", "cls_token",
                                                                            "dist_token")}  # fmt: skip

    def layer_id(self, name: str) -> int:
        """Depth index of a parameter for layer-wise LR decay: embeddings 0, block i i + 1 (the PEG with block 0),
        the rest (class-attention blocks, norms, heads) depth + 1."""
        if name.startswith("blocks."):
            return int(name.split(".")[1]) + 1
        if name.startswith("pos_block."):
            return 1
        if name.startswith(("patch_embed.", "cls_token", "dist_token", "pos_embed", "time_embed")):
            return 0
        return self.cfg.depth + 1

    def _to_clip(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 4:
            return x.unsqueeze(2)  # an image is a one-frame clip
        if x.ndim != 5:
            raise ValueError(f"expected (B, C, T, H, W) or (B, C, H, W) input, got shape {tuple(x.shape)}")
        return x

    def _prefix(self, batch: int) -> list[torch.Tensor]:
        tokens = (self.cls_token, self.dist_token) if not self.cfg.class_attention_depth else ()
        return [t.expand(batch, -1, -1) for t in tokens if t is not None]

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, THW]:
        """Tokens with prefix tokens and positions: (B, num_prefix + T'H'W', C) and the grid."""
        x, thw = self.patch_embed(self._to_clip(x))
        cfg = self.cfg
        if cfg.pos_embed == "sincos":
            x = x + sinusoid_table(x.shape[1], cfg.embed_dim).to(x)
        elif cfg.pos_embed == "space_time":
            x = self._add_space_time(x, thw)
        x = torch.cat([*self._prefix(x.shape[0]), x], dim=1)
        if cfg.pos_embed == "space_time" and cfg.class_token:  # the spatial table's first entry is the cls position
            x = torch.cat((x[:, :1] + self.pos_embed[:, :1], x[:, 1:]), dim=1)
        if cfg.pos_embed == "learned":
            n = cfg.num_prefix
            grid = resize_grid_embedding(self.pos_embed[:, n:], self.patch_dims, thw, cfg.pos_resize)
            x = x + torch.cat((self.pos_embed[:, :n], grid), dim=1)
        return self.pos_drop(x), thw

    def _add_space_time(self, x: torch.Tensor, thw: THW) -> torch.Tensor:
        """TimeSformer: the spatial table (without its cls entry) on every frame plus the time table on every
        location."""
        (t, h, w), B, C = thw, x.shape[0], x.shape[2]
        n = int(self.cfg.class_token)
        old = (1, *self.patch_dims[1:])
        space = resize_grid_embedding(self.pos_embed[:, n:], old, (1, h, w), self.cfg.pos_resize)  # (1, HW, C)
        time = resize_grid_embedding(self.time_embed, (self.patch_dims[0], 1, 1), (t, 1, 1), self.cfg.pos_resize)
        x = x.reshape(B, t, h * w, C) + space[:, None] + time[:, :, None]
        return x.reshape(B, t * h * w, C)

    def _run_blocks(self, x: torch.Tensor, thw: THW) -> torch.Tensor:
        n = self.cfg.num_prefix
        for i, block in enumerate(self.blocks):
            if self.cfg.act_checkpoint and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, thw, n, use_reentrant=False)
            else:
                x = block(x, thw, n)
            if i == 0 and self.pos_block is not None:
                x = self.pos_block[0](x, thw, n)
        return x

    def forward_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, THW]:
        """Every token after the last block (and the class-attention blocks) and the final norm: (B, N, C)."""
        x, thw = self._embed(x)
        x = self._run_blocks(x, thw)
        if self.blocks_token_only is not None:
            cls = self.cls_token.expand(x.shape[0], -1, -1)
            for block in self.blocks_token_only:
                cls = block(x, cls)
            x = torch.cat((cls, x), dim=1)
        return self.norm(x), thw

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's input: the normalised cls token, or the ``fc_norm`` of the mean patch token; with a
        distillation token, (B, 2, C) (cls and dist)."""
        x, _ = self.forward_tokens(x)
        if self.cfg.global_pool == "avg":
            prefix = int(self.cfg.class_token) + int(self.cfg.dist_token)
            return self.fc_norm(x[:, prefix:].mean(dim=1))
        return x[:, :2] if self.cfg.dist_token else x[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head_drop(self.forward_features(x))
        if self.cfg.detach_head:
            features = features.detach()
        if self.head_dist is None:
            return self.head(features)
        # DeiT: the class and distillation heads, averaged (timm and HF do the same at inference)
        return (self.head(features[:, 0]) + self.head_dist(features[:, 1])) / 2

    def token_grids(self, input_size: Optional[THW] = None) -> list[THW]:
        """Token grid entering each block and after the last (the same grid throughout)."""
        return [self.cfg.token_grid(input_size or self.cfg.input_size)] * (self.cfg.depth + 1)


# ------------------------------------------------------------------------------------------- named variants


@register_model
def vit_ti16_in1k() -> ViTConfig:
    """ViT-Ti/16 at 224 (timm ``vit_tiny_patch16_224``)."""
    return ViTConfig(embed_dim=192, depth=12, num_heads=3)


@register_model
def vit_b16_in1k() -> ViTConfig:
    """ViT-B/16 at 224 (timm ``vit_base_patch16_224``)."""
    return ViTConfig(embed_dim=768, depth=12, num_heads=12)


@register_model
def deit_ti16_in1k() -> ViTConfig:
    """DeiT-Ti (timm ``deit_tiny_patch16_224``)."""
    return ViTConfig(embed_dim=192, depth=12, num_heads=3)


@register_model
def deit_ti16_distilled_in1k() -> ViTConfig:
    """DeiT-Ti with the distillation token (timm ``deit_tiny_distilled_patch16_224``)."""
    return ViTConfig(embed_dim=192, depth=12, num_heads=3, dist_token=True)


@register_model
def cait_xxs24_in1k() -> ViTConfig:
    """CaiT-XXS24 at 224 (timm ``cait_xxs24_224``): 24 talking-heads blocks, 2 class-attention blocks."""
    return ViTConfig(embed_dim=192, depth=24, num_heads=4, talking_heads=True, class_attention_depth=2,
                     layer_scale_init=1e-5)  # fmt: skip


@register_model
def cpvt_ti_in1k() -> ViTConfig:
    """CPVT-Ti: DeiT-Ti whose position embedding is a PEG (depthwise 3x3 conv) after the first block."""
    return ViTConfig(embed_dim=192, depth=12, num_heads=3, pos_embed="none", peg_kernel=(1, 3, 3))


@register_model
def videomae_b_16x4() -> ViTConfig:
    """VideoMAE ViT-B fine-tuned on K400, 16 x 224 (HF ``VideoMAEForVideoClassification``, MCG-NJU's checkpoint:
    q/v biases, fixed sin-cos positions, mean pooling with ``fc_norm``; LayerNorm eps 1e-12, fc_norm 1e-5)."""
    return ViTConfig(num_classes=400, input_size=(16, 224, 224), tubelet_size=2, qkv_bias="qv", class_token=False,
                     pos_embed="sincos", global_pool="avg", norm_eps=1e-12, fc_norm_eps=1e-5)  # fmt: skip


@register_model
def timesformer_b_8x32() -> ViTConfig:
    """TimeSformer-B, divided space-time attention, 8 x 224 (HF ``TimesformerForVideoClassification``)."""
    return ViTConfig(num_classes=400, input_size=(8, 224, 224), pos_embed="space_time", pos_resize="nearest",
                     attention_type="divided")  # fmt: skip


@register_model
def vivit_b_32x2() -> ViTConfig:
    """ViViT-B/16x2, joint space-time attention, 32 x 224 (HF ``VivitForVideoClassification``; GELU tanh)."""
    return ViTConfig(num_classes=400, input_size=(32, 224, 224), tubelet_size=2, act="gelu_tanh")


@register_model
def deepvit_s_in1k() -> ViTConfig:
    """DeepViT-S at 224 (official ``deepvit_S``): 16 blocks of width 396 (12 heads of 33), MLP ratio 3, q/k/v
    biases, LayerNorm eps 1e-6, the CNN patch stem, re-attention (scaled by head_dim ** -0.5) in the last 5 blocks
    and scale adjustment 0.5 in every block. 27,312,632 parameters; ImageNet top-1 82.3% (paper). Its weights were
    trained on inputs normalised with mean = std = (0.5, 0.5, 0.5) (a data setting, not part of the model)."""
    return ViTConfig(embed_dim=396, depth=16, num_heads=12, mlp_ratio=3.0, stem="cnn", reattention_depth=5,
                     reattention_scale=True, scale_adjustment=0.5)  # fmt: skip
