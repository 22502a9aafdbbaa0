"""The training stream as the Trainer sees it: the data package's `PretrainStream` wrapped so that every block
carries its global index (for the spike guard's data positions and the token ledger), blocks on a skip list
are dropped (rollback past a corrupted batch), and the stream state can be taken at any consumed position,
not just where the DataLoader's read-ahead happens to be."""

from __future__ import annotations

import collections
import hashlib
from typing import Any

import torch


class TrackedStream(torch.utils.data.IterableDataset):
    def __init__(self, stream, rank: int = 0, world_size: int = 1, skip_blocks: set[int] | None = None,
                 snapshot_every: int = 1, history: int = 64):
        self.stream = stream
        self.rank, self.world_size = rank, world_size
        self.skip_blocks = set(skip_blocks or ())
        self.pulled = 0      # blocks this rank took from the underlying stream (skipped ones included)
        self.delivered = 0   # blocks handed to training
        # delivered count -> (pulled, stream state) right after that block; the DataLoader reads ahead, so the
        # checkpoint asks for the state at the position training actually reached.
        self._snapshots: collections.OrderedDict[int, tuple[int, Any]] = collections.OrderedDict()
        self._history, self.snapshot_every = history, max(1, snapshot_every)
        self._snapshots[0] = (0, self._stream_state())

    def _stream_state(self):
        return self.stream.state_dict() if hasattr(self.stream, "state_dict") else None

    def global_index(self, pulled: int) -> int:
        """Global block index of this rank's `pulled`-th block (contract: block i goes to rank i % world_size)."""
        return pulled * self.world_size + self.rank

    def __iter__(self):
        for block in self.stream:
            index = self.global_index(self.pulled)
            self.pulled += 1
            if index in self.skip_blocks:
                continue
            self.delivered += 1
            if self.delivered % self.snapshot_every == 0:  # states only where an optimiser step can end
                self._snapshots[self.delivered] = (self.pulled, self._stream_state())
            while len(self._snapshots) > self._history:
                self._snapshots.popitem(last=False)
            yield {**block, "block_index": torch.tensor(index)}

    def state_at(self, delivered: int) -> dict:
        """The resumable state after `delivered` blocks went to training."""
        if delivered not in self._snapshots:
            raise RuntimeError(f"no stream snapshot at block {delivered} (have {list(self._snapshots)[:3]}...)")
        pulled, state = self._snapshots[delivered]
        return {"delivered": delivered, "pulled": pulled, "stream": state, "skip_blocks": sorted(self.skip_blocks)}

    def load_state(self, state: dict) -> None:
        if state.get("stream") is not None:
            self.stream.load_state_dict(state["stream"])
        self.pulled, self.delivered = int(state["pulled"]), int(state["delivered"])
        self.skip_blocks |= set(state.get("skip_blocks", ()))
        self._snapshots = collections.OrderedDict({self.delivered: (self.pulled, state.get("stream"))})

    def stats(self) -> dict:
        return self.stream.stats() if hasattr(self.stream, "stats") else {}

    def stage_boundaries(self) -> list[dict]:
        return self.stream.stage_boundaries() if hasattr(self.stream, "stage_boundaries") else []


def collate_blocks(blocks: list[dict]) -> dict:
    """Stack equal-length blocks; no padding exists in packed pretraining."""
    return {key: torch.stack([b[key] for b in blocks]) for key in blocks[0]}


class TokenLedger:
    """A chained SHA-256 over every block trained on, in order: two runs read exactly the same tokens iff their
    digests agree. Cheap (hashes int64 bytes), saved with each checkpoint."""

    def __init__(self, digest: str = "", tokens: int = 0):
        self.digest, self.tokens = digest, tokens

    def update(self, input_ids: torch.Tensor) -> None:
        data = input_ids.detach().to("cpu", torch.int64).contiguous().numpy().tobytes()
        self.digest = hashlib.sha256(self.digest.encode() + data).hexdigest()
        self.tokens += input_ids.numel()

    def state_dict(self) -> dict:
        return {"digest": self.digest, "tokens": self.tokens}
