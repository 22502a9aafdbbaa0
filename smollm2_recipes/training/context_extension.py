"""`smollm2 extend-context RECIPE.yaml` (= `accelerate launch scripts/run_context_extension.py RECIPE.yaml`).

SmolLM2's context extension: load a pretrained checkpoint, raise the RoPE base (100k for 135M/360M, 130k for
1.7B) and the context (2k -> 8k), continue training on a mixture with ~40% long documents, save. Then a passkey
retrieval table over lengths x depths is printed and saved (passkey.json, passkey_heatmap.png), and held-out
loss by position bucket before and after (loss_by_position.json, loss_by_position.png).

The paper (arXiv 2502.02737, §4.6) started from the stage-4 checkpoint taken before the final 75B tokens of
pretraining, not from the released model (already extended and fully decayed): with `start_tokens_before_end`,
`model:` is a `smollm2 pretrain` output folder and the checkpoint is found from its plan.json (tokens per step,
steps of the whole run). A model whose config.json already has a longer context or a larger RoPE base than
pretraining's is refused, Hub ids included."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from smollm2_recipes.errors import UserError

# SmolLM2 pretraining (every size): 2048 positions, RoPE theta 10000 (huggingface/smollm pretraining configs).
PRETRAIN_CONTEXT = 2048
PRETRAIN_ROPE_THETA = 10000.0


@dataclass
class PasskeyArguments:
    passkey_lengths: list[int] = field(default_factory=lambda: [1024, 2048, 4096, 8192],
                                       metadata={"help": "haystack lengths in tokens"})
    passkey_depths: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0],
                                        metadata={"help": "needle depths (0 = start, 1 = end)"})
    passkey_samples: int = field(default=5, metadata={"help": "samples per (length, depth) cell (0 = skip the evaluation)"})
    passkey_seed: int = field(default=0, metadata={"help": "seed of the keys"})
    loss_by_position_windows: int = field(default=16, metadata={
        "help": "held-out windows of the new length scored for the loss by position, before and after (0 = skip it)"})


@dataclass
class ExtensionStartArguments:
    start_tokens_before_end: int | None = field(default=None, metadata={
        "help": "start from the checkpoint of the pretraining run in `model:` taken this many tokens before the run's "
                "end (SmolLM2: 75e9); unset = `model:` is itself the model folder or Hub id to extend"})


def resolve_start_checkpoint(run_dir: str, tokens_before_end: int) -> tuple[str, dict]:
    """The last complete checkpoint of pretraining run `run_dir` at or before `tokens_before_end` tokens before the
    end of its plan, and what was chosen (steps and tokens), for the log and the saved config."""
    from smollm2_recipes.training.checkpoints import checkpoint_step, complete_checkpoints

    run = Path(run_dir)
    plan_file = run / "plan.json"
    if not run.exists():
        raise UserError(f"pretraining output '{run_dir}' does not exist yet: run `smollm2 pretrain` (make pretrain) first, "
                        "or point `model:` at an existing run.")
    if not plan_file.is_file():
        raise UserError(f"start_tokens_before_end needs `model:` to be a smollm2 pretrain output folder with plan.json; "
                        f"'{run_dir}' has none (a model folder or Hub id: drop start_tokens_before_end).")
    if tokens_before_end < 0:
        raise UserError(f"start_tokens_before_end {tokens_before_end} is negative: give a token count >= 0 (SmolLM2: 75e9).")
    plan = json.loads(plan_file.read_text())
    tokens_per_step, end_step = int(plan["tokens_per_step"]), int(plan["max_steps"])
    steps_before_end = -(-int(tokens_before_end) // tokens_per_step)  # at least that many tokens remain
    target = end_step - steps_before_end
    if target < 0:
        raise UserError(f"start_tokens_before_end {tokens_before_end:,} is longer than the whole run '{run_dir}' "
                        f"({end_step} steps x {tokens_per_step:,} tokens = {end_step * tokens_per_step:,}).")
    steps = {checkpoint_step(c): c for c in complete_checkpoints(run)}
    candidates = [step for step in steps if step <= target]
    if not candidates:
        raise UserError(f"'{run_dir}' has no complete checkpoint at or before step {target} ({tokens_before_end:,} tokens "
                        f"before its end at step {end_step}); it holds steps {sorted(steps) or 'none'} "
                        "(keep that checkpoint: raise save_total_limit or copy it aside when it is written).")
    step = max(candidates)
    chosen = {"run": str(run), "checkpoint": str(steps[step]), "step": step, "end_step": end_step,
              "tokens_per_step": tokens_per_step, "tokens_before_end": (end_step - step) * tokens_per_step}
    return str(steps[step]), chosen


def read_model_config(model: str) -> dict:
    """config.json of a local folder, an `embedded:` model or a Hub model (one small download; offline, a clear error)."""
    from smollm2_recipes.runkit.loading import check_model_source

    local = check_model_source(model, made_by="pretrain")  # a missing pretraining output: run that stage first
    if Path(local).is_dir():
        from smollm2_recipes.training.checkpoints import read_config

        return read_config(local)
    from huggingface_hub import hf_hub_download

    try:
        return json.loads(Path(hf_hub_download(model, filename="config.json")).read_text())
    except Exception as err:  # offline, unknown repo, gated: all mean the model cannot be checked
        raise UserError(f"cannot read config.json of '{model}' from the Hub ({type(err).__name__}); context extension "
                        "must check it is not already extended: go online, or point `model:` at a local folder.") from None


def check_not_extended(model: str, config: dict) -> None:
    """Refuse a model whose context or RoPE base is already beyond pretraining's (e.g. the released SmolLM2 models,
    extended to 8k and decayed): extending it again is not the paper's recipe."""
    positions = config.get("max_position_embeddings") or 0
    params = config.get("rope_parameters") or {}
    theta = float(params.get("rope_theta", config.get("rope_theta", PRETRAIN_ROPE_THETA)))
    if positions > PRETRAIN_CONTEXT or theta > PRETRAIN_ROPE_THETA:
        raise UserError(f"'{model}' is already context-extended (max_position_embeddings {positions}, rope_theta {theta:g}; "
                        f"pretraining used {PRETRAIN_CONTEXT} and {PRETRAIN_ROPE_THETA:g}): start from a pretraining "
                        "output folder with start_tokens_before_end (SmolLM2: 75e9), as the paper did.")


