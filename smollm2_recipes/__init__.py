"""smollm2-recipes: reproduce SmolLM2 (pretraining stages, context extension, SFT, DPO, synthetic data)
on the Hugging Face stack, at full scale on GPUs or in miniature on a laptop CPU."""

__version__ = "0.1.0"
