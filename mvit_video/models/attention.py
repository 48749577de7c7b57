"""Pooling attention over T x H x W token grids with decomposed relative positions (MViT v1 / v2)."""

from __future__ import annotations

import functools
import sys
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers.conv import Conv3d

THW = tuple[int, int, int]


def pool_tokens(
    x: torch.Tensor,
    pool: Optional[nn.Module],
    thw: THW,
    has_cls: bool,
    norm: Optional[nn.Module] = None,
) -> tuple[torch.Tensor, THW]:
    """Pools the spatiotemporal tokens of ``x`` (the cls token, if any, passes through).

    Args:
        x: tokens of shape (B, heads, N, C) or (B, N, C), N = [1 +] T*H*W.
        pool: a 3-D pooling module over (C, T, H, W), or None for no pooling.
        thw: the token grid (T, H, W) of ``x``.
        has_cls: whether token 0 is a cls token.
        norm: applied to all tokens (cls included) after pooling.

    Returns:
        The pooled tokens (same rank as ``x``) and their grid.
    """
    if pool is None:
        return x, thw
    squeeze = x.ndim == 3
    if squeeze:
        x = x.unsqueeze(1)
    if has_cls:
        cls_tok, x = x[:, :, :1], x[:, :, 1:]
    B, heads, _, C = x.shape
    # (B, heads, THW, C) -> (B*heads, C, T, H, W)
    x = x.reshape(B * heads, *thw, C).permute(0, 4, 1, 2, 3)
    x = pool(x)
    thw = tuple(x.shape[2:])
    # (B*heads, C, T', H', W') -> (B, heads, T'H'W', C)
    x = x.reshape(B, heads, C, -1).transpose(2, 3)
    if has_cls:
        x = torch.cat((cls_tok, x), dim=2)
    if norm is not None:
        x = norm(x)
    return (x.squeeze(1) if squeeze else x), thw


def resize_rel_pos(rel_pos: torch.Tensor, length: int) -> torch.Tensor:
    """Linearly resamples a (L, C) table of relative-position embeddings to (length, C)."""
    if rel_pos.shape[0] == length:
        return rel_pos
    # (L, C) -> (1, C, L) -> (1, C, length) -> (length, C)
    resized = F.interpolate(rel_pos.t().unsqueeze(0), size=length, mode="linear")
    return resized.squeeze(0).t()


def gather_rel_pos(rel_pos: torch.Tensor, q_size: int, k_size: int) -> torch.Tensor:
    """Embeddings of every (query, key) offset along one axis, shape (q_size, k_size, C).

    When query and key grids differ in size (pooling), offsets are measured on the finer grid, as in MViTv2.
    """
    rel_pos = resize_rel_pos(rel_pos, 2 * max(q_size, k_size) - 1)
    q_ratio = max(k_size / q_size, 1.0)
    k_ratio = max(q_size / k_size, 1.0)
    q_idx = torch.arange(q_size, device=rel_pos.device)[:, None] * q_ratio
    k_idx = torch.arange(k_size, device=rel_pos.device)[None, :] * k_ratio
    dist = (q_idx - k_idx).float() + (k_size - 1) * k_ratio
    return rel_pos[dist.long()]


_AXIS_EINSUM = ("bnthwc,tkc->bnthwk", "bnthwc,hkc->bnthwk", "bnthwc,wkc->bnthwk")
RelPosTables = tuple[Optional[torch.Tensor], Optional[torch.Tensor], Optional[torch.Tensor]]


def _axis_terms(q: torch.Tensor, q_thw: THW, k_thw: THW, tables: RelPosTables, has_cls: bool) -> list:
    """Per axis with a table (t, h, w order): each grid query's rel-pos term towards every key coordinate along
    that axis, ``(axis, (B, heads, Nq_grid, k_size))``; the cls query (if any) is left out."""
    B, heads, _, C = q.shape
    # (B, heads, N, C) -> (B, heads, T, H, W, C), cls token dropped
    r_q = q[:, :, int(has_cls) :].reshape(B, heads, *q_thw, C)
    terms = []
    for axis, table in enumerate(tables):
        if table is not None:
            rel = gather_rel_pos(table, q_thw[axis], k_thw[axis])
            terms.append((axis, torch.einsum(_AXIS_EINSUM[axis], r_q, rel).flatten(2, 4)))
    return terms


