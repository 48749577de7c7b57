"""Layers shared by the model families: patch/tubelet embedding, position embeddings, attention kernels, MLP,
stochastic depth, heads."""

from .common import round_width
from .drop import DropPath
from .embedding import PatchEmbed
from .heads import ClassificationHead, head_activation
from .mlp import Mlp

__all__ = ["ClassificationHead", "DropPath", "Mlp", "PatchEmbed", "head_activation", "round_width"]
