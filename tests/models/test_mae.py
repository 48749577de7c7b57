"""The ViT family's MAE / VideoMAE pre-training model against HF transformers' ``VideoMAEForPreTraining`` (every
tensor randomised, float64, the same mask), its checkpoint layouts, its targets and masks, and the config adapter."""

from __future__ import annotations

import warnings

import pytest
import torch
from fvcore.common.config import CfgNode

from mvit_video.config import ConfigError, get_cfg, load_config
from mvit_video.models import create_model, load_pretrained
from mvit_video.models.build import build_mae, mae_config_from_cfg
from mvit_video.models.mae import MAEConfig, MaskedAutoencoder, patchify, tube_mask
from tests.conftest import ROOT, rel_l2
from tests.models.test_convert import randomize_

transformers = pytest.importorskip("transformers")

FRAMES, SIZE, PATCH, TUBELET = 4, 48, 16, 2  # a 2 x 3 x 3 token grid
GRID = (FRAMES // TUBELET, SIZE // PATCH, SIZE // PATCH)
SMALL_HF = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 256,
            "decoder_hidden_size": 32, "decoder_num_hidden_layers": 2, "decoder_num_attention_heads": 4,
            "decoder_intermediate_size": 128, "image_size": SIZE, "patch_size": PATCH, "num_frames": FRAMES,
            "tubelet_size": TUBELET, "use_mean_pooling": False, "qkv_bias": True}  # fmt: skip
SMALL_OURS = {"input_size": (FRAMES, SIZE, SIZE), "tubelet_size": TUBELET, "embed_dim": 64, "depth": 2, "num_heads": 4, "decoder_embed_dim": 32,
              "decoder_depth": 2, "decoder_num_heads": 4}  # fmt: skip


def _hf_pretraining(seed: int = 0, **config):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = transformers.VideoMAEConfig(**{**SMALL_HF, **config}, attn_implementation="eager")
        return randomize_(transformers.VideoMAEForPreTraining(cfg), seed=seed).double().eval()


