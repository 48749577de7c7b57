"""Checkpoint formats by family: key maps onto the family's names, pure functions (MViT's are in ``convert.py``)."""
