"""The toy PVTv2 learns: tools/run_net.py trains configs/Toy/PVTV2_XS_8x2.yaml from scratch and its multi-view test
beats chance clearly (the issue-13 families' toy check).

The Swin toy test's scaled-down run (half-size videos, 32 x 32 clips, 240 training videos, batch 8, 30 epochs):
tokens 4 x 8 x 8 of 32 channels, then 4 x 4 x 4 of 64.

Measured with this setting, test top-1 on 60 videos x 3 views: see MEASURED below.
Chance is 16.7%: a chance-level classifier reaches 50% (30 of 60) with probability 2.8e-9.
"""

from __future__ import annotations

import json
import math

import pytest

from mvit_video.data.toy import TOY_CLASSES
from tests.conftest import ROOT
from tests.engine.runs import json_stats, train_toy_short
from tests.engine.test_toy_swin_end_to_end import SHORT_RUN
from tests.engine.test_toy_vit_end_to_end import EPOCHS, MIN_TOP1

CONFIG = ROOT / "configs" / "Toy" / "PVTV2_XS_8x2.yaml"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    return train_toy_short(tmp_path_factory.mktemp("toy_pvt"), CONFIG, SHORT_RUN)


@pytest.mark.slow  # a training run of minutes: the ViT, Swin and MViT toy runs cover run_net in the default suite
def test_toy_pvt_learns_motion(trained):
    _, output, result = trained
    stats = json_stats(result.stdout)
    assert next(s for s in stats if s["_type"] == "model_info")["input_size"] == [8, 32, 32]
    epochs = [s for s in stats if s["_type"] == "train_epoch"]
    assert len(epochs) == EPOCHS
    assert epochs[0]["loss"] > 0.95 * math.log(len(TOY_CLASSES)) and epochs[-1]["loss"] < 1.4  # ln 6 = 1.79
    results = json.loads((output / "test_results.json").read_text())
    assert results["num_videos"] == 10 * len(TOY_CLASSES) and results["num_views"] == 3
    assert results["num_failed"] == 0
    assert results["top1"] >= MIN_TOP1, f"test top-1 {results['top1']:.1f}% (chance {100 / len(TOY_CLASSES):.1f}%)"
