"""Per-rank throughput of the pretraining stream as the world size grows, and tokenisation throughput.

1. Stream scaling: the tiny recipe's sources and stages (embedded web/code/math corpora) at seq_len 2048,
   each stage's budget scaled up so that the last rank of W=64 has enough blocks of its own. For W in
   1, 8, 64 the LAST rank (W-1) of W is timed; delivered tokens/s per rank = blocks x seq_len / seconds,
   through `PretrainStream.__iter__` (the tensors the DataLoader receives).
   - shards (`smollm2 data tokenize` output, datatrove format, memory-mapped): every rank computes only
     its own blocks. A round reads `--blocks` of the rank's blocks in chunks of `--chunk` consecutive
     ones, the chunks spread evenly over the whole stream (so every W reads the same mix of stages and
     sources, and the small sources' many epochs), each chunk entered by resuming the stream there and
     its first block left untimed (warm-up). One untimed warm-up round, then `--rounds` rounds,
     alternating the world sizes within each round (the machine is shared); the median round is reported.
   - on the fly: every rank tokenises every rank's documents (the cost the one-line note states); a
     fresh stream from the start, 4 warm-up blocks, then `--fly_blocks` timed, median of `--fly_rounds`.
2. Tokenize throughput: `smollm2 data tokenize`'s datatrove pipeline with the local executor, 2 workers
   (2 tasks) against a single process (1 task, 1 worker), on a ~12 MB local JSONL built from the
   embedded corpora. Tokens/s = tokens written / wall seconds (tokenize + merge), best of alternated runs.

    .venv/bin/python benchmarks/bench_stream_scaling.py [--blocks 256] [--chunk 8] [--rounds 7] [--fly_blocks 16]

Two JSON lines: the tokenize benchmark, then (the last line) the stream scaling result.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# The allocator settings the Makefile exports for training (no per-block mmap/munmap of tensor memory);
# they only act at process start, so re-run this script with them when they are missing.
MALLOC = {"MALLOC_MMAP_THRESHOLD_": "10000000000", "MALLOC_TRIM_THRESHOLD_": "10000000000", "MALLOC_TOP_PAD_": "1000000000",
          "TOKENIZERS_PARALLELISM": "false"}
if any(k not in os.environ for k in MALLOC):
    os.execve(sys.executable, [sys.executable, *sys.argv], {**MALLOC, **os.environ})

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SEQ_LEN = 2048
WORLDS = (1, 8, 64)


def scaled_args(blocks_per_rank: int, shards_dir: str | None = None):
    """The tiny recipe's mixture at seq_len 2048, stages scaled to give rank 63 of 64 enough blocks."""
    from smollm2_recipes.data.stages import data_args_from_recipe

    args = data_args_from_recipe(ROOT / "recipes/smollm2/tiny/pretrain.yaml", seq_len=SEQ_LEN)
    total = sum(s.tokens for s in args.stage_specs)
    need = blocks_per_rank * max(WORLDS) * SEQ_LEN
    stages = [dict(raw, tokens=max(SEQ_LEN, int(raw["tokens"] * need / total) // SEQ_LEN * SEQ_LEN + SEQ_LEN)) for raw in args.stages]
    return type(args)(tokenizer_name=args.tokenizer_name, seq_len=SEQ_LEN, mixture_seed=args.mixture_seed, stages=stages,
                      shards_dir=shards_dir)


class ShardRank:
    """Rank W-1 of W over the shards, read in chunks of consecutive own blocks spread over the whole stream."""

    def __init__(self, args, tokenizer, world: int, blocks: int, chunk: int):
        from smollm2_recipes.data.mixture import PretrainStream

        self.stream = PretrainStream(args, tokenizer, rank=world - 1, world_size=world)
        own = len(self.stream)  # this rank's blocks over the whole stream
        chunks = blocks // chunk
        if own < chunks * (chunk + 1):
            raise SystemExit(f"rank {world - 1} of {world} has {own} blocks, fewer than {chunks} chunks of {chunk + 1}")
        # global index of the first block of each chunk (its warm-up block), evenly spread over the rank's blocks
        self.starts = [world - 1 + (i * (own - chunk - 1) // max(1, chunks - 1)) * world for i in range(chunks)]
        self.chunk, self.tokens = chunk, chunks * chunk * SEQ_LEN

    def round(self) -> float:
        """Delivered tokens/s of one round (timed blocks only)."""
        seconds = 0.0
        for start in self.starts:
            state = self.stream.state_dict()
            state["block"] = start
            self.stream.load_state_dict(state)
            it = iter(self.stream)
            next(it)  # the chunk's first block: generator set-up, untimed
            begin = time.perf_counter()
            for _ in range(self.chunk):
                item = next(it)
            seconds += time.perf_counter() - begin
            assert item["input_ids"].shape == (SEQ_LEN,)
        return self.tokens / seconds


def on_the_fly_tokens_per_s(args, tokenizer, world: int, warmup: int, measured: int) -> float:
    from smollm2_recipes.data.mixture import PretrainStream

    it = iter(PretrainStream(args, tokenizer, rank=world - 1, world_size=world))
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(measured):
        item = next(it)
    assert item["input_ids"].shape == (SEQ_LEN,)
    return measured * SEQ_LEN / (time.perf_counter() - start)


def stream_scaling(blocks: int, chunk: int, rounds: int, fly_blocks: int, fly_rounds: int) -> dict:
    from smollm2_recipes.data.mixture import PretrainStream
    from smollm2_recipes.data.shards import tokenize_recipe
    from smollm2_recipes.runkit import load_tokenizer

    tokenizer = load_tokenizer("embedded:smollm2-tokenizer")
    per_rank = blocks + 2 * blocks // chunk + 8  # room for every chunk's warm-up block
    with tempfile.TemporaryDirectory() as tmp:
        args = scaled_args(per_rank)
        tokenize_recipe(args, Path(tmp) / "shards", tokenizer)
        sharded = scaled_args(per_rank, shards_dir=str(Path(tmp) / "shards"))
        ranks = {w: ShardRank(sharded, tokenizer, w, blocks, chunk) for w in WORLDS}
        samples = {w: [] for w in WORLDS}
        for r in range(rounds + 1):
            for w in (WORLDS if r % 2 else WORLDS[::-1]):  # alternated order: load drifts hit every W alike
                rate = ranks[w].round()
                if r:  # round 0 warms the page cache and the allocator
                    samples[w].append(rate)
        shards = {str(w): round(statistics.median(v)) for w, v in samples.items()}
        whole = PretrainStream(sharded, tokenizer)
        whole.load_state_dict({**whole.state_dict(), "block": whole.total_blocks})
        epochs = {name: s["epochs"] for name, s in whole.stats().items()}
        total_blocks = whole.total_blocks
        fly = {str(w): round(statistics.median(on_the_fly_tokens_per_s(args, tokenizer, w, 4, fly_blocks) for _ in range(fly_rounds)))
               for w in WORLDS}
    ratio = shards["64"] / shards["1"]
    return {"name": "stream_scaling", "per_rank_tokens_per_s": {"shards": shards, "on_the_fly": fly},
            "ratio": round(ratio, 3), "goal": 0.9, "ours": shards["64"], "baseline": shards["1"],
            "min_shards_per_rank": min(shards.values()), "goal_per_rank": 10_000_000,
            "on_the_fly_ratio": round(fly["64"] / fly["1"], 3), "seq_len": SEQ_LEN,
            "shards_rounds_tokens_per_s": {str(w): [round(x) for x in v] for w, v in samples.items()},
            "measured_blocks": {"shards": blocks, "shards_chunk": chunk, "on_the_fly": fly_blocks},
            "rounds": {"shards": rounds, "on_the_fly": fly_rounds}, "stream_blocks": total_blocks,
            "source_epochs_over_stream": epochs, "rank": "last (W-1)", "load_average_1min": os.getloadavg()[0]}


def tokenize_throughput(megabytes: float, repeats: int) -> dict:
    import pyarrow.parquet as pq

    from smollm2_recipes import assets
    from smollm2_recipes.data.stages import DataArguments
    from smollm2_recipes.runkit import load_tokenizer
    from smollm2_recipes.data.shards import tokenize_recipe

    tokenizer = load_tokenizer("embedded:smollm2-tokenizer")
    texts = []
    for name in ("web", "code", "math"):
        texts += pq.read_table(Path(assets.resolve(f"embedded:corpus/{name}")) / "train.parquet", columns=["text"]).column(0).to_pylist()
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        written = 0
        with open(corpus, "w") as f:
            while written < megabytes * 1e6:
                for t in texts:
                    line = json.dumps({"text": t}) + "\n"
                    f.write(line)
                    written += len(line)
        args = DataArguments(seq_len=SEQ_LEN, stages=[{"name": "s", "tokens": SEQ_LEN, "sources": [{"name": "corpus", "path": str(corpus)}]}])
        rates = {"single": 0.0, "workers2": 0.0}
        for repeat in range(repeats):  # alternated, best of each: the machine is shared
            for label, tasks in (("single", 1), ("workers2", 2)):
                start = time.perf_counter()
                manifest = tokenize_recipe(args, Path(tmp) / f"{label}{repeat}", tokenizer, tasks=tasks, workers=tasks)
                seconds = time.perf_counter() - start
                rates[label] = max(rates[label], manifest["sources"]["corpus"]["train"]["tokens"] / seconds)
        tokens = manifest["sources"]["corpus"]["train"]["tokens"]
    return {"name": "tokenize_throughput", "ours": round(rates["workers2"]), "baseline": round(rates["single"]),
            "ratio": round(rates["workers2"] / rates["single"], 3), "goal": 1.5, "unit": "tokens/s",
            "ours_is": "datatrove local executor, 2 workers x 2 tasks", "baseline_is": "the same pipeline, 1 task in 1 process",
            "tokens": tokens, "repeats": repeats, "cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=256, help="timed blocks per rank and round with shards")
    parser.add_argument("--chunk", type=int, default=8, help="consecutive own blocks per chunk (after 1 untimed)")
    parser.add_argument("--rounds", type=int, default=7, help="timed rounds with shards (median kept), after 1 warm-up round")
    parser.add_argument("--fly_blocks", type=int, default=16, help="timed blocks per rank on the fly (after 4 warm-up)")
    parser.add_argument("--fly_rounds", type=int, default=3)
    parser.add_argument("--tokenize_mb", type=float, default=12)
    parser.add_argument("--tokenize_repeats", type=int, default=2, help="alternated tokenize runs per setting (best kept)")
    args = parser.parse_args()
    from loguru import logger

    logger.remove()  # datatrove's per-task logs would bury the two result lines
    print(json.dumps(tokenize_throughput(args.tokenize_mb, args.tokenize_repeats)), flush=True)
    print(json.dumps(stream_scaling(args.blocks, args.chunk, args.rounds, args.fly_blocks, args.fly_rounds)), flush=True)


if __name__ == "__main__":
    main()
