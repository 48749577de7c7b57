"""Explanations of a clip's prediction: Grad-CAM on one block's output tokens, and attention rollout.

Both give a heat map of the clip's size (T, H, W), in [0, 1]. The rules, for every family (docs/visualize.md):

- **Reading a block's tokens as a grid.** A block's output is reshaped to the family's token grid (B, T', H', W', C):
  prefix tokens (cls, distillation) are dropped; MViT reports the grid each block pools to, the plain-ViT family and
  CeiT keep one grid, Swin and Shuffle blocks work on grids already, PVT, CoaT and CeiT blocks receive theirs, LeViT's
  attention modules know theirs. Where a block's output grid does not reach the logits at all (exactly zero
  gradient: the last block of a model that classifies from its cls token), Grad-CAM reads the tokens entering it.
- **Mapping a token grid back to the frames.** Token i of an axis sits at input coordinate ``offset + i * stride``
  (the centre of its receptive field); a pixel's heat is linearly interpolated between the two token centres around
  it (the nearest one past the last centre). For MViT offset and stride come from the convolution arithmetic of the
  patch embedding and of every query pooling up to the block (kernel k, stride s, padding p moves the centre of
  token 0 by ``stride_so_far * ((k - 1) / 2 - p)`` and multiplies the stride by s); for the other families from
  the grid's size: ``stride = input / grid`` and ``offset = (stride - 1) / 2`` (exact for non-overlapping patches).
- **Grad-CAM** (Selvaraju et al.): the target class's logit is differentiated with respect to the block's output
  tokens; each channel is weighted by its gradient averaged over the grid, the weighted sum over channels is
  clipped at zero.
- **Attention rollout** (Abnar & Zuidema) needs explicit attention maps: the plain-ViT family's joint attention
  (and CeiT's), and MViT's pooling attention. Each block's token mixing is ``0.5 * attention + 0.5 * residual``
  (heads averaged); the relevance of the classifier's tokens (the cls token, or all tokens equally for mean-pooling
  models) is carried back from the block's output to the first block's input. Where MViT pools, the pooled tokens
  are treated as the average of their pooling window (``avg_pool3d`` without the padded cells, whatever the pooling
  mode), so rows still sum to one and relevance moves from a coarse grid to the finer one it was pooled from: through
  the key pooling for the attention term, through the skip pooling for the residual term. Rollout does not depend on
  the target class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..models.attention import decomposed_rel_pos_bias, pool_tokens
from ..models.families import family_of
from ..models.layers.attention import Attention
from ..models.mvit import block_specs

THW = tuple[int, int, int]
METHODS = ("gradcam", "rollout")
# families whose attention maps rollout can read, and why the others cannot
_NO_ROLLOUT = {
    "swin": "its attention is within (shifted) windows",
    "shuffle": "its attention is within (shuffled) windows",
    "pvt": "its keys come from a spatially reduced grid through a learned convolution",
    "levit": "its shrink attentions subsample queries and its maps carry learned biases per stage",
    "coat": "its factorised attention never forms an attention map",
}


class ExplainError(UserError, ValueError):
    """A block, method or target that the model cannot explain; the message is one line."""


@dataclass(frozen=True)
class TokenGeometry:
    """Where the tokens of a grid sit in the input clip, per axis (t, h, w): token i at ``offset + i * stride``."""

    grid: THW
    stride: tuple[float, float, float]
    offset: tuple[float, float, float]

    @classmethod
    def uniform(cls, grid: THW, input_size: THW) -> TokenGeometry:
        """Tokens tiling the input evenly (the patch-grid convention)."""
        stride = tuple(n / g for n, g in zip(input_size, grid))
        return cls(tuple(grid), stride, tuple((s - 1) / 2 for s in stride))


def interpolation_matrix(size: int, tokens: int, stride: float, offset: float) -> torch.Tensor:
    """(size, tokens): row x holds the linear interpolation weights of input coordinate x between the token centres
    ``offset + i * stride`` (clamped at the first and last token)."""
    u = ((torch.arange(size, dtype=torch.float64) - offset) / stride).clamp(0, tokens - 1)
    low = u.floor().long().clamp(max=tokens - 1)
    high = (low + 1).clamp(max=tokens - 1)
    frac = u - low
    weights = torch.zeros(size, tokens, dtype=torch.float64)
    weights.scatter_add_(1, low[:, None], (1 - frac)[:, None])
    weights.scatter_add_(1, high[:, None], frac[:, None])
    return weights


def grid_to_input(heat: torch.Tensor, geometry: TokenGeometry, input_size: THW) -> torch.Tensor:
    """A heat map on a token grid (T', H', W') mapped to the input clip (T, H, W) by ``geometry``."""
    mats = [interpolation_matrix(n, g, s, o) for n, g, s, o in zip(input_size, heat.shape, geometry.stride,
                                                                     geometry.offset)]  # fmt: skip
    return torch.einsum("ta,hb,wc,abc->thw", *mats, heat.double()).float()


# ----------------------------------------------------------------------------------------- blocks per family


@dataclass
class BlockView:
    """One explainable block: the module to hook and how to read its output as a channels-last grid.

    Attributes:
        module: the block.
        read: (args, output) of the block's forward -> (the output tensor that the rest of the model uses, a
            function turning that tensor (or its gradient) into (B, T', H', W', C)).
        geometry: (input_size) -> where the grid's tokens sit in the input.
        read_input: as ``read``, for the tokens entering the block (used where the output grid does not reach the
            logits: the last block of a model that classifies from its cls token); None where never needed.
        input_geometry: as ``geometry``, for those tokens.
    """

    module: nn.Module
    read: Callable[[tuple, Any], tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]]
    geometry: Callable[[THW], TokenGeometry]
    read_input: Callable[[tuple, Any], tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]] | None = None
    input_geometry: Callable[[THW], TokenGeometry] | None = None


