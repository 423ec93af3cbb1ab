"""The one training stack: the loop (optimiser, schedule, EMA, bf16, DDP, metrics), atomic checkpoints and exact
resume."""
