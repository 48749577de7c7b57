"""Data: video decoding, clip sampling, augmentation, datasets and loaders (Kinetics, SSv2, image folders)."""

from .decode import SUPPORTED_BACKENDS, VideoDecodeError, VideoReader, open_video
from .loader import build_dataset, build_loader

__all__ = ["SUPPORTED_BACKENDS", "VideoDecodeError", "VideoReader", "build_dataset", "build_loader", "open_video"]
