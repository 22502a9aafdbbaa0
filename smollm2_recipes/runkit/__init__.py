"""The run kit every stage shares: loading models and tokenizers, atomic writes, and the claim on a run's
output folder (refusals + lock). Validate everything first, then claim the folder, then write."""

from smollm2_recipes.runkit.files import write_atomic, write_json_atomic
from smollm2_recipes.runkit.loading import load_model, load_tokenizer
from smollm2_recipes.runkit.lock import LOCK_FILE, claim_output_dir

__all__ = ["LOCK_FILE", "claim_output_dir", "load_model", "load_tokenizer", "write_atomic", "write_json_atomic"]
