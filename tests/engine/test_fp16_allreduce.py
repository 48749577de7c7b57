"""MODEL.FP16_ALLREDUCE: DDP all-reduces the gradients in float16 (one gloo process: the rounding is all it does)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from mvit_video.engine.distributed import wrap_ddp
from tests.engine.runs import free_port


@pytest.fixture
def one_process_group():
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def _gradients(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    (model(x) ** 2).sum().backward()
    inner = model.module if hasattr(model, "module") else model
    return torch.cat([p.grad.flatten() for p in inner.parameters()])


@pytest.mark.parametrize("fp16", [False, True])
def test_fp16_allreduce_rounds_gradients_to_float16(one_process_group, fp16):
    torch.manual_seed(0)
    plain = torch.nn.Linear(16, 8)
    wrapped = torch.nn.Linear(16, 8)
    wrapped.load_state_dict(plain.state_dict())
    x = torch.randn(4, 16)
    exact = _gradients(plain, x)
    reduced = _gradients(wrap_ddp(wrapped, torch.device("cpu"), fp16_allreduce=fp16), x)
    if fp16:
        assert torch.equal(reduced, exact.half().float()) and not torch.equal(reduced, exact)
    else:
        assert torch.equal(reduced, exact)
