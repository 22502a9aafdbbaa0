"""Post-training on TRL: SFT, DPO and merging LoRA adapters."""
