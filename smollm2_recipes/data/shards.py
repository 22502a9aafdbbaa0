"""Pre-tokenised shards: `smollm2 data tokenize RECIPE --output_dir DIR`.

For every source of the recipe (and each of its splits: the training split and, where it has one, the
held-out split) this writes, in the source's natural document order:

    DIR/<source>/<split>/tokens.bin     all documents' tokens back to back (uint16: the 49152 vocab fits)
    DIR/<source>/<split>/ends.bin       int64 end offset of each document (its length is the difference)
    DIR/<source>/<split>/progress.json  committed documents/tokens (rewritten atomically after each chunk)
    DIR/<source>/<split>/index.json     written last: the split is complete

A killed run is resumed by running the same command again: files are cut back to the last committed
chunk and tokenisation continues from there; a finished split is skipped. Training reads the shards
memory-mapped through the same mixture code (`shards_dir: DIR`), with no tokeniser in the loop.
Empty documents are kept as zero-length entries so document indices, and so the seeded shuffles,
are the same as when the mixture tokenises on the fly.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

from smollm2_recipes.data.config import SourceSpec, data_args_from_recipe
from smollm2_recipes.data.sources import (
    MissingSplit,
    Tokenize,
    _dataset_reader,
    _load_hub,
    _local_reader,
    clean_text,
    resolve_split,
)
from smollm2_recipes.errors import UserError
from smollm2_recipes.runkit import write_json_atomic
from smollm2_recipes.runkit.parsing import ArgumentParser

FORMAT_VERSION = 1


def open_shards(shard_dir: Path, name: str = "?") -> tuple[np.ndarray, np.ndarray]:
    """(tokens memmap, offsets[documents + 1]) of a finished split."""
    shard_dir = Path(shard_dir)
    try:
        index = json.loads((shard_dir / "index.json").read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"source '{name}': {shard_dir} holds no finished shards ({err}); run `smollm2 data tokenize`.") from None
    dtype = np.dtype(index["dtype"])
    n_docs, n_tokens = index["documents"], index["tokens"]
    tokens = np.memmap(shard_dir / "tokens.bin", dtype=dtype, mode="r", shape=(n_tokens,)) if n_tokens else np.zeros(0, dtype)
    ends = np.memmap(shard_dir / "ends.bin", dtype=np.int64, mode="r", shape=(n_docs,)) if n_docs else np.zeros(0, np.int64)
    offsets = np.concatenate([[0], np.asarray(ends)]).astype(np.int64)
    if offsets[-1] != n_tokens:
        raise UserError(f"source '{name}': {shard_dir} is inconsistent ({offsets[-1]} != {n_tokens} tokens); delete it and re-run `smollm2 data tokenize`.")
    return tokens, offsets


def _documents(spec: SourceSpec, split: str, start: int, counters: dict):
    """Raw texts in natural order from document `start` on, and the total count when known."""
    from smollm2_recipes import assets

    if assets.is_embedded(spec.path) or Path(os.path.expanduser(spec.path)).exists():
        path = Path(assets.resolve(spec.path)) if assets.is_embedded(spec.path) else Path(os.path.expanduser(spec.path))
        reader = _local_reader(spec, path, split)
        total = len(reader)

        def gen():
            for i in range(start, total, 256):
                yield from reader.texts(range(i, min(i + 256, total)))

        return gen(), total
    ds = _load_hub(spec, split, spec.is_streaming)
    if not spec.is_streaming:
        reader = _dataset_reader(spec, ds)
        total = len(reader)
        return (v for v in reader.texts(range(start, total))) if total else iter(()), total
    if ds.column_names is not None and spec.text_column not in ds.column_names:
        raise UserError(f"source '{spec.name}': dataset {spec.path} has no text column '{spec.text_column}' (columns: {', '.join(ds.column_names)}).")
    return (row[spec.text_column] for row in ds.skip(start)), None


def tokenize_split(spec: SourceSpec, split: str, out: Path, tokenize: Tokenize, chunk_documents: int = 2048,
                   progress: bool = True) -> dict:
    """Tokenise one split of one source into `out`, resuming a previous partial run."""
    from tqdm.auto import tqdm

    out.mkdir(parents=True, exist_ok=True)
    if (out / "index.json").exists():
        return json.loads((out / "index.json").read_text())
    dtype = np.dtype(tokenize.dtype)
    prog = {"documents": 0, "tokens": 0, "counters": {}}
    if (out / "progress.json").exists():
        prog = json.loads((out / "progress.json").read_text())
    # Cut back to the last commit: a kill may have left a half-written chunk behind.
    for name, size in (("tokens.bin", prog["tokens"] * dtype.itemsize), ("ends.bin", prog["documents"] * 8)):
        with open(out / name, "ab") as f:
            f.truncate(size)
    counters = dict(prog["counters"])
    docs, total = _documents(spec, split, prog["documents"], counters)
    bar = tqdm(total=total, initial=prog["documents"], desc=f"{spec.name}/{split}", unit="doc", disable=not progress)
    n_docs, n_tokens = prog["documents"], prog["tokens"]

    def commit(texts):
        nonlocal n_docs, n_tokens
        ids = tokenize(texts)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        with open(out / "tokens.bin", "ab") as f:
            f.write(np.concatenate(ids).astype(dtype).tobytes() if ids else b"")
            f.flush()
            os.fsync(f.fileno())
        with open(out / "ends.bin", "ab") as f:
            f.write((n_tokens + np.cumsum(lengths)).astype(np.int64).tobytes())
            f.flush()
            os.fsync(f.fileno())
        n_docs, n_tokens = n_docs + len(ids), n_tokens + int(lengths.sum())
        write_json_atomic(out / "progress.json", {"documents": n_docs, "tokens": n_tokens, "counters": counters}, indent=1)
        bar.update(len(ids))

    chunk = []
    for value in docs:
        chunk.append(clean_text(value, counters, spec.name, spec.text_column))
        if len(chunk) >= chunk_documents:
            commit(chunk)
            chunk = []
    if chunk:
        commit(chunk)
    bar.close()
    if n_docs == 0:
        raise UserError(f"source '{spec.name}' ({spec.path}) split '{split}' is empty: it has 0 documents.")
    index = {"format": FORMAT_VERSION, "source": spec.name, "path": spec.path, "config": spec.config, "split": split,
             "text_column": spec.text_column, "dtype": dtype.name, "documents": n_docs, "tokens": n_tokens,
             "counters": counters, "tokenizer": getattr(tokenize.tokenizer, "name_or_path", None)}
    write_json_atomic(out / "index.json", index, indent=1)
    (out / "progress.json").unlink(missing_ok=True)
    return index


def tokenize_recipe(data_args, output_dir: str | os.PathLike, tokenizer=None, splits=("train", "eval"),
                    chunk_documents: int = 2048, progress: bool = True) -> dict:
    from smollm2_recipes.runkit import load_tokenizer

    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(data_args.tokenizer_name)
    if len(tokenizer) > 1 << 16:
        print(f"note: vocabulary of {len(tokenizer)} does not fit uint16; shards use uint32.", file=sys.stderr)
    tokenize = Tokenize(tokenizer)
    output_dir = Path(output_dir)
    summary = {}
    for name, spec in data_args.all_sources().items():
        for kind in splits:
            try:
                split = resolve_split(spec, kind)
                index = tokenize_split(spec, split, output_dir / name / split, tokenize, chunk_documents, progress)
            except MissingSplit:
                if kind == "eval":  # no held-out split for this source: nothing to write
                    continue
                raise
            summary[f"{name}/{split}"] = {k: index[k] for k in ("documents", "tokens", "dtype")}
    write_json_atomic(output_dir / "shards.json", {"tokenizer": data_args.tokenizer_name, "sources": summary}, indent=1)
    return summary


def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="smollm2 data tokenize", description="Pre-tokenise a recipe's sources into uint16 shards.")
    parser.add_argument("recipe")
    parser.add_argument("--output_dir", required=True, help="where the shards go (re-run the command to resume)")
    parser.add_argument("--tokenizer_name", default=None)
    parser.add_argument("--chunk_documents", type=int, default=2048, help="documents per committed chunk")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.chunk_documents < 1:
        raise UserError(f"--chunk_documents {args.chunk_documents} must be >= 1.")
    data_args = data_args_from_recipe(args.recipe, tokenizer_name=args.tokenizer_name)
    os.environ["TOKENIZERS_PARALLELISM"] = "true"  # no fork follows: let the Rust tokenizer use every core
    summary = tokenize_recipe(data_args, args.output_dir, chunk_documents=args.chunk_documents, progress=not args.json)
    if args.json:
        print(json.dumps(summary))
    else:
        for key, s in summary.items():
            print(f"{key:<30} {s['documents']:>9,} documents {s['tokens']:>13,} tokens ({s['dtype']})")
        print(f"Train from them with `shards_dir: {args.output_dir}` in the recipe (or --shards_dir {args.output_dir}).")
    return 0
