"""`smollm2 curate dedup [RECIPE.yaml] --input PATH --output_dir DIR [--executor local|slurm|ray --tasks N]`:
MinHash near-duplicate removal with datatrove's four MinHash stages, the way FineWeb deduplicated
(https://github.com/huggingface/datatrove/blob/main/examples/minhash_deduplication.py):

1. signatures  (N tasks)         every document's MinHash signature, per bucket;
2. buckets     (num_buckets tasks) documents sharing a whole bucket of hashes are duplicate pairs;
3. cluster     (1 task)          pairs -> clusters (union-find); all but one document per cluster is removed;
4. filter      (N tasks)         re-read the input, drop the removed ones -> parts/kept, parts/removed;
then one report task merges `data.jsonl` / `removed.jsonl` and writes `report.json` (`kept`, `removed`).

With 5-word shingles, 14 buckets of 8 hashes, two documents of Jaccard similarity 0.8 are caught with
probability 1-(1-0.8^8)^14 = 0.92, at 0.9 with 0.9998 (datatrove's defaults, FineWeb's settings).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from datatrove.pipeline.dedup import MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter, MinhashDedupSignature
from datatrove.utils.hashing import HashConfig
from datatrove.utils.word_tokenizers import WordTokenizer

from smollm2_recipes.curation import pipeline
from smollm2_recipes.errors import UserError


@dataclass
class DedupArgs(pipeline.CurationRunArgs):
    input: str = field(default="recipes/synth/seeds/news.jsonl", metadata={"help": "documents: jsonl/parquet file or folder, Hub id, or embedded:corpus/NAME"})
    output_dir: str = "outputs/curation/dedup"
    text_column: str = "text"
    ngram: int = field(default=5, metadata={"help": "words per shingle"})
    num_buckets: int = 14
    hashes_per_bucket: int = 8
    hash_bits: int = field(default=64, metadata={"help": "32 or 64 (FineWeb: 64)"})
    seed: int = field(default=1, metadata={"help": "seed of the hash permutations"})
    num_rows: Optional[int] = field(default=None, metadata={"help": "read at most this many rows per task"})


class WordRegexTokenizer(WordTokenizer):
    """Words as `\\w+` runs. datatrove's English tokenizer needs spaCy; shingles only need stable word
    boundaries, and this one also splits code and any script the same way."""

    _word = re.compile(r"\w+")
    _sentence = re.compile(r"[^.!?\n]+[.!?\n]*")

    def word_tokenize(self, text: str) -> list[str]:
        return self._word.findall(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return [s.strip() for s in self._sentence.findall(text) if s.strip()]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in self._sentence.finditer(text) if m.group().strip()]


def validate(args: DedupArgs) -> None:
    for key in ("ngram", "num_buckets", "hashes_per_bucket"):
        if getattr(args, key) < 1:
            raise UserError(f"{key} must be >= 1, got {getattr(args, key)}.")
    if args.hash_bits not in (32, 64):
        raise UserError(f"hash_bits must be 32 or 64, got {args.hash_bits}.")
    if args.num_rows is not None and args.num_rows < 1:
        raise UserError(f"num_rows must be >= 1 (or unset for all rows), got {args.num_rows}.")
    pipeline.check_text_column(args.input, args.text_column)


def stages(args: DedupArgs, tasks: int) -> list[pipeline.Stage]:
    out = Path(args.output_dir)
    work = out / "minhash"
    config = MinhashConfig(n_grams=args.ngram, num_buckets=args.num_buckets, hashes_per_bucket=args.hashes_per_bucket,
                           seed=args.seed,
                           # sha1, not datatrove's default xxhash: xxhash 4.x (installed with datasets) refuses the
                           # str shingles datatrove 0.10.1 passes it ("Strings must be encoded before hashing")
                           hash_config=HashConfig(precision=args.hash_bits, hash_fc="sha1"))

    def reader():  # stages 1 and 4 must see the same documents in the same order per task (ids are positions)
        return pipeline.build_reader(args.input, args.text_column, args.num_rows, hub_options=args.input_options)

    extra = {"ngram": args.ngram, "num_buckets": args.num_buckets, "hashes_per_bucket": args.hashes_per_bucket}
    return [
        pipeline.Stage("signatures", [reader(), MinhashDedupSignature(str(work / "signatures"), config=config,
                                                                      language=WordRegexTokenizer())], tasks),
        pipeline.Stage("buckets", [MinhashDedupBuckets(str(work / "signatures"), str(work / "buckets"), config=config)], args.num_buckets),
        pipeline.Stage("cluster", [MinhashDedupCluster(str(work / "buckets"), str(work / "remove_ids"), config=config)], 1),
        pipeline.Stage("filter", [reader(), MinhashDedupFilter(str(work / "remove_ids"), exclusion_writer=pipeline.removed_writer(out)),
                                  pipeline.kept_writer(out)], tasks),
        pipeline.Stage("report", [pipeline.MergeAndReport(str(out), extra, args.merge_output)], 1),
    ]


def main(argv: list[str]) -> int:
    args, placement = pipeline.parse([DedupArgs], argv)
    validate(args)
    out = Path(args.output_dir)
    pipeline.run(out, args, placement, stages(args, placement.tasks))
    report = out / pipeline.FINISHED_MARKER
    if report.exists():
        import json

        done = json.loads(report.read_text())
        print(f"removed {done['removed']}/{done['documents']} near-duplicates -> {done['data']}")
    return 0