def rel_pos_query_terms(q: torch.Tensor, q_thw: THW, k_thw: THW, rel_pos_t: Optional[torch.Tensor],
                        rel_pos_h: Optional[torch.Tensor], rel_pos_w: Optional[torch.Tensor],
                        has_cls: bool) -> torch.Tensor:  # fmt: skip
    """Every query's bias towards each key coordinate: (B, heads, Nq, kt + kh + kw) for the axes with tables.

    The decomposed relative-position bias of query i and key j is the sum over axes of the term of i towards j's
    coordinate on that axis: ``terms @ rel_pos_key_codes(...).T``. A cls query gets zeros.
    """
    terms = torch.cat([t for _, t in _axis_terms(q, q_thw, k_thw, (rel_pos_t, rel_pos_h, rel_pos_w), has_cls)], -1)
    return F.pad(terms, (0, 0, 1, 0)) if has_cls else terms


def decomposed_rel_pos_bias(
    q: torch.Tensor,
    q_thw: THW,
    k_thw: THW,
    rel_pos_t: Optional[torch.Tensor],
    rel_pos_h: Optional[torch.Tensor],
    rel_pos_w: Optional[torch.Tensor],
    has_cls: bool,
) -> torch.Tensor:
    """The additive attention bias of decomposed relative positions along t, h and w, built from the same
    per-axis query terms as ``rel_pos_query_terms`` (each broadcast over the other two key axes).

    Args:
        q: pooled queries (B, heads, Nq, C), before scaling.
        q_thw: query grid. k_thw: key grid.
        rel_pos_t, rel_pos_h, rel_pos_w: (L, C) tables, or None to leave that axis out.
        has_cls: whether token 0 of queries and keys is a cls token (it gets no bias).

    Returns:
        A bias of shape (B, heads, Nq, Nk) to add to the attention logits.
    """
    B, heads = q.shape[:2]
    bias = None
    for axis, term in _axis_terms(q, q_thw, k_thw, (rel_pos_t, rel_pos_h, rel_pos_w), has_cls):
        shape = [1, 1, 1]
        shape[axis] = k_thw[axis]
        # (B, heads, Nq, k_axis) -> (B, heads, Nq, kt | 1, kh | 1, kw | 1), broadcast over the other key axes
        term = term.reshape(B, heads, term.shape[2], *shape)
        bias = term if bias is None else bias + term
    bias = bias.expand(*bias.shape[:3], *k_thw).flatten(3)
    return F.pad(bias, (1, 0, 1, 0)) if has_cls else bias


def _build_key_codes(k_thw: THW, axes: tuple[bool, bool, bool], has_cls: bool, dtype: torch.dtype,
                     device: torch.device) -> torch.Tensor:  # fmt: skip
    grids = torch.meshgrid(*(torch.arange(n, device=device) for n in k_thw), indexing="ij")
    codes = [F.one_hot(grids[i].flatten(), n) for i, n in enumerate(k_thw) if axes[i]]
    codes = torch.cat(codes, dim=-1).to(dtype)
    return F.pad(codes, (0, 0, 1, 0)) if has_cls else codes


@functools.lru_cache(maxsize=64)
def _cached_key_codes(k_thw: THW, axes: tuple[bool, bool, bool], has_cls: bool, dtype: torch.dtype,
                      device: torch.device) -> torch.Tensor:  # fmt: skip
    with torch.inference_mode(False), torch.no_grad():  # a plain tensor, usable later with autograd too
        return _build_key_codes(k_thw, axes, has_cls, dtype, device)


