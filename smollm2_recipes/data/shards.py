"""Pre-tokenised shards in datatrove's format: `smollm2 data tokenize RECIPE --output_dir DIR`.

A datatrove pipeline (https://github.com/huggingface/datatrove, examples/tokenize_*.py) run by the
local, Slurm or Ray executor (`smollm2_recipes.executors`):

1. tokenize, N tasks: for every source of the recipe and each of its splits (training and, where it
   has one, held-out), a reader gives task r its share of the documents (local and embedded sources: the
   r-th contiguous slice, in the order the mixture reads them; Hub ids: datatrove's
   `HuggingFaceDatasetReader`, streaming where the source streams), then `DocumentTokenizer` writes
   `DIR/.work/<source>/<split>/<source>_<rank>_unshuffled.ds` (no shuffling: the mixture shuffles);
2. merge, 1 task: `DocumentTokenizerMerger` (shuffle off) joins each source's task files in rank order
   into `DIR/<source>/<split>/000_<source>.ds` + `.ds.index` + `.ds.metadata`, then `DIR/manifest.json`
   is written last (so a folder without it is half-written) and `DIR/.work` is removed.

Each document is stored as its tokens followed by EOS, as nanotron's and datatrove's loaders
(`DatatroveFolderDataset`) expect. A killed run, run again, re-runs only the tasks without a completion
marker under `DIR/logs/*/completions`; every task rewrites its files from scratch, so the result is
byte-identical to an uninterrupted run. The manifest records each source's documents and tokens and the
tokenizer (name, vocabulary size, EOS, a fingerprint of the vocabulary); training refuses shards whose
tokenizer differs from the recipe's.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from smollm2_recipes.data.stages import SourceSpec, data_args_from_recipe
from smollm2_recipes.data.sources import MissingSplit, hub_load_options, is_local_source, local_document_reader, resolve_split
from smollm2_recipes.errors import UserError
from smollm2_recipes.runkit.parsing import ArgumentParser
from smollm2_recipes.executors import add_executor_args, build_executor, check_executor, run_executor, settings_from_args

MANIFEST = "manifest.json"
FORMAT = "datatrove-tokenized/1"
WORK = ".work"


# ---------------------------------------------------------------------------------------------------
# The tokenizer record: what the shards were written with.


def tokenizer_record(tokenizer, name: str) -> dict:
    """Name, vocabulary size, EOS and a sha256 of the vocabulary (token -> id), saved in the manifest."""
    vocab = json.dumps(sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]), ensure_ascii=False)
    return {"name": name, "vocab_size": len(tokenizer), "eos_token": tokenizer.eos_token, "eos_token_id": tokenizer.eos_token_id,
            "vocab_sha256": hashlib.sha256(vocab.encode()).hexdigest()}


def tokenizer_file(name: str) -> str:
    """What datatrove's `load_tokenizer` should open: a local tokenizer.json, else the Hub id itself."""
    from smollm2_recipes import assets

    local = Path(assets.resolve(name)) / "tokenizer.json"
    return str(local) if local.is_file() else name


def token_size(tokenizer: dict) -> int:
    """Bytes per token, as datatrove picks it: uint16 while the vocabulary fits."""
    return 2 if tokenizer["vocab_size"] <= 1 << 16 else 4


# ---------------------------------------------------------------------------------------------------
# Reading


def read_manifest(shards_dir: str | Path) -> dict:
    """The manifest of a finished shard folder; one-line errors for a missing or half-written one."""
    shards_dir = Path(shards_dir)
    path = shards_dir / MANIFEST
    if not path.is_file():
        if shards_dir.is_dir() and any(shards_dir.iterdir()):
            raise UserError(f"shards_dir {shards_dir} is half-written (no {MANIFEST}); run the same "
                            f"`smollm2 data tokenize RECIPE --output_dir {shards_dir}` again to finish it.")
        raise UserError(f"shards_dir {shards_dir} holds no shards; run `smollm2 data tokenize RECIPE --output_dir {shards_dir}` first.")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"shards_dir {shards_dir}: {MANIFEST} is unreadable ({err}); delete the folder and re-run `smollm2 data tokenize`.") from None
    if manifest.get("format") != FORMAT:
        raise UserError(f"shards_dir {shards_dir} has format {manifest.get('format')!r}, expected {FORMAT!r} "
                        "(the old uint16 shards are gone); re-run `smollm2 data tokenize` into a new folder.")
    return manifest


