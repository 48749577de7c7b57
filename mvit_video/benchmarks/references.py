"""The reference implementation each benchmarked zoo model is timed against, built with random weights.

- MViT: torchvision's ``mvit_v2_s`` / ``mvit_v1_b`` on video, timm's ``mvitv2_tiny`` for the image MViTv2-T.
- Image ViT variants: timm's model of the same name (CPVT has none in timm: DeiT-Ti without position embedding plus
  timm's Twins ``PosConv`` after the first block, the reference ``tests/models/test_vit.py`` checks it against).
- Swin: timm's ``swin_tiny_patch4_window7_224`` for 2-D Swin-T, torchvision's ``swin3d_t`` for Video Swin-T.
- LeViT, CoaT: timm's ``levit_128s``, ``coat_lite_tiny``, ``coat_tiny``.
- PVT: HF transformers ``PvtForImageClassification`` (``PvtConfig()``: PVT-Tiny) for PVT v1, timm's ``pvt_v2_b0``.
- Video ViT variants: HF transformers ``*ForVideoClassification`` with the published checkpoint's config; they take
  (B, T, C, H, W) clips, so they get their own contiguous copy of the input in that layout.
- CvT-13: HF transformers ``CvtForImageClassification`` (``CvtConfig()`` is CvT-13; 1000 labels).

Every reference is returned as a ``nn.Module`` mapping the input to class logits, together with the state dict that
``load_pretrained`` reads into our model (the reference's own layout: the published files have these keys). Where
the reference computes something differently from our variant's defaults (HF's PVT v1 LayerNorm epsilons), the twin
names the ``create_model`` arguments that make ours compute the same function.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

# layouts of the input a model takes
IMAGE, CLIP, HF_CLIP = "B,C,H,W", "B,C,T,H,W", "B,T,C,H,W"


@dataclass(frozen=True)
class Twin:
    """A zoo model and its reference.

    Attributes:
        library: where the reference comes from ("torchvision", "timm" or "transformers").
        name: the reference's own name (builder, timm model or HF class prefix).
        layout: the reference's input layout (``IMAGE``, ``CLIP`` or ``HF_CLIP``).
        build: () -> (reference module returning logits, state dict to load into ours).
        ours: ``create_model`` arguments of our model that match the reference's numerics.
    """

    library: str
    name: str
    layout: str
    build: Callable[[], tuple[nn.Module, dict]]
    ours: dict = field(default_factory=dict)


def _torchvision(name: str) -> Callable[[], tuple[nn.Module, dict]]:
    def build():
        import torchvision.models.video as tvv

        model = getattr(tvv, name)()
        return model, model.state_dict()

    return build


def _timm(name: str) -> Callable[[], tuple[nn.Module, dict]]:
    def build():
        import timm

        model = timm.create_model(name, pretrained=False)
        return model, model.state_dict()

    return build


class TimmCPVT(nn.Module):
    """CPVT-Ti from timm's parts: ``deit_tiny_patch16_224`` without position embedding, and the Twins ``PosConv``
    (depthwise 3x3 conv with a residual) on the patch tokens after the first block."""

    def __init__(self) -> None:
        super().__init__()
        import timm
        from timm.models.twins import PosConv

        self.vit = timm.create_model("deit_tiny_patch16_224", pretrained=False, pos_embed="none")
        self.peg = PosConv(192, 192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.vit
        tokens = v.patch_embed(x)
        side = x.shape[-1] // 16
        tokens = v.blocks[0](torch.cat((v.cls_token.expand(x.shape[0], -1, -1), tokens), dim=1))
        grid = self.peg(tokens[:, 1:], (side, side))
        tokens = v.blocks[1:](torch.cat((tokens[:, :1], grid), dim=1))
        return v.head(v.norm(tokens)[:, 0])


def _timm_cpvt() -> tuple[nn.Module, dict]:
    model = TimmCPVT()
    state = {}
    for key, value in model.state_dict().items():
        state[key.removeprefix("vit.") if key.startswith("vit.") else key.replace("peg.", "pos_block.0.", 1)] = value
    return model, state


class HFLogits(nn.Module):
    """An HF ``*ForVideoClassification`` / ``*ForImageClassification`` model as ``clip (B, T, C, H, W) -> logits`` /
    ``image (B, C, H, W) -> logits``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


