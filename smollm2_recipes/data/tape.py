"""A source's packed token stream over pre-tokenised shards, addressable by block: block k of a source is
tokens [k * seq_len, (k + 1) * seq_len) of its documents (each with its EOS) joined in the order of each
epoch, skipping empty documents and, in a stage that sets `min_document_tokens` for long sources, the
shorter ones. That is exactly what `SourcePacker` cuts when it tokenises on the fly, but here any block is
found directly.

Every epoch reads the source's one seeded cycle (`document_cycle`) from its own start (`epoch_start`), so
one prefix sum of kept tokens along the cycle (`CyclePrefix`, one per filter) serves every epoch: a block
costs a binary search per document piece (O(log documents)), whatever the block index, the epoch, the
world size or the other sources, and nothing is rebuilt when a rank moves to another epoch.

A source can appear in several stages with different filters; each stage is a `Segment` that starts
where the previous one left the source (epoch, position, unread tail of the last document taken).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from smollm2_recipes.data.shards import ShardSplit
from smollm2_recipes.data.sources import document_cycle, epoch_start
from smollm2_recipes.errors import UserError


@dataclass
class Cursor:
    """A source position: documents [0, pos) of `epoch`'s order taken, `carry` tokens of the last one unread."""

    epoch: int = 0
    pos: int = 0
    carry: int = 0


@dataclass
class Segment:
    """The source's blocks [first_block, first_block + blocks) read with filter `min_tokens`, from `start`."""

    first_block: int
    blocks: int
    min_tokens: int
    start: Cursor
    base: int = 0  # kept tokens of the start epoch before the start position (under this filter)


class CyclePrefix:
    """Sums of a per-document value along the cycle; an epoch is the cycle from `start` on, wrapping round,
    so its partial sums and searches use this one array (two lookups, or one binary search)."""

    def __init__(self, values_in_cycle_order: np.ndarray):
        self.prefix = np.concatenate([[0], np.cumsum(values_in_cycle_order, dtype=np.int64)])
        self.n, self.total = len(values_in_cycle_order), int(self.prefix[-1])

    def before(self, start: int, pos: int) -> int:
        """Sum over positions [0, pos) of the epoch that starts at cycle index `start`."""
        end = start + pos
        if end <= self.n:
            return int(self.prefix[end] - self.prefix[start])
        return int(self.total - self.prefix[start] + self.prefix[end - self.n])

    def locate(self, start: int, r: int) -> int:
        """The epoch position p with before(start, p) <= r < before(start, p + 1), for 0 <= r < total."""
        target = int(self.prefix[start]) + r
        if target < self.total:
            return int(self.prefix.searchsorted(target, side="right")) - 1 - start
        return int(self.prefix.searchsorted(target - self.total, side="right")) - 1 + self.n - start


