"""Loss-spike guard. A step whose loss exceeds `factor` x the running mean of the previous `window` steps is a
spike (SmolLM2's stage 3 had one). It is logged with the step and the global blocks the step read; with
`action: rollback` training stops, reloads the last checkpoint and skips those blocks."""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path

SPIKES_FILE = "spikes.jsonl"


class SpikeGuard:
    def __init__(self, factor: float, window: int, warmup: int, action: str, output_dir: str, history=None):
        self.factor, self.window, self.warmup, self.action = factor, window, warmup, action
        self.output_dir = output_dir
        self.losses: collections.deque[float] = collections.deque(history or (), maxlen=window)
        self.pending: dict | None = None  # a spike that asks for a rollback

    @property
    def enabled(self) -> bool:
        return self.factor > 0

    def check(self, step: int, loss: float, blocks: list[int], tokens_seen: int) -> dict | None:
        """Judge one optimiser step's loss; returns the spike record if it is one."""
        if not self.enabled:
            return None
        mean = sum(self.losses) / len(self.losses) if self.losses else None
        is_spike = (len(self.losses) >= min(self.warmup, self.window) and mean is not None
                    and (loss != loss or loss > self.factor * mean))  # NaN counts as a spike
        if not is_spike:
            self.losses.append(loss)
            return None
        record = {"step": step, "loss": loss, "running_mean": mean, "factor": self.factor,
                  "blocks": sorted(blocks), "tokens_seen": tokens_seen, "action": self.action}
        if self.output_dir:
            Path(self.output_dir).mkdir(parents=True, exist_ok=True)
            with open(os.path.join(self.output_dir, SPIKES_FILE), "a") as f:
                f.write(json.dumps(record) + "\n")
        if self.action == "rollback":
            self.pending = record
        # The spike stays out of the running mean, so one bad batch does not raise the bar for the next.
        return record

    def state_dict(self) -> dict:
        return {"losses": list(self.losses)}


def read_spikes(output_dir: str) -> list[dict]:
    path = Path(output_dir) / SPIKES_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
