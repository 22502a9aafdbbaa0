"""Evaluation generation: rows that end leave the batch (`evaluation.generation.generate_retiring`) vs one
plain `generate` call per batch, on the same HumanEval chat prompts and the real SmolLM2-135M-Instruct.

A plain batch runs until its longest answer ends; on a CPU a decode step costs a fixed part (the weights
read) plus a part per row, so dropping ended rows saves time. Both paths are greedy and must give the same
answers (counted below). Goal: ours >= 1.3x the plain batches' problems/s.

    .venv/bin/python benchmarks/bench_generation.py [--problems 48] [--batch 32] [--max_new_tokens 160]

Last line: one JSON object {name, ours (problems/s), baseline (problems/s), ratio, goal, ...}.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=48, help="the first N HumanEval problems")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--max_new_tokens", type=int, default=160)
    ns = parser.parse_args(argv)

    import torch

    from smollm2_recipes.evaluation import humaneval
    from smollm2_recipes.evaluation.generation import RETIRE_EVERY, complete
    from smollm2_recipes.models import load_pretrained

    torch.manual_seed(0)
    model, tokenizer = load_pretrained("embedded:SmolLM2-135M-Instruct", dtype="float32")
    problems = humaneval.load_problems()[:ns.problems]
    prompts = [humaneval.build_prompt(p, tokenizer, True) for p in problems]
    timings, answers = {}, {}
    # the baseline is the same function making one generate call per batch (rows retire only at the cap)
    for name, retire_every in (("retiring", RETIRE_EVERY), ("plain", ns.max_new_tokens)):
        start = time.perf_counter()
        answers[name] = complete(model, tokenizer, prompts, humaneval.CHAT_STOPS, ns.max_new_tokens, ns.batch,
                                 name, False, retire_every)
        timings[name] = time.perf_counter() - start
        print(f"{name}: {timings[name]:.1f} s for {len(prompts)} problems", file=sys.stderr)
    same = sum(a == b for a, b in zip(answers["retiring"], answers["plain"]))
    ours, baseline = len(prompts) / timings["retiring"], len(prompts) / timings["plain"]
    print(json.dumps({
        "name": "generation_retiring_rows_problems_per_s", "ours": round(ours, 3), "baseline": round(baseline, 3),
        "ratio": round(ours / baseline, 3), "goal": 1.3, "meets_goal": ours / baseline >= 1.3,
        "same_answers": same, "problems": len(prompts), "batch": ns.batch, "max_new_tokens": ns.max_new_tokens,
        "seconds_retiring": round(timings["retiring"], 1), "seconds_plain": round(timings["plain"], 1),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