def _clip(seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(2, 3, FRAMES, SIZE, SIZE, generator=g, dtype=torch.float64)


def _mask(ratio: float = 0.75, seed: int = 2) -> torch.Tensor:
    return tube_mask(2, GRID, ratio, torch.Generator().manual_seed(seed))


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _ours_from(state: dict, fmt: str, **overrides) -> MaskedAutoencoder:
    ours = create_model("videomae_b_16x4_pt", **{**SMALL_OURS, **overrides})
    report = load_pretrained(ours, state)
    assert report.source_format == fmt and report.missing == [] and report.unexpected == [], report.summary()
    assert report.dropped == []
    return ours.double().eval()


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_pred_loss_and_input_gradient_equal_hf(norm_pix_loss):
    theirs = _hf_pretraining(norm_pix_loss=norm_pix_loss)
    ours = _ours_from(theirs.state_dict(), "hf_videomae_pt", norm_pix_loss=norm_pix_loss)
    assert _params(ours) == _params(theirs)
    mask = _mask()
    x_ours, x_theirs = _clip().requires_grad_(), _clip().transpose(1, 2).requires_grad_()  # HF: (B, T, C, H, W)
    got = ours(x_ours, mask)
    expected = theirs(pixel_values=x_theirs, bool_masked_pos=mask)
    assert got["pred"].shape == (2, 12, 3 * TUBELET * PATCH * PATCH)
    assert rel_l2(got["pred"], expected.logits) < 1e-13
    assert abs(float(got["loss"]) - float(expected.loss)) / float(expected.loss) < 1e-13
    got["loss"].backward()
    expected.loss.backward()
    assert rel_l2(x_ours.grad, x_theirs.grad.transpose(1, 2)) < 1e-13


def test_videomae_b_parameter_count_equals_hf():
    with torch.device("meta"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = transformers.VideoMAEForPreTraining(transformers.VideoMAEConfig(use_mean_pooling=False))
        ours = create_model("videomae_b_16x4_pt")
    assert _params(ours) == _params(theirs) == 94_210_944


# the original VideoMAE's pre-training names for a 1-block encoder and decoder (modeling_pretrain.py's
# PretrainVisionTransformer: encoder / decoder, timm-style blocks with q_bias / v_bias, sin-cos tables not stored)
_BLOCK = ["norm1.weight", "norm1.bias", "attn.q_bias", "attn.v_bias", "attn.qkv.weight", "attn.proj.weight",
          "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight",
          "mlp.fc2.bias"]  # fmt: skip
ORIGINAL_KEYS = {"mask_token", "encoder_to_decoder.weight", "encoder.patch_embed.proj.weight",
                 "encoder.patch_embed.proj.bias", "encoder.norm.weight", "encoder.norm.bias", "decoder.norm.weight",
                 "decoder.norm.bias", "decoder.head.weight", "decoder.head.bias",
                 *(f"encoder.blocks.0.{k}" for k in _BLOCK), *(f"decoder.blocks.0.{k}" for k in _BLOCK)}  # fmt: skip


def test_original_videomae_pretraining_layout_loads():
    """A file in the original layout (built from the HF weights under the names above) gives HF's outputs."""
    theirs = _hf_pretraining(seed=3, num_hidden_layers=1, decoder_num_hidden_layers=1)
    via_hf = _ours_from(theirs.state_dict(), "hf_videomae_pt", depth=1, decoder_depth=1)
    ours_names = set(via_hf.state_dict())
    original = {("encoder." + k if not k.startswith(("decoder.", "encoder_to_decoder", "mask_token")) else k): v
                for k, v in via_hf.state_dict().items()}  # fmt: skip
    assert set(original) == ORIGINAL_KEYS and len(ours_names) == len(ORIGINAL_KEYS)
    ours = _ours_from({"model": original}, "videomae_pt", depth=1, decoder_depth=1)
    mask = _mask(seed=4)
    with torch.no_grad():
        assert rel_l2(ours(_clip(), mask)["pred"], theirs(_clip().transpose(1, 2), mask).logits) < 1e-12


def test_classifier_fine_tunes_from_a_pretraining_checkpoint():
    """VideoMAE fine-tuning: the encoder loads into the mean-pooling classifier, the decoder and mask token are
    dropped (reported), the classifier starts fresh (reported as re-initialised), the encoder's final norm is unused
    (mean pooling uses a fresh fc_norm, as VideoMAE and HF fine-tune), and the encoder's tokens equal HF's."""
    theirs = _hf_pretraining(seed=5)
    classifier = create_model("videomae_b_16x4", num_classes=5, depth=2, embed_dim=64, num_heads=4,
                              input_size=(FRAMES, SIZE, SIZE))  # fmt: skip
    report = load_pretrained(classifier, theirs.state_dict())
    assert report.source_format == "hf_videomae_pt"
    assert sorted(report.missing) == ["fc_norm.bias", "fc_norm.weight"] and report.head_reinitialized
    assert sorted(report.unexpected) == ["norm.bias", "norm.weight"]
    assert len(report.dropped) == 2 * 13 + 6 and "dropped 32 pre-training tensors (mask_token, " \
        "encoder_to_decoder, decoder), head re-initialised" in report.summary()  # fmt: skip
    x = _clip(seed=6)
    with torch.no_grad():
        got, _ = classifier.double().eval().forward_tokens(x)
        expected = theirs.videomae.encoder(theirs.videomae.embeddings(x.transpose(1, 2), None)).last_hidden_state
    assert rel_l2(got, expected) < 1e-12


def test_targets_are_tubelets_in_videomae_order():
    """Token (t, h, w)'s target is its 2 x 16 x 16 pixels, ordered (frame, row, column, channel), computed here by
    slicing; normalised per channel over the tubelet with the unbiased std."""
    x = _clip(seed=7)[:1]
    model = MaskedAutoencoder(MAEConfig(**SMALL_OURS, norm_pix_loss=False, pixel_mean=None, pixel_std=None))
    targets = model.targets(x)
    t, h, w = 1, 2, 0
    token = t * 9 + h * 3 + w
    cube = x[0, :, 2 * t : 2 * t + 2, 16 * h : 16 * h + 16, 16 * w : 16 * w + 16]  # (C, 2, 16, 16)
    torch.testing.assert_close(targets[0, token], cube.permute(1, 2, 3, 0).reshape(-1), rtol=0, atol=0)
    normed = MaskedAutoencoder(MAEConfig(**SMALL_OURS, pixel_mean=None, pixel_std=None)).targets(x)[0, token]
    per_channel = cube.reshape(3, -1)
    expected = (per_channel - per_channel.mean(1, keepdim=True)) / (per_channel.std(1, keepdim=True) + 1e-6)
    torch.testing.assert_close(normed, expected.T.reshape(-1), rtol=1e-12, atol=1e-12)
    first = MaskedAutoencoder(MAEConfig(**SMALL_OURS, norm_pix_loss=False, time_stride_loss=True, pixel_mean=None,
                                        pixel_std=None))  # fmt: skip
    assert first.decoder.head.out_features == 3 * 16 * 16
    torch.testing.assert_close(first.targets(x)[0, token], cube[:, 0].permute(1, 2, 0).reshape(-1), rtol=0, atol=0)
    assert patchify(x, 2, 16).shape == (1, 18, 512, 3)


def test_tube_mask_counts_constancy_and_seed():
    mask = tube_mask(3, (4, 14, 14), 0.9, torch.Generator().manual_seed(0))
    assert mask.shape == (3, 4 * 196) and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [4 * 176] * 3  # int(0.9 * 196) = 176 per slice
    grid = mask.reshape(3, 4, 196)
    assert bool((grid == grid[:, :1]).all())  # the same spatial positions in every slice
    assert not torch.equal(grid[0, 0], grid[1, 0])
    assert torch.equal(mask, tube_mask(3, (4, 14, 14), 0.9, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="ratio"):
        tube_mask(1, (1, 2, 2), 1.0)


def test_a_mask_that_does_not_fit_is_one_line():
    model = create_model("videomae_b_16x4_pt", **SMALL_OURS)
    x = _clip().float()
    uneven = _mask()
    uneven[0, 0] = ~uneven[0, 0]
    for bad, text in ((uneven, "same number of masked tokens"), (_mask()[:, :5], "mask must be bool of shape"),
                      (torch.zeros(2, 18, dtype=torch.bool), "between 1 and 17")):  # fmt: skip
        with pytest.raises(ValueError, match=text) as info:
            model(x, bad)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="not whole tubelets"):
        model(x[:, :, :3], _mask())


def test_pretraining_loss_falls():
    torch.manual_seed(0)
    model = create_model("videomae_b_16x4_pt", **SMALL_OURS)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    x, mask = _clip().float(), _mask()
    losses = []
    for _ in range(10):
        loss = model(x, mask)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.9 * losses[0], losses


@pytest.mark.parametrize("field", ["class_token", "dist_token", "global_pool", "num_classes"])
def test_settings_that_do_not_apply_are_refused(field):
    value = {"class_token": True, "dist_token": True, "global_pool": "avg", "num_classes": 10}[field]
    with pytest.raises(ValueError, match=f"MAEConfig.{field}="):
        MAEConfig(**{field: value})


# ------------------------------------------------------------------------------------------------- config

# PySlowFast's MASK defaults (slowfast/config/defaults.py), written out independently of the schema
SLOWFAST_MASK = {"ENABLE": False, "MAE_ON": False, "MAE_RND_MASK": False, "PER_FRAME_MASKING": False,
                 "TIME_STRIDE_LOSS": True, "NORM_PRED_PIXEL": True, "SCALE_INIT_BY_DEPTH": False,
                 "DECODER_EMBED_DIM": 512, "DECODER_SEP_POS_EMBED": False, "DEC_KV_KERNEL": [], "DEC_KV_STRIDE": [],
                 "PRETRAIN_DEPTH": [15], "HEAD_TYPE": "separate", "DECODER_DEPTH": 0, "PRED_HOG": False}  # fmt: skip


def test_the_schema_has_pyslowfasts_mask_defaults():
    assert dict(get_cfg().MASK) == SLOWFAST_MASK


def _root(**mask) -> CfgNode:
    cfg = get_cfg()
    cfg.MASK = CfgNode({**SLOWFAST_MASK, "ENABLE": True, "MAE_ON": True, "DECODER_EMBED_DIM": 384,
                        "DECODER_DEPTH": 4, "TIME_STRIDE_LOSS": False, **mask})  # fmt: skip
    cfg.MODEL.ARCH, cfg.MODEL.DROPOUT_RATE = "vit", 0.0
    cfg.DATA.NUM_FRAMES, cfg.DATA.MEAN, cfg.DATA.STD = 16, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    cfg.VIT.TUBELET_SIZE, cfg.VIT.QKV_BIAS, cfg.VIT.CLASS_TOKEN, cfg.VIT.POS_EMBED = 2, "qv", False, "sincos"
    cfg.VIT.NORM_EPS = 1e-12
    return cfg


def test_build_mae_maps_the_mask_section():
    got = mae_config_from_cfg(_root())
    assert got == create_model.__globals__["model_config"]("videomae_b_16x4_pt").replace(decoder_norm_eps=None)
    assert (got.decoder_embed_dim, got.decoder_depth, got.decoder_num_heads) == (384, 4, 6)
    small = _root(NORM_PRED_PIXEL=False, TIME_STRIDE_LOSS=True, DECODER_EMBED_DIM=32, DECODER_DEPTH=1)
    small.VIT.DEPTH, small.VIT.EMBED_DIM, small.VIT.NUM_HEADS = 1, 64, 4
    small.DATA.NUM_FRAMES, small.DATA.TRAIN_CROP_SIZE = FRAMES, SIZE
    model = build_mae(small)
    assert isinstance(model, MaskedAutoencoder) and model.cfg.decoder_num_heads == 1
    assert not model.cfg.norm_pix_loss and model.cfg.time_stride_loss and model.decoder.head.out_features == 768


@pytest.mark.parametrize(
    "change,message",
    [
        ({"MAE_ON": False}, "MASK.MAE_ON True"),
        ({"DEC_KV_STRIDE": [1, 2, 2]}, r"MASK.DEC_KV_STRIDE=\[1, 2, 2\] is not supported"),
        ({"PRED_HOG": True}, "MASK.PRED_HOG=True is not supported"),
        ({"DECODER_DEPTH": 0}, "decoder_depth=0 must be >= 1"),
    ],
)
def test_build_mae_refuses_in_one_line(change, message):
    with pytest.raises(ConfigError, match=message) as info:
        mae_config_from_cfg(_root(**change))
    assert "\n" not in str(info.value)


def test_build_mae_refuses_a_classifier_setting():
    cfg = _root()
    cfg.MODEL.DROPOUT_RATE = 0.5
    with pytest.raises(ConfigError, match="MODEL.DROPOUT_RATE=0.5 is the classifier's dropout"):
        mae_config_from_cfg(cfg)


PT_CONFIG = ROOT / "configs" / "K400" / "VIDEOMAE_B_16x4_PT.yaml"


def test_videomae_pretraining_yaml_builds_the_registered_variant_with_its_recipe():
    cfg = load_config(PT_CONFIG)
    expected = create_model.__globals__["model_config"]("videomae_b_16x4_pt")
    assert mae_config_from_cfg(cfg) == expected.replace(decoder_norm_eps=None)  # HF's 1e-5 is not a YAML key
    aug = cfg.AUG
    assert (aug.GEN_MASK_LOADER, aug.MASK_TUBE, aug.MASK_RATIO, list(aug.MASK_WINDOW_SIZE)) == (True, True, 0.9, [8, 14, 14])
    assert not (cfg.MASK.MAE_RND_MASK or cfg.MASK.PER_FRAME_MASKING)
    s = cfg.SOLVER
    assert (s.OPTIMIZING_METHOD, list(s.BETAS), s.WEIGHT_DECAY, s.MAX_EPOCH, s.WARMUP_EPOCHS) == (
        "adamw", [0.9, 0.95], 0.05, 800, 40.0)  # fmt: skip
    assert s.BASE_LR == pytest.approx(1.5e-4 * cfg.TRAIN.BATCH_SIZE / 256)
    assert not cfg.MIXUP.ENABLE and cfg.MIXUP.LABEL_SMOOTH_VALUE == 0.0
    assert (cfg.DATA.NUM_FRAMES, cfg.DATA.SAMPLING_RATE, cfg.DATA.TRAIN_CROP_SIZE) == (16, 4, 224)


@pytest.mark.slow
def test_published_size_equals_hf():
    """VideoMAE-B's full width and depth (encoder 12 x 768, decoder 4 x 384) on a short low-resolution clip."""
    size = {"image_size": 64, "num_frames": 4}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = transformers.VideoMAEConfig(use_mean_pooling=False, attn_implementation="eager", **size)
        theirs = randomize_(transformers.VideoMAEForPreTraining(cfg), seed=9).double().eval()
    ours = create_model("videomae_b_16x4_pt", input_size=(4, 64, 64))
    report = load_pretrained(ours, theirs.state_dict())
    assert report.missing == [] and report.unexpected == [] and report.dropped == []
    x = torch.randn(2, 3, 4, 64, 64, generator=torch.Generator().manual_seed(10), dtype=torch.float64)
    mask = tube_mask(2, (2, 4, 4), 0.9, torch.Generator().manual_seed(11))
    with torch.no_grad():
        got, expected = ours.double().eval()(x, mask), theirs(x.transpose(1, 2), mask)
    assert rel_l2(got["pred"], expected.logits) < 1e-12
    assert abs(float(got["loss"]) - float(expected.loss)) / float(expected.loss) < 1e-12
