"""Spatiotemporal masked autoencoders (MAE / VideoMAE) for the ViT family: pre-training by reconstructing masked
tubelets from the visible ones.

The encoder is the ViT family's (``vit.VisionTransformer``: its tubelet embedding, fixed or learned positions,
blocks and final norm), run on the visible tokens only. Its outputs go through ``encoder_to_decoder`` (no bias) to
the decoder's width, get the decoder's own fixed sin-cos positions, and are joined by one learned ``mask_token``
per masked position (visible tokens first, masked after: the order of the mask, not the grid, as VideoMAE). The
decoder is a few ViT blocks, a norm and a linear ``head`` to the pixels of a tubelet; the loss is the mean squared
error on the masked tubelets only, against their pixels (un-normalised to [0, 1] with ``pixel_mean`` /
``pixel_std``), optionally normalised per tubelet and channel (``norm_pix_loss``).

State-dict names: the encoder's are the ViT family's (``patch_embed.proj``, ``blocks.N.attn.qkv``, ``norm``, ...),
so a pre-trained model's file initialises a ``VisionTransformer`` classifier as it is; the rest are the original
VideoMAE's (``encoder_to_decoder``, ``mask_token``, ``decoder.blocks.N...``, ``decoder.norm``, ``decoder.head``).
``formats/vit.py`` maps HF ``VideoMAEForPreTraining`` and the original VideoMAE pre-training files onto them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .layers.position import sinusoid_table
from .registry import register_model
from .vit import THW, Block, ViTConfig, VisionTransformer

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class MAEConfig(ViTConfig):
    """A ViT-family encoder (every ``ViTConfig`` field) with an MAE decoder and reconstruction target.

    Args:
        decoder_embed_dim, decoder_depth, decoder_num_heads: the decoder's width, blocks and heads.
        decoder_mlp_ratio: the decoder's MLP expansion (None: the encoder's ``mlp_ratio``).
        decoder_norm_eps: epsilon of the decoder's final norm (None: ``norm_eps``; HF's VideoMAE builds it with
            PyTorch's default 1e-5, its blocks with ``norm_eps``).
        norm_pix_loss: targets normalised per tubelet and channel (mean 0, unbiased std 1, + 1e-6), as VideoMAE
            and PySlowFast's ``MASK.NORM_PRED_PIXEL``.
        time_stride_loss: PySlowFast's ``MASK.TIME_STRIDE_LOSS``: predict only the first frame of each tubelet
            (the head outputs ``in_chans * patch_size ** 2`` values per token instead of ``tubelet_size`` times
            that); VideoMAE predicts the whole tubelet (False).
        pixel_mean, pixel_std: the normalisation of the input, undone to build the targets (VideoMAE: ImageNet's);
            None: the targets are the input as given.

    The encoder fields that do not apply to masked pre-training are refused: ``num_classes`` must be 0 (no
    classifier), no cls / distillation token, joint attention only, no PEG, no class-attention blocks, no head
    dropout or detached head; ``global_pool`` must stay "token" (the encoder keeps its final ``norm``).
    """

    num_classes: int = 0
    class_token: bool = False
    decoder_embed_dim: int = 384
    decoder_depth: int = 4
    decoder_num_heads: int = 6
    decoder_mlp_ratio: Optional[float] = None
    decoder_norm_eps: Optional[float] = None
    norm_pix_loss: bool = True
    time_stride_loss: bool = False
    pixel_mean: Optional[tuple[float, ...]] = IMAGENET_MEAN
    pixel_std: Optional[tuple[float, ...]] = IMAGENET_STD

    def __post_init__(self) -> None:
        super().__post_init__()
        refused = {"num_classes": self.num_classes != 0, "class_token": self.class_token,
                   "dist_token": self.dist_token, "attention_type": self.attention_type != "joint",
                   "peg_kernel": self.peg_kernel is not None, "class_attention_depth": self.class_attention_depth,
                   "global_pool": self.global_pool != "token", "head_dropout": self.head_dropout > 0,
                   "detach_head": self.detach_head, "stem": self.stem != "patch"}  # fmt: skip
        for name, bad in refused.items():
            if bad:
                raise ValueError(f"MAEConfig.{name}={getattr(self, name)!r} does not apply to masked pre-training "
                                 "(no classifier or prefix tokens, joint attention, patch stem, final norm)")  # fmt: skip
        if self.decoder_depth < 1 or self.decoder_embed_dim % self.decoder_num_heads:
            raise ValueError(f"MAEConfig: decoder_depth={self.decoder_depth} must be >= 1 and decoder_embed_dim="
                             f"{self.decoder_embed_dim} divisible by decoder_num_heads={self.decoder_num_heads}")  # fmt: skip
        if (self.pixel_mean is None) != (self.pixel_std is None) or (
            self.pixel_mean is not None and not len(self.pixel_mean) == len(self.pixel_std) == self.in_chans
        ):  # fmt: skip
            raise ValueError(f"MAEConfig: pixel_mean and pixel_std are both None or both have in_chans="
                             f"{self.in_chans} values, got {self.pixel_mean} and {self.pixel_std}")  # fmt: skip

    def encoder_config(self) -> ViTConfig:
        """The encoder as a plain ``ViTConfig`` (the ViT family's fields of this config)."""
        names = ViTConfig.__dataclass_fields__
        return ViTConfig(**{name: getattr(self, name) for name in names})

    def decoder_config(self) -> ViTConfig:
        """The decoder's blocks as a ``ViTConfig`` (width, heads and MLP of the decoder; the encoder's biases,
        activation, norm epsilon, dropout and attention kernel)."""
        mlp = self.mlp_ratio if self.decoder_mlp_ratio is None else self.decoder_mlp_ratio
        return self.encoder_config().replace(embed_dim=self.decoder_embed_dim, depth=self.decoder_depth,
                                             num_heads=self.decoder_num_heads, mlp_ratio=mlp,
                                             layer_scale_init=0.0, reattention_depth=0)  # fmt: skip

    @property
    def target_frames(self) -> int:
        """Frames of a tubelet the decoder predicts."""
        return 1 if self.time_stride_loss else self.tubelet_size

    @property
    def patch_dim(self) -> int:
        """Values the decoder predicts per masked token."""
        return self.in_chans * self.target_frames * self.patch_size**2


def tube_mask(batch: int, grid_thw: THW, ratio: float, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """VideoMAE's tube masking: per clip, one random set of ``int(ratio * H * W)`` spatial positions masked in
    every one of the T token slices.

    Args:
        batch: clips.
        grid_thw: the token grid (T', H', W').
        ratio: share of the spatial positions masked, in [0, 1).
        generator: random source (seeded for reproducible masks).

    Returns:
        (batch, T' * H' * W') bool, True = masked, in the grid's (t, h, w) order.
    """
    t, h, w = grid_thw
    if not 0 <= ratio < 1:
        raise ValueError(f"tube_mask: ratio={ratio} must be in [0, 1)")
    masked = int(ratio * h * w)
    order = torch.rand(batch, h * w, generator=generator).argsort(dim=1)
    space = torch.zeros(batch, h * w, dtype=torch.bool)
    space.scatter_(1, order[:, :masked], True)
    return space[:, None, :].expand(batch, t, h * w).reshape(batch, t * h * w)


def patchify(x: torch.Tensor, tubelet: int, patch: int) -> torch.Tensor:
    """Clips cut into tubelets in VideoMAE's order: (B, C, T, H, W) -> (B, T/t * H/p * W/p, t * p * p, C)."""
    B, C, T, H, W = x.shape
    x = x.reshape(B, C, T // tubelet, tubelet, H // patch, patch, W // patch, patch)
    # (B, C, T', t, H', p, W', p) -> (B, T', H', W', t, p, p, C)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)
    return x.reshape(B, -1, tubelet * patch * patch, C)


class MAEDecoder(nn.Module):
    """The light decoder: ViT blocks over all tokens, then norm and ``head`` on the last ``num_masked`` tokens.

    Args:
        cfg: the MAE architecture.
    """

    def __init__(self, cfg: MAEConfig) -> None:
        super().__init__()
        blocks = cfg.decoder_config()
        rates = torch.linspace(0, cfg.drop_path_rate, cfg.decoder_depth, device="cpu").tolist()
        self.blocks = nn.ModuleList(Block(blocks, rate) for rate in rates)
        eps = cfg.norm_eps if cfg.decoder_norm_eps is None else cfg.decoder_norm_eps
        self.norm = nn.LayerNorm(cfg.decoder_embed_dim, eps=eps)
        self.head = nn.Linear(cfg.decoder_embed_dim, cfg.patch_dim)

    def forward(self, x: torch.Tensor, thw: THW, num_masked: int) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, thw, 0)
        return self.head(self.norm(x[:, -num_masked:]))  # (B, num_masked, patch_dim)


class MaskedAutoencoder(VisionTransformer):
    """MAE / VideoMAE pre-training model: ``forward(x, mask)`` -> ``{"loss", "pred"}``.

    Args:
        cfg: the architecture (encoder fields as ``ViTConfig``, plus the decoder and target).
    """

    def __init__(self, cfg: MAEConfig) -> None:
        super().__init__(cfg)
        self.encoder_to_decoder = nn.Linear(cfg.embed_dim, cfg.decoder_embed_dim, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.decoder_embed_dim))
        self.decoder = MAEDecoder(cfg)
        self._init_mae_weights()

    def _init_mae_weights(self) -> None:
        """VideoMAE's pre-training initialisation: Xavier-uniform Linear weights (encoder and decoder), zero
        biases, the mask token trunc-normal (std 0.02); LayerNorm 1/0, the patch kernel PyTorch's default."""
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def no_weight_decay(self) -> set[str]:
        """The encoder's position tables and the mask token (VideoMAE's rule)."""
        return super().no_weight_decay() | {"mask_token"}

    def _check(self, x: torch.Tensor, mask: torch.Tensor) -> THW:
        """The token grid of ``x``; one-line ``ValueError``s for a clip that is not whole tubelets or a mask that
        does not fit it."""
        cfg = self.cfg
        T, H, W = x.shape[2:]
        if T % cfg.tubelet_size or H % cfg.patch_size or W % cfg.patch_size:
            raise ValueError(f"MAE: a clip of {T}x{H}x{W} is not whole tubelets of {cfg.tubelet_size}x"
                             f"{cfg.patch_size}x{cfg.patch_size}")  # fmt: skip
        thw = cfg.token_grid((T, H, W))
        n = thw[0] * thw[1] * thw[2]
        if mask.dtype != torch.bool or tuple(mask.shape) != (x.shape[0], n):
            raise ValueError(f"MAE: mask must be bool of shape {(x.shape[0], n)} (True = masked), got "
                             f"{mask.dtype} {tuple(mask.shape)}")  # fmt: skip
        counts = mask.sum(dim=1)
        if bool((counts != counts[0]).any()) or int(counts[0]) in (0, n):
            raise ValueError(f"MAE: every clip needs the same number of masked tokens, between 1 and {n - 1}; got "
                             f"{counts.tolist()}")  # fmt: skip
        return thw

    def forward_encoder(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, THW]:
        """The visible tokens after the encoder and its final norm: (B, N_visible, C), in grid order."""
        tokens, thw = self._embed(x)  # (B, N, C) with positions
        B, _, C = tokens.shape
        visible = tokens[~mask].reshape(B, -1, C)
        return self.norm(self._run_blocks(visible, thw)), thw

    def forward_decoder(self, latent: torch.Tensor, mask: torch.Tensor, thw: THW) -> torch.Tensor:
        """Predictions for the masked tokens, in grid order: (B, N_masked, patch_dim)."""
        x = self.encoder_to_decoder(latent)  # (B, N_visible, D)
        B, _, D = x.shape
        pos = sinusoid_table(mask.shape[1], D).to(x).expand(B, -1, -1)
        visible = x + pos[~mask].reshape(B, -1, D)
        masked = self.mask_token.to(x) + pos[mask].reshape(B, -1, D)
        return self.decoder(torch.cat((visible, masked), dim=1), thw, masked.shape[1])

    @torch.no_grad()
    def targets(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction targets of every token: (B, N, patch_dim), in the decoder head's order (t, p, p, C)."""
        cfg = self.cfg
        if cfg.pixel_mean is not None:
            # float32 constants, as VideoMAE and HF build them (so float64 runs match them exactly)
            mean, std = (torch.tensor(v, dtype=torch.float32).to(x).view(1, -1, 1, 1, 1)
                         for v in (cfg.pixel_mean, cfg.pixel_std))  # fmt: skip
            x = x * std + mean  # back to [0, 1]
        if cfg.time_stride_loss:
            x = x[:, :, :: cfg.tubelet_size]  # the first frame of each tubelet
        patches = patchify(x, cfg.target_frames, cfg.patch_size)  # (B, N, t*p*p, C)
        if cfg.norm_pix_loss:
            mean = patches.mean(dim=-2, keepdim=True)
            patches = (patches - mean) / (patches.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6)
        return patches.flatten(2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Masked reconstruction of a clip batch.

        Args:
            x: (B, C, T, H, W) clips, normalised with ``pixel_mean`` / ``pixel_std`` (an image is a one-frame clip).
            mask: (B, N) bool over the token grid in (t, h, w) order, True = masked; the same count per clip. The
                loader's (B, T', H', W') grid masks are flattened to it.

        Returns:
            ``loss``: the mean squared error over the masked tokens; ``pred``: (B, N_masked, patch_dim) predictions
            of the masked tokens in grid order (compare with ``targets(x)[mask]``).
        """
        x = self._to_clip(x)
        mask = mask.flatten(1)  # (B, T', H', W') -> (B, N)
        thw = self._check(x, mask)
        latent, _ = self.forward_encoder(x, mask)
        pred = self.forward_decoder(latent, mask, thw)
        target = self.targets(x)[mask].reshape(pred.shape)
        return {"loss": F.mse_loss(pred, target.to(pred)), "pred": pred}

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Every token through the encoder and its final norm, no mask: (B, N, C)."""
        return self.forward_tokens(x)[0]


# ------------------------------------------------------------------------------------------- named variants


@register_model
def videomae_b_16x4_pt() -> MAEConfig:
    """VideoMAE ViT-B pre-training, 16 x 224 (HF ``VideoMAEForPreTraining``, MCG-NJU's ``videomae-base``): the
    ``videomae_b_16x4`` encoder (q/v biases, fixed sin-cos positions, LayerNorm eps 1e-12) with its final norm, a
    decoder of 4 blocks of 384 (6 heads; its final norm eps 1e-5, as HF), tubelet targets normalised per patch."""
    return MAEConfig(input_size=(16, 224, 224), tubelet_size=2, qkv_bias="qv", pos_embed="sincos", norm_eps=1e-12,
                     decoder_embed_dim=384, decoder_depth=4, decoder_num_heads=6, decoder_norm_eps=1e-5)  # fmt: skip
