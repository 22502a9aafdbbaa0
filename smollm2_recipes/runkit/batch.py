"""One global-batch policy for every stage: a recipe fixes the global batch, gradient accumulation is derived
from it and the number of processes, and a recipe or flag that contradicts it is refused, never overridden,
so the global batch never changes silently with the number of devices."""

from __future__ import annotations

from smollm2_recipes.errors import UserError


def accumulation_for(global_batch: int, per_device: int, world: int, configured: int, what: str) -> int:
    """Gradient accumulation steps that make `per_device x world x accumulation == global_batch` exactly.
    `what` names the recipe key that sets the global batch (e.g. "global_batch_size 32") for messages.
    A `configured` accumulation other than 1 (the default) or the derived value is a contradiction."""
    per_step = per_device * world
    if global_batch % per_step:
        valid = [b for b in range(1, global_batch // world + 1) if global_batch % (b * world) == 0]
        raise UserError(f"{what} ({global_batch} sequences) cannot be split over {world} process(es) x "
                        f"per_device_train_batch_size {per_device}. Valid per_device_train_batch_size values for {world} "
                        f"process(es): {valid or 'none (change the number of processes)'}.")
    accumulation = global_batch // per_step
    if configured not in (1, accumulation):
        raise UserError(f"gradient_accumulation_steps {configured} contradicts {what}, which needs {accumulation} with "
                        f"{world} process(es) x per_device_train_batch_size {per_device}; drop gradient_accumulation_steps "
                        "(it is derived).")
    return accumulation
