"""Sources of documents, each turned into an endless, seeded stream of TOKENISED documents.

- Every source is read through the one loader of every stage, `data.source_spec` (`datasets.load_dataset`):
  Hub ids (streaming or not; the default code path of the full-size recipes), local jsonl/json/parquet/txt
  files and folders of them, `save_to_disk` folders and `embedded:corpus/NAME`, the non-streaming ones
  read by index from memory-mapped Arrow.
- Pre-tokenised shards (`smollm2 data tokenize`, datatrove's format) are read by `data.shards`, not here.

Every source yields `(tokens, state)` pairs: `state` is a small JSON-able dict that, given back to
`iter_documents(state)`, continues right after that document. A source that runs out starts a new
epoch (random-access sources: their seeded order from a new seeded start, `document_order`). Documents
that cannot be used as they are (invalid UTF-8 bytes, empty after tokenisation) are repaired or skipped
and COUNTED in `counters`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import zlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from smollm2_recipes import assets
from smollm2_recipes.data.source_spec import DATA_EXTENSIONS, MissingSplit, SourceSpec, builder_for, is_saved_dataset, load_files, load_source
from smollm2_recipes.errors import UserError

__all__ = ["MissingSplit", "open_source", "is_local_source", "local_document_reader", "hub_load_options", "document_order",
           "resolve_split", "clean_text", "token_dtype", "DocumentSource", "MapSource", "StreamSource", "Tokenize"]


def _seed(*parts) -> list[int]:
    return [zlib.crc32(str(p).encode()) for p in parts]


def token_dtype(vocab_size: int):
    return np.uint16 if vocab_size <= 1 << 16 else np.uint32


# ---------------------------------------------------------------------------------------------------
# Text normalisation: every document becomes a valid str, and every repair is counted.


def clean_text(value: Any, counters: dict, source: str, column: str) -> str:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:  # lone surrogates: bytes that were not UTF-8 (read with surrogateescape)
            counters["invalid_utf8"] = counters.get("invalid_utf8", 0) + 1
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace").encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            counters["invalid_utf8"] = counters.get("invalid_utf8", 0) + 1
            return bytes(value).decode("utf-8", "replace")
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) and all(v is None or isinstance(v, str) for v in value):
        # interleaved documents (InfiMM-WebMath's text_list: None marks an image): keep the text parts
        return clean_text("\n\n".join(v for v in value if v), counters, source, column)
    raise UserError(f"source '{source}': column '{column}' holds {type(value).__name__} values ({str(value)[:60]!r}); it must hold text.")


# ---------------------------------------------------------------------------------------------------
# Random-access readers: len() documents, texts(indices) -> raw column values.


class ArrowReader:
    """A pyarrow column or a datasets.Dataset column, read by index (memory-mapped where the file is)."""

    def __init__(self, column):
        self.column = column

    def __len__(self):
        return len(self.column)

    def texts(self, indices) -> list:
        return self.column.take(np.asarray(indices, dtype=np.int64)).to_pylist()


def _split_files(spec: SourceSpec, folder: Path, split: str) -> list[Path]:
    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and p.suffix in DATA_EXTENSIONS]
    named = [p for p in files if p.stem == split or p.stem.startswith(split + "-") or split in p.relative_to(folder).parts[:-1]]
    if named:
        return named
    if split == "train":  # a plain folder of documents is all training data, except files named for other splits
        others = ("test", "validation", "valid", "eval")
        return [p for p in files if not any(p.stem == o or p.stem.startswith(o + "-") or o in p.relative_to(folder).parts[:-1] for o in others)]
    return []


def _local_reader(spec: SourceSpec, path: Path, split: str, counters: dict | None = None):
    """A local source's split through the one loader (`datasets.load_dataset`, memory-mapped Arrow)."""
    if is_saved_dataset(path):
        return _dataset_reader(spec, load_source(dataclasses.replace(spec, path=str(path)), split))
    files = [path] if path.is_file() else _split_files(spec, path, split)
    if path.is_file() and split != "train" and split != spec.split:
        files = []
    if not files:
        raise MissingSplit(f"source '{spec.name}': no {'/'.join(DATA_EXTENSIONS)} files for split '{split}' in {path}.")
    return _dataset_reader(spec, load_files(spec, files, counters))


