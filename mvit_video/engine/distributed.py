"""Process groups: launching a job on one or many processes, rank helpers and small collectives.

Two ways to start a multi-process run, both ending in one process per device (per machine on CPU):

- ``torchrun --nproc_per_node N tools/run_net.py ...``: the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
  ``LOCAL_WORLD_SIZE``) decides; NUM_SHARDS / SHARD_ID / NUM_GPUS are set from it.
- PySlowFast's flags: ``NUM_GPUS`` processes are spawned per machine (one on CPU, ``NUM_GPUS 0``), machines are
  ``NUM_SHARDS`` / ``SHARD_ID`` and meet at ``--init_method`` (``tcp://host:port``).

NCCL is used on GPUs (``DIST_BACKEND``), gloo on the CPU.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from .. import process
from ..config import ConfigError
from ..process import is_dist, world_size
from .preemption import forward_stop_signals

logger = logging.getLogger(__name__)

DEFAULT_INIT_METHOD = "tcp://localhost:9999"  # PySlowFast's default for single-machine multi-GPU runs
_TIMEOUT = timedelta(minutes=30)


def barrier() -> None:
    """Waits for every process (no-op without a process group)."""
    if is_dist() and world_size() > 1:
        dist.barrier()


def all_reduce_mean(values: list[float], device: torch.device) -> list[float]:
    """Averages a few numbers over all processes (unchanged without a process group)."""
    if not is_dist() or world_size() == 1:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return (tensor / world_size()).tolist()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every process."""
    if not is_dist() or world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def share_cpu(cfg) -> int:
    """``process.share_cpu`` for a run of ``cfg``: its processes on this machine and DATA_LOADER.NUM_WORKERS."""
    return process.share_cpu(world_size() // max(cfg.NUM_SHARDS, 1), cfg.DATA_LOADER.NUM_WORKERS)


def wrap_ddp(model: nn.Module, device: torch.device, fp16_allreduce: bool = False) -> nn.Module:
    """``DistributedDataParallel`` around ``model`` on ``device``; with ``fp16_allreduce`` (``MODEL.FP16_ALLREDUCE``)
    gradients travel as float16 (PySlowFast registers the same ``fp16_compress_hook``): half the traffic, gradients
    rounded to float16 precision."""
    ids = [device.index] if device.type == "cuda" else None
    ddp = nn.parallel.DistributedDataParallel(model, device_ids=ids, gradient_as_bucket_view=True)
    if fp16_allreduce:
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import fp16_compress_hook

        ddp.register_comm_hook(state=None, hook=fp16_compress_hook)
    return ddp


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside DistributedDataParallel / DataParallel (``.module``) and ``torch.compile`` (``._orig_mod``)."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


# ------------------------------------------------------------------------------------------------------ launching


@dataclass(frozen=True)
class ProcessPlan:
    """Where this process sits in the job: ``world`` processes in all, ``local_world`` on this machine."""

    world: int
    rank: int
    local_world: int
    local_rank: int
    init_method: str
    backend: str


def _uses_cuda(cfg) -> bool:
    return cfg.NUM_GPUS > 0 and torch.cuda.is_available()


def _backend(cfg) -> str:
    return cfg.DIST_BACKEND if _uses_cuda(cfg) else "gloo"


def torchrun_plan(cfg, env: dict[str, str] | None = None) -> ProcessPlan | None:
    """The plan torchrun's environment describes, or None outside torchrun."""
    env = os.environ if env is None else env
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    world, global_rank = int(env["WORLD_SIZE"]), int(env["RANK"])
    local_world = int(env.get("LOCAL_WORLD_SIZE", world))
    return ProcessPlan(world, global_rank, local_world, int(env.get("LOCAL_RANK", 0)), "env://", _backend(cfg))


def slowfast_plans(cfg, init_method: str | None) -> list[ProcessPlan]:
    """The processes PySlowFast's NUM_GPUS / NUM_SHARDS / SHARD_ID ask this machine to start."""
    local_world = max(cfg.NUM_GPUS, 1) if _uses_cuda(cfg) else 1
    world = cfg.NUM_SHARDS * local_world
    if world > 1 and cfg.NUM_SHARDS > 1 and not init_method:
        raise ConfigError(
            f"NUM_SHARDS={cfg.NUM_SHARDS} needs --init_method tcp://HOST:PORT (the same on every machine), "
            "or launch with torchrun"
        )
    if _uses_cuda(cfg) and cfg.NUM_GPUS > torch.cuda.device_count():
        raise ConfigError(f"NUM_GPUS={cfg.NUM_GPUS} but this machine has {torch.cuda.device_count()} GPUs")
    method = init_method or DEFAULT_INIT_METHOD
    first = cfg.SHARD_ID * local_world
    return [ProcessPlan(world, first + i, local_world, i, method, _backend(cfg)) for i in range(local_world)]


def cfg_for_plan(cfg, plan: ProcessPlan):
    """The config as this process sees it: NUM_SHARDS / SHARD_ID / NUM_GPUS follow the plan."""
    cfg = cfg.clone()
    cfg.defrost()
    cfg.NUM_SHARDS = plan.world // plan.local_world
    cfg.SHARD_ID = plan.rank // plan.local_world
    if cfg.NUM_GPUS > 0 and torch.cuda.is_available():
        cfg.NUM_GPUS = plan.local_world
    cfg.freeze()
    return cfg


def _run_in_group(plan: ProcessPlan, fn: Callable, cfg, args: tuple) -> Any:
    """Joins the process group of ``plan``, runs ``fn(cfg, *args)`` and leaves the group."""
    if plan.backend == "nccl":
        torch.cuda.set_device(plan.local_rank)
    dist.init_process_group(plan.backend, init_method=plan.init_method, world_size=plan.world, rank=plan.rank,
                            timeout=_TIMEOUT)  # fmt: skip
    try:
        return fn(cfg_for_plan(cfg, plan), *args)
    finally:
        dist.destroy_process_group()


def _spawned(local_rank: int, plans: list[ProcessPlan], fn: Callable, cfg, args: tuple) -> None:
    _run_in_group(plans[local_rank], fn, cfg, args)


def _spawn(plans: list[ProcessPlan], fn: Callable, cfg, args: tuple) -> dict[str, Any] | None:
    """Runs a process per plan and waits for them, passing SIGTERM / SIGUSR1 to this process on to them (a
    scheduler may signal only the launcher). Returns ``{"train": {"stopped": True}}`` when it passed one on."""
    context = mp.spawn(_spawned, args=(plans, fn, cfg, args), nprocs=len(plans), join=False)
    with forward_stop_signals([p.pid for p in context.processes]) as forwarded:
        while not context.join():
            pass
    return {"train": {"stopped": True}} if forwarded.signal is not None else None


def launch(cfg, init_method: str | None, fn: Callable, *args: Any) -> Any:
    """Runs ``fn(cfg, *args)`` in every process the environment or config asks for.

    One process and no process group for a single-device run; under torchrun, this process joins the group; with
    PySlowFast's flags, ``NUM_GPUS`` processes are spawned on this machine (``fn``'s result is then not returned,
    only whether a stop signal was passed on to them).
    """
    plan = torchrun_plan(cfg)
    if plan is not None:
        return _run_in_group(plan, fn, cfg, args) if plan.world > 1 else fn(cfg_for_plan(cfg, plan), *args)
    plans = slowfast_plans(cfg, init_method)
    if plans[0].world == 1:
        if init_method:
            logger.warning("--init_method %s ignored: this is a single-process run", init_method)
        return fn(cfg, *args)
    if len(plans) == 1:
        return _run_in_group(plans[0], fn, cfg, args)
    return _spawn(plans, fn, cfg, args)
