"""Training, evaluation, checkpointing and distributed helpers."""