def _dataset_reader(spec: SourceSpec, ds):
    if spec.text_column not in ds.column_names:
        raise UserError(f"source '{spec.name}': dataset {spec.path} has no text column '{spec.text_column}' "
                        f"(columns: {', '.join(ds.column_names)}). Set `text_column:` on the source.")
    ds = ds.select_columns([spec.text_column])
    if ds._indices is not None:
        ds = ds.flatten_indices()
    return ArrowReader(ds.data.column(0))


def resolve_split(spec: SourceSpec, kind: str) -> str:
    if kind == "train":
        return spec.split
    if spec.eval_split:
        return spec.eval_split
    if spec.is_hub:
        raise MissingSplit(f"source '{spec.name}' ({spec.path}) has no held-out split: set `eval_split:` on it.")
    return "test"


# ---------------------------------------------------------------------------------------------------
# Tokenised document streams


class Tokenize:
    """Batch tokenisation through the Rust `tokenizers` API (no per-document Python calls)."""

    def __init__(self, tokenizer):
        self.backend = getattr(tokenizer, "_tokenizer", None) or getattr(tokenizer, "backend_tokenizer", None)
        self.tokenizer = tokenizer
        self.dtype = token_dtype(len(tokenizer))

    def __call__(self, texts: list[str]) -> list[np.ndarray]:
        if not texts:
            return []
        if self.backend is not None and hasattr(self.backend, "encode_batch_fast"):
            ids = [e.ids for e in self.backend.encode_batch_fast(texts, add_special_tokens=False)]
        else:
            ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [np.array(x, dtype=self.dtype) for x in ids]


def take_within(texts: list[str], char_budget: int) -> int:
    """How many leading texts to tokenise in one call: at least one, then up to `char_budget` characters
    (a batch of long files would tokenise far more than the next few blocks need)."""
    total = 0
    for i, t in enumerate(texts):
        total += len(t)
        if total > char_budget and i > 0:
            return i
    return len(texts)


MAX_GROWTH = 64  # batches grow to 64x the first one: big batches keep every core of the Rust tokenizer busy
MAX_BATCH_CHARS = 1 << 20  # ...but no bigger than ~1M characters: the tokenizer's per-token objects bound memory


REPEAT_WARNING = 1000  # passes over one source's documents that draw a warning (shards: mixture.py checks it up front)


class DocumentSource:
    """Base: `iter_documents(state)` yields (tokens, state_after) forever, epoch after epoch."""

    def __init__(self, spec: SourceSpec, seed: int, counters: dict):
        self.spec, self.name, self.seed, self.counters = spec, spec.name, seed, counters
        self.repeat_warned = False

    def batch_limits(self):
        """(documents, characters) per tokenizer call, doubling from (batch_size, char_budget): a short
        run or a resumed one tokenises little ahead, a long one gets large, well-parallelised batches."""
        growth = 1
        while True:
            yield self.batch_size * growth, max(self.char_budget, min(self.char_budget * growth, MAX_BATCH_CHARS))
            growth = min(growth * 2, MAX_GROWTH)

    def epochs(self, state: dict) -> float:
        return float(state.get("epoch", 0))

    def _next_epoch(self, epoch: int) -> int:
        """Count a new pass; at REPEAT_WARNING passes say so once (accepted, but a source read that often is
        memorised, and its share of the mixture is mostly repeats)."""
        if epoch == REPEAT_WARNING and not self.repeat_warned:
            self.repeat_warned = True
            print(f"warning: source '{self.name}' ({self.spec.path}) starts pass {epoch:,} over its documents: add data to "
                  "it or lower its weight.", file=sys.stderr)
        return epoch

    def _empty_epoch(self):
        raise UserError(f"source '{self.name}' ({self.spec.path}) has no usable documents: a whole pass gave 0 tokens.")


