"""`smollm2 curate decontaminate [RECIPE.yaml] --input DOCS ...`: drop documents that share a word
n-gram with a benchmark (13-grams by default, the GPT-3 / FineWeb decontamination rule).

Benchmarks: `embedded:humaneval` (prompts + canonical solutions), any local jsonl/json.gz/parquet, or a
Hub dataset id (real runs; `id#config` for datasets with configs). A chat dataset works with
`text_column: messages`. Writes the clean rows to `output_dir/data.jsonl`, the removed ones (with the
benchmark, item and matching n-gram) to `removed.jsonl`, and counts to `report.json`.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from smollm2_recipes import assets
from smollm2_recipes.errors import UserError
from smollm2_recipes.runkit import write_atomic
from smollm2_recipes.synth import runner

TOKEN_RE = re.compile(r"\w+")
# columns that hold a benchmark's test content; other string columns (ids, entry points) are ignored
DEFAULT_BENCHMARK_COLUMNS = ["prompt", "canonical_solution", "question", "problem", "text", "solution", "answer", "test"]


@dataclass
class DecontaminateArgs:
    input: str = field(default="recipes/synth/seeds/news.jsonl", metadata={"help": "documents: jsonl/parquet/folder/Hub id or embedded:corpus/NAME"})
    output_dir: str = "outputs/curation/decontaminated"
    benchmarks: list[str] = field(default_factory=lambda: ["embedded:humaneval"], metadata={"help": "benchmark sets: embedded:humaneval, files, Hub ids"})
    benchmark_columns: list[str] = field(default_factory=lambda: list(DEFAULT_BENCHMARK_COLUMNS))
    benchmark_split: str = "test"
    text_column: str = "text"
    ngram: int = 13
    num_rows: Optional[int] = None


def as_text(value) -> str:
    """A document's text; a chat row's `messages` counts as the concatenation of its contents."""
    if isinstance(value, list):
        return "\n".join(str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in value)
    return str(value)


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """Lower-cased word n-grams; a text shorter than n words gives its whole token sequence as one gram."""
    tokens = TOKEN_RE.findall(text.lower())
    if len(tokens) < n:
        return {tuple(tokens)} if tokens else set()
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def benchmark_index(names: list[str], columns: list[str], n: int, split: str) -> dict[tuple[str, ...], tuple[str, int]]:
    """n-gram -> (benchmark, item index) over every benchmark's test columns."""
    index: dict[tuple[str, ...], tuple[str, int]] = {}
    for name in names:
        rows = runner.read_rows(assets.resolve(name), split=split)
        cols = [c for c in columns if rows and c in rows[0]]
        if not cols:
            raise UserError(f"Benchmark '{name}' has none of the columns {columns}; set benchmark_columns.")
        for i, row in enumerate(rows):
            for col in cols:
                if isinstance(row[col], str):
                    for gram in ngrams(row[col], n):
                        if len(gram) >= min(n, 8):  # very short fields (an answer "4") would match everything
                            index.setdefault(gram, (name, i))
    return index


def main(argv: list[str]) -> int:
    from tqdm.auto import tqdm

    from smollm2_recipes import configs

    (args,) = configs.parse([DecontaminateArgs], argv, recipe_required=False)
    if args.ngram < 1:
        raise UserError(f"ngram must be >= 1, got {args.ngram}.")
    if not args.benchmarks:
        raise UserError("benchmarks is empty: name at least one (e.g. embedded:humaneval).")
    rows = runner.read_rows(assets.resolve(args.input), args.text_column, limit=args.num_rows)
    configs.save_resolved_config(args.output_dir, args)
    index = benchmark_index(args.benchmarks, args.benchmark_columns, args.ngram, args.benchmark_split)
    clean, removed, per_benchmark = [], [], Counter()
    for i, row in enumerate(tqdm(rows, desc="decontaminating", unit="doc")):
        hit = next((gram for gram in ngrams(as_text(row[args.text_column]), args.ngram) if gram in index), None)
        if hit is None:
            clean.append(row)
            continue
        bench, item = index[hit]
        per_benchmark[bench] += 1
        removed.append({"row": i, "benchmark": bench, "benchmark_item": item, "ngram": " ".join(hit), args.text_column: row[args.text_column]})
    out = Path(args.output_dir)
    runner.write_jsonl(out / "data.jsonl", clean)
    runner.write_jsonl(out / "removed.jsonl", removed)
    report = {"input_rows": len(rows), "kept_rows": len(clean), "removed_rows": len(removed), "ngram": args.ngram,
              "benchmark_ngrams": len(index), "removed_per_benchmark": dict(per_benchmark)}
    write_atomic(out / "report.json", json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2), file=sys.stderr)
    print(f"removed {len(removed)}/{len(rows)} contaminated rows -> {out / 'data.jsonl'}")
    return 0