def check_extension(model_args, data_args) -> None:
    """Refuse what cannot be a context extension, before anything is loaded or written."""
    from smollm2_recipes import models

    if model_args.model in models.PRESETS:
        raise UserError(f"extend-context starts from a trained model folder, not the preset '{model_args.model}': "
                        "set `model:` to a pretraining output (e.g. outputs/tiny/pretrain).")
    if model_args.max_position_embeddings is None or model_args.rope_theta is None:
        raise UserError("extend-context needs max_position_embeddings and rope_theta in the recipe "
                        "(SmolLM2: 8192 and 100000 for 135M/360M, 130000 for 1.7B).")
    if data_args.seq_len > model_args.max_position_embeddings:
        raise UserError(f"seq_len {data_args.seq_len} exceeds the new max_position_embeddings {model_args.max_position_embeddings}.")
    config = read_model_config(model_args.model)
    current = config.get("max_position_embeddings")
    if current is not None and model_args.max_position_embeddings < current:
        raise UserError(f"max_position_embeddings {model_args.max_position_embeddings} is below the model's current "
                        f"{current}: context extension can only grow the context.")
    check_not_extended(model_args.model, config)


def run_passkey(model_dir: str, passkey_args: PasskeyArguments, output_dir: str) -> dict | None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from smollm2_recipes.evaluation.passkey import evaluate_passkey, format_table, plot_passkey_heatmap
    from smollm2_recipes.runkit import write_json_atomic

    if passkey_args.passkey_samples <= 0:
        return None
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)  # evaluate in fp32: the model is small and bf16 logits shift the loss
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    result = evaluate_passkey(model, tokenizer, passkey_args.passkey_lengths, passkey_args.passkey_depths,
                              passkey_args.passkey_samples, passkey_args.passkey_seed)
    print("passkey retrieval: accuracy (mean key log-prob)\n" + format_table(result))
    result["heatmap"] = plot_passkey_heatmap(result, Path(output_dir) / "passkey_heatmap.png")
    write_json_atomic(Path(output_dir) / "passkey.json", result)
    return result


def main(argv: list[str] | None = None) -> int:
    from smollm2_recipes.recipe_parsing import parse
    from smollm2_recipes.data.stages import DataArguments
    from smollm2_recipes.training.pretrain_config import ModelArguments, PretrainConfig
    from smollm2_recipes.training.pretrain import run_pretrain

    config, model_args, data_args, passkey_args, start_args = parse(
        [PretrainConfig, ModelArguments, DataArguments, PasskeyArguments, ExtensionStartArguments], argv)
    if start_args.start_tokens_before_end is not None:
        model_args.model, chosen = resolve_start_checkpoint(model_args.model, start_args.start_tokens_before_end)
        print(f"context extension starts from {chosen['checkpoint']} (step {chosen['step']} of {chosen['end_step']}, "
              f"{chosen['tokens_before_end']:,} tokens before the end)", file=sys.stderr)
    check_extension(model_args, data_args)
    summary = run_pretrain(config, model_args, data_args)
    if config.should_save:
        result = run_passkey(config.output_dir, passkey_args, config.output_dir)
        if result is not None:
            print(f"passkey mean accuracy {result['mean_accuracy']:.2f}; heatmap: {result['heatmap']}", file=sys.stderr)
            summary["passkey_mean_accuracy"] = result["mean_accuracy"]
        if passkey_args.loss_by_position_windows > 0:
            from smollm2_recipes.evaluation.loss_by_position import before_and_after

            by_position = before_and_after(model_args.model, config.output_dir, config.output_dir,  # loss_by_position.{json,png}
                                           max_windows=passkey_args.loss_by_position_windows)
            summary["loss_by_position_after"] = by_position["after"]
    print(json.dumps({k: summary.get(k) for k in ("global_step", "final_loss", "tokens_seen", "passkey_mean_accuracy",
                                                   "loss_by_position_after")}))
    return 0