class MapSource(DocumentSource):
    """Random-access documents (local, embedded, non-streaming Hub): each epoch is a seeded permutation."""

    def __init__(self, spec, seed, counters, reader, tokenize: Tokenize, batch_size: int, char_budget: int):
        super().__init__(spec, seed, counters)
        self.reader, self.tokenize, self.batch_size, self.char_budget = reader, tokenize, batch_size, char_budget
        if len(reader) == 0:
            raise UserError(f"source '{self.name}' ({spec.path}) is empty: it has 0 documents.")

    def permutation(self, epoch: int) -> np.ndarray:
        return document_order(self.seed, self.name, epoch, len(self.reader))

    def epochs(self, state):
        return state.get("epoch", 0) + state.get("pos", 0) / len(self.reader)

    def document(self, ref: dict) -> np.ndarray:
        """The tokens of the document taken just before state `ref` (re-read to restore a packer's carry)."""
        index = self.permutation(ref["epoch"])[ref["pos"] - 1]
        text = clean_text(self.reader.texts([index])[0], {}, self.name, self.spec.text_column)
        return self.tokenize([text])[0]

    def iter_documents(self, state: dict | None) -> Iterator[tuple[np.ndarray, dict]]:
        epoch, pos = (state or {}).get("epoch", 0), (state or {}).get("pos", 0)
        n = len(self.reader)
        col = self.spec.text_column
        limits = self.batch_limits()
        while True:
            perm = self.permutation(epoch)
            fresh, yielded = pos == 0, 0
            while pos < n:
                docs, chars = next(limits)
                texts = [clean_text(v, self.counters, self.name, col) for v in self.reader.texts(perm[pos : pos + docs])]
                texts = texts[: take_within(texts, chars)]
                for j, tokens in enumerate(self.tokenize(texts)):
                    yielded += len(tokens)
                    yield tokens, {"epoch": epoch, "pos": pos + j + 1}
                pos += len(texts)
            if fresh and yielded == 0:
                self._empty_epoch()
            epoch, pos = self._next_epoch(epoch + 1), 0


class StreamSource(DocumentSource):
    """A streaming `datasets.IterableDataset`: each epoch is `shuffle(seed).set_epoch(epoch)` (shard
    order + buffer); the state is datasets' own `state_dict()` plus the documents taken since.
    Resumption is exact with `shuffle_buffer: 0` (datasets drops the buffer's contents on resume)."""

    def __init__(self, spec, seed, counters, dataset, tokenize: Tokenize, batch_size: int, char_budget: int):
        super().__init__(spec, seed, counters)
        self.tokenize, self.batch_size, self.char_budget = tokenize, batch_size, char_budget
        cols = dataset.column_names
        if cols is not None and spec.text_column not in cols:
            raise UserError(f"source '{self.name}': dataset {spec.path} has no text column '{spec.text_column}' "
                            f"(columns: {', '.join(cols)}). Set `text_column:` on the source.")
        if spec.shuffle_buffer > 0:
            dataset = dataset.shuffle(seed=_seed(seed, self.name)[0], buffer_size=spec.shuffle_buffer)
        elif dataset.num_shards > 1:
            dataset = dataset.shuffle(seed=_seed(seed, self.name)[0], buffer_size=1)  # shard order only
        self.dataset = dataset

    def iter_documents(self, state: dict | None) -> Iterator[tuple[np.ndarray, dict]]:
        state = state or {}
        epoch = state.get("epoch", 0)
        resume, skip = state.get("ds_state"), state.get("skip", 0)
        col = self.spec.text_column
        limits = self.batch_limits()
        while True:
            self.dataset.set_epoch(epoch)
            if resume is not None:
                self.dataset.load_state_dict(resume)
            it = iter(self.dataset)
            resume = None
            for _ in range(skip):
                next(it, None)
            docs_this_epoch = skip
            skip = 0
            while True:
                ds_state = self.dataset.state_dict()  # = after the last example handed out before this batch
                rows, chars = [], 0
                max_docs, max_chars = next(limits)
                for row in it:
                    rows.append(row)
                    value = row.get(col)
                    chars += len(value) if isinstance(value, (str, bytes)) else 0
                    if len(rows) >= max_docs or chars > max_chars:
                        break
                if not rows:
                    break
                for row in rows:
                    if col not in row:
                        raise UserError(f"source '{self.name}': an example of {self.spec.path} has no text column '{col}' "
                                        f"(it has: {', '.join(sorted(row))}).")
                texts = [clean_text(row[col], self.counters, self.name, col) for row in rows]
                for j, tokens in enumerate(self.tokenize(texts)):
                    yield tokens, {"epoch": epoch, "ds_state": ds_state, "skip": j + 1}
                docs_this_epoch += len(rows)
            if docs_this_epoch == 0:
                raise UserError(f"source '{self.name}' ({self.spec.path}) is empty: it has 0 documents.")
            epoch = self._next_epoch(epoch + 1)


