"""Drawing predictions on frames: the top-k labels with probabilities and the model's speed, top left.

The text box is rendered once per prediction with Pillow (white text on a translucent dark box, sized from the
frame's short side) and blended into every frame it is shown on, so drawing costs one small numpy blend per frame.
Labels too long for the frame are shortened with "...".
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .predictor import Prediction

_BOX_ALPHA = 0.6  # opacity of the dark box behind the text
_MIN_FONT = 9  # pixels


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
    except TypeError:
        return ImageFont.load_default()


def overlay_lines(prediction: Prediction | None) -> list[str]:
    """The text shown for a prediction (None: before the first one)."""
    if prediction is None:
        return ["waiting for the first clip..."]
    lines = [f"{p * 100:5.1f}%  {label}" for label, p in zip(prediction.labels, prediction.probs)]
    return lines + [f"model {prediction.model_fps:.1f} FPS"]


class Overlay:
    """Draws predictions on frames of one size.

    Args:
        height, width: frame size.
    """

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width = height, width
        self.font_size = max(_MIN_FONT, round(min(height, width) / 24))
        self._font = _font(self.font_size)
        self._margin = max(2, self.font_size // 3)
        self._key: object = ()
        self._patch: np.ndarray | None = None  # (h, w, 3) float32 text colours, premultiplied
        self._alpha: np.ndarray | None = None  # (h, w, 1) float32

    def _fit(self, text: str, width: float) -> str:
        if self._font.getlength(text) <= width:
            return text
        while text and self._font.getlength(text + "...") > width:
            text = text[:-1]
        return text + "..."

    def _render(self, lines: list[str]) -> None:
        margin, line_height = self._margin, round(self.font_size * 1.25)
        room = self.width - 3 * margin
        lines = [self._fit(line, room) for line in lines]
        box_w = min(self.width, round(max(self._font.getlength(line) for line in lines)) + 2 * margin)
        box_h = min(self.height, line_height * len(lines) + 2 * margin)
        box = Image.new("RGBA", (box_w, box_h), (0, 0, 0, round(255 * _BOX_ALPHA)))
        draw = ImageDraw.Draw(box)
        for i, line in enumerate(lines):
            draw.text((margin, margin + i * line_height), line, font=self._font, fill=(255, 255, 255, 255))
        rgba = np.asarray(box, dtype=np.float32) / 255.0
        self._alpha = rgba[..., 3:]
        self._patch = rgba[..., :3] * self._alpha * 255.0

    def draw(self, frame: np.ndarray, prediction: Prediction | None) -> np.ndarray:
        """A copy of ``frame`` (H, W, 3) uint8 with the prediction's text box at the top left."""
        if self._key is not prediction:
            self._render(overlay_lines(prediction))
            self._key = prediction
        h, w = self._alpha.shape[:2]
        out = frame.copy()
        region = out[:h, :w].astype(np.float32)
        out[:h, :w] = np.rint(self._patch + region * (1.0 - self._alpha)).astype(np.uint8)
        return out