def _tokens_reader(prefix: int, grid_of: Callable[[tuple, Any], THW], pick: Callable[[tuple, Any], torch.Tensor]):
    """A ``BlockView.read`` for (B, prefix + T'H'W', C) tokens: ``pick`` finds them, ``grid_of`` their grid."""

    def read(args: tuple, output: Any):
        grid = tuple(grid_of(args, output))
        # (B, prefix + T'H'W', C) -> (B, T', H', W', C)
        return pick(args, output), lambda x: x[:, prefix:].reshape(x.shape[0], *grid, x.shape[-1])

    return read


def _input_reader(prefix: int):
    """A ``BlockView.read_input`` for blocks called as ``block(tokens, grid, ...)``."""
    return _tokens_reader(prefix, lambda a, o: a[1], lambda a, o: a[0])


def _grid_geometry(grid_of_input: Callable[[THW], THW]) -> Callable[[THW], TokenGeometry]:
    return lambda size: TokenGeometry.uniform(grid_of_input(size), size)


def _mvit_geometry(model: nn.Module, block: int) -> Callable[[THW], TokenGeometry]:
    """Exact token centres of MViT's grid after block ``block`` (-1: the patch embedding's grid)."""

    def geometry(size: THW) -> TokenGeometry:
        cfg = model.cfg
        kernel, stride, padding = (tuple(v) for v in (cfg.patch_kernel, cfg.patch_stride, cfg.patch_padding))
        if cfg.patch_2d:
            kernel, stride, padding = (1, *kernel), (1, *stride), (0, *padding)
        step = [float(s) for s in stride]
        offset = [(k - 1) / 2 - p for k, p in zip(kernel, padding)]
        for spec in block_specs(model.cfg)[: block + 1]:
            if spec.kernel_q:
                for axis, (k, s) in enumerate(zip(spec.kernel_q, spec.stride_q)):
                    offset[axis] += step[axis] * ((k - 1) / 2 - k // 2)
                    step[axis] *= s
        return TokenGeometry(model.token_grids(size)[block + 1], tuple(step), tuple(offset))

    return geometry


def _mvit_views(model: nn.Module) -> list[BlockView]:
    prefix = int(model.cfg.cls_embed)
    read, read_input = (_tokens_reader(prefix, lambda a, o: o[1], lambda a, o: o[0]),
                        _tokens_reader(prefix, lambda a, o: a[1], lambda a, o: a[0]))  # fmt: skip
    return [BlockView(block, read, _mvit_geometry(model, i), read_input, _mvit_geometry(model, i - 1))
            for i, block in enumerate(model.blocks)]  # fmt: skip


def _vit_views(model: nn.Module) -> list[BlockView]:
    geometry = _grid_geometry(model.cfg.token_grid)
    read = _tokens_reader(model.cfg.num_prefix, lambda a, o: a[1], lambda a, o: o)
    read_input = _tokens_reader(model.cfg.num_prefix, lambda a, o: a[1], lambda a, o: a[0])
    return [BlockView(block, read, geometry, read_input, geometry) for block in model.blocks]


def _ceit_views(model: nn.Module) -> list[BlockView]:
    read, read_input = _tokens_reader(1, lambda a, o: a[1], lambda a, o: o), _input_reader(1)
    geometry = _grid_geometry(model.cfg.token_grid)
    return [BlockView(block, read, geometry, read_input, geometry) for block in model.blocks]


def _stage_geometry(model: nn.Module, stage: int) -> Callable[[THW], TokenGeometry]:
    return _grid_geometry(lambda size: model.stage_specs(size)[stage][3])


def _swin_views(model: nn.Module) -> list[BlockView]:
    def read(args, output):
        return output, lambda x: x  # already (B, T', H', W', C)

    return [BlockView(block, read, _stage_geometry(model, s)) for s, stage in enumerate(model.layers)
            for block in stage.blocks]  # fmt: skip


def _shuffle_views(model: nn.Module) -> list[BlockView]:
    def read(args, output):
        return output, lambda x: x.permute(0, 2, 3, 4, 1)  # (B, C, T', H', W') -> (B, T', H', W', C)

    return [BlockView(block, read, _stage_geometry(model, s)) for s, stage in enumerate(model.stages)
            for pair in stage.layers for block in pair]  # fmt: skip


def _pvt_views(model: nn.Module) -> list[BlockView]:
    read = _tokens_reader(0, lambda a, o: a[1], lambda a, o: o)
    return [BlockView(block, read, _stage_geometry(model, s)) for s, stage in enumerate(model.stages)
            for block in stage.blocks]  # fmt: skip


def _levit_views(model: nn.Module) -> list[BlockView]:
    views = []
    for s, stage in enumerate(model.stages):
        modules = ([stage.downsample] if stage.downsample is not None else []) + list(stage.blocks)
        for block in modules:
            read = _tokens_reader(0, lambda a, o, s=s: model.cfg.stage_grids()[s], lambda a, o: o)
            views.append(BlockView(block, read, _stage_geometry(model, s)))
    return views


def _coat_views(model: nn.Module) -> list[BlockView]:
    views = []
    for s in range(4):
        read, geometry = _tokens_reader(1, lambda a, o: a[1], lambda a, o: o), _stage_geometry(model, s)
        blocks = getattr(model, f"serial_blocks{s + 1}")
        views += [BlockView(b, read, geometry, _input_reader(1), geometry) for b in blocks]
    # parallel blocks: the finest of their three scales (stage 2's grid)
    read, geometry = _tokens_reader(1, lambda a, o: a[1][0], lambda a, o: o[0]), _stage_geometry(model, 1)
    read_input = _tokens_reader(1, lambda a, o: a[1][0], lambda a, o: a[0][0])
    return views + [BlockView(b, read, geometry, read_input, geometry) for b in model.parallel_blocks]


_VIEWS = {"mvit": _mvit_views, "vit": _vit_views, "ceit": _ceit_views, "swin": _swin_views,
          "shuffle": _shuffle_views, "pvt": _pvt_views, "levit": _levit_views, "coat": _coat_views}  # fmt: skip


def family_name(model: nn.Module) -> str:
    """The model's ``MODEL.ARCH`` family; a one-line ``ExplainError`` for a model of no known family."""
    try:
        return family_of(model.cfg).arch
    except (AttributeError, TypeError):
        raise ExplainError(f"{type(model).__name__} is not a model of an mvit_video family; explanations need one")


_REVERSIBLE = ("a reversible MViT (MVIT.REV) runs two token streams through its blocks, which Grad-CAM and rollout "
               "here do not read; explain a model without MVIT.REV.ENABLE")


def _refuse_reversible(model: nn.Module) -> None:
    if getattr(getattr(model, "cfg", None), "rev_enable", False):
        raise ExplainError(_REVERSIBLE)


def block_views(model: nn.Module) -> list[BlockView]:
    """The blocks Grad-CAM can hook, in order (the ``--block`` numbering)."""
    arch = family_name(model)
    _refuse_reversible(model)
    if arch not in _VIEWS:
        raise ExplainError(f"explanations do not know the blocks of the {arch!r} family yet; "
                           f"supported: {', '.join(sorted(_VIEWS))}")  # fmt: skip
    return _VIEWS[arch](model)


def resolve_block(model: nn.Module, block: int | None) -> int:
    """``block`` checked against the model's blocks (None or -1: the last); a one-line error when out of range."""
    count = len(block_views(model))
    if block is None:
        return count - 1
    if not -count <= block < count:
        raise ExplainError(f"--block {block} is out of range: this {family_name(model)} model has {count} blocks "
                           f"(0..{count - 1}, or -1 for the last)")  # fmt: skip
    return block % count


def check_rollout(model: nn.Module) -> None:
    """A one-line ``ExplainError`` where attention rollout does not apply to the model."""
    arch = family_name(model)
    _refuse_reversible(model)
    if arch in _NO_ROLLOUT:
        raise ExplainError(f"attention rollout does not apply to the {arch} family ({_NO_ROLLOUT[arch]}); "
                           "use --method gradcam")  # fmt: skip
    if arch == "vit":
        cfg = model.cfg
        if cfg.attention_type != "joint" or cfg.talking_heads or cfg.class_attention_depth or cfg.reattention_depth:
            raise ExplainError(
                "attention rollout needs plain joint attention in every block; this ViT-family "
                "model has divided, talking-heads, class or re-attention blocks: use --method gradcam"
            )
    if arch not in ("mvit", "vit", "ceit"):
        raise ExplainError(f"attention rollout does not know the {arch} family's attention; use --method gradcam")


# ----------------------------------------------------------------------------------------------- Grad-CAM


def _target_logit(logits: torch.Tensor, target: int | None) -> tuple[torch.Tensor, int]:
    if target is None:
        target = int(logits[0].argmax())
    if not 0 <= target < logits.shape[1]:
        raise ExplainError(f"class {target} is out of range: the model has {logits.shape[1]} classes")
    return logits[0, target], target


def grad_cam(model: nn.Module, clip: torch.Tensor, block: int | None = None,
             target: int | None = None) -> tuple[torch.Tensor, int, torch.Tensor]:  # fmt: skip
    """Grad-CAM of one clip at one block.

    Args:
        model: the classifier (in eval mode).
        clip: (1, C, T, H, W).
        block: index into ``block_views(model)`` (None: the last).
        target: the class to explain (None: the top-1).

    Returns:
        The heat map (T, H, W) in [0, 1] (all zeros when no token raises the logit), the target class and the
        logits (1, classes).
    """
    view = block_views(model)[resolve_block(model, block)]
    captured = {}

    def hook(module, args, output):
        captured["out"] = view.read(args, output)
        if view.read_input is not None:
            captured["in"] = view.read_input(args, output)

    handle = view.module.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            logits = model(clip)
            score, target = _target_logit(logits, target)
            sides = [captured["out"]] + ([captured["in"]] if "in" in captured else [])
            grads = torch.autograd.grad(score, [raw for raw, _ in sides], allow_unused=True)
    finally:
        handle.remove()
    size = tuple(clip.shape[2:])
    side, geometry = 0, view.geometry
    if len(sides) > 1 and (grads[0] is None or not sides[0][1](grads[0]).any()):
        side, geometry = 1, view.input_geometry  # the output grid does not reach the logits (a cls-token read-out)
    cam = _cam(*sides[side], grads[side])
    return _normalised(grid_to_input(cam, geometry(size), size)), target, logits.detach()


def _cam(raw: torch.Tensor, to_grid: Callable, grad: torch.Tensor | None) -> torch.Tensor:
    """Grad-CAM on a grid: channels weighted by their mean gradient, summed, clipped at 0: (T', H', W')."""
    acts = to_grid(raw.detach())[0]  # (T', H', W', C)
    if grad is None:
        return torch.zeros(acts.shape[:3], dtype=acts.dtype)
    grads = to_grid(grad)[0]
    return F.relu((acts * grads.mean(dim=(0, 1, 2))).sum(-1))


def _normalised(heat: torch.Tensor) -> torch.Tensor:
    peak = heat.max()
    return heat / peak if peak > 0 else torch.zeros_like(heat)


# ---------------------------------------------------------------------------------------- attention rollout


def _vit_attention(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """Head-averaged softmax attention (B, N, N) of a plain ``Attention`` on its input ``x``."""
    q, k, _ = attn.project(x)
    return ((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)).softmax(-1).mean(1)


def _mvit_attention(attn: nn.Module, x: torch.Tensor, thw: THW) -> tuple[torch.Tensor, THW, THW]:
    """Head-averaged attention (B, Nq, Nk) of MViT's pooling attention on its input, and the query and key grids."""
    q, k, _ = attn._project_qkv(x)
    q, q_thw = pool_tokens(q, attn.pool_q, thw, attn.has_cls, attn.norm_q)
    k, k_thw = pool_tokens(k, attn.pool_k, thw, attn.has_cls, attn.norm_k)
    logits = (q * attn.scale) @ k.transpose(-2, -1)
    if attn.rel_pos_h is not None or attn.rel_pos_t is not None:
        tables = (attn.rel_pos_t, attn.rel_pos_h, attn.rel_pos_w)
        logits = logits + decomposed_rel_pos_bias(q, q_thw, k_thw, *tables, attn.has_cls)
    return logits.softmax(-1).mean(1), tuple(q_thw), tuple(k_thw)


def _triple(value: int | tuple) -> tuple[int, int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * 3


def _pool_back(r: torch.Tensor, pool: nn.Module | None, thw_in: THW, has_cls: bool) -> torch.Tensor:
    """Relevance on pooled tokens (B, [1 +] N_out) carried to the tokens they were pooled from (B, [1 +] N_in):
    the transpose of window averaging (``avg_pool3d`` without padded cells)."""
    if pool is None:
        return r
    cls, grid = (r[:, :1], r[:, 1:]) if has_cls else (r[:, :0], r)
    kernel, stride, padding = (_triple(getattr(pool, name)) for name in ("kernel_size", "stride", "padding"))
    with torch.enable_grad():
        source = torch.zeros(1, r.shape[0], *thw_in, dtype=r.dtype, requires_grad=True)
        pads = [p for pad in reversed(padding) for p in (pad, pad)]
        # window means over the real cells (avg_pool3d refuses grids smaller than the kernel, even padded)
        count = F.avg_pool3d(F.pad(torch.ones_like(source), pads), kernel, stride)
        pooled = F.avg_pool3d(F.pad(source, pads), kernel, stride) / count
        (back,) = torch.autograd.grad(pooled, source, grad_outputs=grid.t().reshape(pooled.shape))
    return torch.cat((cls, back.reshape(r.shape[0], -1)), dim=1)


def _attention_hooks(model: nn.Module, arch: str, last: int, steps: list) -> list:
    """Forward hooks that record, per block up to ``last``, a function carrying relevance from its output tokens
    back to its input tokens."""
    handles = []
    for i, block in enumerate(model.blocks[: last + 1]):
        if arch == "mvit":

            def hook(module, args, output, block=block):
                mix = _mvit_attention(module, args[0], tuple(args[1]))[0][0]  # batch of one
                thw, has_cls = tuple(args[1]), module.has_cls

                def back(r, mix=mix, thw=thw):
                    through_attn = _pool_back(r @ mix, module.pool_k, thw, has_cls)
                    return 0.5 * through_attn + 0.5 * _pool_back(r, block.pool_skip, thw, has_cls)

                steps.append(back)
        else:

            def hook(module, args, output):
                mix = _vit_attention(module, args[0])[0]  # batch of one
                steps.append(lambda r, mix=mix: 0.5 * (r @ mix) + 0.5 * r)

        handles.append(block.attn.register_forward_hook(hook))
    return handles


def attention_rollout(
    model: nn.Module, clip: torch.Tensor, block: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention rollout of one clip from the output of ``block`` (None: the last) back to the first block's input.

    Returns:
        The heat map (T, H, W) in [0, 1] and the logits (1, classes).
    """
    check_rollout(model)
    arch, last = family_name(model), resolve_block(model, block)
    steps: list = []
    handles = _attention_hooks(model, arch, last, steps)
    try:
        with torch.no_grad():
            logits = model(clip)
    finally:
        for handle in handles:
            handle.remove()
    prefix, geometry = _rollout_layout(model, arch)
    size = tuple(clip.shape[2:])
    grid_out = model.token_grids(size)[last + 1]
    n_out = prefix + grid_out[0] * grid_out[1] * grid_out[2]
    r = torch.zeros(1, n_out, dtype=torch.float64)
    if _reads_cls(model, arch):
        r[0, 0] = 1.0
    else:
        r[0, prefix:] = 1.0 / (n_out - prefix)
    with torch.no_grad():
        for back in reversed(steps):
            r = back(r.to(logits.dtype)).double()
    grid_in = model.token_grids(size)[0]
    heat = r[0, prefix:].reshape(grid_in).float()
    return _normalised(grid_to_input(heat, geometry(size), size)), logits


def _rollout_layout(model: nn.Module, arch: str) -> tuple[int, Callable[[THW], TokenGeometry]]:
    """Prefix tokens of the first block's input and where its grid sits in the input."""
    if arch == "mvit":
        return int(model.cfg.cls_embed), _mvit_geometry(model, -1)
    if arch == "vit":
        return model.cfg.num_prefix, _grid_geometry(model.cfg.token_grid)
    return 1, _grid_geometry(model.cfg.token_grid)  # ceit


def _reads_cls(model: nn.Module, arch: str) -> bool:
    """Whether the classifier reads the cls token (rollout starts there) rather than the mean of all tokens."""
    if arch == "mvit":
        return model.cfg.cls_embed and not model.cfg.use_mean_pooling
    if arch == "vit":
        return model.cfg.class_token and model.cfg.global_pool == "token"
    return True


@dataclass(frozen=True)
class Explanation:
    """One clip's explanation.

    Attributes:
        heat: (T, H, W) float32 in [0, 1], the clip's size.
        method: "gradcam" or "rollout".
        block: the block explained (rollout: the last block carried back from).
        target: the class explained (rollout: the top-1, which it does not depend on).
        probs: softmax of the logits, (classes,).
    """

    heat: torch.Tensor
    method: str
    block: int
    target: int
    probs: torch.Tensor


def check_request(model: nn.Module, method: str, block: int | None) -> int:
    """Every one-line error of an explanation request, raised before any work: the method, the family, the block.
    Returns the block index."""
    if method not in METHODS:
        raise ExplainError(f"--method {method!r} is not one of {', '.join(METHODS)}")
    index = resolve_block(model, block)
    if method == "rollout":
        check_rollout(model)
    return index


def explain_clip(model: nn.Module, clip: torch.Tensor, method: str = "gradcam", block: int | None = None,
                 target: int | None = None) -> Explanation:  # fmt: skip
    """Explains the model's prediction on ``clip`` (1, C, T, H, W) with ``method`` at ``block``."""
    index = check_request(model, method, block)
    model.eval()
    if method == "gradcam":
        heat, target, logits = grad_cam(model, clip, index, target)
    else:
        heat, logits = attention_rollout(model, clip, index)
        target = int(logits[0].argmax()) if target is None else _target_logit(logits, target)[1]
    return Explanation(heat, method, index, target, logits[0].float().softmax(-1))