class SourceTape:
    def __init__(self, name: str, split: ShardSplit, seed: int, seq_len: int):
        self.name, self.split, self.seed, self.seq_len = name, split, seed, seq_len
        self.n = len(split)
        self.lengths = split.lengths  # tokens incl. the EOS
        self.content = split.lengths - 1  # tokens before the EOS
        self.cycle = document_cycle(seed, name, self.n)
        self._starts: dict[int, int] = {}
        self._kept: dict[int, tuple[np.ndarray, CyclePrefix]] = {}
        self._counts: dict[tuple[str, int], CyclePrefix] = {}
        self.segments: list[Segment] = []

    # ---- the cycle -----------------------------------------------------------------------------
    def start(self, epoch: int) -> int:
        if epoch not in self._starts:
            if len(self._starts) > 4096:  # a source re-read for very many epochs: O(1) to recompute anyway
                self._starts.clear()
            self._starts[epoch] = epoch_start(self.seed, self.name, epoch, self.n)
        return self._starts[epoch]

    def doc(self, epoch: int, pos: int) -> int:
        """The document at position `pos` of `epoch`'s order."""
        return int(self.cycle[(self.start(epoch) + pos) % self.n])

    def _filter(self, min_tokens: int) -> tuple[np.ndarray, CyclePrefix]:
        if min_tokens not in self._kept:
            kept = (self.content > 0) & (self.content >= min_tokens)
            self._kept[min_tokens] = kept, CyclePrefix(np.where(kept, self.lengths, 0)[self.cycle])
        return self._kept[min_tokens]

    def kept(self, min_tokens: int) -> np.ndarray:
        """Documents the packer takes under this filter (not empty, at least `min_tokens` long)."""
        return self._filter(min_tokens)[0]

    def tokens(self, min_tokens: int) -> CyclePrefix:
        """Kept tokens along the cycle under this filter."""
        return self._filter(min_tokens)[1]

    def epoch_tokens(self, min_tokens: int) -> int:
        return self.tokens(min_tokens).total

    # ---- segments ------------------------------------------------------------------------------
    def add_segment(self, blocks: int, min_tokens: int) -> None:
        """The source's next `blocks` blocks (one stage) under filter `min_tokens`."""
        if self.segments:
            last = self.segments[-1]
            start, first = self.advance(last, last.blocks * self.seq_len), last.first_block + last.blocks
        else:
            start, first = Cursor(), 0
        if blocks and self.epoch_tokens(min_tokens) == 0:
            raise UserError(f"source '{self.name}' has no usable documents: a whole pass gave 0 tokens"
                            + (f" of documents >= {min_tokens} tokens." if min_tokens else "."))
        base = self.tokens(min_tokens).before(self.start(start.epoch), start.pos)
        self.segments.append(Segment(first, blocks, min_tokens, start, base))

    def _locate(self, seg: Segment, absolute: int) -> tuple[int, int, int]:
        """(epoch, position in its order, offset in that document) of kept token `absolute`, counted from
        the start of the segment's start epoch."""
        tokens = self.tokens(seg.min_tokens)
        epoch, r = divmod(absolute, tokens.total)
        epoch += seg.start.epoch
        start = self.start(epoch)
        j = tokens.locate(start, r)
        return epoch, j, r - tokens.before(start, j)

    def advance(self, seg: Segment, tokens: int) -> Cursor:
        """The cursor after `tokens` tokens of the segment."""
        if tokens <= seg.start.carry:
            return Cursor(seg.start.epoch, seg.start.pos, seg.start.carry - tokens)
        epoch, j, offset = self._locate(seg, seg.base + tokens - seg.start.carry - 1)
        return Cursor(epoch, j + 1, int(self.lengths[self.doc(epoch, j)]) - offset - 1)

    def segment_of(self, block: int) -> Segment:
        for seg in self.segments:
            if block < seg.first_block + seg.blocks:
                return seg
        raise IndexError(f"source '{self.name}' has no block {block}")

    # ---- reading -------------------------------------------------------------------------------
    def block(self, k: int) -> np.ndarray:
        """The source's k-th block (int64, seq_len tokens): one binary search per document piece."""
        seg = self.segment_of(k)
        u = (k - seg.first_block) * self.seq_len
        pieces, need = [], self.seq_len
        carry = seg.start.carry
        if u < carry:  # the tail of the document the previous stage stopped in (the order ignores filters)
            doc = self.doc(seg.start.epoch, seg.start.pos - 1)
            length = int(self.lengths[doc])
            take = min(need, carry - u)
            pieces.append(self.split.piece(doc, length - carry + u, length - carry + u + take))
            need -= take
            u += take
        if need:
            absolute = seg.base + u - carry
            epoch, j, offset = self._locate(seg, absolute)
            start, kept = self.start(epoch), self.kept(seg.min_tokens)
            doc = int(self.cycle[(start + j) % self.n])
            while True:
                take = min(need, int(self.lengths[doc]) - offset)
                pieces.append(self.split.piece(doc, offset, offset + take))
                need -= take
                if not need:
                    break
                absolute, j, offset = absolute + take, j + 1, 0  # the next document of the order...
                if j == self.n:
                    epoch, j = epoch + 1, 0
                    start = self.start(epoch)
                doc = int(self.cycle[(start + j) % self.n])
                if not kept[doc]:  # ...or, past filtered-out ones, the next kept token found directly
                    epoch, j, offset = self._locate(seg, absolute)
                    start = self.start(epoch)
                    doc = int(self.cycle[(start + j) % self.n])
        out = np.empty(self.seq_len, dtype=np.int64)
        np.concatenate(pieces, out=out)
        return out

    # ---- counters ------------------------------------------------------------------------------
    def _count(self, seg: Segment, end: Cursor) -> dict:
        """Documents visited from the segment's start to `end`, by kind (as `SourcePacker` counts them)."""
        m = seg.min_tokens
        kinds = {"documents": lambda: self.kept(m), "empty_documents": lambda: self.content == 0,
                 "short_documents": lambda: (self.content > 0) & (self.content < m),
                 "long_documents": lambda: self.kept(m) & (self.lengths > self.seq_len)}
        out = {}
        a, b = seg.start, end
        for key, mask in kinds.items():
            if (key, m) not in self._counts:
                self._counts[key, m] = CyclePrefix(mask()[self.cycle].astype(np.int64))
            counts = self._counts[key, m]
            before_a, before_b = counts.before(self.start(a.epoch), a.pos), counts.before(self.start(b.epoch), b.pos)
            out[key] = before_b - before_a + (b.epoch - a.epoch) * counts.total
        return out

    def counters(self, blocks: int) -> dict:
        """Counters and epochs after the source's first `blocks` blocks."""
        out = {"documents": 0, "empty_documents": 0, "short_documents": 0, "long_documents": 0}
        end = Cursor()
        for seg in self.segments:
            if blocks <= seg.first_block and seg.first_block:
                break
            n = min(blocks - seg.first_block, seg.blocks)
            end = self.advance(seg, n * self.seq_len)
            for key, value in self._count(seg, end).items():
                out[key] += value
        out.update(tokens=blocks * self.seq_len, blocks=blocks, epochs=end.epoch + end.pos / self.n)
        return out
