"""The staged pretraining mixture as one resumable, rank-aware stream of packed blocks.

The GLOBAL block sequence is a pure function of (recipe, mixture_seed): stage after stage, each block
comes from the source that is furthest behind its token share (`weight * blocks_so_far - taken`, the
greedy blending nanotron's BlendableDataset uses), so every source's observed share stays within one
block of its weight at every point of a stage. Randomness lives in the seeded per-source document
order, reshuffled each epoch.

Data parallel: global block i goes to rank i % world_size (and, inside a rank, DataLoader worker
k % num_workers of that rank's k-th block, which the DataLoader's round-robin puts back in order).
Every rank advances every source (the sequence is shared) but only materialises its own blocks;
with pre-tokenised shards (`shards_dir`) advancing costs no tokenisation at all.

Resumption: `state_dict()` after k blocks holds each source's document position, the unused tail of
its current document and the block index; `load_state_dict()` continues with block k+1, identical to an
uninterrupted run, without re-reading the first k blocks.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Iterator

import numpy as np
import torch

from smollm2_recipes.data.config import DataArguments, StageSpec
from smollm2_recipes.data.packing import SourcePacker, document_position_ids
from smollm2_recipes.data.sources import open_source
from smollm2_recipes.errors import UserError
from smollm2_recipes.runkit import load_tokenizer

STATE_VERSION = 1


def eos_token_id(tokenizer) -> int:
    eos = tokenizer.eos_token_id
    if eos is None:
        raise UserError(f"Tokenizer '{getattr(tokenizer, 'name_or_path', tokenizer)}' has no EOS token; packing joins documents with EOS.")
    return int(eos)


def stage_blocks(stages: list[StageSpec], seq_len: int) -> list[dict]:
    out, start = [], 0
    for stage in stages:
        n = stage.tokens // seq_len
        out.append({"name": stage.name, "start_block": start, "end_block": start + n, "tokens": n * seq_len})
        start += n
    return out


def pick_source(names: list[str], weights: list[float], taken: dict[str, int], done: int) -> str:
    """The source furthest behind its share after `done` blocks (ties: the first listed)."""
    best, best_deficit = None, None
    for name, w in zip(names, weights):
        if w <= 0:
            continue
        deficit = w * (done + 1) - taken.get(name, 0)
        if best is None or deficit > best_deficit + 1e-12:
            best, best_deficit = name, deficit
    return best


class PretrainStream(torch.utils.data.IterableDataset):
    """Yields {"input_ids", "labels"(, "position_ids")} LongTensors of length seq_len for this rank."""

    def __init__(self, data_args: DataArguments, tokenizer, rank: int = 0, world_size: int = 1, split: str = "train",
                 stages: list[StageSpec] | None = None):
        super().__init__()
        if world_size < 1 or not 0 <= rank < world_size:
            raise UserError(f"rank {rank} is not valid for world_size {world_size}.")
        if split not in ("train", "eval"):
            raise UserError(f"split '{split}' must be 'train' or 'eval'.")
        self.args, self.tokenizer, self.rank, self.world_size, self.split = data_args, tokenizer, rank, world_size, split
        self.stages = list(stages if stages is not None else data_args.stage_specs)
        if not self.stages:
            raise UserError("The data mixture has no stages; add `stages:` to the recipe.")
        self.seq_len, self.eos_id = data_args.seq_len, eos_token_id(tokenizer)
        self.boundaries = stage_blocks(self.stages, self.seq_len)
        self.total_blocks = self.boundaries[-1]["end_block"]
        self.sources = {}
        for stage in self.stages:
            for s in stage.sources:
                self.sources.setdefault(s.name, s)
        self._state = self._fresh_state()
        self._packers: dict[str, SourcePacker] | None = None

    # ---- state ---------------------------------------------------------------------------------
    def _fresh_state(self) -> dict:
        return {"version": STATE_VERSION, "block": 0, "stage_taken": {}, "packers": {},
                "mixture_seed": self.args.mixture_seed, "seq_len": self.seq_len, "rank": self.rank, "world_size": self.world_size}

    def state_dict(self) -> dict:
        """JSON-serialisable; cheap enough to take after every block (the training loop does)."""
        state = {k: (dict(v) if isinstance(v, dict) else v) for k, v in self._state.items() if k != "packers"}
        packers = dict(self._state["packers"])
        if self._packers is not None:
            packers.update({name: p.state_dict() for name, p in self._packers.items()})
        state["packers"] = packers
        return state

    def load_state_dict(self, state: dict) -> None:
        for key in ("mixture_seed", "seq_len"):
            if state.get(key) != self._state[key]:
                raise UserError(f"Cannot resume the data stream: the saved state has {key}={state.get(key)}, "
                                f"the recipe has {self._state[key]}.")
        if state.get("version") != STATE_VERSION:
            raise UserError(f"Data stream state version {state.get('version')} is not supported (expected {STATE_VERSION}).")
        unknown = set(state["packers"]) - set(self.sources)
        if unknown:
            raise UserError(f"Cannot resume: the saved state has sources {sorted(unknown)} that the recipe does not list.")
        self._state = json.loads(json.dumps(state))  # a private copy, and proof that it is plain JSON
        self._state.update(rank=self.rank, world_size=self.world_size)
        self._packers = None

    def stage_boundaries(self) -> list[dict]:
        return [dict(b) for b in self.boundaries]

    def stats(self) -> dict:
        """Per source, so far: tokens, documents, blocks, epochs and the counted repairs/skips."""
        out = {}
        states = self.state_dict()["packers"]
        for name in self.sources:
            st = states.get(name) or {}
            counters = dict(st.get("counters", {}))
            epochs = st.get("epochs", 0.0)  # passes over the source so far (fractional where its size is known)
            out[name] = {"tokens": counters.get("tokens", 0), "documents": counters.get("documents", 0),
                         "epochs": round(epochs, 6), **{k: v for k, v in counters.items() if k not in ("tokens", "documents")}}
        return out

    def __len__(self) -> int:
        """Blocks this rank yields over the whole stream."""
        n = self.total_blocks
        return n // self.world_size + (1 if self.rank < n % self.world_size else 0)

    # ---- iteration -----------------------------------------------------------------------------
    def _packer(self, name: str) -> SourcePacker:
        if name not in self._packers:
            spec = self.sources[name]
            saved = self._state["packers"].get(name)
            counters = dict((saved or {}).get("counters", {}))
            source = open_source(spec, self.tokenizer, self.args.mixture_seed, self.split, self.args.shards_dir,
                                 self.args.tokenize_batch_size, counters=counters,
                                 char_budget=64 * self.seq_len)
            self._packers[name] = SourcePacker(source, self.seq_len, self.eos_id, saved)
        return self._packers[name]

    def _stage_at(self, block: int) -> int:
        for i, b in enumerate(self.boundaries):
            if block < b["end_block"]:
                return i
        return len(self.boundaries)

    def _item(self, block: np.ndarray) -> dict:
        ids = torch.from_numpy(block)
        item = {"input_ids": ids, "labels": ids.clone()}
        if self.args.position_ids_per_document:
            item["position_ids"] = torch.from_numpy(document_position_ids(block, self.eos_id))
        return item

    def iter_blocks(self) -> Iterator[tuple[int, str, np.ndarray | None]]:
        """(global block index, source name, tokens or None if not this rank's) from the current state on."""
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        self._state = self.state_dict()  # a second iter() continues where the first one stopped
        self._packers = {}
        state = self._state
        while state["block"] < self.total_blocks:
            g = state["block"]
            si = self._stage_at(g)
            stage, bounds = self.stages[si], self.boundaries[si]
            if g == bounds["start_block"]:
                state["stage_taken"] = {}
            names = [s.name for s in stage.sources]
            weights = stage.weights()
            name = pick_source(names, [weights[n] for n in names], state["stage_taken"], g - bounds["start_block"])
            packer = self._packer(name)
            spec = next(s for s in stage.sources if s.name == name)
            packer.min_document_tokens = stage.min_document_tokens if spec.long else 0
            mine = g % self.world_size == self.rank and (g // self.world_size) % workers == worker
            block = packer.next_block(materialize=mine)
            state["stage_taken"][name] = state["stage_taken"].get(name, 0) + 1
            state["block"] = g + 1
            yield g, name, block

    def __iter__(self):
        for _, _, block in self.iter_blocks():
            if block is not None:
                yield self._item(block)


def build_stream(data_args: DataArguments, tokenizer=None, rank: int = 0, world_size: int = 1, split: str = "train") -> PretrainStream:
    """The run's training stream (all stages, in order) for one data-parallel rank."""
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(data_args.tokenizer_name)
    return PretrainStream(data_args, tokenizer, rank=rank, world_size=world_size, split=split)


def build_eval_blocks(data_args: DataArguments, tokenizer=None, n_blocks: int = 8, stage: str | None = None) -> list[dict]:
    """`n_blocks` packed blocks of the held-out split, mixed like `stage` (default `eval_stage`, else the last)."""
    if n_blocks < 1:
        raise UserError(f"n_blocks {n_blocks} must be >= 1.")
    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(data_args.tokenizer_name)
    spec = data_args.stage(stage or data_args.eval_stage)
    eval_stage = replace(spec, tokens=n_blocks * data_args.seq_len)
    stream = PretrainStream(data_args, tokenizer, split="eval", stages=[eval_stage])
    return list(stream)
