"""The staged pretraining mixture as one resumable, rank-aware stream of packed blocks.

The GLOBAL block sequence is a pure function of (recipe, mixture_seed). Within a stage, block b comes
from `StageSchedule.at(b)`: a pattern precomputed once with the greedy blending nanotron's
BlendableDataset uses (each block from the source furthest behind its token share
`weight * blocks_so_far - taken`), of the stage's length up to `MAX_PERIOD` blocks and repeated beyond
it, so every source's share stays within one block of its weight (within one block per period for
stages longer than a period), and block b's source and its index in that source are found in O(1).
Randomness lives in the seeded per-source document order: one seeded permutation of a source's documents,
which every epoch reads from its own seeded starting point (`data.sources.document_order`).

Data parallel: global block i goes to rank i % world_size (and, inside a rank, DataLoader worker
k % num_workers of that rank's k-th block, which the DataLoader's round-robin puts back in order).

- With pre-tokenised shards (`shards_dir`, written by `smollm2 data tokenize`), a rank computes each of
  ITS blocks directly (`data.tape`: memory-mapped shards, a binary search per block): no walk over other
  ranks' blocks or other sources, so the cost per rank does not grow with the world size.
- On the fly, every rank advances every source for every block (the documents must be tokenised to
  know where blocks end) and only materialises its own: the cost per rank grows with the world size,
  which a run with world_size > 1 states in one line.

Resumption: `state_dict()` after k blocks continues with block k+1, identical to an uninterrupted run,
without re-reading the first k blocks (shards: the block index alone; on the fly: each source's document
position, the unused tail of its current document and the block index).
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from typing import Iterator

import numpy as np
import torch

from smollm2_recipes.data.stages import DataArguments, StageSpec
from smollm2_recipes.data.packing import SourcePacker, document_position_ids
from smollm2_recipes.data import sources as data_sources
from smollm2_recipes.data.sources import open_source
from smollm2_recipes.data.tape import SourceTape
from smollm2_recipes.errors import UserError
from smollm2_recipes.runkit import load_tokenizer

STATE_VERSION = 2
MAX_PERIOD = 1 << 16  # blocks in a stage's precomputed source pattern (2 bytes + 8 per source each)


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


class StageSchedule:
    """Block b of a stage -> (source, index of that block among the source's blocks of the stage), in O(1)."""

    def __init__(self, names: list[str], weights: list[float], blocks: int, max_period: int = MAX_PERIOD):
        self.names = list(names)
        period = max(1, min(blocks, max_period))
        if blocks > period:
            # Integer blocks per period (largest remainder), so the pattern repeats without drift beyond 1/period.
            exact = [w * period for w in weights]
            counts = [int(x) for x in exact]
            for i in sorted(range(len(exact)), key=lambda i: counts[i] - exact[i])[: period - sum(counts)]:
                counts[i] += 1
            weights = [c / period for c in counts]
        pattern = np.zeros(period, dtype=np.int16)
        prefix = np.zeros((period + 1, len(names)), dtype=np.int64)
        taken: dict[str, int] = {}
        index = {n: i for i, n in enumerate(names)}
        for b in range(period):
            name = pick_source(names, weights, taken, b)
            taken[name] = taken.get(name, 0) + 1
            pattern[b] = index[name]
            prefix[b + 1] = prefix[b]
            prefix[b + 1, index[name]] += 1
        self.period, self.pattern, self.prefix = period, pattern, prefix
        self.per_period = prefix[period]

    def at(self, b: int) -> tuple[int, int]:
        """(source position in `names`, the source's block index within the stage) of stage block b."""
        q, r = divmod(b, self.period)
        s = int(self.pattern[r])
        return s, int(q * self.per_period[s] + self.prefix[r, s])

    def taken(self, b: int) -> np.ndarray:
        """Blocks of each source among stage blocks [0, b)."""
        q, r = divmod(b, self.period)
        return q * self.per_period + self.prefix[r]


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
        self.schedules = []
        for stage, bounds in zip(self.stages, self.boundaries):
            weights = stage.weights()
            names = [s.name for s in stage.sources]
            self.schedules.append(StageSchedule(names, [weights[n] for n in names], bounds["end_block"] - bounds["start_block"]))
        self.mode = "shards" if data_args.shards_dir is not None else "on_the_fly"
        self.tapes = self._open_tapes() if self.mode == "shards" else None
        if self.mode == "on_the_fly" and world_size > 1 and rank == 0:
            print(f"note: on-the-fly data costs each of the {world_size} ranks the tokenisation of all {world_size} ranks' "
                  f"documents ({world_size}x one rank's); `smollm2 data tokenize RECIPE --output_dir DIR` once, then "
                  "`shards_dir: DIR`, removes that cost.", file=sys.stderr)
        self._state = self._fresh_state()
        self._packers: dict[str, SourcePacker] | None = None

    def _open_tapes(self) -> dict[str, SourceTape]:
        """One block-addressable tape per source over the shards, with one segment per stage it is in."""
        from smollm2_recipes.data.shards import open_shards
        from smollm2_recipes.data.sources import resolve_split

        splits = {name: resolve_split(spec, self.split) for name, spec in self.sources.items()}
        shards = open_shards(self.args.shards_dir, self.tokenizer, self.args.tokenizer_name, list(splits.items()))
        tapes = {name: SourceTape(name, shards[(name, split)], self.args.mixture_seed, self.seq_len) for name, split in splits.items()}
        for stage, bounds, schedule in zip(self.stages, self.boundaries, self.schedules):
            taken = dict(zip(schedule.names, schedule.taken(bounds["end_block"] - bounds["start_block"])))
            long = {s.name for s in stage.sources if s.long}
            for name, tape in tapes.items():  # one segment per stage (0 blocks where absent): segments[i] is stage i
                tape.add_segment(int(taken.get(name, 0)), stage.min_document_tokens if name in long else 0)
        if self.rank == 0:
            self._warn_about_repeats(tapes)
        return tapes

    def _warn_about_repeats(self, tapes: dict[str, SourceTape]) -> None:
        """Accepted, but said: a source read over and over is memorised, and its share of the mixture is a lie."""
        for name, tape in tapes.items():
            blocks = sum(seg.blocks for seg in tape.segments)
            kept = tape.epoch_tokens(0)
            epochs = blocks * self.seq_len / kept if kept else 0.0
            if epochs >= data_sources.REPEAT_WARNING:
                print(f"warning: source '{name}' holds {kept:,} tokens and the run reads {blocks * self.seq_len:,} of it: it repeats "
                      f"{epochs:,.0f} times; add data to it or lower its weight.", file=sys.stderr)

    # ---- state ---------------------------------------------------------------------------------
    def _fresh_state(self) -> dict:
        return {"version": STATE_VERSION, "mode": self.mode, "block": 0, "packers": {},
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
        for key in ("mixture_seed", "seq_len", "mode"):
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

    def source_blocks(self, block: int) -> dict[str, int]:
        """Blocks each source gave among global blocks [0, block) (O(stages), no walk)."""
        out = dict.fromkeys(self.sources, 0)
        for bounds, schedule in zip(self.boundaries, self.schedules):
            if block <= bounds["start_block"]:
                break
            done = min(block, bounds["end_block"]) - bounds["start_block"]
            for name, n in zip(schedule.names, schedule.taken(done)):
                out[name] += int(n)
        return out

    def stats(self) -> dict:
        """Per source, so far: tokens, documents, blocks, epochs and the counted repairs/skips."""
        out = {}
        if self.mode == "shards":
            for name, blocks in self.source_blocks(self._state["block"]).items():
                counters = self.tapes[name].counters(blocks)
                out[name] = {**counters, "epochs": round(counters["epochs"], 6)}
            return out
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
            source = open_source(spec, self.tokenizer, self.args.mixture_seed, self.split,
                                 self.args.tokenize_batch_size, counters=counters,
                                 char_budget=64 * self.seq_len)
            self._packers[name] = SourcePacker(source, self.seq_len, self.eos_id, saved)
        return self._packers[name]

    def _stage_at(self, block: int) -> int:
        for i, b in enumerate(self.boundaries):
            if block < b["end_block"]:
                return i
        return len(self.boundaries)

    def source_at(self, block: int) -> tuple[str, int]:
        """(source, the source's block index over the whole stream) of global block `block`, in O(stages)."""
        si = self._stage_at(block)
        bounds, schedule = self.boundaries[si], self.schedules[si]
        s, k = schedule.at(block - bounds["start_block"])
        name = schedule.names[s]
        if self.tapes is not None:
            k += self.tapes[name].segments[si].first_block
        return name, k

    def _item(self, block: np.ndarray) -> dict:
        ids = torch.from_numpy(block)
        item = {"input_ids": ids, "labels": ids.clone()}
        if self.args.position_ids_per_document:
            item["position_ids"] = torch.from_numpy(document_position_ids(block, self.eos_id))
        return item

    def _mine(self, g: int, workers: int, worker: int) -> bool:
        return g % self.world_size == self.rank and (g // self.world_size) % workers == worker

    def iter_blocks(self) -> Iterator[tuple[int, str, np.ndarray | None]]:
        """(global block index, source name, tokens or None if not this rank's) from the current state on.
        From shards only this rank's blocks come out (it never visits the others)."""
        info = torch.utils.data.get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        self._state = self.state_dict()  # a second iter() continues where the first one stopped
        state = self._state
        if self.mode == "shards":
            yield from self._iter_shards(state, workers, worker)
            return
        self._packers = {}
        while state["block"] < self.total_blocks:
            g = state["block"]
            si = self._stage_at(g)
            stage, bounds = self.stages[si], self.boundaries[si]
            schedule = self.schedules[si]
            name = schedule.names[schedule.at(g - bounds["start_block"])[0]]
            packer = self._packer(name)
            spec = next(s for s in stage.sources if s.name == name)
            packer.min_document_tokens = stage.min_document_tokens if spec.long else 0
            block = packer.next_block(materialize=self._mine(g, workers, worker))
            state["block"] = g + 1
            yield g, name, block

    def _iter_shards(self, state: dict, workers: int, worker: int) -> Iterator[tuple[int, str, np.ndarray]]:
        step = self.world_size * workers
        first = state["block"] + (self.rank - state["block"]) % self.world_size  # this rank's next block
        k = (first - self.rank) // self.world_size  # its index among the rank's blocks
        g = first + ((worker - k) % workers) * self.world_size  # this worker's next block
        while g < self.total_blocks:
            name, index = self.source_at(g)
            block = self.tapes[name].block(index)
            state["block"] = g + 1
            yield g, name, block
            g += step

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
