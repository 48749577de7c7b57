"""The classifier head: MODEL.DETACH_FINAL_FC and the one test-time activation rule (MODEL.HEAD_ACT)."""

from __future__ import annotations

import math

import pytest
import torch

from mvit_video.config import load_config
from mvit_video.config.defaults import HEAD_ACTS
from mvit_video.inference.predictor import Predictor
from mvit_video.models import build_model
from mvit_video.models.layers import head_activation
from tests.conftest import TINY_CLIP, TOY_CONFIG

LOGITS = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
BY_HAND = {
    "softmax": [[math.exp(v) / sum(math.exp(u) for u in row) for v in row] for row in LOGITS.tolist()],
    "sigmoid": [[1 / (1 + math.exp(-v)) for v in row] for row in LOGITS.tolist()],
    "none": LOGITS.tolist(),
}


@pytest.mark.parametrize("act", HEAD_ACTS)
def test_every_head_act_value_is_implemented(act):
    torch.testing.assert_close(head_activation(LOGITS, act), torch.tensor(BY_HAND[act]))


def test_unknown_head_act_is_refused():
    with pytest.raises(ValueError, match="'relu'"):
        head_activation(LOGITS, "relu")


class _FixedLogits(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return LOGITS[:1].expand(x.shape[0], -1)


class _OneClip:
    crop_size, sampling = 8, None

    def clip(self, frames, fps) -> torch.Tensor:
        return torch.zeros(1, 3, 1, 8, 8)


@pytest.mark.parametrize("act", HEAD_ACTS)
def test_demo_predictor_follows_the_same_rule(act):
    predictor = Predictor(_FixedLogits(), _OneClip(), ["a", "b", "c"], topk=3, activation=act)
    prediction = predictor.predict([None], fps=25.0)
    expected = sorted(BY_HAND[act][0], reverse=True)
    assert prediction.ids == (0, 2, 1) and prediction.probs == pytest.approx(expected)


def test_detach_final_fc_trains_the_classifier_only():
    """PySlowFast's MODEL.DETACH_FINAL_FC: the head's gradient is unchanged, nothing below it gets one."""
    models = {}
    for detach in (False, True):
        torch.manual_seed(0)
        models[detach] = build_model(load_config(TOY_CONFIG, [*TINY_CLIP, "MODEL.DETACH_FINAL_FC", str(detach),
                                                              "MODEL.DROPOUT_RATE", "0.0"]))  # fmt: skip
    clip = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    for model in models.values():
        model.train()
        torch.manual_seed(2)  # the same drop-path masks
        model(clip).logsumexp(-1).sum().backward()
    for name, param in models[True].named_parameters():
        reference = dict(models[False].named_parameters())[name].grad
        if name.startswith("head."):
            torch.testing.assert_close(param.grad, reference)
        else:
            assert param.grad is None and reference is not None, name