def _hf(prefix: str, task: str = "Video", num_labels: int = 400, **config) -> Callable[[], tuple[nn.Module, dict]]:
    def build():
        import transformers

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # transformers' notices about configs and attention kernels
            cfg = getattr(transformers, f"{prefix}Config")(num_labels=num_labels, **config)
            model = getattr(transformers, f"{prefix}For{task}Classification")(cfg)
        return HFLogits(model), model.state_dict()

    return build


TWINS: dict[str, Twin] = {
    "mvitv2_s_16x4": Twin("torchvision", "mvit_v2_s", CLIP, _torchvision("mvit_v2_s")),
    "mvitv1_b_16x4": Twin("torchvision", "mvit_v1_b", CLIP, _torchvision("mvit_v1_b")),
    "mvitv2_t_in1k": Twin("timm", "mvitv2_tiny", IMAGE, _timm("mvitv2_tiny")),
    "vit_ti16_in1k": Twin("timm", "vit_tiny_patch16_224", IMAGE, _timm("vit_tiny_patch16_224")),
    "vit_b16_in1k": Twin("timm", "vit_base_patch16_224", IMAGE, _timm("vit_base_patch16_224")),
    "deit_ti16_in1k": Twin("timm", "deit_tiny_patch16_224", IMAGE, _timm("deit_tiny_patch16_224")),
    "deit_ti16_distilled_in1k": Twin("timm", "deit_tiny_distilled_patch16_224", IMAGE,
                                     _timm("deit_tiny_distilled_patch16_224")),  # fmt: skip
    "cait_xxs24_in1k": Twin("timm", "cait_xxs24_224", IMAGE, _timm("cait_xxs24_224")),
    "cpvt_ti_in1k": Twin("timm", "deit_tiny_patch16_224 + twins PosConv", IMAGE, _timm_cpvt),
    "videomae_b_16x4": Twin("transformers", "VideoMAEForVideoClassification", HF_CLIP,
                            _hf("VideoMAE", num_frames=16, use_mean_pooling=True)),  # fmt: skip
    "timesformer_b_8x32": Twin("transformers", "TimesformerForVideoClassification", HF_CLIP,
                               _hf("Timesformer", num_frames=8)),  # fmt: skip
    "vivit_b_32x2": Twin("transformers", "VivitForVideoClassification", HF_CLIP, _hf("Vivit", num_frames=32)),
    "swin_t_in1k": Twin("timm", "swin_tiny_patch4_window7_224", IMAGE, _timm("swin_tiny_patch4_window7_224")),
    "swin3d_t_32x2": Twin("torchvision", "swin3d_t", CLIP, _torchvision("swin3d_t")),
    "levit_128s_in1k": Twin("timm", "levit_128s", IMAGE, _timm("levit_128s")),
    "coat_lite_ti_in1k": Twin("timm", "coat_lite_tiny", IMAGE, _timm("coat_lite_tiny")),
    "coat_ti_in1k": Twin("timm", "coat_tiny", IMAGE, _timm("coat_tiny")),
    "cvt_13_in1k": Twin("transformers", "CvtForImageClassification", IMAGE, _hf("Cvt", "Image", 1000)),
    "pvt_t_in1k": Twin("transformers", "PvtForImageClassification", IMAGE, _hf("Pvt", "Image", 1000),
                       {"conv_norm_eps": 1e-6}),  # HF's patch-embedding and reduction norms  # fmt: skip
    "pvtv2_b0_in1k": Twin("timm", "pvt_v2_b0", IMAGE, _timm("pvt_v2_b0")),
}


def attention_kernel(reference: nn.Module, twin: Twin) -> str:
    """How the reference computes attention: "sdpa" (fused) or "eager" (explicit), as far as it says."""
    if twin.library == "transformers":
        return str(reference.model.config._attn_implementation)
    if twin.library == "timm":
        from timm.layers import use_fused_attn

        # explicit in timm too: CaiT's talking heads (its class attention is fused), LeViT's biased attention, MViTv2's
        # relative positions; CoaT's factorised attention has no attention map at all (reported as explicit)
        explicit = any(name in twin.name for name in ("cait", "levit", "coat", "mvitv2"))
        return "eager" if explicit else ("sdpa" if use_fused_attn() else "eager")
    return "eager"  # torchvision's MViT and Video Swin: explicit logits plus the rel-pos bias (and shift mask)
