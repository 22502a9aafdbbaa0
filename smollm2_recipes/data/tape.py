"""A source's packed token stream over pre-tokenised shards, addressable by block: block k of a source is
tokens [k * seq_len, (k + 1) * seq_len) of its documents (each with its EOS) joined in the seeded order
of each epoch, skipping empty documents and, in a stage that sets `min_document_tokens` for long
sources, the shorter ones. That is exactly what `SourcePacker` cuts when it tokenises on the fly, but
here any block is found directly: a binary search in the cumulative lengths of the epoch it falls in
(O(log documents), independent of the block index, the world size and the other sources).

A source can appear in several stages with different filters; each stage is a `Segment` that starts
where the previous one left the source (epoch, position, unread tail of the last document taken).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from smollm2_recipes.data.shards import ShardSplit
from smollm2_recipes.data.sources import document_order
from smollm2_recipes.errors import UserError

EPOCH_CACHE = 4  # epochs kept (order + cumulative lengths) per filter; a run reads at most two at once


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


class SourceTape:
    def __init__(self, name: str, split: ShardSplit, seed: int, seq_len: int):
        self.name, self.split, self.seed, self.seq_len = name, split, seed, seq_len
        self.n = len(split)
        self.content = split.lengths - 1  # tokens before the EOS
        self._epochs: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._kept: dict[int, tuple[np.ndarray, int]] = {}
        self.segments: list[Segment] = []

    # ---- per-epoch arrays ----------------------------------------------------------------------
    def _filter(self, min_tokens: int) -> tuple[np.ndarray, int]:
        if min_tokens not in self._kept:
            kept = (self.content > 0) & (self.content >= min_tokens)
            self._kept[min_tokens] = kept, int(self.split.lengths[kept].sum())
        return self._kept[min_tokens]

    def kept(self, min_tokens: int) -> np.ndarray:
        """Documents the packer takes under this filter (not empty, at least `min_tokens` long)."""
        return self._filter(min_tokens)[0]

    def epoch_tokens(self, min_tokens: int) -> int:
        return self._filter(min_tokens)[1]

    def epoch(self, epoch: int, min_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        """(document order, cumulative kept tokens along it) of one epoch."""
        key = (epoch, min_tokens)
        if key in self._epochs:
            self._epochs[key] = self._epochs.pop(key)  # most recently used last
        else:
            order = document_order(self.seed, self.name, epoch, self.n)
            lengths = np.where(self.kept(min_tokens), self.split.lengths, 0)[order]
            self._epochs[key] = (order, np.cumsum(lengths))
            while len(self._epochs) > EPOCH_CACHE:
                self._epochs.pop(next(iter(self._epochs)))
        return self._epochs[key]

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
        _, cum = self.epoch(start.epoch, min_tokens)
        self.segments.append(Segment(first, blocks, min_tokens, start, int(cum[start.pos - 1]) if start.pos else 0))

    def _locate(self, seg: Segment, absolute: int) -> tuple[int, int, int]:
        """(epoch, position in its order, offset in that document) of kept token `absolute`, counted from
        the start of the segment's start epoch."""
        per_epoch = self.epoch_tokens(seg.min_tokens)
        epoch = seg.start.epoch + absolute // per_epoch
        r = absolute % per_epoch
        _, cum = self.epoch(epoch, seg.min_tokens)
        j = int(np.searchsorted(cum, r, side="right"))
        return epoch, j, r - (int(cum[j - 1]) if j else 0)

    def advance(self, seg: Segment, tokens: int) -> Cursor:
        """The cursor after `tokens` tokens of the segment."""
        if tokens <= seg.start.carry:
            return Cursor(seg.start.epoch, seg.start.pos, seg.start.carry - tokens)
        epoch, j, offset = self._locate(seg, seg.base + tokens - seg.start.carry - 1)
        order, _ = self.epoch(epoch, seg.min_tokens)
        return Cursor(epoch, j + 1, int(self.split.lengths[order[j]]) - offset - 1)

    def segment_of(self, block: int) -> Segment:
        for seg in self.segments:
            if block < seg.first_block + seg.blocks:
                return seg
        raise IndexError(f"source '{self.name}' has no block {block}")

    # ---- reading -------------------------------------------------------------------------------
    def block(self, k: int) -> np.ndarray:
        """The source's k-th block (int64, seq_len tokens)."""
        seg = self.segment_of(k)
        u = (k - seg.first_block) * self.seq_len
        pieces, need = [], self.seq_len
        carry = seg.start.carry
        if u < carry:  # the tail of the document the previous stage stopped in
            order, _ = self.epoch(seg.start.epoch, seg.min_tokens)  # the order does not depend on the filter
            doc = int(order[seg.start.pos - 1])
            length = int(self.split.lengths[doc])
            take = min(need, carry - u)
            pieces.append(self.split.piece(doc, length - carry + u, length - carry + u + take))
            need -= take
            u += take
        if need:
            epoch, j, offset = self._locate(seg, seg.base + u - carry)
            order, _ = self.epoch(epoch, seg.min_tokens)
            kept = self.kept(seg.min_tokens)
            while need:
                if j == self.n:
                    epoch, j = epoch + 1, 0
                    order, _ = self.epoch(epoch, seg.min_tokens)
                doc = int(order[j])
                if kept[doc]:
                    length = int(self.split.lengths[doc])
                    take = min(need, length - offset)
                    pieces.append(self.split.piece(doc, offset, offset + take))
                    need -= take
                offset, j = 0, j + 1
        return np.concatenate(pieces).astype(np.int64)

    # ---- counters ------------------------------------------------------------------------------
    def _count(self, seg: Segment, end: Cursor) -> dict:
        """Documents visited from the segment's start to `end`, by kind (as `SourcePacker` counts them)."""
        m = seg.min_tokens
        kinds = {"documents": self.kept(m), "empty_documents": self.content == 0,
                 "short_documents": (self.content > 0) & (self.content < m),
                 "long_documents": self.kept(m) & (self.split.lengths > self.seq_len)}
        out = {}
        a, b = seg.start, end
        for key, mask in kinds.items():
            total = int(mask.sum())

            def before(epoch: int, pos: int, mask=mask) -> int:
                order, _ = self.epoch(epoch, m)
                return int(mask[order[:pos]].sum())

            if a.epoch == b.epoch:
                out[key] = before(b.epoch, b.pos) - before(a.epoch, a.pos)
            else:
                out[key] = total - before(a.epoch, a.pos) + (b.epoch - a.epoch - 1) * total + before(b.epoch, b.pos)
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
