"""Batch Mixup / CutMix for video batches and the soft-target loss."""

from __future__ import annotations

import math
import random

import pytest
import torch
import torch.nn.functional as F

from mvit_video.data.mixup import Mixup, cutmix_box, mixup_target, soft_target_cross_entropy


def batch(b: int = 4, t: int = 3, h: int = 16, w: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(b, 3, t, h, w, generator=g), torch.tensor([0, 1, 2, 3][:b])


def test_mixup_target_exact_values() -> None:
    # K = 5, smoothing 0.1: off = 0.02, on = 0.92. lam = 0.7 mixes label 1 with the mirrored label 3.
    targets = mixup_target(torch.tensor([1, 2, 3]), 5, lam=0.7, smoothing=0.1)
    expected = torch.tensor([
        [0.02, 0.7 * 0.92 + 0.3 * 0.02, 0.02, 0.7 * 0.02 + 0.3 * 0.92, 0.02],
        [0.02, 0.02, 0.92, 0.02, 0.02],
        [0.02, 0.7 * 0.02 + 0.3 * 0.92, 0.02, 0.7 * 0.92 + 0.3 * 0.02, 0.02],
    ])  # fmt: skip
    torch.testing.assert_close(targets, expected)
    torch.testing.assert_close(targets.sum(1), torch.ones(3))


def test_seeded_mixup_lambda_gives_exact_targets() -> None:
    videos, labels = batch()
    mix = Mixup(mixup_alpha=0.8, cutmix_alpha=0.0, prob=1.0, label_smoothing=0.1, num_classes=4,
                rng=random.Random(11))  # fmt: skip
    replay = random.Random(11)
    assert replay.random() < 1.0  # the "mix at all" coin
    lam = replay.betavariate(0.8, 0.8)  # mixup only: no switch coin
    out, targets = mix(videos, labels)
    torch.testing.assert_close(out, videos * lam + videos.flip(0) * (1 - lam))
    off, on = 0.1 / 4, 0.9 + 0.1 / 4
    assert targets[0, 0].item() == pytest.approx(lam * on + (1 - lam) * off)
    assert targets[0, 3].item() == pytest.approx(lam * off + (1 - lam) * on)
    assert targets[0, 1].item() == pytest.approx(off)
    torch.testing.assert_close(targets.sum(1), torch.ones(4))


def test_cutmix_box_is_shared_by_all_frames_and_corrects_lambda() -> None:
    videos, labels = batch()
    mix = Mixup(mixup_alpha=0.0, cutmix_alpha=1.0, label_smoothing=0.0, num_classes=4, rng=random.Random(2))
    out, targets = mix(videos, labels)
    pasted = (out != videos).any(dim=1)  # (B, T, H, W): where clip b took pixels from clip B-1-b
    assert pasted.any()
    assert torch.equal(pasted, pasted[:, :1].expand_as(pasted))  # the same box on every frame
    rows, cols = pasted[0, 0].any(1).nonzero(), pasted[0, 0].any(0).nonzero()
    y_lo, y_hi, x_lo, x_hi = rows.min().item(), rows.max().item() + 1, cols.min().item(), cols.max().item() + 1
    torch.testing.assert_close(out[0, ..., y_lo:y_hi, x_lo:x_hi], videos[3, ..., y_lo:y_hi, x_lo:x_hi])
    lam = 1 - (y_hi - y_lo) * (x_hi - x_lo) / (16 * 20)  # lambda = the area left untouched
    torch.testing.assert_close(targets[0], torch.tensor([lam, 0.0, 0.0, 1 - lam]))
    torch.testing.assert_close(targets.sum(1), torch.ones(4))


class Centre:
    """An rng whose randrange returns scripted box centres (cy, then cx)."""

    def __init__(self, cy: int, cx: int) -> None:
        self.values = [cy, cx]

    def randrange(self, _stop: int) -> int:
        return self.values.pop(0)


def test_cutmix_box_geometry() -> None:
    # lam 0.75 -> sqrt(0.25) = half of each side: 8 x 10 around the centre.
    assert cutmix_box(16, 20, 0.75, Centre(8, 10)) == (4, 12, 5, 15)
    # Centre (5, 3): x would start at 3 - 5 = -2 and is clipped to 0 -> an 8 x 8 box.
    assert cutmix_box(16, 20, 0.75, Centre(5, 3)) == (1, 9, 0, 8)
    # Odd cut sizes keep their full length: lam 0.64 -> 0.6 * 16 = 9 rows, 0.6 * 20 = 12 columns.
    assert cutmix_box(16, 20, 0.64, Centre(8, 10)) == (4, 13, 4, 16)


def test_prob_zero_leaves_videos_and_smooths_labels() -> None:
    videos, labels = batch()
    mix = Mixup(prob=0.0, label_smoothing=0.1, num_classes=4, rng=random.Random(0))
    out, targets = mix(videos, labels)
    assert torch.equal(out, videos)
    torch.testing.assert_close(targets, torch.full((4, 4), 0.025) + torch.eye(4) * 0.9)


def test_inputs_are_not_modified_and_both_modes_occur() -> None:
    videos, labels = batch()
    before = videos.clone()
    mix = Mixup(num_classes=4, rng=random.Random(5))
    modes = set()
    for _ in range(20):
        lam, use_cutmix = mix.sample_params()
        modes.add(use_cutmix)
        assert 0.0 <= lam <= 1.0
        mix(videos, labels)
    assert modes == {True, False}
    assert torch.equal(videos, before)


def test_soft_target_cross_entropy_matches_hard_labels() -> None:
    logits = torch.randn(5, 7, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 3, 6, 2, 2])
    hard = F.one_hot(labels, 7).float()
    torch.testing.assert_close(soft_target_cross_entropy(logits, hard), F.cross_entropy(logits, labels))
    uniform = torch.full((5, 7), 1 / 7)
    expected = -(F.log_softmax(logits, -1) / 7).sum(-1).mean()
    torch.testing.assert_close(soft_target_cross_entropy(logits, uniform), expected)
    assert soft_target_cross_entropy(torch.zeros(2, 4), torch.full((2, 4), 0.25)).item() == pytest.approx(math.log(4))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: Mixup(mixup_alpha=0.0, cutmix_alpha=0.0), "MIXUP.ENABLE"),
        (lambda: Mixup(label_smoothing=1.0), "label_smoothing"),
        (lambda: Mixup(num_classes=4)(torch.zeros(1, 3, 2, 4, 4), torch.tensor([0])), "drop_last"),
        (lambda: mixup_target(torch.tensor([0, 4]), 4, 1.0), r"\[0, 4\)"),
    ],
)
def test_errors_are_one_clear_line(make, message) -> None:
    with pytest.raises(ValueError, match=message) as info:
        make()
    assert "\n" not in str(info.value)
