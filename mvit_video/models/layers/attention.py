"""Multi-head self-attention for token sequences: the plain kind (fused SDPA or explicit), talking heads, DeepViT's
re-attention and class attention. The MViT family's pooling attention lives in ``models/attention.py``.

Every module takes (B, N, C) tokens and returns (B, N', C). ``resolve_attention`` picks the kernel: "sdpa"
(``F.scaled_dot_product_attention``, fused where the backend has one) or "math" (explicit logits, the reference);
"auto" is SDPA except in float64 (the precision of the reference checks) and while tracing for FLOP counts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..attention import resolve_attention

QKV_BIASES = ("qkv", "qv", "none")


class QKVProjection(nn.Module):
    """Base of the attention modules with a fused q/k/v projection ``qkv``: a bias on all three (``"qkv"``), on q
    and v only (``"qv"``, VideoMAE's ``q_bias`` / ``v_bias``: the key bias is zero, not learned) or none.

    Args:
        dim: token width.
        heads: attention heads.
        bias: "qkv", "qv" or "none".
    """

    def __init__(self, dim: int, heads: int, bias: str = "qkv") -> None:
        super().__init__()
        if bias not in QKV_BIASES:
            raise ValueError(f"qkv bias must be one of {QKV_BIASES}, got {bias!r}")
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=bias == "qkv")
        self.q_bias = nn.Parameter(torch.zeros(dim)) if bias == "qv" else None
        self.v_bias = nn.Parameter(torch.zeros(dim)) if bias == "qv" else None

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, N, C) tokens -> q, k, v, each (B, heads, N, C/heads)."""
        B, N, C = x.shape
        if self.q_bias is None:
            qkv = self.qkv(x)
        else:
            qkv = F.linear(x, self.qkv.weight, torch.cat((self.q_bias, torch.zeros_like(self.q_bias), self.v_bias)))
        # (B, N, 3C) -> (3, B, heads, N, C/heads)
        qkv = qkv.reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, impl: str, dropout: float = 0.0,
           scale: float | None = None) -> torch.Tensor:  # fmt: skip
    """``softmax(q k^T * scale) v`` over (B, heads, N, d) tensors, fused (SDPA) or explicit; ``scale`` defaults to
    ``1 / sqrt(d)`` (CvT scales by ``1 / sqrt(width)`` instead)."""
    if resolve_attention(impl, q) == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=scale)
    attn = (q * (q.shape[-1] ** -0.5 if scale is None else scale)) @ k.transpose(-2, -1)
    attn = F.dropout(attn.softmax(dim=-1), dropout, training=dropout > 0)
    return attn @ v


class Attention(QKVProjection):
    """Multi-head self-attention (ViT): fused qkv, attention, output projection.

    Args:
        dim: token width.
        heads: attention heads.
        qkv_bias: "qkv", "qv" or "none" (see ``QKV``).
        attn_drop: dropout on the attention weights (training only).
        proj_drop: dropout after the output projection.
        impl: "auto", "sdpa" or "math".
    """

    def __init__(self, dim: int, heads: int, qkv_bias: str = "qkv", attn_drop: float = 0.0, proj_drop: float = 0.0,
                 impl: str = "auto") -> None:  # fmt: skip
        super().__init__(dim, heads, qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop, self.impl = attn_drop, impl
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.project(x)
        x = attend(q, k, v, self.impl, self.attn_drop if self.training else 0.0)
        # (B, heads, N, C/heads) -> (B, N, C)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, N, C)))


class TalkingHeadAttention(QKVProjection):
    """Talking-heads attention (CaiT): the heads' logits are mixed by ``proj_l`` before the softmax and the
    weights by ``proj_w`` after it (both ``Linear(heads, heads)`` with bias); always explicit.

    Args: as ``Attention`` (``impl`` is ignored: the mixed weights need the explicit attention map).
    """

    def __init__(self, dim: int, heads: int, qkv_bias: str = "qkv", attn_drop: float = 0.0, proj_drop: float = 0.0,
                 impl: str = "math") -> None:  # fmt: skip
        super().__init__(dim, heads, qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_l = nn.Linear(heads, heads)
        self.proj_w = nn.Linear(heads, heads)
        self.attn_drop = nn.Dropout(attn_drop) if attn_drop > 0 else nn.Identity()
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.project(x)
        attn = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
        # mix over heads: (B, heads, N, N) -> (B, N, N, heads) -> Linear -> back
        attn = self.proj_l(attn.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).softmax(dim=-1)
        attn = self.attn_drop(self.proj_w(attn.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
        return self.proj_drop(self.proj((attn @ v).transpose(1, 2).reshape(B, N, C)))


class ReAttention(QKVProjection):
    """DeepViT's re-attention: after the softmax, the (heads, N, N) attention maps are mixed across heads by
    ``reatten_matrix`` (a 1x1 ``Conv2d(heads, heads)`` with bias, i.e. ``A'[g] = sum_h W[g, h] A[h] + b[g]``),
    normalised per head by ``var_norm`` (``BatchNorm2d(heads)`` over the maps: batch statistics in training, running
    ones in eval) and scaled by ``head_dim ** -0.5`` when ``scale`` (DeepViT's ``transform_scale``), before they
    weight the values. Always explicit (never SDPA): the mixing needs the N x N map, so memory is quadratic in N
    (N = T' H' W' + 1 on clips). Attention dropout acts before the mixing, as in DeepViT.

    Args:
        dim: token width.
        heads: attention heads.
        qkv_bias: "qkv", "qv" or "none" (see ``QKVProjection``).
        attn_drop: dropout on the softmax weights (training only).
        proj_drop: dropout after the output projection.
        scale: multiply the normalised maps by ``head_dim ** -0.5``.
    """

    def __init__(self, dim: int, heads: int, qkv_bias: str = "qkv", attn_drop: float = 0.0, proj_drop: float = 0.0,
                 scale: bool = False) -> None:  # fmt: skip
        super().__init__(dim, heads, qkv_bias)
        self.reatten_matrix = nn.Conv2d(heads, heads, 1, 1)
        self.var_norm = nn.BatchNorm2d(heads)
        self.reatten_scale = (dim // heads) ** -0.5 if scale else 1.0
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(attn_drop) if attn_drop > 0 else nn.Identity()
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.project(x)
        attn = self.attn_drop(((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1))
        # (B, heads, N, N): the heads are the channels of the mixing conv and of the BatchNorm
        attn = self.var_norm(self.reatten_matrix(attn)) * self.reatten_scale
        return self.proj_drop(self.proj((attn @ v).transpose(1, 2).reshape(B, N, C)))


class ClassAttention(nn.Module):
    """Class attention (CaiT): the class token attends to itself and every patch token; only it is updated.

    Args:
        dim: token width.
        heads: attention heads.
        qkv_bias: biases on q, k and v.
        impl: "auto", "sdpa" or "math".
    """

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 impl: str = "auto") -> None:  # fmt: skip
        super().__init__()
        self.heads, self.impl, self.attn_drop = heads, impl, attn_drop
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.k = nn.Linear(dim, dim, bias=qkv_bias)
        self.v = nn.Linear(dim, dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: (B, 1 + N, C) with the class token first; returns the new class token (B, 1, C)."""
        B, N, C = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:  # (B, n, C) -> (B, heads, n, C/heads)
            return t.reshape(B, t.shape[1], self.heads, C // self.heads).transpose(1, 2)

        q, k, v = heads(self.q(x[:, :1])), heads(self.k(x)), heads(self.v(x))
        x_cls = attend(q, k, v, self.impl, self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(x_cls.transpose(1, 2).reshape(B, 1, C)))
