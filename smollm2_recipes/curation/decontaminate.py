"""`smollm2 curate decontaminate [RECIPE.yaml] --input DOCS ... [--executor local|slurm|ray --tasks N]`: drop
documents that share a word n-gram with a benchmark (13-grams by default, the GPT-3 / FineWeb decontamination
rule), as a datatrove pipeline: reader -> BenchmarkNgramFilter -> writer.

Benchmarks: `embedded:humaneval` (prompts + canonical solutions), any local jsonl/json.gz/parquet, or a
Hub dataset id (real runs; `id#config` for datasets with configs). A chat dataset works with
`text_column: messages`. Writes the clean rows to `output_dir/data.jsonl`, the removed ones (with the
benchmark, item and matching n-gram) to `removed.jsonl`, and `kept` / `removed` counts to `report.json`.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from datatrove.pipeline.filters.base_filter import BaseFilter

from smollm2_recipes import assets
from smollm2_recipes.curation import pipeline
from smollm2_recipes.errors import UserError
from smollm2_recipes.synth import runner

TOKEN_RE = re.compile(r"\w+")
# columns that hold a benchmark's test content; other string columns (ids, entry points) are ignored
DEFAULT_BENCHMARK_COLUMNS = ["prompt", "canonical_solution", "question", "problem", "text", "solution", "answer", "test"]


@dataclass
class DecontaminateArgs(pipeline.CurationRunArgs):
    input: str = field(default="recipes/synth/seeds/news.jsonl", metadata={"help": "documents: jsonl/parquet/folder/Hub id or embedded:corpus/NAME"})
    output_dir: str = "outputs/curation/decontaminated"
    benchmarks: list[str] = field(default_factory=lambda: ["embedded:humaneval"], metadata={"help": "benchmark sets: embedded:humaneval, files, Hub ids"})
    benchmark_columns: list[str] = field(default_factory=lambda: list(DEFAULT_BENCHMARK_COLUMNS))
    benchmark_split: str = "test"
    text_column: str = "text"
    ngram: int = 13
    num_rows: Optional[int] = field(default=None, metadata={"help": "read at most this many rows per task"})


def ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    """Lower-cased word n-grams, each once, in the order they occur (so the n-gram reported for a removed
    document is its first match, the same in every process: a set's order changes with PYTHONHASHSEED).
    A text shorter than n words gives its whole token sequence as one gram."""
    tokens = TOKEN_RE.findall(text.lower())
    if len(tokens) < n:
        return [tuple(tokens)] if tokens else []
    return list(dict.fromkeys(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)))


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


@functools.lru_cache(maxsize=2)
def cached_index(names: tuple[str, ...], columns: tuple[str, ...], n: int, split: str) -> dict[tuple[str, ...], tuple[str, int]]:
    """Built once per task process and kept out of the step's attributes, which datatrove saves as JSON."""
    return benchmark_index(list(names), list(columns), n, split)


def first_overlap(text: str, index: dict[tuple[str, ...], tuple[str, int]], n: int) -> tuple[str, ...] | None:
    """The first word n-gram of `text` found in a `benchmark_index`, or None (a clean text)."""
    return next((gram for gram in ngrams(text, n) if gram in index), None)


class BenchmarkNgramFilter(BaseFilter):
    """Removes a document sharing a word n-gram with a benchmark; the removed row records which benchmark,
    item and n-gram. The index is built once per task from the benchmark files (small: test sets)."""

    name = "benchmark n-gram overlap"

    def __init__(self, benchmarks: list[str], columns: list[str], n: int, split: str, exclusion_writer=None):
        super().__init__(exclusion_writer=exclusion_writer)
        self.benchmarks, self.columns, self.n, self.split = tuple(benchmarks), tuple(columns), n, split

    def filter(self, doc):
        index = cached_index(self.benchmarks, self.columns, self.n, self.split)
        hit = first_overlap(doc.text, index, self.n)
        if hit is None:
            return True
        bench, item = index[hit]
        doc.metadata.update(benchmark=bench, benchmark_item=item, ngram=" ".join(hit))
        self.stat_update(f"removed_{bench}")
        return False, f"overlap:{bench}"


def main(argv: list[str]) -> int:
    args, placement = pipeline.parse([DecontaminateArgs], argv)
    if args.ngram < 1:
        raise UserError(f"ngram must be >= 1, got {args.ngram}.")
    if not args.benchmarks:
        raise UserError("benchmarks is empty: name at least one (e.g. embedded:humaneval).")
    if args.num_rows is not None and args.num_rows < 1:
        raise UserError(f"num_rows must be >= 1 (or unset for all rows), got {args.num_rows}.")
    pipeline.check_text_column(args.input, args.text_column)
    index = cached_index(tuple(args.benchmarks), tuple(args.benchmark_columns), args.ngram, args.benchmark_split)  # a bad benchmark fails here
    out = Path(args.output_dir)
    step = BenchmarkNgramFilter(args.benchmarks, args.benchmark_columns, args.ngram, args.benchmark_split,
                                exclusion_writer=pipeline.removed_writer(out))
    extra = {"ngram": args.ngram, "benchmarks": args.benchmarks, "benchmark_ngrams": len(index)}
    stages = [
        pipeline.Stage("decontaminate", [pipeline.build_reader(args.input, args.text_column, args.num_rows, hub_options=args.input_options), step,
                                         pipeline.kept_writer(out)], placement.tasks),
        pipeline.Stage("report", [pipeline.MergeAndReport(str(out), extra, args.merge_output)], 1),
    ]
    pipeline.run(out, args, placement, stages)
    report = out / pipeline.FINISHED_MARKER
    if report.exists():
        import json

        done = json.loads(report.read_text())
        print(f"removed {done['removed']}/{done['documents']} contaminated rows -> {done['data']}")
    return 0
