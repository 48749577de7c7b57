"""Inference on videos and cameras: clip -> top-k (predictor), frame sources, overlay and outputs, the demo loop."""