def check_tokenizer(manifest: dict, expected: dict, shards_dir) -> None:
    got = manifest["tokenizer"]
    for key in ("vocab_size", "eos_token_id", "vocab_sha256"):
        if got.get(key) != expected.get(key):
            raise UserError(f"shards_dir {shards_dir} was tokenised with '{got.get('name')}' ({key} {got.get(key)}), but the recipe's "
                            f"tokenizer '{expected['name']}' has {key} {expected.get(key)}; re-run `smollm2 data tokenize` with this recipe.")


class ShardSplit:
    """One source split: memory-mapped tokens (each document ends with EOS) and document boundaries."""

    def __init__(self, shards_dir: Path, name: str, split: str, manifest: dict):
        entry = manifest["sources"].get(name, {}).get(split)
        if entry is None:
            have = ", ".join(f"{s}/{sp}" for s, splits in manifest["sources"].items() for sp in splits) or "none"
            raise UserError(f"shards_dir {shards_dir} has no source '{name}' split '{split}' (it has: {have}); "
                            f"re-run `smollm2 data tokenize RECIPE --output_dir DIR` with this recipe.")
        folder = Path(shards_dir) / name / split
        dtype = np.uint16 if manifest["token_size"] == 2 else np.uint32
        self.paths, self.dtype = [folder / f for f in entry["files"]], dtype
        self.files, starts, lengths, file_ids = [], [], [], []
        for i, fname in enumerate(entry["files"]):
            try:
                ends = np.fromfile(folder / f"{fname}.index", dtype=np.uint64).astype(np.int64)
                size = (folder / fname).stat().st_size
            except OSError as err:
                raise UserError(f"shards_dir {shards_dir}: {folder / fname} is missing ({err.strerror}); re-run `smollm2 data tokenize`.") from None
            n_tokens = int(ends[-1]) if len(ends) else 0
            if size != n_tokens * dtype().itemsize:
                raise UserError(f"shards_dir {shards_dir}: {folder / fname} is half-written ({size} bytes, the index says "
                                f"{n_tokens * dtype().itemsize}); delete the folder and re-run `smollm2 data tokenize`.")
            self.files.append(self._map(folder / fname, n_tokens))
            starts.append(np.concatenate([[0], ends[:-1]]))
            lengths.append(np.diff(np.concatenate([[0], ends])))
            file_ids.append(np.full(len(ends), i, dtype=np.int32))
        self.starts = np.concatenate(starts) if starts else np.zeros(0, np.int64)
        self.lengths = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)  # tokens incl. the EOS
        self.file_ids = np.concatenate(file_ids) if file_ids else np.zeros(0, np.int32)
        if len(self.lengths) == 0:
            raise UserError(f"source '{name}': shards in {folder} hold 0 documents.")

    def _map(self, path: Path, n_tokens: int) -> np.ndarray:
        # a plain ndarray view of the map: slicing a np.memmap subclass costs more than the copy itself
        return np.asarray(np.memmap(path, dtype=self.dtype, mode="r")) if n_tokens else np.zeros(0, self.dtype)

    def __getstate__(self):
        """Pickled (DataLoader workers, spawn) without the token arrays: each process maps the files itself."""
        return {k: v for k, v in self.__dict__.items() if k != "files"}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.files = [self._map(p, p.stat().st_size // self.dtype().itemsize) for p in self.paths]

    def __len__(self) -> int:
        return len(self.lengths)

    def piece(self, doc: int, start: int, stop: int) -> np.ndarray:
        """Tokens [start, stop) of document `doc` (EOS included at its end)."""
        base = int(self.starts[doc])
        return self.files[int(self.file_ids[doc])][base + start : base + stop]


def open_shards(shards_dir: str | Path, tokenizer, tokenizer_name: str, wanted: list[tuple[str, str]]) -> dict:
    """{(source, split): ShardSplit} for a finished shard folder, validated against the recipe's tokenizer."""
    manifest = read_manifest(shards_dir)
    check_tokenizer(manifest, tokenizer_record(tokenizer, tokenizer_name), shards_dir)
    return {(name, split): ShardSplit(Path(shards_dir), name, split, manifest) for name, split in wanted}


# ---------------------------------------------------------------------------------------------------
# The command


def _reader(spec: SourceSpec, split: str):
    from smollm2_recipes.data.tokenize_steps import LocalSourceReader

    if is_local_source(spec):
        local_document_reader(spec, split)  # raises MissingSplit / UserError now, before anything is written
        return LocalSourceReader(spec, split)
    if not spec.is_hub:
        raise UserError(f"source '{spec.name}': path '{spec.path}' does not exist and is not a Hub dataset id.")
    from datatrove.pipeline.readers import HuggingFaceDatasetReader

    # The real Hub path: datasets.load_dataset(streaming=...) sharded across tasks by datatrove.
    return HuggingFaceDatasetReader(spec.path, dataset_options=hub_load_options(spec, split), streaming=spec.is_streaming,
                                    text_key=spec.text_column)


def plan_splits(data_args) -> list[tuple[SourceSpec, str]]:
    """(source, split) pairs to tokenise: every source's training split and its held-out split where it has one."""
    out = []
    for spec in data_args.all_sources().values():
        for kind in ("train", "eval"):
            try:
                split = resolve_split(spec, kind)
                if is_local_source(spec):
                    local_document_reader(spec, split)
            except MissingSplit:
                if kind == "eval":  # no held-out split for this source: nothing to write
                    continue
                raise
            out.append((spec, split))
    return out


def build_pipelines(data_args, output_dir: Path, tokenizer, batch_size: int = 1000):
    """(tokenize pipeline, merge pipeline, manifest tokenizer record)."""
    from datatrove.pipeline.tokens import DocumentTokenizer

    from smollm2_recipes.data.tokenize_steps import MergeAndSeal, TokenizeSources

    record = tokenizer_record(tokenizer, data_args.tokenizer_name)
    if record["eos_token"] is None:
        raise UserError(f"Tokenizer '{data_args.tokenizer_name}' has no EOS token; every document in the shards ends with EOS.")
    tok_file = tokenizer_file(data_args.tokenizer_name)
    parts, merges = [], []
    for spec, split in plan_splits(data_args):
        tokenizer_step = DocumentTokenizer(str(output_dir / WORK / spec.name / split), tokenizer_name_or_path=tok_file,
                                           eos_token=record["eos_token"], save_filename=spec.name, shuffle_documents=False,
                                           batch_size=batch_size)
        parts.append((_reader(spec, split), tokenizer_step))
        merges.append((spec.name, split))
    recipe = {"seq_len": data_args.seq_len, "mixture_seed": data_args.mixture_seed,
              "sources": {s.name: s.path for s in data_args.all_sources().values()}}
    header = {"format": FORMAT, "tokenizer": record, "token_size": token_size(record), "recipe": recipe}
    return [TokenizeSources(parts)], [MergeAndSeal(str(output_dir), str(output_dir / WORK), MANIFEST, merges, header)], record


def tokenize_recipe(data_args, output_dir: str | Path, tokenizer=None, tasks: int = 1, workers: int = 1,
                    batch_size: int = 1000) -> dict:
    """Tokenise a recipe's sources into `output_dir` on this machine (the local executor); returns the
    manifest. The command (`main`) is this plus the Slurm/Ray executors, the checks and the output."""
    from smollm2_recipes.runkit import claim_output_dir, load_tokenizer

    tokenizer = tokenizer if tokenizer is not None else load_tokenizer(data_args.tokenizer_name)
    output_dir = Path(output_dir)
    if (output_dir / MANIFEST).exists():
        manifest = read_manifest(output_dir)
        check_tokenizer(manifest, tokenizer_record(tokenizer, data_args.tokenizer_name), output_dir)
        return manifest
    tokenize_pipeline, merge_pipeline, _ = build_pipelines(data_args, output_dir, tokenizer, batch_size)
    tokenize = build_executor(tokenize_pipeline, executor="local", tasks=tasks, workers=workers, logging_dir=output_dir / "logs" / "tokenize")
    merge = build_executor(merge_pipeline, executor="local", tasks=1, workers=1, logging_dir=output_dir / "logs" / "merge")
    merge.depends = tokenize
    with claim_output_dir(output_dir, finished_marker=MANIFEST):
        run_executor(merge, kind="local")
    return read_manifest(output_dir)


def summary(manifest: dict) -> dict:
    return {f"{name}/{split}": {"documents": e["documents"], "tokens": e["tokens"]}
            for name, splits in manifest["sources"].items() for split, e in splits.items()}


def _launch(args, tokenize, merge, output_dir: Path, logging_dir: Path, tasks: int, ray: dict) -> int | None:
    """Run (or, dry, plan) the two executors; an exit code when there is nothing more to print."""
    if args.executor == "slurm" and args.dry_run:
        first = run_executor(tokenize, kind="slurm", dry_run=True)
        second = run_executor(merge, kind="slurm", dry_run=True)
        print(f"sbatch scripts written: {first} then {second}")
        print(f"submit: jid=$(sbatch --parsable {first}) && sbatch --dependency=afterok:$jid {second}")
        return 0
    if args.dry_run:
        print(f"dry run: {tasks} tokenize task(s) + 1 merge task on {args.executor}, logs in {logging_dir}; nothing run.")
        return 0
    merge.depends = tokenize  # datatrove runs (local/Ray) or chains (Slurm afterok) the tokenize job first
    run_executor(merge, kind=args.executor, ray=ray)
    if args.executor == "slurm":
        print(f"Slurm jobs submitted; {output_dir / MANIFEST} appears when the merge job finishes.")
        return 0
    if not (output_dir / MANIFEST).exists():
        raise UserError(f"tokenize did not finish (see {logging_dir}); run the same command again to resume.")
    return None


def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="smollm2 data tokenize",
                                     description="Tokenise a recipe's sources into datatrove shards (*.ds + *.ds.index).")
    parser.add_argument("recipe")
    parser.add_argument("--output_dir", required=True, help="where the shards go (run the same command again to resume)")
    parser.add_argument("--tokenizer_name", default=None)
    parser.add_argument("--batch_size", type=int, default=1000, help="documents per tokenizer call")
    parser.add_argument("--json", action="store_true", help="print one JSON summary line")
    add_executor_args(parser)
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        raise UserError(f"--batch_size {args.batch_size} must be >= 1.")
    # Everything is validated before anything is written: the recipe, the executor, the tokenizer, the folder.
    data_args = data_args_from_recipe(args.recipe, tokenizer_name=args.tokenizer_name)
    from smollm2_recipes.recipe_parsing import load_recipe

    slurm, ray = settings_from_args(args, load_recipe(args.recipe).get("executor"))
    tasks = args.tasks if args.tasks is not None else (args.workers or 1)
    check_executor(args.executor, tasks=tasks, workers=args.workers, slurm=slurm, ray=ray, dry_run=args.dry_run)
    from smollm2_recipes.runkit import claim_output_dir, load_tokenizer

    tokenizer = load_tokenizer(data_args.tokenizer_name)
    output_dir = Path(args.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise UserError(f"--output_dir {output_dir} is a file; give a folder.")
    record = tokenizer_record(tokenizer, data_args.tokenizer_name)
    if (output_dir / MANIFEST).exists():  # finished before: only a matching recipe may use it
        manifest = read_manifest(output_dir)
        check_tokenizer(manifest, record, output_dir)
        print(f"{output_dir} is already complete; nothing to do.", file=sys.stderr)
        shutil.rmtree(output_dir / WORK, ignore_errors=True)
    else:
        tokenize_pipeline, merge_pipeline, _ = build_pipelines(data_args, output_dir, tokenizer, args.batch_size)
        logging_dir = Path(args.logging_dir) if args.logging_dir else output_dir / "logs"
        tokenize = build_executor(tokenize_pipeline, executor=args.executor, tasks=tasks, workers=args.workers,
                                  logging_dir=logging_dir / "tokenize", slurm=slurm, ray=ray, dry_run=args.dry_run)
        merge = build_executor(merge_pipeline, executor=args.executor, tasks=1, workers=1, logging_dir=logging_dir / "merge",
                               slurm=slurm, ray=ray, dry_run=args.dry_run)
        with claim_output_dir(output_dir, finished_marker=MANIFEST):
            done = _launch(args, tokenize, merge, output_dir, logging_dir, tasks, ray)
        if done is not None:
            return done
    manifest = read_manifest(output_dir)
    if args.json:
        print(json.dumps(summary(manifest)))
    else:
        for key, s in summary(manifest).items():
            print(f"{key:<30} {s['documents']:>9,} documents {s['tokens']:>13,} tokens")
        print(f"Train from them with `shards_dir: {output_dir}` in the recipe (or --shards_dir {output_dir}).")
    return 0
