"""Training throughput of `smollm2 pretrain`'s path (transformers Trainer + PretrainTrainer: stream tracking, token
ledger, spike guard, logging) against a bare PyTorch loop (AdamW, clip 1.0, the same autocast) on the same model,
batch, sequence, dtype and data, in one process. Last line: one JSON object.

    python benchmarks/bench_pretrain.py                      # 135M, batch 8 x 512, bf16 autocast: ours vs bare loop
    python benchmarks/bench_pretrain.py --bf16-speedup       # ours in bf16 autocast vs ours in fp32 (goal >= 1.8x)
    python benchmarks/bench_pretrain.py --model tiny --steps 8   # a quick run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

_ENV = {"MALLOC_MMAP_THRESHOLD_": "10000000000", "MALLOC_TRIM_THRESHOLD_": "10000000000",
        "MALLOC_TOP_PAD_": "1000000000", "TOKENIZERS_PARALLELISM": "false"}
if __name__ == "__main__" and any(k not in os.environ for k in _ENV):
    # glibc reads its malloc settings at process start (mallopt(3); measured here: they speed CPU training 20-30%)
    os.execve(sys.executable, [sys.executable, *sys.argv], {**_ENV, **os.environ})

import torch  # noqa: E402

WEB = [{"name": "web", "path": "embedded:corpus/web", "weight": 0.8}, {"name": "code", "path": "embedded:corpus/code", "weight": 0.2}]


class FixedBlocks(torch.utils.data.IterableDataset):
    """The same pre-built blocks for both loops, resumable (so the Trainer path runs exactly as in training)."""

    def __init__(self, blocks):
        self.blocks, self.i = blocks, 0

    def __iter__(self):
        while True:
            yield self.blocks[self.i % len(self.blocks)]
            self.i += 1

    def state_dict(self):
        return {"i": self.i}

    def load_state_dict(self, state):
        self.i = state["i"]


def make_blocks(seq: int, n: int):
    from smollm2_recipes.data.stages import DataArguments
    from smollm2_recipes.data.mixture import build_stream

    args = DataArguments(seq_len=seq, stages=[{"name": "s", "tokens": seq * n, "sources": WEB}])
    return list(build_stream(args))


def ours(model_name: str, blocks, batch: int, seq: int, steps: int, bf16: bool, workdir: str) -> list[float]:
    """tokens/s of each optimiser step through run_pretrain."""
    from smollm2_recipes.recipe_parsing import parse
    from smollm2_recipes.data.stages import DataArguments
    from smollm2_recipes.training.pretrain_config import ModelArguments, PretrainConfig
    from smollm2_recipes.training.pretrain import run_pretrain

    out = os.path.join(workdir, f"ours-{'bf16' if bf16 else 'fp32'}")
    argv = ["--model", model_name, "--seq_len", str(seq), "--output_dir", out, "--max_steps", str(steps),
            "--per_device_train_batch_size", str(batch), "--global_batch_tokens", str(batch * seq),
            "--warmup_steps", "1", "--lr_scheduler_kwargs", '{"num_decay_steps": 1}', "--save_steps", "100000",
            "--logging_steps", "1", "--report_to", "none", "--disable_tqdm", "true", "--bf16", str(bf16).lower(),
            "--mfu_peak_tflops", "1", "--learning_rate", "3e-3"]
    config, model_args, data_args = parse([PretrainConfig, ModelArguments, DataArguments], argv, recipe_required=False)
    import contextlib

    with contextlib.redirect_stdout(sys.stderr):  # the Trainer's log lines; stdout carries the result only
        run_pretrain(config, model_args, data_args, stream_factory=lambda _: FixedBlocks(blocks))
    hist = [json.loads(line) for line in open(os.path.join(out, "log_history.jsonl"))]
    return [h["tokens_per_second"] for h in hist if "tokens_per_second" in h]


def bare(model_name: str, blocks, batch: int, seq: int, steps: int, bf16: bool) -> list[float]:
    """The same optimisation written as the shortest PyTorch loop."""
    from transformers import AutoTokenizer

    from smollm2_recipes.assets import resolve
    from smollm2_recipes.models import build_model

    tok = AutoTokenizer.from_pretrained(resolve("embedded:smollm2-tokenizer"))
    model = build_model(model_name, seed=0, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, attn_implementation="sdpa")
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    rest = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}],
                            lr=3e-3, betas=(0.9, 0.95), eps=1e-8)
    rates, i = [], 0
    for _ in range(steps):
        t = time.perf_counter()
        chunk = [blocks[(i + k) % len(blocks)] for k in range(batch)]
        i += batch
        ids = torch.stack([b["input_ids"] for b in chunk])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        float(loss)
        rates.append(batch * seq / (time.perf_counter() - t))
    return rates


def steady(rates: list[float], warmup: int) -> float:
    return statistics.median(rates[warmup:] or rates)


def side(args, which: str, bf16: bool) -> float:
    """One side in its own process, so each starts from the same clean memory (and a 135M run does not keep the
    other side's allocations: the malloc settings above never hand memory back)."""
    import subprocess

    cmd = [sys.executable, __file__, "--side", which, "--model", args.model, "--batch", str(args.batch), "--seq", str(args.seq),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--dtype", "bf16" if bf16 else "fp32"]
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["tokens_per_second"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="135M")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--steps", type=int, default=6, help="optimiser steps per side (the first `--warmup` are not counted)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    parser.add_argument("--bf16-speedup", action="store_true", help="compare our path in bf16 autocast against fp32")
    parser.add_argument("--repeats", type=int, default=2, help="alternate the sides this many times; the best run of each counts "
                        "(a shared machine's load only ever slows a run down)")
    parser.add_argument("--side", choices=["ours", "bare"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.side:  # a child: measure one side, print its rate
        torch.manual_seed(0)
        blocks = make_blocks(args.seq, max(args.batch * 4, 16))
        bf16 = args.dtype == "bf16"
        with tempfile.TemporaryDirectory() as workdir:
            rates = (ours(args.model, blocks, args.batch, args.seq, args.steps, bf16, workdir) if args.side == "ours"
                     else bare(args.model, blocks, args.batch, args.seq, args.steps, bf16))
        print(json.dumps({"tokens_per_second": steady(rates, args.warmup), "per_step": [round(r, 1) for r in rates]}))
        return 0
    if args.bf16_speedup:
        runs = [(side(args, "ours", True), side(args, "ours", False)) for _ in range(args.repeats)]
        fast, slow = max(r[0] for r in runs), max(r[1] for r in runs)
        result = {"name": "pretrain_bf16_autocast_vs_fp32", "ours": round(fast, 1), "baseline": round(slow, 1),
                  "ratio": round(fast / slow, 3), "goal": 1.8, "unit": "tokens/s"}
    else:
        bf16 = args.dtype == "bf16"
        runs = [(side(args, "bare", bf16), side(args, "ours", bf16)) for _ in range(args.repeats)]
        base, mine = max(r[0] for r in runs), max(r[1] for r in runs)
        result = {"name": "pretrain_trainer_vs_bare_loop", "ours": round(mine, 1), "baseline": round(base, 1),
                  "ratio": round(mine / base, 3), "goal": 0.95, "unit": "tokens/s"}
    result.update(repeats=args.repeats, model=args.model, batch=args.batch, seq=args.seq, steps=args.steps, counted_from_step=args.warmup + 1,
                  dtype=("bf16-vs-fp32" if args.bf16_speedup else args.dtype), threads=torch.get_num_threads(),
                  load_average=round(os.getloadavg()[0], 2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