def open_source(spec: SourceSpec, tokenizer, seed: int, split_kind: str = "train",
                batch_size: int = 64, counters: dict | None = None, char_budget: int = 131_072) -> DocumentSource:
    """The document stream of one source for the training ('train') or held-out ('eval') split, tokenised
    on the fly (pre-tokenised shards are read by `data.shards` instead)."""
    counters = {} if counters is None else counters
    split = resolve_split(spec, split_kind)
    if assets.is_embedded(spec.path):
        if not spec.path.startswith(assets.PREFIX + "corpus/"):
            raise UserError(f"source '{spec.name}': '{spec.path}' is not a corpus; embedded sources are embedded:corpus/NAME.")
        return MapSource(spec, seed, counters, _local_reader(spec, Path(assets.resolve(spec.path)), split, counters), Tokenize(tokenizer), batch_size, char_budget)
    local = Path(os.path.expanduser(spec.path))
    if local.exists():
        if spec.is_streaming:
            if not local.is_file() or builder_for(local) is None:
                raise UserError(f"source '{spec.name}': streaming a local path needs a .jsonl/.json/.parquet/.txt file, got {local}.")
            files = str(local) if split == spec.split else spec.eval_split
            ds = load_source(dataclasses.replace(spec, path=files), streaming=True)
            return StreamSource(spec, seed, counters, ds, Tokenize(tokenizer), batch_size, char_budget)
        return MapSource(spec, seed, counters, _local_reader(spec, local, split, counters), Tokenize(tokenizer), batch_size, char_budget)
    if not spec.is_hub:
        raise UserError(f"source '{spec.name}': path '{spec.path}' does not exist and is not a Hub dataset id "
                        "(valid: owner/name, a local .jsonl/.json/.parquet/.txt file or folder, or embedded:corpus/NAME).")
    ds = load_source(spec, split, streaming=spec.is_streaming)
    if spec.is_streaming:
        return StreamSource(spec, seed, counters, ds, Tokenize(tokenizer), batch_size, char_budget)
    return MapSource(spec, seed, counters, _dataset_reader(spec, ds), Tokenize(tokenizer), batch_size, char_budget)


# ---------------------------------------------------------------------------------------------------
# Public helpers for `smollm2 data tokenize` (data/shards.py)


def is_local_source(spec: SourceSpec) -> bool:
    """Embedded corpora and existing local files/folders (read by index); everything else is a Hub id."""
    return assets.is_embedded(spec.path) or Path(os.path.expanduser(spec.path)).exists()


def local_document_reader(spec: SourceSpec, split: str):
    """Random-access reader (`len()`, `texts(indices)`) of a local or embedded source's split: the same
    documents, in the same order, that `open_source` tokenises on the fly."""
    path = Path(assets.resolve(spec.path)) if assets.is_embedded(spec.path) else Path(os.path.expanduser(spec.path))
    return _local_reader(spec, path, split)


def hub_load_options(spec: SourceSpec, split: str) -> dict:
    """`datasets.load_dataset` keyword arguments for a Hub source's split (as `open_source` passes them)."""
    return spec.load_options(split)


def document_cycle(seed: int, name: str, n: int) -> np.ndarray:
    """One seeded permutation of a random-access source's `n` documents, computed once: every epoch reads it
    from its own starting point (`epoch_start`), so a position in any epoch is O(1) to find, with no
    per-epoch array (what lets a rank of a large world jump between the epochs of a small source)."""
    return np.random.default_rng(_seed(seed, name, 0)).permutation(n)


def epoch_start(seed: int, name: str, epoch: int, n: int) -> int:
    """Where `epoch` starts in the cycle: 0 for the first epoch, else a seeded position other than 0."""
    if epoch == 0 or n < 2:
        return 0
    digest = hashlib.blake2b(f"{seed}/{name}/{epoch}".encode(), digest_size=8).digest()
    return 1 + int.from_bytes(digest, "little") % (n - 1)


def document_order(seed: int, name: str, epoch: int, n: int) -> np.ndarray:
    """The order of a random-access source's `n` documents in `epoch` (as `MapSource` reads them): the cycle
    rotated to the epoch's start. Each epoch takes every document exactly once."""
    return np.roll(document_cycle(seed, name, n), -epoch_start(seed, name, epoch, n))
