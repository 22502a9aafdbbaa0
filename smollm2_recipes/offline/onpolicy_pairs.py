"""On-policy preference pairs for the arithmetic task: the model being trained answers each problem a
few times (sampling) or once (greedy, `temperature` 0), the verifier (`arith_problems.check_answer`) sorts
the answers, and a correct and a wrong one become chosen / rejected. Pairs come from the model's own
distribution, so DPO pushes on the mistakes it actually makes instead of on synthetic ones it would never
produce."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

from smollm2_recipes.errors import UserError
from smollm2_recipes.offline import arith_problems


SAMPLES_PER_PROMPT, TEMPERATURE, MAX_NEW_TOKENS = 4, 0.8, 96  # the defaults of both functions below


def check_options(samples_per_prompt=SAMPLES_PER_PROMPT, temperature=TEMPERATURE, max_new_tokens=MAX_NEW_TOKENS,
                  reference_fallback=True) -> None:
    """The `arith:onpolicy` source options, checked when the recipe is read (before any model loads)."""
    for key, value in (("samples_per_prompt", samples_per_prompt), ("max_new_tokens", max_new_tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"arith:onpolicy {key} must be an integer >= 1, got {value!r}.")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature >= 0:
        raise UserError(f"arith:onpolicy temperature must be a number >= 0 (0: the greedy answer), got {temperature!r}.")
    if temperature == 0 and samples_per_prompt != 1:
        raise UserError(f"arith:onpolicy with temperature 0 (greedy) gives one answer per problem: set samples_per_prompt "
                        f"to 1, not {samples_per_prompt}.")
    if not isinstance(reference_fallback, bool):
        raise UserError(f"arith:onpolicy reference_fallback must be true or false, got {reference_fallback!r}.")


def onpolicy_pairs(model, tokenizer, n: int, seed: int = 0, out_dir: str | None = None,
                   samples_per_prompt: int = SAMPLES_PER_PROMPT, temperature: float = TEMPERATURE,
                   max_new_tokens: int = MAX_NEW_TOKENS, reference_fallback: bool = True, rows_per_batch: int = 64) -> list[dict]:
    """Pairs for up to n training problems. A problem the model always solves gives no pair; one it never
    solves pairs the reference solution (chosen) with a sampled mistake when `reference_fallback`.
    `temperature` 0 takes the model's greedy answer, the one an evaluation scores (one per problem)."""
    import torch

    from smollm2_recipes.offline.arith_accuracy import generate

    check_options(samples_per_prompt=samples_per_prompt, temperature=temperature, max_new_tokens=max_new_tokens,
                  reference_fallback=reference_fallback)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    problems = arith_problems.train_problems(n, seed + 7_919)
    prompts = [[{"role": "user", "content": p.question}] for p in problems]
    samples = generate(model, tokenizer, prompts, batch_size=max(1, rows_per_batch // samples_per_prompt),
                       max_new_tokens=max_new_tokens, do_sample=temperature > 0, temperature=temperature,
                       num_return_sequences=samples_per_prompt, progress="on-policy samples")
    rows, stats = [], Counter()
    for problem, outs in zip(problems, samples):
        good = [o for o in outs if arith_problems.check_answer(o, problem.answer)]
        bad = [o for o in outs if o and not arith_problems.check_answer(o, problem.answer)]
        stats["samples_correct"] += len(good)
        stats["samples"] += len(outs)
        if not bad:
            stats["all_correct"] += 1
            continue
        if good:
            chosen = rng.choice(good)
            stats["pairs_onpolicy"] += 1
        elif reference_fallback:
            chosen = problem.solution
            stats["pairs_reference_chosen"] += 1
        else:
            stats["all_wrong"] += 1
            continue
        rows.append({"prompt": [{"role": "user", "content": problem.question}],
                     "chosen": [{"role": "assistant", "content": chosen}],
                     "rejected": [{"role": "assistant", "content": rng.choice(bad)}]})
    print(f"on-policy pairs: {len(rows)} from {n} problems; sample accuracy "
          f"{stats['samples_correct'] / max(1, stats['samples']):.1%}; {dict(stats)}", flush=True)
    if out_dir:
        arith_problems.write_jsonl(rows, Path(out_dir) / "onpolicy_pairs.jsonl")
    return rows
