"""Named model variants: ``list_models()`` and ``create_model(name, ...)``.

Each variant is the published architecture as PySlowFast builds it (the matching YAML under configs/ builds the
same ``MViTConfig``; a test checks that).
"""

from __future__ import annotations

from typing import Callable, Optional

from torch import nn

from .mvit import MViT, MViTConfig

_REGISTRY: dict[str, Callable[[], MViTConfig]] = {}


def register_model(fn: Callable[[], MViTConfig]) -> Callable[[], MViTConfig]:
    """Registers a function returning an ``MViTConfig`` under its own name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names accepted by ``create_model``, sorted."""
    return sorted(_REGISTRY)


def model_config(name: str) -> MViTConfig:
    """The ``MViTConfig`` of a named variant."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    return _REGISTRY[name]()


def create_model(
    name: str, num_classes: Optional[int] = None, checkpoint: Optional[str] = None, **overrides
) -> nn.Module:
    """Builds a named variant, optionally with another class count, other fields, and weights.

    Args:
        name: one of ``list_models()``, e.g. "mvitv2_s_16x4" or "mvitv2_t_in1k".
        num_classes: classifier size (default: the variant's dataset).
        checkpoint: a checkpoint path in any format ``load_pretrained`` understands. With ``num_classes`` that
            differs from the checkpoint's, the head is re-initialised.
        **overrides: other ``MViTConfig`` fields (e.g. ``drop_path_rate=0.0``, ``act_checkpoint=True``).

    Returns:
        An ``MViT`` on CPU.
    """
    cfg = model_config(name)
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    model = MViT(cfg.replace(**overrides))
    if checkpoint is not None:
        from .pretrained import load_pretrained

        mismatch = "reinit" if num_classes is not None else "error"
        load_pretrained(model, checkpoint, num_classes_mismatch=mismatch)
    return model


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
