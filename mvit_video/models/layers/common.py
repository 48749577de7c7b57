"""Width arithmetic shared by the hierarchical families."""

from __future__ import annotations


def round_width(width: float, multiplier: float, min_width: int = 1, divisor: int = 1) -> int:
    """Scales a channel width and rounds it to a multiple of ``divisor`` (PySlowFast's rule).

    Args:
        width: the width to scale.
        multiplier: the scale factor; 0 or None leaves ``width`` unchanged.
        min_width: the smallest width returned (``divisor`` when 0).
        divisor: the result is a multiple of this.

    Returns:
        The scaled width, never more than 10% below ``width * multiplier``.
    """
    if not multiplier:
        return int(width)
    width *= multiplier
    min_width = min_width or divisor
    width_out = max(min_width, int(width + divisor / 2) // divisor * divisor)
    if width_out < 0.9 * width:
        width_out += divisor
    return int(width_out)
