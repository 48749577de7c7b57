"""The one place that reads the root config for models: ``MODEL.ARCH`` picks the family, its section (and the
shared root keys) become its typed config, the config becomes the model.

Families: ``mvit`` (MViT v1/v2, PySlowFast's ``MVIT`` section; the default), ``vit`` (the plain-ViT family,
section ``VIT`` derived from ``ViTConfig``), ``swin`` (Swin and Video Swin, section ``SWIN`` from ``SwinConfig``),
``shuffle`` (Shuffle Transformer, section ``SHUFFLE`` derived from ``ShuffleConfig``), ``pvt`` (PVT v1 and PVTv2,
section ``PVT`` from ``PVTConfig``), ``levit`` (LeViT, section ``LEVIT`` from ``LeViTConfig``), ``coat`` (CoaT /
CoaT-Lite, section ``COAT`` from ``CoaTConfig``), ``ceit`` (CeiT, section ``CEIT`` from ``CeiTConfig``) and ``cvt``
(CvT, section ``CVT`` from ``CvTConfig``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from torch import nn

from ..config import ConfigError
from ..config.sections import dataclass_kwargs, register_section
from .ceit import CeiT, CeiTConfig
from .coat import CoaT, CoaTConfig
from .convert import convert_to_slowfast, unwrap_checkpoint
from .cvt import ConvolutionalVisionTransformer, CvTConfig
from .families import VARIANT_TYPES, Family, get_family, register_family
from .formats.ceit import convert_to_ceit
from .formats.coat import convert_to_coat
from .formats.cvt import convert_to_cvt
from .formats.levit import convert_to_levit
from .formats.pvt import convert_to_pvt
from .formats.shuffle import convert_to_shuffle
from .formats.swin import convert_to_swin
from .formats.vit import PRETRAINING_KEYS, convert_to_vit
from .levit import LeViT, LeViTConfig
from .mae import MAEConfig, MaskedAutoencoder
from .maskfeat import PRETRAINING_PREFIXES, MaskFeatConfig, MaskMViT
from .mvit import MViT, MViTConfig
from .pvt import PVTConfig, PyramidVisionTransformer
from .shuffle import ShuffleConfig, ShuffleTransformer
from .swin import SwinConfig, SwinTransformer
from .vit import VisionTransformer, ViTConfig

_MODEL_NAME = "MViT"  # PySlowFast's registry name of MViT v1/v2, video and image


def _as_tuple(value) -> tuple:
    return tuple(value) if value is not None else None


def _check_supported(cfg) -> None:
    """Options PySlowFast has that this toolkit does not build (yet): one clear line each."""
    unsupported = {
        "MVIT.POOL_FIRST": cfg.MVIT.POOL_FIRST,
        "MVIT.USE_FIXED_SINCOS_POS": cfg.MVIT.USE_FIXED_SINCOS_POS,
    }
    for key, value in unsupported.items():
        if value:
            raise ConfigError(f"{key}={value} is not supported by mvit_video; set it to False")
    if cfg.MVIT.REV.ENABLE and cfg.MVIT.REV.RES_PATH != "conv":
        raise ConfigError(f"MVIT.REV.RES_PATH={cfg.MVIT.REV.RES_PATH!r} is not supported by mvit_video; use 'conv'")
    if cfg.MVIT.MODE == "conv_unshared":
        raise ConfigError("MVIT.MODE='conv_unshared' is not supported by mvit_video; use 'conv', 'avg' or 'max'")


def mvit_config_from_cfg(cfg) -> MViTConfig:
    """Translates a root config (PySlowFast vocabulary) into typed model arguments.

    Args:
        cfg: a config from ``mvit_video.config.load_config`` / ``get_cfg``.

    Returns:
        The ``MViTConfig`` the config describes.
    """
    _check_supported(cfg)
    m, rev = cfg.MVIT, cfg.MVIT.REV
    fields = dict(
        num_classes=cfg.MODEL.NUM_CLASSES,
        input_size=(cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TRAIN_CROP_SIZE),
        in_chans=cfg.DATA.INPUT_CHANNEL_NUM[0],
        patch_2d=m.PATCH_2D,
        patch_kernel=_as_tuple(m.PATCH_KERNEL),
        patch_stride=_as_tuple(m.PATCH_STRIDE),
        patch_padding=_as_tuple(m.PATCH_PADDING),
        embed_dim=m.EMBED_DIM,
        num_heads=m.NUM_HEADS,
        depth=m.DEPTH,
        mlp_ratio=m.MLP_RATIO,
        qkv_bias=m.QKV_BIAS,
        dim_mul=[list(e) for e in m.DIM_MUL],
        head_mul=[list(e) for e in m.HEAD_MUL],
        pool_q_stride=[list(e) for e in m.POOL_Q_STRIDE],
        pool_kv_stride=[list(e) for e in m.POOL_KV_STRIDE],
        pool_kv_stride_adaptive=_as_tuple(m.POOL_KV_STRIDE_ADAPTIVE),
        pool_kvq_kernel=_as_tuple(m.POOL_KVQ_KERNEL),
        pool_mode=m.MODE,
        separate_qkv=m.SEPARATE_QKV,
        cls_embed=m.CLS_EMBED_ON,
        use_mean_pooling=m.USE_MEAN_POOLING,
        use_abs_pos=m.USE_ABS_POS,
        sep_pos_embed=m.SEP_POS_EMBED,
        rel_pos_spatial=m.REL_POS_SPATIAL,
        rel_pos_temporal=m.REL_POS_TEMPORAL,
        rel_pos_zero_init=m.REL_POS_ZERO_INIT,
        residual_pooling=m.RESIDUAL_POOLING,
        dim_mul_in_att=m.DIM_MUL_IN_ATT,
        drop_path_rate=m.DROPPATH_RATE,
        drop_rate=m.DROPOUT_RATE,
        head_dropout=cfg.MODEL.DROPOUT_RATE,
        detach_head=cfg.MODEL.DETACH_FINAL_FC,
        layer_scale_init_value=m.LAYER_SCALE_INIT_VALUE,
        head_init_scale=m.HEAD_INIT_SCALE,
        norm_stem=m.NORM_STEM,
        act_checkpoint=cfg.MODEL.ACT_CHECKPOINT,
        attention=cfg.MODEL.ATTN_IMPL,
        rev_enable=rev.ENABLE,
        rev_respath_fuse=rev.RESPATH_FUSE,
        rev_buffer_layers=tuple(int(i) for i in rev.BUFFER_LAYERS),
        rev_res_path=rev.RES_PATH,
        rev_pre_q_fusion=rev.PRE_Q_FUSION,
    )
    config = MViTConfig(**fields)
    if config.rev_enable:
        from .reversible import rev_layer_specs

        try:
            rev_layer_specs(config)
        except ValueError as e:
            raise ConfigError(f"MVIT.REV: {e}") from None
    return config


# dataclass field -> (where it comes from, how to read it from a root config)
ROOT_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "num_classes": ("MODEL.NUM_CLASSES", lambda cfg: cfg.MODEL.NUM_CLASSES),
    "input_size": ("DATA.NUM_FRAMES, DATA.TRAIN_CROP_SIZE",
                   lambda cfg: (cfg.DATA.NUM_FRAMES, cfg.DATA.TRAIN_CROP_SIZE, cfg.DATA.TRAIN_CROP_SIZE)),
    "in_chans": ("DATA.INPUT_CHANNEL_NUM[0]", lambda cfg: cfg.DATA.INPUT_CHANNEL_NUM[0]),
    "head_dropout": ("MODEL.DROPOUT_RATE", lambda cfg: cfg.MODEL.DROPOUT_RATE),
    "detach_head": ("MODEL.DETACH_FINAL_FC", lambda cfg: cfg.MODEL.DETACH_FINAL_FC),
    "act_checkpoint": ("MODEL.ACT_CHECKPOINT", lambda cfg: cfg.MODEL.ACT_CHECKPOINT),
    "attention": ("MODEL.ATTN_IMPL", lambda cfg: cfg.MODEL.ATTN_IMPL),
}  # fmt: skip


def derived_family(arch: str, model_type: type[nn.Module], config_type: type, section: str,
                   convert: Callable[[Any, str | None], tuple[dict, str]], head_keys: tuple[str, ...],
                   pretraining_keys: tuple[str, ...] = ()) -> Family:  # fmt: skip
    """Registers a family whose section mirrors ``config_type`` (every field but the ``ROOT_FIELDS`` it has)."""
    field_names = {f.name for f in dataclasses.fields(config_type)}
    from_root = {name: where for name, (where, _) in ROOT_FIELDS.items() if name in field_names}
    derived = register_section(section, config_type, from_root, arch)

    def from_cfg(cfg) -> Any:
        kwargs = dataclass_kwargs(derived, cfg[section])
        kwargs.update({name: ROOT_FIELDS[name][1](cfg) for name in from_root})
        try:
            return config_type(**kwargs)
        except ValueError as e:
            raise ConfigError(f"{section}: {e}") from None

    return register_family(Family(arch, model_type, config_type, section, from_cfg, convert, head_keys,
                                  pretraining_keys))  # fmt: skip


def _vit_state(obj, source: str | None) -> tuple[dict, str]:
    return convert_to_vit(unwrap_checkpoint(obj)[0], source)


def _swin_state(obj, source: str | None) -> tuple[dict, str]:
    return convert_to_swin(unwrap_checkpoint(obj)[0], source)


register_family(Family("mvit", MViT, MViTConfig, "MVIT", mvit_config_from_cfg, convert_to_slowfast,
                       ("head.projection.weight", "head.projection.bias"), PRETRAINING_PREFIXES))  # fmt: skip
derived_family("vit", VisionTransformer, ViTConfig, "VIT", _vit_state,
               ("head.weight", "head.bias", "head_dist.weight", "head_dist.bias"), PRETRAINING_KEYS)  # fmt: skip
VARIANT_TYPES[MAEConfig] = MaskedAutoencoder  # the ViT family's MAE pre-training model (``build_mae``)
derived_family("swin", SwinTransformer, SwinConfig, "SWIN", _swin_state, ("head.fc.weight", "head.fc.bias"))


def _shuffle_state(obj, source: str | None) -> tuple[dict, str]:
    return convert_to_shuffle(unwrap_checkpoint(obj)[0], source)


derived_family("shuffle", ShuffleTransformer, ShuffleConfig, "SHUFFLE", _shuffle_state, ("head.weight", "head.bias"))


def _pvt_state(obj, source: str | None) -> tuple[dict, str]:
    return convert_to_pvt(unwrap_checkpoint(obj)[0], source)


derived_family("pvt", PyramidVisionTransformer, PVTConfig, "PVT", _pvt_state, ("head.weight", "head.bias"))


def _levit_state(obj, source: str | None) -> tuple[dict, str]:
    return convert_to_levit(unwrap_checkpoint(obj)[0], source)


derived_family("levit", LeViT, LeViTConfig, "LEVIT", _levit_state,
               ("head.linear.weight", "head.linear.bias", "head_dist.linear.weight", "head_dist.linear.bias"))  # fmt: skip


def _coat_state(obj, source: str | None) -> tuple[dict, str]:
    return convert_to_coat(unwrap_checkpoint(obj)[0], source)


derived_family("coat", CoaT, CoaTConfig, "COAT", _coat_state, ("head.weight", "head.bias"))


def _ceit_state(obj, source: str | None) -> tuple[dict, str]:
    return convert_to_ceit(unwrap_checkpoint(obj)[0], source)


derived_family("ceit", CeiT, CeiTConfig, "CEIT", _ceit_state, ("head.weight", "head.bias"))


def _cvt_state(obj, source: str | None) -> tuple[dict, str]:
    return convert_to_cvt(unwrap_checkpoint(obj)[0], source)


derived_family("cvt", ConvolutionalVisionTransformer, CvTConfig, "CVT", _cvt_state, ("head.weight", "head.bias"))


# MASK keys of PySlowFast's MaskMViT decoder that the ViT family's MAE does not build: refused when set
_MAE_UNSUPPORTED = {"DECODER_SEP_POS_EMBED": False, "DEC_KV_KERNEL": [], "DEC_KV_STRIDE": [], "PRED_HOG": False,
                    "SCALE_INIT_BY_DEPTH": False}  # fmt: skip
_MAE_HEAD_WIDTH = 64  # one decoder head per 64 channels: VideoMAE's (384 / 6, 192 / 3, 512 / 8)


def _check_mae_settings(cfg) -> None:
    """One line for a root config whose settings the MAE would not honour."""
    mask = cfg.MASK
    if not (mask.ENABLE and mask.MAE_ON):
        raise ConfigError(f"MAE pre-training needs MASK.ENABLE True and MASK.MAE_ON True, got {mask.ENABLE} and "
                          f"{mask.MAE_ON}")  # fmt: skip
    if str(cfg.MODEL.ARCH).lower() != "vit":
        raise ConfigError(f"MAE pre-training (MASK.MAE_ON) is built for MODEL.ARCH vit, got {cfg.MODEL.ARCH!r}")
    for key, default in _MAE_UNSUPPORTED.items():
        if key in mask and mask[key] != default and mask[key] is not None:
            raise ConfigError(f"MASK.{key}={mask[key]} is not supported by the ViT family's MAE; set it to {default}")
    if cfg.MODEL.DROPOUT_RATE:
        raise ConfigError(f"MODEL.DROPOUT_RATE={cfg.MODEL.DROPOUT_RATE} is the classifier's dropout; MAE pre-training "
                          "has no classifier: set it to 0.0")  # fmt: skip
    if cfg.MODEL.DETACH_FINAL_FC:
        raise ConfigError("MODEL.DETACH_FINAL_FC=True detaches a classifier; MAE pre-training has none: set it to False")


def mae_config_from_cfg(cfg) -> MAEConfig:
    """The ``MAEConfig`` of a root config with PySlowFast's ``MASK`` section: the encoder from ``VIT`` (and the
    shared root keys), the decoder from ``MASK.DECODER_EMBED_DIM`` / ``MASK.DECODER_DEPTH`` (heads: one
    per 64 channels, as VideoMAE's), the targets from
    ``MASK.NORM_PRED_PIXEL`` / ``MASK.TIME_STRIDE_LOSS`` and ``DATA.MEAN`` / ``DATA.STD`` (undone to pixels).
    ``MODEL.NUM_CLASSES`` plays no part (no classifier). The masks themselves (``AUG.MASK_RATIO``,
    ``AUG.MASK_TUBE``, ``MASK.MAE_RND_MASK``, ``MASK.PER_FRAME_MASKING``) are the data layer's.

    Args:
        cfg: a root config holding the ``MASK`` section (keys read only here, when called).

    Raises:
        ConfigError: one line for a setting the MAE would not honour.
    """
    _check_mae_settings(cfg)
    mask = cfg.MASK
    encoder = get_family("vit").from_cfg(cfg).replace(num_classes=0, head_dropout=0.0)
    dim = mask.DECODER_EMBED_DIM
    heads = max(1, dim // _MAE_HEAD_WIDTH)
    fields = {f.name: getattr(encoder, f.name) for f in dataclasses.fields(ViTConfig)}
    try:
        return MAEConfig(**fields, decoder_embed_dim=dim, decoder_depth=mask.DECODER_DEPTH, decoder_num_heads=heads,
                         norm_pix_loss=mask.NORM_PRED_PIXEL, time_stride_loss=mask.TIME_STRIDE_LOSS,
                         pixel_mean=tuple(cfg.DATA.MEAN), pixel_std=tuple(cfg.DATA.STD))  # fmt: skip
    except ValueError as e:
        raise ConfigError(f"MASK / VIT: {e}") from None


def build_mae(cfg) -> MaskedAutoencoder:
    """The MAE pre-training model a root config describes (``mae_config_from_cfg``), randomly initialised on CPU."""
    return MaskedAutoencoder(mae_config_from_cfg(cfg))


def model_config_from_cfg(cfg):
    """The typed config (``MViTConfig``, ``ViTConfig``, ...) a root config describes."""
    if cfg.MODEL.MODEL_NAME != _MODEL_NAME:
        raise ConfigError(f"MODEL.MODEL_NAME={cfg.MODEL.MODEL_NAME!r} is not built by mvit_video: the family is chosen "
                          f"by MODEL.ARCH; leave MODEL_NAME at {_MODEL_NAME!r}")  # fmt: skip
    return get_family(cfg.MODEL.ARCH).from_cfg(cfg)


def maskfeat_config_from_cfg(cfg) -> MaskFeatConfig:
    """The pre-training settings of ``MASK`` (with ``MASK.ENABLE``)."""
    m = cfg.MASK
    return MaskFeatConfig(
        pretrain_depth=tuple(int(d) for d in m.PRETRAIN_DEPTH),
        pred_hog=m.PRED_HOG,
        norm_pred_pixel=m.NORM_PRED_PIXEL,
        time_stride_loss=m.TIME_STRIDE_LOSS,
        scale_init_by_depth=m.SCALE_INIT_BY_DEPTH,
    )


def build_model(cfg) -> nn.Module:
    """Builds the model a config describes: a plain ``nn.Module`` on CPU, randomly initialised. With
    ``MASK.ENABLE`` it is a pre-training model: MaskFeat's ``MaskMViT`` (mvit), or with ``MASK.MAE_ON`` the ViT
    family's ``MaskedAutoencoder`` (vit).

    No weights are loaded, nothing is moved to a device or wrapped for distribution: callers do that.
    """
    if cfg.MASK.ENABLE and cfg.MASK.MAE_ON:
        return build_mae(cfg)
    config = model_config_from_cfg(cfg)
    if cfg.MASK.ENABLE:
        if not isinstance(config, MViTConfig):
            raise ConfigError(f"MASK.ENABLE: MaskFeat pre-training is implemented for MODEL.ARCH mvit, not "
                              f"{cfg.MODEL.ARCH!r}; for the ViT family set MASK.MAE_ON True (MAE)")  # fmt: skip
        return MaskMViT(config, maskfeat_config_from_cfg(cfg))
    return get_family(cfg.MODEL.ARCH).build(config)
