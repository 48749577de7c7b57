"""Layers shared by the model families: patch/tubelet embedding and a CNN patch stem, position embeddings, attention
kernels, MLP, stochastic depth, heads."""

from .common import round_width
from .drop import DropPath
from .embedding import ConvPatchEmbed, PatchEmbed
from .heads import ClassificationHead, ensemble_views, head_activation
from .mlp import Mlp

__all__ = ["ClassificationHead", "ConvPatchEmbed", "DropPath", "Mlp", "PatchEmbed", "ensemble_views", "head_activation", "round_width"]
