"""Parameter groups, optimizers and the learning-rate schedule, with PySlowFast's semantics.

The functions that read the root config (``build_optimizer``, ``LRSchedule.from_cfg``) only translate
``SOLVER.*`` / ``MVIT.*`` keys into plain arguments; the logic lives in ``param_groups``,
``create_optimizer`` and ``lr_at_epoch``, which take plain values.

Typical use in a training loop::

    optimizer = build_optimizer(model, cfg)
    schedule = LRSchedule.from_cfg(cfg, num_shards=cfg.NUM_SHARDS)
    for epoch in range(start_epoch, cfg.SOLVER.MAX_EPOCH):
        for it, batch in enumerate(loader):
            set_lr(optimizer, schedule.at(epoch, it, len(loader)))
            ...
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from fvcore.common.config import CfgNode
from torch import nn

from .distributed import unwrap_model

OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "adamw", "mt_adamw")
LR_POLICIES: tuple[str, ...] = ("cosine", "steps_with_relative_lrs", "constant")

# Parameters that PySlowFast's layer-wise decay puts in layer 0 (with the patch embedding).
_LAYER0_NAMES = ("cls_token", "mask_token")
_LAYER0_PREFIXES = ("pos_embed", "patch_embed")


# --------------------------------------------------------------------------------------------
# Parameter groups
# --------------------------------------------------------------------------------------------


def layer_id(name: str, num_layers: int) -> int:
    """Depth index of a parameter for layer-wise LR decay (PySlowFast / BEiT / MAE convention).

    ``cls_token``, ``mask_token``, ``pos_embed*`` and ``patch_embed.*`` are layer 0, ``blocks.i.*`` (a reversible
    MViT's ``rev_backbone.layers.i.*``) is layer ``i + 1``, and everything else (final norm, head, and ``norm_stem`` as in PySlowFast) is ``num_layers + 1``.

    Args:
        name: parameter name as in ``model.named_parameters()`` of the unwrapped model.
        num_layers: number of transformer blocks N.

    Returns:
        The layer index, in ``[0, num_layers + 1]``.
    """
    if name in _LAYER0_NAMES or name.startswith(_LAYER0_PREFIXES):
        return 0
    if name.startswith("blocks."):
        return int(name.split(".")[1]) + 1
    if name.startswith("rev_backbone.layers."):
        return int(name.split(".")[2]) + 1
    return num_layers + 1


def _is_listed(name: str, names: Collection[str]) -> bool:
    """``name`` is listed in full, or its last dotted components are (``"rel_pos_h"`` matches any block's)."""
    parts = name.split(".")
    return any(".".join(parts[i:]) in names for i in range(len(parts)))


def _num_layers(model: nn.Module, cfg: CfgNode) -> int:
    """Blocks of the model for layer decay (``MVIT.DEPTH`` when it does not say)."""
    has_count = hasattr(model, "blocks") or isinstance(getattr(model, "num_layers", None), int)
    return _infer_num_layers(model) if has_count else cfg.MVIT.DEPTH


def _infer_num_layers(model: nn.Module) -> int:
    if isinstance(getattr(model, "num_layers", None), int):  # families whose blocks sit in stages (Swin)
        return model.num_layers
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        raise ValueError(f"layer decay needs num_layers: {type(model).__name__} has no .blocks to count")
    return len(blocks)


def _check_lr_multipliers(layer_decay: float | None, backbone_lr_mult: float, head_names: Collection[str]) -> None:
    if layer_decay is not None and not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay} (SOLVER.LAYER_DECAY; 1.0 disables it)")
    if not 0.0 < backbone_lr_mult <= 1.0:
        raise ValueError(f"backbone_lr_mult must be in (0, 1], got {backbone_lr_mult} (SOLVER.BACKBONE_LR_MULT)")
    if backbone_lr_mult < 1.0 and not head_names:
        raise ValueError("backbone_lr_mult < 1 needs head_names: the classifier's parameters, which keep the base lr")


def param_groups(
    model: nn.Module,
    weight_decay: float,
    zero_wd_1d: bool = True,
    no_decay_names: Collection[str] = (),
    layer_decay: float | None = None,
    base_lr: float | None = None,
    num_layers: int | None = None,
    backbone_lr_mult: float = 1.0,
    head_names: Collection[str] = (),
) -> list[dict[str, Any]]:
    """Split trainable parameters into optimizer groups by weight decay and (optionally) layer depth.

    A parameter gets no weight decay when it is listed in ``no_decay_names`` (full names, or trailing name
    components such as ``"rel_pos_h"``), or when ``zero_wd_1d`` and it is 1-D or named ``*.bias`` (biases and
    norm weights) -- PySlowFast's ``SOLVER.ZERO_WD_1D_PARAM`` rule. Frozen parameters (``requires_grad``
    False) are left out. Each trainable parameter is in exactly one group.

    With ``layer_decay`` in (0, 1), parameters are also grouped by ``layer_id`` (or the model's own ``layer_id``
    method, where its family defines one) and a group of layer ``l``
    gets ``lr_scale = layer_decay ** (N + 1 - l)``: the head has scale 1, block ``i`` (0-based) has
    ``layer_decay ** (N - i)`` and the patch embedding / cls token / position embeddings have
    ``layer_decay ** (N + 1)``. ``None`` or 1.0 turns it off (every ``lr_scale`` is 1.0).

    With ``backbone_lr_mult`` < 1, every parameter not in ``head_names`` (the classifier) also has its
    ``lr_scale`` multiplied by it: the backbone learns at a fraction of the head's rate (Video Swin's ``lr_mult``).

    Args:
        model: the model (DDP / compiled wrappers are looked through, so names are the plain model's).
        weight_decay: decay of the parameters that have it.
        zero_wd_1d: no decay on 1-D parameters and biases.
        no_decay_names: further parameters without decay, e.g. ``model.no_weight_decay()``.
        layer_decay: per-layer LR multiplier for fine-tuning, in (0, 1]; None or 1.0 disables it.
        base_lr: when given, each group also gets ``"lr": base_lr * lr_scale``.
        num_layers: N, the number of blocks; default ``len(model.blocks)``.
        backbone_lr_mult: lr multiplier of every parameter outside ``head_names``, in (0, 1].
        head_names: full names of the classifier's parameters (they keep the head's scale).

    Returns:
        Groups for ``torch.optim``: dicts with ``"name"``, ``"params"``, ``"weight_decay"``, ``"lr_scale"``
        (and ``"lr"`` when ``base_lr`` is given), in order of first appearance; empty groups are omitted.
    """
    _check_lr_multipliers(layer_decay, backbone_lr_mult, head_names)
    heads = set(head_names)
    model = unwrap_model(model)
    use_layers = layer_decay is not None and layer_decay < 1.0
    depth = (num_layers if num_layers is not None else _infer_num_layers(model)) if use_layers else 0
    no_decay = set(no_decay_names)
    model_layer_id = getattr(model, "layer_id", None)  # a family's own depth index, where it defines one
    groups: dict[str, dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decays = not (_is_listed(name, no_decay) or (zero_wd_1d and (param.ndim == 1 or name.endswith(".bias"))))
        layer = None
        if use_layers:
            layer = model_layer_id(name) if model_layer_id is not None else layer_id(name, depth)
        kind = "decay" if decays else "no_decay"
        key = kind if layer is None else f"layer{layer}_{kind}"
        backbone = backbone_lr_mult < 1.0 and name not in heads
        if backbone:
            key = f"backbone_{key}"
        if key not in groups:
            scale = 1.0 if layer is None else layer_decay ** (depth + 1 - layer)
            scale *= backbone_lr_mult if backbone else 1.0
            groups[key] = {
                "name": key,
                "params": [],
                "weight_decay": weight_decay if decays else 0.0,
                "lr_scale": scale,
            }
            if base_lr is not None:
                groups[key]["lr"] = base_lr * scale
        groups[key]["params"].append(param)
    if not groups:
        raise ValueError(f"{type(model).__name__} has no trainable parameters (all have requires_grad=False)")
    return list(groups.values())


# --------------------------------------------------------------------------------------------
# Optimizers
# --------------------------------------------------------------------------------------------


def _check_optimizer_name(method: str, key: str = "optimizer") -> None:
    if method not in OPTIMIZERS:
        raise ValueError(f"unknown {key} {method!r}; choose one of: {', '.join(OPTIMIZERS)}")


def create_optimizer(
    groups: Sequence[dict[str, Any]],
    method: str,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    dampening: float = 0.0,
    nesterov: bool = True,
    betas: Sequence[float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> torch.optim.Optimizer:
    """A torch optimizer over ``groups``, as PySlowFast's ``SOLVER.OPTIMIZING_METHOD`` choices build it.

    Args:
        groups: parameter groups (``param_groups``); their own ``weight_decay`` / ``lr`` override the defaults.
        method: "sgd" (momentum, dampening, nesterov), "adam" (L2 decay), "adamw" (decoupled decay) or
            "mt_adamw" (AdamW with the multi-tensor ``foreach`` implementation).
        lr: default learning rate of groups without ``"lr"``.
        weight_decay: default decay of groups without ``"weight_decay"``.
        momentum, dampening, nesterov: SGD options.
        betas, eps: Adam / AdamW options.

    Returns:
        The optimizer.
    """
    _check_optimizer_name(method)
    groups = [dict(g) for g in groups]  # torch keeps the dicts; do not alias the caller's
    if method == "sgd":
        return torch.optim.SGD(
            groups, lr=lr, momentum=momentum, weight_decay=weight_decay, dampening=dampening, nesterov=nesterov
        )
    betas = (float(betas[0]), float(betas[1]))
    if method == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    return torch.optim.AdamW(
        groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=True if method == "mt_adamw" else None
    )


def build_optimizer(model: nn.Module, cfg: CfgNode) -> torch.optim.Optimizer:
    """The optimizer that ``cfg.SOLVER`` describes, over ``model``'s trainable parameters.

    Reads SOLVER.OPTIMIZING_METHOD, BASE_LR, WEIGHT_DECAY, ZERO_WD_1D_PARAM, LAYER_DECAY, BACKBONE_LR_MULT (every
    tensor but the family's classifier ``head_keys`` at that fraction of the lr), MOMENTUM, DAMPENING,
    NESTEROV, BETAS and MVIT.ZERO_DECAY_POS_CLS (which exempts ``model.no_weight_decay()`` -- position
    embeddings, rel-pos tables, cls token -- from weight decay). Groups start at ``BASE_LR * lr_scale``; the
    trainer sets the scheduled LR every iteration with ``set_lr``.

    Args:
        model: the model (possibly wrapped in DDP or ``torch.compile``).
        cfg: the root config.

    Returns:
        The optimizer; every group carries ``"lr_scale"``.
    """
    solver = cfg.SOLVER
    _check_optimizer_name(solver.OPTIMIZING_METHOD, key="SOLVER.OPTIMIZING_METHOD")
    inner = unwrap_model(model)
    skip = inner.no_weight_decay() if cfg.MVIT.ZERO_DECAY_POS_CLS and hasattr(inner, "no_weight_decay") else ()
    groups = param_groups(
        inner,
        solver.WEIGHT_DECAY,
        zero_wd_1d=solver.ZERO_WD_1D_PARAM,
        no_decay_names=skip,
        layer_decay=solver.get("LAYER_DECAY", 1.0),
        base_lr=solver.BASE_LR,
        num_layers=_num_layers(inner, cfg),
        backbone_lr_mult=solver.BACKBONE_LR_MULT,
        head_names=_classifier_names(inner),
    )
    return create_optimizer(
        groups,
        solver.OPTIMIZING_METHOD,
        lr=solver.BASE_LR,
        weight_decay=solver.WEIGHT_DECAY,
        momentum=solver.MOMENTUM,
        dampening=solver.DAMPENING,
        nesterov=solver.NESTEROV,
        betas=tuple(solver.get("BETAS", (0.9, 0.999))),
    )


def _classifier_names(model: nn.Module) -> tuple[str, ...]:
    """The classifier's parameter names of a zoo model (its family's ``head_keys``); () for other modules."""
    from ..models.families import family_of

    try:
        return family_of(model.cfg).head_keys
    except (AttributeError, TypeError):
        return ()


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's LR to ``lr * group["lr_scale"]`` (scale 1.0 for groups without one)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


# --------------------------------------------------------------------------------------------
# Learning-rate schedule
# --------------------------------------------------------------------------------------------


def _check_schedule(
    policy: str,
    base_lr: float,
    max_epoch: float,
    warmup_epochs: float,
    cosine_end_lr: float,
    cosine_after_warmup: bool,
    steps: Sequence[float],
    lrs: Sequence[float],
) -> None:
    if policy not in LR_POLICIES:
        raise ValueError(f"unknown LR policy {policy!r} (SOLVER.LR_POLICY); choose one of: {', '.join(LR_POLICIES)}")
    if warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs} (SOLVER.WARMUP_EPOCHS)")
    if policy == "cosine":
        if not cosine_end_lr < base_lr:
            raise ValueError(
                f"cosine schedule needs cosine_end_lr < base_lr, got {cosine_end_lr} >= {base_lr} "
                "(SOLVER.COSINE_END_LR, SOLVER.BASE_LR)"
            )
        if max_epoch <= (warmup_epochs if cosine_after_warmup else 0.0):
            raise ValueError(
                f"cosine schedule needs max_epoch ({max_epoch}) > its start "
                f"({warmup_epochs if cosine_after_warmup else 0.0}) (SOLVER.MAX_EPOCH, SOLVER.WARMUP_EPOCHS)"
            )
    if policy == "steps_with_relative_lrs" and (not steps or list(steps) != sorted(steps) or len(lrs) < len(steps)):
        raise ValueError(
            f"steps_with_relative_lrs needs sorted, non-empty steps and one relative LR per step, got "
            f"steps={list(steps)} lrs={list(lrs)} (SOLVER.STEPS, SOLVER.LRS)"
        )


def _policy_lr(
    policy: str,
    epoch: float,
    base_lr: float,
    max_epoch: float,
    cosine_end_lr: float,
    cosine_start: float,
    steps: Sequence[float],
    lrs: Sequence[float],
) -> float:
    """The policy's LR at ``epoch``, before warmup."""
    if policy == "cosine":
        progress = (epoch - cosine_start) / (max_epoch - cosine_start)
        return cosine_end_lr + (base_lr - cosine_end_lr) * 0.5 * (math.cos(math.pi * progress) + 1.0)
    if policy == "steps_with_relative_lrs":
        boundaries = [*steps, max_epoch]
        # the last step whose boundary <= epoch; after max_epoch, the last step (PySlowFast's get_step_index)
        index = min(bisect.bisect_right(boundaries, epoch), len(boundaries) - 1) - 1
        return lrs[max(index, 0)] * base_lr
    return base_lr  # constant


def lr_at_epoch(
    epoch: float,
    *,
    policy: str,
    base_lr: float,
    max_epoch: float,
    warmup_epochs: float = 0.0,
    warmup_start_lr: float = 0.0,
    cosine_end_lr: float = 0.0,
    cosine_after_warmup: bool = False,
    steps: Sequence[float] = (),
    lrs: Sequence[float] = (),
) -> float:
    """Learning rate at a fractional epoch, exactly as PySlowFast's ``lr_policy.get_lr_at_epoch``.

    Policies: ``"cosine"`` goes from ``base_lr`` to ``cosine_end_lr`` over ``[start, max_epoch]`` by half a
    cosine, where start is ``warmup_epochs`` if ``cosine_after_warmup`` else 0; ``"steps_with_relative_lrs"``
    is ``lrs[i] * base_lr`` from ``steps[i]`` on; ``"constant"`` (toolkit) is ``base_lr``. During warmup
    (``epoch < warmup_epochs``) the LR instead rises linearly from ``warmup_start_lr`` to the policy's value
    at ``warmup_epochs``. Nothing is clamped past ``max_epoch`` (as in PySlowFast).

    Args:
        epoch: fractional epoch, ``epoch + iteration / iters_per_epoch`` when evaluated per iteration.
        policy: one of ``LR_POLICIES``.
        base_lr: peak LR (already scaled for the number of shards, if wanted).
        max_epoch: last epoch of the schedule.
        warmup_epochs: length of the linear warmup; 0 disables it.
        warmup_start_lr: LR at epoch 0 when warming up.
        cosine_end_lr: final LR of the cosine policy.
        cosine_after_warmup: start the cosine at ``warmup_epochs`` instead of 0.
        steps: epochs where each step of ``"steps_with_relative_lrs"`` starts (normally ``steps[0] == 0``).
        lrs: LR multipliers of those steps.

    Returns:
        The learning rate.
    """
    _check_schedule(policy, base_lr, max_epoch, warmup_epochs, cosine_end_lr, cosine_after_warmup, steps, lrs)
    cosine_start = warmup_epochs if cosine_after_warmup else 0.0
    policy_args = (base_lr, max_epoch, cosine_end_lr, cosine_start, steps, lrs)
    if epoch < warmup_epochs:
        warmup_end_lr = _policy_lr(policy, warmup_epochs, *policy_args)
        return warmup_start_lr + epoch * (warmup_end_lr - warmup_start_lr) / warmup_epochs
    return _policy_lr(policy, epoch, *policy_args)


@dataclass
class LRSchedule:
    """A learning-rate schedule as plain data; stateless (the fractional epoch is the whole state).

    ``dataclasses.asdict(schedule)`` round-trips through JSON: ``LRSchedule(**json.loads(...))``.
    Field meanings are those of ``lr_at_epoch``.
    """

    policy: str
    base_lr: float
    max_epoch: float
    warmup_epochs: float = 0.0
    warmup_start_lr: float = 0.0
    cosine_end_lr: float = 0.0
    cosine_after_warmup: bool = False
    steps: tuple[float, ...] = ()
    lrs: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        self.steps, self.lrs = tuple(self.steps), tuple(self.lrs)
        _check_schedule(
            self.policy, self.base_lr, self.max_epoch, self.warmup_epochs, self.cosine_end_lr,
            self.cosine_after_warmup, self.steps, self.lrs,
        )  # fmt: skip

    @classmethod
    def from_cfg(cls, cfg: CfgNode, num_shards: int) -> LRSchedule:
        """The schedule of ``cfg.SOLVER``.

        With SOLVER.BASE_LR_SCALE_NUM_SHARDS, BASE_LR, WARMUP_START_LR and COSINE_END_LR are multiplied by
        ``num_shards`` -- the number of machines (PySlowFast's cfg.NUM_SHARDS), not the number of processes.

        Args:
            cfg: the root config.
            num_shards: number of machines taking part in training.

        Returns:
            The schedule.
        """
        if num_shards < 1:
            raise ValueError(f"num_shards must be >= 1, got {num_shards}")
        s = cfg.SOLVER
        scale = float(num_shards) if s.BASE_LR_SCALE_NUM_SHARDS else 1.0
        return cls(
            policy=s.LR_POLICY,
            base_lr=s.BASE_LR * scale,
            max_epoch=float(s.MAX_EPOCH),
            warmup_epochs=float(s.WARMUP_EPOCHS),
            warmup_start_lr=s.WARMUP_START_LR * scale,
            cosine_end_lr=s.COSINE_END_LR * scale,
            cosine_after_warmup=bool(s.COSINE_AFTER_WARMUP),
            steps=tuple(float(x) for x in s.STEPS),
            lrs=tuple(float(x) for x in s.LRS),
        )

    def __call__(self, epoch: float) -> float:
        """LR at fractional ``epoch``."""
        return lr_at_epoch(epoch, **dataclasses.asdict(self))

    def at(self, epoch: int, iteration: int, iters_per_epoch: int) -> float:
        """LR at ``iteration`` (0-based) of ``epoch``: the schedule at ``epoch + iteration / iters_per_epoch``."""
        return self(epoch + iteration / iters_per_epoch)
