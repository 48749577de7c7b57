"""The text box: labels, probabilities and the model's speed, drawn on a copy of the frame, fitted to its width."""

from __future__ import annotations

import numpy as np

from mvit_video.inference.overlay import Overlay, overlay_lines
from mvit_video.inference.predictor import Prediction

PREDICTION = Prediction((3, 0), ("rotating clockwise", "moving left"), (0.873, 0.1), 0.05, 12.34)


def test_lines_show_percentages_labels_and_model_fps():
    assert overlay_lines(PREDICTION) == [" 87.3%  rotating clockwise", " 10.0%  moving left", "model 12.3 FPS"]
    assert overlay_lines(None) == ["waiting for the first clip..."]


def test_text_is_drawn_on_a_copy_at_the_top_left_only():
    frame = np.full((240, 320, 3), 90, dtype=np.uint8)
    overlay = Overlay(240, 320)
    drawn = overlay.draw(frame, PREDICTION)
    assert (frame == 90).all() and drawn.shape == frame.shape
    changed = np.argwhere((drawn != frame).any(axis=2))
    box_h, box_w = changed.max(axis=0) + 1
    assert changed.min(axis=0).tolist() == [0, 0] and box_h < 240 / 2 and box_w < 320
    assert (drawn[box_h:] == 90).all() and (drawn[:, box_w:] == 90).all()
    box = drawn[:box_h, :box_w]
    assert (box > 200).all(axis=2).sum() > 100 and (box < 50).all(axis=2).sum() > 1000  # white text, dark box


def test_long_labels_are_shortened_to_fit_small_frames():
    long = Prediction((0,), ("Pretending to put something onto something else that is very long",), (0.5,), 0.1, 9.0)
    overlay = Overlay(48, 40)
    drawn = overlay.draw(np.zeros((48, 40, 3), dtype=np.uint8), long)
    assert drawn.shape == (48, 40, 3) and overlay.font_size == 9
    assert overlay._font.getlength(overlay._fit(long.labels[0], 30)) <= 30
    assert overlay._fit("short", 300) == "short" and overlay._fit(long.labels[0], 60).endswith("...")
