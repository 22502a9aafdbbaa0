"""Checks every stage runs at parse time, before anything is written: numeric fields in range (by field name,
on whatever config dataclasses a stage parses), and unknown keys named with the closest valid one."""

from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Iterable

from smollm2_recipes.errors import UserError

# field -> (lowest valid value, is the lowest value itself allowed?, why). None values mean "unset" and pass.
RANGES: dict[str, tuple[float, bool, str]] = {
    "learning_rate": (0, False, "a learning rate of 0 trains nothing and a negative one climbs the loss"),
    "per_device_train_batch_size": (1, True, "a batch holds at least one example"),
    "per_device_eval_batch_size": (1, True, "a batch holds at least one example"),
    "gradient_accumulation_steps": (1, True, "at least one micro-batch per optimiser step"),
    "global_batch_size": (1, True, "a batch holds at least one example"),
    "global_batch_tokens": (0, True, "0 means per-device batch x devices x accumulation"),
    "batch_size": (1, True, "a batch holds at least one example"),
    "max_length": (1, True, "a sequence holds at least one token"),
    "max_prompt_length": (1, True, "a prompt holds at least one token"),
    "max_completion_length": (1, True, "a completion holds at least one token"),
    "max_new_tokens": (1, True, "generation needs at least one new token"),
    "seq_len": (1, True, "a sequence holds at least one token"),
    "max_position_embeddings": (1, True, "a model needs at least one position"),
    "num_train_epochs": (0, False, "at least part of an epoch"),
    "weight_decay": (0, True, "weight decay cannot be negative"),
    "warmup_steps": (0, True, "warmup cannot be negative"),
    "max_grad_norm": (0, True, "0 turns clipping off; a negative norm is meaningless"),
    "adam_epsilon": (0, False, "AdamW divides by it"),
    "logging_steps": (0, False, "log at least every so many steps"),
    "save_steps": (0, False, "save at least every so many steps"),
    "eval_steps": (0, False, "evaluate at least every so many steps"),
    "save_total_limit": (1, True, "keep at least one checkpoint (or leave it unset)"),
    "eval_blocks": (0, True, "a count of held-out blocks"),
    "beta": (0, False, "DPO's beta scales the implicit reward; 0 makes every pair equal"),
    "rope_theta": (0, False, "RoPE's base must be positive"),
    "temperature": (0, True, "sampling temperature cannot be negative"),
    "spike_factor": (0, True, "0 turns the spike guard off"),
    "spike_window": (1, True, "the running mean needs at least one step"),
    "arith_eval_samples": (0, True, "a count of problems"),
}
BETWEEN_0_AND_1 = {"adam_beta1", "adam_beta2"}


def check_numbers(*configs) -> None:
    """Refuse, in one line naming the field and the valid range, any numeric field out of range."""
    for cfg in configs:
        if not dataclasses.is_dataclass(cfg):
            continue
        for f in dataclasses.fields(cfg):
            value = getattr(cfg, f.name, None)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if isinstance(value, float) and not math.isfinite(value):
                raise UserError(f"{f.name} is {value}; give a finite number.")
            if f.name in BETWEEN_0_AND_1 and not 0 <= value < 1:
                raise UserError(f"{f.name} {value} is out of range: it must lie in [0, 1).")
            if f.name in RANGES:
                low, inclusive, why = RANGES[f.name]
                if value < low or (value == low and not inclusive):
                    bound = f">= {low}" if inclusive else f"> {low}"
                    raise UserError(f"{f.name} {value} is out of range: it must be {bound} ({why}).")


def closest_hint(key: str, valid: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def reject_unknown_keys(given: Iterable[str], valid: Iterable[str], where: str) -> None:
    """One check for every place that reads a mapping of keys: the first unknown key is named, with the
    closest valid key, or the list of valid keys when nothing is close."""
    valid = set(valid)
    unknown = [k for k in given if k not in valid]
    if unknown:
        key = unknown[0]
        hint = closest_hint(str(key), valid) or f" Valid: {', '.join(sorted(valid))}."
        raise UserError(f"Unknown key '{key}' in {where}.{hint}")