def rel_pos_key_codes(
    k_thw: THW, axes: tuple[bool, bool, bool], has_cls: bool, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """One-hot key coordinates, (Nk, sum of the used axes' key sizes): along t, h, w (those in ``axes``).

    With ``rel_pos_query_terms``, ``terms @ codes.T`` is the decomposed relative-position bias; a cls key has
    all-zero codes (no bias). Built on ``device`` once per grid, dtype and device (constants while compiling).
    """
    key = (tuple(k_thw), tuple(axes), has_cls, dtype, torch.device(device))
    if torch.compiler.is_compiling():
        return _build_key_codes(*key)
    return _cached_key_codes(*key)


def fused_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    q_thw: THW,
    k_thw: THW,
    rel_pos: RelPosTables,
    has_cls: bool,
    pad_multiple: int = 1,
) -> torch.Tensor:
    """``softmax(scale * q k^T + rel-pos bias) v`` through ``scaled_dot_product_attention`` without a mask.

    The decomposed bias is folded into the dot product: queries get their rel-pos terms appended
    (``rel_pos_query_terms``), keys the one-hot codes of their coordinates (``rel_pos_key_codes``), so
    ``[scale q, terms] . [k, codes] = scale q.k + bias`` exactly and SDPA may pick a fused (flash / memory-
    efficient) kernel: the (Nq, Nk) bias is never materialised. ``pad_multiple`` zero-pads the head dimension of
    q, k and v to a common multiple (flash kernels want equal, aligned head sizes); the output is cut back.

    Args:
        q, k, v: (B, heads, N, C) pooled (and normed) queries, keys and values; q unscaled.
        scale: the logit scale (head_dim ** -0.5).
        q_thw, k_thw: the query and key grids.
        rel_pos: the (t, h, w) tables, None for an axis without one.
        has_cls: token 0 of queries and keys is a cls token (no bias).
        pad_multiple: 1 for no padding.

    Returns:
        (B, heads, Nq, C).
    """
    if all(table is None for table in rel_pos):
        return F.scaled_dot_product_attention(q, k, v, scale=scale)
    terms = rel_pos_query_terms(q, q_thw, k_thw, *rel_pos, has_cls)
    axes = tuple(table is not None for table in rel_pos)
    codes = rel_pos_key_codes(k_thw, axes, has_cls, k.dtype, k.device).expand(*k.shape[:2], -1, -1)
    q_aug, k_aug = torch.cat((q * scale, terms), dim=-1), torch.cat((k, codes), dim=-1)
    width = -(-q_aug.shape[-1] // pad_multiple) * pad_multiple
    if pad_multiple > 1:
        q_aug, k_aug = (F.pad(t, (0, width - t.shape[-1])) for t in (q_aug, k_aug))
        v = F.pad(v, (0, width - v.shape[-1]))
    out = F.scaled_dot_product_attention(q_aug, k_aug, v, scale=1.0)
    return out[..., : q.shape[-1]] if pad_multiple > 1 else out


ATTENTION_IMPLS = ("auto", "math", "sdpa")


def _exporting_onnx() -> bool:
    """Whether ``torch.onnx.export`` is running (torch.onnx is imported lazily: not imported, not exporting)."""
    onnx = sys.modules.get("torch.onnx")
    return onnx is not None and onnx.is_in_onnx_export()


def resolve_attention(impl: str, x: torch.Tensor) -> str:
    """The implementation ``impl`` means for input ``x``: "auto" is the fused SDPA path, except in float64 (the
    precision of the reference checks, where the plain path is the reference), while tracing (fvcore counts
    matmuls, not SDPA; TorchScript export) and while exporting to ONNX (no attention op before opset 23: the
    exporter spells SDPA out as matmuls, and the plain path's are the narrower ones)."""
    if impl != "auto":
        return impl
    if x.dtype == torch.float64 or torch.jit.is_tracing() or _exporting_onnx():
        return "math"
    return "sdpa"


def resolve_biased_attention(impl: str, x: torch.Tensor, bias: torch.Tensor) -> str:
    """``resolve_attention`` for attention with a learned additive bias (``bias``: the mask SDPA would get). On a
    CPU, SDPA's fused kernels give no gradient for ``attn_mask``: when one is needed, SDPA falls back to its own
    unfused path with a NaN-safe softmax (extra passes over every score) that is slower than the plain path, so
    "auto" takes the plain path there."""
    chosen = resolve_attention(impl, x)
    if impl == "auto" and chosen == "sdpa" and x.device.type == "cpu" and bias.requires_grad:
        return "math"
    return chosen


def _make_pool(mode: str, kernel: Sequence[int], stride: Sequence[int], channels: int) -> Optional[nn.Module]:
    """The Q/K/V pooling operator, or None where kernel and stride are both 1 (no pooling)."""
    if len(kernel) == 0 or (all(k == 1 for k in kernel) and all(s == 1 for s in stride)):
        return None
    stride = tuple(stride) if len(stride) > 0 else (1, 1, 1)
    padding = tuple(k // 2 for k in kernel)
    if mode == "conv":
        # an nn.Conv3d whose one-frame inputs (images) run as a Conv2d: 4x faster for the 3x3 depthwise q pooling
        return Conv3d(channels, channels, tuple(kernel), stride, padding, groups=channels, bias=False)
    pool_cls = nn.MaxPool3d if mode == "max" else nn.AvgPool3d
    return pool_cls(tuple(kernel), stride, padding, ceil_mode=False)


class MultiScaleAttention(nn.Module):
    """Multi-head pooling attention (MViT): Q, K and V are pooled over the T x H x W grid before attending.

    Args:
        dim: input width.
        dim_out: output width (v2 expands channels here; v1 keeps dim_out == dim).
        input_size: the (T, H, W) token grid the relative-position tables are sized for.
        num_heads: attention heads.
        qkv_bias: bias in the qkv projection.
        kernel_q, kernel_kv: pooling kernels (empty: no pooling).
        stride_q, stride_kv: pooling strides (empty: 1).
        mode: "conv" (depthwise conv + LayerNorm), "avg" or "max".
        has_cls: token 0 is a cls token.
        rel_pos_spatial, rel_pos_temporal: decomposed relative positions along h, w / along t.
        rel_pos_zero_init: start rel-pos tables at zero instead of trunc-normal.
        residual_pooling: add the pooled queries to the attention output (MViTv2).
        separate_qkv: three projections q, k, v instead of one fused qkv.
        drop_rate: dropout after the output projection.
        norm_eps: LayerNorm epsilon of the pooling norms.
        attention: "math" (explicit logits, the reference), "sdpa" (``fused_attention``) or "auto".
    """

    def __init__(
        self,
        dim: int,
        dim_out: int,
        input_size: Sequence[int],
        *,
        num_heads: int = 1,
        qkv_bias: bool = True,
        kernel_q: Sequence[int] = (),
        kernel_kv: Sequence[int] = (),
        stride_q: Sequence[int] = (),
        stride_kv: Sequence[int] = (),
        mode: str = "conv",
        has_cls: bool = True,
        rel_pos_spatial: bool = False,
        rel_pos_temporal: bool = False,
        rel_pos_zero_init: bool = False,
        residual_pooling: bool = False,
        separate_qkv: bool = False,
        drop_rate: float = 0.0,
        norm_eps: float = 1e-6,
        attention: str = "auto",
    ) -> None:
        super().__init__()
        if attention not in ATTENTION_IMPLS:
            raise ValueError(f"attention must be one of {ATTENTION_IMPLS}, got {attention!r}")
        self.attention = attention
        self.num_heads = num_heads
        self.dim_out = dim_out
        head_dim = dim_out // num_heads
        self.scale = head_dim**-0.5
        self.has_cls = has_cls
        self.residual_pooling = residual_pooling
        self.separate_qkv = separate_qkv
        if separate_qkv:
            self.q = nn.Linear(dim, dim_out, bias=qkv_bias)
            self.k = nn.Linear(dim, dim_out, bias=qkv_bias)
            self.v = nn.Linear(dim, dim_out, bias=qkv_bias)
        else:
            self.qkv = nn.Linear(dim, dim_out * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim_out, dim_out)
        self.proj_drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        for name, kernel, stride in (("q", kernel_q, stride_q), ("k", kernel_kv, stride_kv), ("v", kernel_kv, stride_kv)):
            pool = _make_pool(mode, kernel, stride, head_dim)
            setattr(self, f"pool_{name}", pool)
            use_norm = pool is not None and mode == "conv"
            setattr(self, f"norm_{name}", nn.LayerNorm(head_dim, eps=norm_eps) if use_norm else None)
        self._init_rel_pos(input_size, head_dim, stride_q, stride_kv, rel_pos_spatial, rel_pos_temporal)
        if not rel_pos_zero_init:
            for table in (self.rel_pos_t, self.rel_pos_h, self.rel_pos_w):
                if table is not None:
                    nn.init.trunc_normal_(table, std=0.02)

    def _init_rel_pos(self, input_size, head_dim, stride_q, stride_kv, spatial: bool, temporal: bool) -> None:
        """Tables sized for ``input_size``; other sizes are interpolated at run time."""
        self.rel_pos_h = self.rel_pos_w = self.rel_pos_t = None
        if spatial:
            size = input_size[1]
            q_size = size // stride_q[1] if len(stride_q) > 0 else size
            kv_size = size // stride_kv[1] if len(stride_kv) > 0 else size
            length = 2 * max(q_size, kv_size) - 1
            self.rel_pos_h = nn.Parameter(torch.zeros(length, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(length, head_dim))
        if temporal:
            self.rel_pos_t = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))

    def _project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, N, _ = x.shape
        if self.separate_qkv:
            # (B, N, C) -> (B, heads, N, C/heads) each
            return tuple(p(x).reshape(B, N, self.num_heads, -1).transpose(1, 2) for p in (self.q, self.k, self.v))
        # (B, N, 3C) -> (3, B, heads, N, C/heads)
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def forward(self, x: torch.Tensor, thw: THW) -> tuple[torch.Tensor, THW]:
        """Attends over tokens ``x`` (B, N, dim) on grid ``thw``; returns (B, N', dim_out) and the pooled grid."""
        B = x.shape[0]
        q, k, v = self._project_qkv(x)
        q, q_thw = pool_tokens(q, self.pool_q, thw, self.has_cls, self.norm_q)
        k, k_thw = pool_tokens(k, self.pool_k, thw, self.has_cls, self.norm_k)
        v, _ = pool_tokens(v, self.pool_v, thw, self.has_cls, self.norm_v)

        rel_pos = (self.rel_pos_t, self.rel_pos_h, self.rel_pos_w)
        if resolve_attention(self.attention, q) == "sdpa":
            # equal q/k/v head sizes in multiples of 16 make the flash kernels eligible (CPU and CUDA)
            x = fused_attention(q, k, v, self.scale, q_thw, k_thw, rel_pos, self.has_cls, pad_multiple=16)
        else:
            attn = (q * self.scale) @ k.transpose(-2, -1)
            if self.rel_pos_h is not None or self.rel_pos_t is not None:
                attn = attn + decomposed_rel_pos_bias(q, q_thw, k_thw, *rel_pos, self.has_cls)
            x = attn.softmax(dim=-1) @ v

        if self.residual_pooling:
            if self.has_cls:  # the cls token gets no residual (PySlowFast and torchvision)
                x = torch.cat((x[:, :, :1], x[:, :, 1:] + q[:, :, 1:]), dim=2)
            else:
                x = x + q
        # (B, heads, N', C/heads) -> (B, N', dim_out)
        x = x.transpose(1, 2).reshape(B, -1, self.dim_out)
        return self.proj_drop(self.proj(x)), q_thw
