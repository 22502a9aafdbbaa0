"""Pretraining packing: a source's documents, each followed by EOS, concatenated and cut into blocks of
exactly `seq_len` tokens. No padding, ever: a document that does not fit continues in the source's
next block (a document longer than a block spans several, and is counted as `long_documents`).

Each source is packed on its own and the mixture picks whole blocks (as nanotron's blended datasets
do), so a block never mixes sources and token shares are exact to within one block.
"""

from __future__ import annotations

import base64
from typing import Iterator

import numpy as np

from smollm2_recipes.data.sources import DocumentSource

COUNTERS = ("documents", "tokens", "blocks", "long_documents", "empty_documents", "short_documents", "invalid_utf8")


def encode_tokens(tokens: np.ndarray) -> dict:
    return {"dtype": str(tokens.dtype), "data": base64.b64encode(np.ascontiguousarray(tokens).tobytes()).decode()}


def decode_tokens(obj: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(obj["data"]), dtype=obj["dtype"]).copy()


class SourcePacker:
    """Cuts one source's EOS-joined documents into blocks. State = the source's position after the last
    document taken + the unused tail of the last document put in a block (always a suffix of that one
    document and its EOS) + counters. Random-access sources store the tail as a reference (which
    document, how many tokens), so taking the state after every block stays cheap; streams store tokens."""

    def __init__(self, source: DocumentSource, seq_len: int, eos_id: int, state: dict | None = None):
        self.source, self.seq_len, self.eos = source, seq_len, np.array([eos_id])
        state = state or {}
        self.source_state = state.get("source")
        self.counters = source.counters
        self.counters.update({k: 0 for k in COUNTERS if k not in self.counters})
        self.counters.update(state.get("counters", {}))
        self.carry_ref = state.get("carry_ref")  # source state right after the last document put in a block
        self.pieces: list[np.ndarray] = []
        if state.get("carry"):
            self.pieces = [decode_tokens(state["carry"])]
        elif state.get("carry_tail"):
            doc = source.document(self.carry_ref)
            self.pieces = [np.concatenate([doc, self.eos.astype(doc.dtype)])[-state["carry_tail"]:]]
        self.buffered = sum(len(p) for p in self.pieces)
        self._docs: Iterator | None = None
        self.min_document_tokens = 0

    def state_dict(self) -> dict:
        state = {"source": self.source_state, "carry_ref": self.carry_ref, "counters": dict(self.counters), "epochs": self.epochs()}
        if self.buffered and hasattr(self.source, "document"):
            state["carry_tail"] = self.buffered
        elif self.buffered:
            state["carry"] = encode_tokens(np.concatenate(self.pieces))
        return state

    def epochs(self) -> float:
        return self.source.epochs(self.source_state or {})

    def _take_document(self) -> None:
        if self._docs is None:
            self._docs = self.source.iter_documents(self.source_state)
        while True:
            tokens, self.source_state = next(self._docs)
            if len(tokens) == 0:
                self.counters["empty_documents"] += 1
                continue
            if len(tokens) < self.min_document_tokens:
                self.counters["short_documents"] += 1
                continue
            break
        self.counters["documents"] += 1
        if len(tokens) + 1 > self.seq_len:
            self.counters["long_documents"] += 1
        self.pieces += [tokens, self.eos.astype(tokens.dtype)]
        self.buffered += len(tokens) + 1
        self.carry_ref = self.source_state

    def next_block(self, materialize: bool = True) -> np.ndarray | None:
        """The next `seq_len` tokens of this source; with materialize=False only the position moves
        (blocks that belong to another rank cost no copy)."""
        while self.buffered < self.seq_len:
            self._take_document()
        need, taken = self.seq_len, []
        while need:
            piece = self.pieces[0]
            if len(piece) <= need:
                taken.append(piece)
                self.pieces.pop(0)
                need -= len(piece)
            else:
                taken.append(piece[:need])
                self.pieces[0] = piece[need:]
                need = 0
        self.buffered -= self.seq_len
        self.counters["tokens"] += self.seq_len
        self.counters["blocks"] += 1
        return np.concatenate(taken).astype(np.int64) if materialize else None


def document_position_ids(block: np.ndarray, eos_id: int) -> np.ndarray:
    """Position ids that restart at 0 after every EOS (the block's first token starts at 0)."""
    n = len(block)
    idx = np.arange(n)
    starts = np.zeros(n, dtype=np.int64)
    after_eos = np.flatnonzero(block[:-1] == eos_id) + 1
    starts[after_eos] = after_eos
    return idx - np.maximum.accumulate(starts)
