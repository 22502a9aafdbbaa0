"""`smollm2 extend-context RECIPE.yaml` (= `accelerate launch scripts/run_context_extension.py RECIPE.yaml`).

SmolLM2's context extension: load a pretrained checkpoint, raise the RoPE base (100k for 135M/360M, 130k for
1.7B) and the context (2k -> 8k), continue training on a mixture with ~40% long documents, save. Then a passkey
retrieval table over lengths x depths is printed and saved (passkey.json, passkey_heatmap.png)."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from smollm2_recipes.errors import UserError


@dataclass
class PasskeyArguments:
    passkey_lengths: list[int] = field(default_factory=lambda: [1024, 2048, 4096, 8192],
                                       metadata={"help": "haystack lengths in tokens"})
    passkey_depths: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0],
                                        metadata={"help": "needle depths (0 = start, 1 = end)"})
    passkey_samples: int = field(default=5, metadata={"help": "samples per (length, depth) cell (0 = skip the evaluation)"})
    passkey_seed: int = field(default=0, metadata={"help": "seed of the keys"})


def check_extension(model_args, data_args) -> None:
    """Refuse what cannot be a context extension, before anything is loaded or written."""
    from smollm2_recipes import models
    from smollm2_recipes.training.checkpoints import read_config

    if model_args.model in models.PRESETS:
        raise UserError(f"extend-context starts from a trained model folder, not the preset '{model_args.model}': "
                        "set `model:` to a pretraining output (e.g. outputs/tiny/pretrain).")
    if model_args.max_position_embeddings is None or model_args.rope_theta is None:
        raise UserError("extend-context needs max_position_embeddings and rope_theta in the recipe "
                        "(SmolLM2: 8192 and 100000 for 135M/360M, 130000 for 1.7B).")
    if Path(model_args.model).is_dir():
        current = read_config(model_args.model).get("max_position_embeddings")
        if current is not None and model_args.max_position_embeddings < current:
            raise UserError(f"max_position_embeddings {model_args.max_position_embeddings} is below the model's current "
                            f"{current}: context extension can only grow the context.")
    if data_args.seq_len > model_args.max_position_embeddings:
        raise UserError(f"seq_len {data_args.seq_len} exceeds the new max_position_embeddings {model_args.max_position_embeddings}.")


def run_passkey(model_dir: str, passkey_args: PasskeyArguments, output_dir: str) -> dict | None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from smollm2_recipes.evaluation.passkey import evaluate_passkey, format_table, plot_passkey_heatmap
    from smollm2_recipes.runkit import write_json_atomic

    if passkey_args.passkey_samples <= 0:
        return None
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)  # evaluate in fp32 (REFERENCE.md)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    result = evaluate_passkey(model, tokenizer, passkey_args.passkey_lengths, passkey_args.passkey_depths,
                              passkey_args.passkey_samples, passkey_args.passkey_seed)
    print("passkey retrieval: accuracy (mean key log-prob)\n" + format_table(result))
    result["heatmap"] = plot_passkey_heatmap(result, Path(output_dir) / "passkey_heatmap.png")
    write_json_atomic(Path(output_dir) / "passkey.json", result)
    return result


def main(argv: list[str] | None = None) -> int:
    from smollm2_recipes.configs import parse
    from smollm2_recipes.data.config import DataArguments
    from smollm2_recipes.training.config import ModelArguments, PretrainConfig
    from smollm2_recipes.training.pretrain import run_pretrain

    config, model_args, data_args, passkey_args = parse([PretrainConfig, ModelArguments, DataArguments, PasskeyArguments], argv)
    check_extension(model_args, data_args)
    summary = run_pretrain(config, model_args, data_args)
    if config.should_save:
        result = run_passkey(config.output_dir, passkey_args, config.output_dir)
        if result is not None:
            print(f"passkey mean accuracy {result['mean_accuracy']:.2f}; heatmap: {result['heatmap']}", file=sys.stderr)
            summary["passkey_mean_accuracy"] = result["mean_accuracy"]
    print(json.dumps({k: summary.get(k) for k in ("global_step", "final_loss", "tokens_seen", "passkey_mean_accuracy")}))
    return 0
