"""MAE pre-training of the toy ViT through tools/run_net.py on a few toy videos, without labels: the masked-pixel loss
falls, validation reports it, the checkpoint holds the decoder; fine-tuning the toy classifier from it drops the
decoder and mask token and says so (slow). One-line refusals of MAE settings that cannot work."""

from __future__ import annotations

import re

import pytest
import torch

from mvit_video.config import ConfigError, load_config
from tests.conftest import ROOT
from tests.engine.runs import iter_losses, json_stats
from tests.engine.test_maskfeat_run import TINY, _run, _unlabelled

PT_CONFIG = ROOT / "configs" / "Toy" / "VIT_XS_8x2_MAE_PT.yaml"
FT_CONFIG = ROOT / "configs" / "Toy" / "VIT_XS_8x2.yaml"
# 4 x 32 x 32 clips: 2 x 4 x 4 tubelet tokens; 75% tubes leave 4 visible tokens a slice
PT_TINY = [*TINY, "AUG.MASK_WINDOW_SIZE", "[2, 4, 4]", "TRAIN.EVAL_PERIOD", "1", "TRAIN.CHECKPOINT_PERIOD", "1"]


@pytest.fixture(scope="module")
def pretrained(toy_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("mae")
    data = _unlabelled(toy_data, root / "unlabelled")
    result = _run(PT_CONFIG, data, root / "pt", *PT_TINY, "SOLVER.MAX_EPOCH", "2")
    return root, data, result


def test_mae_pretraining_without_labels_lowers_the_pixel_loss(pretrained):
    root, _, result = pretrained
    assert result.returncode == 0, result.stderr[-2000:]
    stats = json_stats(result.stdout)
    losses = iter_losses(stats, 1, 2) + iter_losses(stats, 2, 2)
    assert len(losses) == 6 and all(0 < loss < 3 for loss in losses)  # per-tubelet normalised targets: ~1 at start
    assert sum(losses[-2:]) / 2 < 0.9 * losses[0], losses
    val = [s for s in stats if s["_type"] == "val_epoch"]
    assert [s["num_videos"] for s in val] == [6, 6] and all(0 < s["loss"] < 3 for s in val)
    saved = torch.load(root / "pt" / "checkpoints" / "checkpoint_epoch_00002.pyth", weights_only=False)
    state = saved["model_state"]
    assert saved["epoch"] == 1 and state["mask_token"].shape == (1, 1, 64)
    assert "encoder_to_decoder.weight" in state and "decoder.head.weight" in state and "head.weight" not in state


@pytest.mark.slow
def test_a_classifier_fine_tunes_from_the_mae_checkpoint(pretrained, toy_data):
    root, _, _ = pretrained
    checkpoint = root / "pt" / "checkpoints" / "checkpoint_epoch_00002.pyth"
    result = _run(FT_CONFIG, toy_data, root / "ft", *TINY, "SOLVER.MAX_EPOCH", "1", "TRAIN.EVAL_PERIOD", "1",
                  "TEST.NUM_ENSEMBLE_VIEWS", "1", "TRAIN.CHECKPOINT_FILE_PATH", str(checkpoint))  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    line = re.search(r"initialised from .*: (format=.*); training starts at epoch 1", result.stderr + result.stdout)
    assert line, (result.stderr + result.stdout)[-2000:]
    # the decoder's block (12 tensors), norm (2) and head (2), encoder_to_decoder, mask_token; the classifier's
    # mean-pooling fc_norm is new (missing 2) and the encoder's final norm unused (unexpected 2), as in VideoMAE
    assert line.group(1) == ("format=vit, missing=2, unexpected=2, adapted=0, dropped 18 pre-training tensors "
                             "(mask_token, encoder_to_decoder, decoder), head re-initialised")  # fmt: skip
    assert (root / "ft" / "test_results.json").exists()


@pytest.mark.parametrize(
    "opts,message",
    [
        (["AUG.MASK_TUBE", "False"], "set exactly one of AUG.MASK_TUBE"),
        (["AUG.MASK_WINDOW_SIZE", "[4, 4, 4]"], r"must be the ViT's token grid \[4, 8, 8\]"),
        (["MASK.PRED_HOG", "True"], "MASK.PRED_HOG"),
        (["MASK.PER_FRAME_MASKING", "True"], "MASK.PER_FRAME_MASKING=True draws MASK.MAE_RND_MASK"),
        (["MASK.DECODER_DEPTH", "0"], "an MAE needs a decoder"),
    ],
)
def test_mae_settings_that_cannot_work_are_one_line(opts, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(PT_CONFIG, opts)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "opts,message",
    [
        (["MASK.DECODER_DEPTH", "2"], "MASK.DECODER_DEPTH=2 is an MAE setting"),
        (["MASK.MAE_ON", "True"], "MASK.MAE_ON=True MAE pre-training is built for MODEL.ARCH vit, not 'mvit'"),
    ],
)
def test_mvit_pretraining_refuses_mae_settings(opts, message):
    with pytest.raises(ConfigError, match=message):
        load_config(ROOT / "configs" / "Toy" / "MVITv2_XS_8x2_MaskFeat_PT.yaml", opts)
