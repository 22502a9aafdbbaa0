"""Typed configuration of a pretraining run: `PretrainConfig` (transformers' `TrainingArguments` plus the
fields pretraining needs), `ModelArguments`, and the checks that turn a recipe into an exact run plan
(global batch in tokens -> gradient accumulation, stage budgets -> steps, WSD decay within the run)."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments
from transformers.trainer_utils import SchedulerType

from smollm2_recipes.errors import UserError
from smollm2_recipes.runkit.batch import accumulation_for
from smollm2_recipes.runkit.fields import NoSavedSecrets


@dataclass
class ModelArguments:
    model: str = field(default="tiny", metadata={"help": "a preset name (135M, 360M, 1.7B, tiny, micro, ...) for a fresh "
                                                       "init, or a model folder / Hub id to continue from"})
    init_seed: int = field(default=0, metadata={"help": "seed of the fresh initialisation (presets only)"})
    # Context extension (smollm2 extend-context): the new RoPE base and length; None keeps the model's own.
    rope_theta: float | None = field(default=None, metadata={"help": "new RoPE theta (context extension)"})
    max_position_embeddings: int | None = field(default=None, metadata={"help": "new context length (context extension)"})
    attn_implementation: str = field(default="sdpa", metadata={"help": "attention kernel: sdpa, eager, flash_attention_2"})


@dataclass
class PretrainConfig(NoSavedSecrets, TrainingArguments):
    """`TrainingArguments` with the published SmolLM2 optimisation as defaults and the pretraining extras
    (hub_token never saved in training_args.bin)."""

    # Published optimisation (huggingface/smollm text/pretraining/smollm2/*.yaml): AdamW (0.9, 0.95), eps 1e-8, wd 0.01, clip 1.0, warmup 2000, WSD.
    learning_rate: float = 3e-3
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    adam_epsilon: float = 1e-8
    weight_decay: float = 0.01
    weight_decay_norms: bool = field(default=True, metadata={"help": "decay norm weights and biases too, as nanotron "
                                     "did for SmolLM2 (true); false = the Trainer's usual exclusion of norms and biases"})
    max_grad_norm: float = 1.0
    warmup_steps: float = 2000
    lr_scheduler_type: SchedulerType | str = "warmup_stable_decay"
    logging_steps: float = 10
    save_steps: float = 1000
    save_total_limit: int | None = 3
    report_to: None | str | list[str] = "tensorboard"
    output_dir: str | None = "outputs/pretrain"

    global_batch_tokens: int = field(default=0, metadata={"help": "tokens per optimiser step over all devices "
                                     "(fixed by the recipe; gradient accumulation is derived from it). 0 = per-device "
                                     "batch x world size x gradient_accumulation_steps"})
    # Cooldown branch: a decay started from a stable-phase checkpoint, optimiser state included.
    cooldown_from: str | None = field(default=None, metadata={"help": "checkpoint of a stable phase to branch a decay from"})
    decay_steps: int | None = field(default=None, metadata={"help": "length of the decay (cooldown branches; "
                                    "overrides lr_scheduler_kwargs.num_decay_steps)"})
    decay_type: str | None = field(default=None, metadata={"help": "linear, 1-sqrt or cosine (overrides lr_scheduler_kwargs.decay_type)"})
    # Spike guard.
    spike_factor: float = field(default=3.0, metadata={"help": "a step loss above spike_factor x running mean is a spike (0 = off)"})
    spike_window: int = field(default=50, metadata={"help": "steps in the running mean of the spike guard"})
    spike_warmup: int = field(default=20, metadata={"help": "steps before the spike guard starts judging"})
    spike_action: str = field(default="log", metadata={"help": "log, or rollback (to the last checkpoint, skipping the offending blocks)"})
    max_rollbacks: int = field(default=5, metadata={"help": "give up after this many rollbacks"})
    # Weight averaging during training (Hägele et al.: SWA every 5 steps in fp32).
    weight_averaging: str = field(default="none", metadata={"help": "none, swa or ema"})
    averaging_every: int = field(default=5, metadata={"help": "steps between averaging updates"})
    averaging_start: int = field(default=0, metadata={"help": "first step that enters the average"})
    ema_decay: float = field(default=0.999, metadata={"help": "EMA decay (weight_averaging: ema)"})
    # Evaluation on each stage's held-out blocks.
    eval_blocks: int = field(default=0, metadata={"help": "held-out blocks per stage evaluated at stage ends and every eval_steps (0 = off)"})
    mfu_peak_tflops: float | None = field(default=None, metadata={"help": "device peak for MFU; default: measured at start"})

    def __post_init__(self):
        super().__post_init__()
        if self.spike_action not in ("log", "rollback"):
            raise UserError(f"spike_action '{self.spike_action}' is not valid: use 'log' or 'rollback'.")
        if self.weight_averaging not in ("none", "swa", "ema"):
            raise UserError(f"weight_averaging '{self.weight_averaging}' is not valid: use none, swa or ema.")
        if self.decay_type is not None and self.decay_type not in ("linear", "1-sqrt", "cosine"):
            raise UserError(f"decay_type '{self.decay_type}' is not valid: use linear, 1-sqrt or cosine.")
        if not 0.0 < self.ema_decay < 1.0:
            raise UserError(f"ema_decay {self.ema_decay} must lie strictly between 0 and 1.")


def resolve_batch(config: PretrainConfig, seq_len: int) -> tuple[int, int]:
    """(sequences per optimiser step over all devices, gradient accumulation steps) that make the global batch
    exactly `global_batch_tokens`, whatever the world size (the run kit's one global-batch policy: a
    contradicting gradient_accumulation_steps is refused). The config is not changed."""
    world, per_device = config.world_size, config.per_device_train_batch_size
    if not config.global_batch_tokens:
        return per_device * world * config.gradient_accumulation_steps, config.gradient_accumulation_steps
    if config.global_batch_tokens % seq_len:
        raise UserError(f"global_batch_tokens {config.global_batch_tokens} is not a multiple of seq_len {seq_len}: "
                        f"use e.g. {config.global_batch_tokens // seq_len * seq_len} or {(config.global_batch_tokens // seq_len + 1) * seq_len}.")
    sequences = config.global_batch_tokens // seq_len
    accumulation = accumulation_for(sequences, per_device, world, config.gradient_accumulation_steps,
                                    f"global_batch_tokens {config.global_batch_tokens}")
    return sequences, accumulation


def resolve_steps(config: PretrainConfig, stage_tokens: list[int], tokens_per_step: int, branch_end: int | None = None) -> int:
    """max_steps from the stage budgets (or check the recipe's max_steps against them)."""
    total = sum(stage_tokens)
    if branch_end is not None:  # a cooldown branch reads a prefix of the main run's stream
        if total and branch_end * tokens_per_step > total:
            raise UserError(f"the cooldown ends at step {branch_end} ({branch_end * tokens_per_step:,} tokens), past the "
                            f"{total:,} tokens the stages hold: the decay is longer than the run; shorten decay_steps.")
        return branch_end
    if total:
        if total % tokens_per_step:
            raise UserError(f"stage budgets add up to {total:,} tokens, not a whole number of steps of {tokens_per_step:,} "
                            f"tokens (the global batch): make the budgets a multiple, e.g. {total // tokens_per_step * tokens_per_step:,} in all.")
        steps = total // tokens_per_step
        if config.max_steps > 0 and config.max_steps != steps:
            raise UserError(f"stage budgets add up to {total:,} tokens = {steps} steps of {tokens_per_step:,} tokens, "
                            f"but max_steps is {config.max_steps}: make them agree (or drop max_steps; it is derived).")
        return steps
    if config.max_steps <= 0:
        raise UserError("the run has no length: give stages with token budgets or max_steps.")
    return config.max_steps


def resolve_schedule(config: PretrainConfig, max_steps: int, stable_until: int | None = None) -> dict:
    """WSD keyword arguments for transformers' `warmup_stable_decay`, checked against the run length."""
    if config.lr_scheduler_type != "warmup_stable_decay":
        return dict(config.lr_scheduler_kwargs or {})
    kwargs = dict(config.lr_scheduler_kwargs or {})
    if config.decay_steps is not None:
        kwargs["num_decay_steps"] = config.decay_steps
    if config.decay_type is not None:
        kwargs["decay_type"] = config.decay_type
    kwargs.setdefault("decay_type", "linear")
    decay = kwargs.get("num_decay_steps")
    if isinstance(decay, float) and 0 < decay < 1:  # a share of the run, like the paper's "last 20%"
        decay = kwargs["num_decay_steps"] = int(round(decay * max_steps))
    if decay is None:
        raise UserError("warmup_stable_decay needs lr_scheduler_kwargs.num_decay_steps (steps, or a share < 1 of the run).")
    warmup = config.get_warmup_steps(max_steps)
    if decay < 0 or warmup + decay > max_steps:
        raise UserError(f"the decay ({decay} steps) plus warmup ({warmup}) is longer than the run ({max_steps} steps): "
                        f"use num_decay_steps <= {max(max_steps - warmup, 0)}.")
    kwargs["num_decay_steps"] = int(decay)
    return kwargs
