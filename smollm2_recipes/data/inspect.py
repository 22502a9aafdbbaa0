"""`smollm2 data inspect RECIPE [--stage NAME] [--tokens N] [--json]`: run each stage's mixture for N
tokens (default 1M, at most the stage's budget) and report, per source, the configured weight, the
observed token share, documents, epochs, and what was repaired or skipped; per stage, the padding
tokens (always 0 for pretraining packing, counted rather than assumed) and tokens/s.

Each stage is inspected from a fresh start of its sources (in a real run a source continues its
epoch from the previous stage), which is what the shares and throughput depend on.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

from smollm2_recipes.data.stages import data_args_from_recipe
from smollm2_recipes.errors import UserError
from smollm2_recipes.runkit.parsing import ArgumentParser

DEFAULT_TOKENS = 1_000_000


def inspect_stage(data_args, stage, tokenizer, tokens: int, progress: bool = True) -> dict:
    from tqdm.auto import tqdm

    from smollm2_recipes.data.mixture import PretrainStream

    budget = max(data_args.seq_len, min(tokens, stage.tokens))
    stream = PretrainStream(data_args, tokenizer, stages=[replace(stage, tokens=budget)])
    padding = 0
    start = time.perf_counter()
    for _, _, block in tqdm(stream.iter_blocks(), total=stream.total_blocks, desc=stage.name, unit="block", disable=not progress):
        padding += data_args.seq_len - len(block)
    elapsed = time.perf_counter() - start
    stats = stream.stats()
    total = sum(s["tokens"] for s in stats.values()) or 1
    weights = stage.weights()
    sources = []
    for spec in stage.sources:
        s = stats[spec.name]
        handled = {k: s.get(k, 0) for k in ("invalid_utf8", "long_documents", "empty_documents", "short_documents")}
        sources.append({"name": spec.name, "weight": round(weights[spec.name], 6), "observed_share": round(s["tokens"] / total, 6),
                        "tokens": s["tokens"], "documents": s["documents"], "epochs": s["epochs"], "handled": handled})
    return {"name": stage.name, "sources": sources, "padding_tokens": int(padding),
            "tokens_per_second": round(total / elapsed, 1) if elapsed > 0 else None}


def inspect_recipe(recipe: str, stage: str | None = None, tokens: int = DEFAULT_TOKENS, progress: bool = True, **overrides) -> dict:
    from smollm2_recipes.runkit import load_tokenizer

    if tokens < 1:
        raise UserError(f"--tokens {tokens} must be >= 1.")
    data_args = data_args_from_recipe(recipe, **overrides)
    stages = [data_args.stage(stage)] if stage is not None else data_args.stage_specs
    tokenizer = load_tokenizer(data_args.tokenizer_name)
    return {"stages": [inspect_stage(data_args, s, tokenizer, tokens, progress) for s in stages]}


def format_report(report: dict) -> str:
    lines = []
    for st in report["stages"]:
        lines.append(f"stage {st['name']}: padding tokens {st['padding_tokens']}, {st['tokens_per_second']:,.0f} tokens/s")
        lines.append(f"  {'source':<18} {'weight':>7} {'observed':>9} {'tokens':>12} {'docs':>8} {'epochs':>8}  handled")
        for s in st["sources"]:
            handled = ", ".join(f"{k}={v}" for k, v in s["handled"].items() if v) or "-"
            lines.append(f"  {s['name']:<18} {s['weight']:>7.3f} {s['observed_share']:>9.4f} {s['tokens']:>12,} "
                         f"{s['documents']:>8,} {s['epochs']:>8.3f}  {handled}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="smollm2 data inspect", description="Observed token shares, epochs and throughput of a recipe's mixture.")
    parser.add_argument("recipe")
    parser.add_argument("--stage", default=None, help="inspect only this stage")
    parser.add_argument("--tokens", type=float, default=DEFAULT_TOKENS, help="tokens per stage (default 1M, capped at the stage budget)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--shards_dir", default=None, help="read datatrove shards written by `smollm2 data tokenize` instead of tokenising")
    parser.add_argument("--seq_len", type=int, default=None)
    parser.add_argument("--tokenizer_name", default=None, help="override the recipe's tokenizer (e.g. embedded:smollm2-tokenizer)")
    args = parser.parse_args(argv)
    report = inspect_recipe(args.recipe, args.stage, int(args.tokens), progress=not args.json,
                            shards_dir=args.shards_dir, seq_len=args.seq_len, tokenizer_name=args.tokenizer_name)
    print(json.dumps(report) if args.json else format_report(report))
    return 0
