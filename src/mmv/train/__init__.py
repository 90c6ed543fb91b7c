"""Training: `mmv pretrain` / `mmv sft` (config, schedule, freezing, resume state, the loop, DDP)."""
