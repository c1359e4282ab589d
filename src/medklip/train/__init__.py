"""Pre-training: configs, the trainer, distributed helpers."""
