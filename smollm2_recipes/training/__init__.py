"""Pretraining on the Hugging Face `Trainer`: one WSD trajectory across data stages, atomic checkpoints with
exact resume, cooldown branches, weight averaging, a loss-spike guard and context extension."""
