"""Tokenise + pack throughput: this project's pipeline against the reference way, in one run.

Reference (transformers' examples/pytorch/language-modeling/run_clm.py): `load_dataset("json")`, then
`Dataset.map(tokenize, batched=True)` and `Dataset.map(group_texts, batched=True)` into block_size blocks.
Ours: the same JSONL file as a source of `smollm2_recipes.data` (batched Rust tokenisation, numpy
packing, EOS between documents), run for the same number of packed tokens. Same corpus (the embedded
web + code + math corpus), same tokenizer (real SmolLM2), same process, same cores.

Memory: the streaming path (`streaming: true`, datasets' streaming JSON reader) runs over a corpus and over
the same corpus 10x larger, each in a fresh process; the peak RSS should stay flat.

    .venv/bin/python benchmarks/bench_packing.py [--chars 6000000] [--seq_len 2048] [--repeats 3]

The last line is one JSON object: name, ours, baseline, ratio (tokens/s), goal, and the memory figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from itertools import chain
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")  # the same setting for both pipelines
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


def corpus_texts(max_chars: int) -> list[str]:
    """Interleave the embedded web, code and math corpora (train splits) up to max_chars characters."""
    import pyarrow.parquet as pq

    from smollm2_recipes.offline.corpus import corpus_path

    columns = [pq.read_table(corpus_path(n) / "train.parquet", columns=["text"]).column(0).to_pylist() for n in ("web", "code", "math")]
    texts, total = [], 0
    for i in range(max(len(c) for c in columns)):
        for c in columns:
            if i < len(c):
                texts.append(c[i])
                total += len(c[i])
                if total >= max_chars:
                    return texts
    return texts


def write_jsonl(path: Path, texts: list[str], repeat: int = 1) -> None:
    with open(path, "w") as f:
        for r in range(repeat):
            for i, t in enumerate(texts):
                f.write(json.dumps({"text": t if r == 0 else f"[copy {r}.{i}]\n{t}"}) + "\n")


def reference(path: Path, tokenizer, block_size: int, cache_dir: str) -> tuple[float, int]:
    """run_clm.py's tokenize_function + group_texts, verbatim in spirit."""
    import datasets

    start = time.perf_counter()
    raw = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=cache_dir)

    def tokenize_function(examples):
        return tokenizer(examples["text"])

    tokenized = raw.map(tokenize_function, batched=True, remove_columns=["text"])

    def group_texts(examples):
        concatenated = {k: list(chain(*examples[k])) for k in examples.keys()}
        total_length = len(concatenated[list(examples.keys())[0]])
        total_length = (total_length // block_size) * block_size
        result = {k: [t[i : i + block_size] for i in range(0, total_length, block_size)] for k, t in concatenated.items()}
        result["labels"] = result["input_ids"].copy()
        return result

    blocks = tokenized.map(group_texts, batched=True)
    n_tokens = len(blocks) * block_size
    return time.perf_counter() - start, n_tokens


def ours(path: Path, tokenizer, block_size: int, n_tokens: int, streaming: bool = False) -> tuple[float, int]:
    from smollm2_recipes.data import DataArguments, build_stream

    source = {"name": "corpus", "path": str(path), "weight": 1.0}
    if streaming:
        source.update(streaming=True, shuffle_buffer=0)
    args = DataArguments(seq_len=block_size, stages=[{"name": "all", "tokens": n_tokens, "sources": [source]}])
    start = time.perf_counter()
    produced = 0
    for item in build_stream(args, tokenizer):
        produced += int(item["input_ids"].numel())
    return time.perf_counter() - start, produced


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_child(path: str, block_size: int, tokens: int) -> None:
    """Stream the whole file once; sample the resident set every 16 blocks (after everything is imported)."""
    import resource

    from smollm2_recipes.data import DataArguments, build_stream
    from smollm2_recipes.runkit import load_tokenizer

    tokenizer = load_tokenizer("embedded:smollm2-tokenizer")
    source = {"name": "corpus", "path": path, "weight": 1.0, "streaming": True, "shuffle_buffer": 0}
    stream = build_stream(DataArguments(seq_len=block_size, stages=[{"name": "all", "tokens": tokens, "sources": [source]}]), tokenizer)
    import datasets  # noqa: F401  (imported before the baseline reading, like everything the loop uses)

    start_rss, peak, produced = _rss_mb(), 0.0, 0
    tenth, by_tenth = max(1, len(stream) // 10), []
    start = time.perf_counter()
    for i, item in enumerate(stream):
        produced += int(item["input_ids"].numel())
        if i % 16 == 0:
            peak = max(peak, _rss_mb())
        if (i + 1) % tenth == 0:
            by_tenth.append(round(_rss_mb() - start_rss, 1))
    peak = max(peak, _rss_mb())
    print(json.dumps({"start_rss_mb": start_rss, "peak_rss_mb": peak, "growth_mb": peak - start_rss, "growth_by_tenth_mb": by_tenth,
                      "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "tokens": produced, "seconds": time.perf_counter() - start}))


def peak_rss(path: Path, block_size: int, tokens: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--_child", str(path), str(block_size), str(tokens)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chars", type=int, default=6_000_000, help="corpus size for the throughput run (characters)")
    parser.add_argument("--seq_len", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each pipeline; the best counts")
    parser.add_argument("--memory_chars", type=int, default=4_000_000, help="corpus size of the small memory run (x10 for the large)")
    parser.add_argument("--_child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        return _peak_rss_child(args._child[0], int(args._child[1]), int(args._child[2]))

    from smollm2_recipes.runkit import load_tokenizer

    tokenizer = load_tokenizer("embedded:smollm2-tokenizer")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        texts = corpus_texts(args.chars)
        write_jsonl(tmp / "corpus.jsonl", texts)
        print(f"corpus: {len(texts)} documents, {sum(map(len, texts)):,} characters", file=sys.stderr)

        # Alternate the two, best of --repeats each (a shared machine is noisy); a fresh datasets cache per
        # reference run, as a first run_clm.py run has.
        ref_times, our_times = [], []
        for r in range(args.repeats):
            ref_s, ref_tokens = reference(tmp / "corpus.jsonl", tokenizer, args.seq_len, str(tmp / f"hf-cache-{r}"))
            our_s, our_tokens = ours(tmp / "corpus.jsonl", tokenizer, args.seq_len, ref_tokens)
            assert our_tokens == ref_tokens, (our_tokens, ref_tokens)
            ref_times.append(ref_s)
            our_times.append(our_s)
        ref_s, our_s = min(ref_times), min(our_times)
        ref_tps, our_tps = ref_tokens / ref_s, our_tokens / our_s
        print(f"reference (datasets.map + group_texts): {ref_tokens:,} tokens in {ref_s:.2f}s = {ref_tps:,.0f} tokens/s", file=sys.stderr)
        print(f"ours (smollm2_recipes.data):             {our_tokens:,} tokens in {our_s:.2f}s = {our_tps:,.0f} tokens/s", file=sys.stderr)

        small = corpus_texts(args.memory_chars)
        write_jsonl(tmp / "small.jsonl", small)
        write_jsonl(tmp / "large.jsonl", small, repeat=10)
        per_copy = int(sum(map(len, small)) / 4.2) // args.seq_len * args.seq_len  # ~ the tokens one copy packs into
        mem_small = peak_rss(tmp / "small.jsonl", args.seq_len, per_copy)
        mem_large = peak_rss(tmp / "large.jsonl", args.seq_len, per_copy * 10)
        for label, m in (("1x", mem_small), ("10x", mem_large)):
            print(f"streaming {label}: {m['tokens']:,} tokens, peak RSS {m['peak_rss_mb']:.0f} MB "
                  f"(+{m['growth_mb']:.1f} MB over the {m['start_rss_mb']:.0f} MB after imports; "
                  f"RSS growth at each tenth of the run: {m['growth_by_tenth_mb']})", file=sys.stderr)

    print(json.dumps({
        "name": "bench_packing", "unit": "tokens/s", "ours": round(our_tps), "baseline": round(ref_tps),
        "ratio": round(our_tps / ref_tps, 2), "goal": 2.0, "tokens": ref_tokens, "seq_len": args.seq_len,
        "seconds": {"ours": [round(t, 2) for t in our_times], "baseline": [round(t, 2) for t in ref_times]},
        "streaming_peak_rss_mb": {"1x": round(mem_small["peak_rss_mb"], 1), "10x": round(mem_large["peak_rss_mb"], 1)},
        "streaming_rss_growth_mb": {"1x": round(mem_small["growth_mb"], 1), "10x": round(mem_large["growth_mb"], 1)},
        "streaming_10x_rss_growth_by_tenth_mb": mem_large["growth_by_tenth_mb"],
        "memory_ratio_10x": round(mem_large["peak_rss_mb"] / mem_small["peak_rss_mb"], 3), "memory_goal": "flat (ratio ~1.0)",
    }))


if __name__ == "__main__":
    main()
