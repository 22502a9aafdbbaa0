"""Exact-match accuracy on held-out arithmetic word problems (smollm2_recipes.offline.arith_problems).

Batched greedy generation in fp32: on this CPU bf16 generation is slower and changes outputs, and
evaluation must be comparable across runs.

`ArithEvalArguments` are the recipe keys that turn it on during SFT/DPO (`arith_eval_samples: 200`); their
`callback()` is a transformers `TrainerCallback` that measures the starting and the trained model."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from transformers import TrainerCallback

from smollm2_recipes.errors import UserError
from smollm2_recipes.evaluation.generation import generate_sorted
from smollm2_recipes.offline import arith_problems
from smollm2_recipes.runkit.files import write_json_atomic


def generate(model, tokenizer, prompts: list[list[dict]], batch_size: int = 32, max_new_tokens: int = 96,
             do_sample: bool = False, temperature: float = 1.0, num_return_sequences: int = 1,
             progress: str | None = None) -> list[list[str]]:
    """Completions for chat prompts, `num_return_sequences` per prompt, in left-padded batches of `batch_size`
    prompts of similar length; a row leaves its batch at the tokenizer's eos (<|im_end|> for the instruct
    template)."""
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    if do_sample:
        sampling = {"do_sample": True, "temperature": temperature, "top_p": 1.0, "top_k": 0}
    else:
        sampling = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    outputs = generate_sorted(model, tokenizer, texts, max_new_tokens, batch_size, copies=num_return_sequences,
                              desc=progress, eos_token_id=tokenizer.eos_token_id, **sampling)
    return [[text.strip() for text in out] for out in outputs]


def evaluate_arith(model, tokenizer, n: int = 200, seed: int = 0, batch_size: int = 32, max_new_tokens: int = 80,
                   progress: bool = True) -> dict:
    """`max_new_tokens` 80: the longest reference solution of 500 held-out problems is 68 tokens.
    {"accuracy": exact-match share, "correct", "n", "seed", "correct_per_problem": 0/1 in problem order,
    "samples": first few (question, output, answer)}."""
    import torch

    torch.manual_seed(seed)
    problems = arith_problems.heldout(n, seed)
    prompts = [[{"role": "user", "content": p.question}] for p in problems]
    outputs = generate(model, tokenizer, prompts, batch_size, max_new_tokens, progress="arith eval" if progress else None)
    correct = [arith_problems.check_answer(o[0], p.answer) for o, p in zip(outputs, problems)]
    return {
        "accuracy": sum(correct) / len(problems),
        "correct": sum(correct),
        "n": len(problems),
        "seed": seed,
        "correct_per_problem": [int(c) for c in correct],  # for paired comparisons of two models on the same problems
        "samples": [{"question": p.question, "output": o[0], "answer": p.answer, "correct": c}
                    for p, o, c in list(zip(problems, outputs, correct))[:5]],
    }


@dataclass
class ArithEvalArguments:
    """Recipe keys of the arithmetic check (parsed next to the TRL config, not part of it)."""

    arith_eval_samples: int = field(default=0, metadata={"help": "if > 0, print exact-match accuracy on this many held-out "
                                    "arithmetic problems before and after training"})
    arith_eval_seed: int = field(default=0, metadata={"help": "seed of the held-out arithmetic problems"})
    arith_eval_before: bool = field(default=True, metadata={"help": "also evaluate the starting model"})
    arith_eval_before_samples: int = field(default=0, metadata={"help": "problems for the starting model (0: arith_eval_samples); "
                                           "fewer saves time when it rambles to max_new_tokens"})

    def __post_init__(self):
        for key in ("arith_eval_samples", "arith_eval_before_samples"):
            if getattr(self, key) < 0:
                raise UserError(f"{key} must be a number of problems >= 0 (0 = off / the same count), got {getattr(self, key)}.")

    def callback(self, stage: str, output_dir: str) -> TrainerCallback | None:
        return ArithAccuracyCallback(self, stage, output_dir) if self.arith_eval_samples else None


class ArithAccuracyCallback(TrainerCallback):
    """Accuracy of the starting model (`before_<stage>`, at the start of a fresh run) and of the trained one
    (`after_<stage>`, at the end), printed and kept in `output_dir/arith_eval.json`; on the main process only."""

    def __init__(self, args: ArithEvalArguments, stage: str, output_dir: str):
        self.args, self.stage, self.output_dir = args, stage, output_dir

    def on_train_begin(self, args, state, control, model=None, processing_class=None, **kwargs):
        if self.args.arith_eval_before and state.global_step == 0 and state.is_world_process_zero:
            self.measure(model, processing_class, f"before_{self.stage}")

    def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):
        if state.is_world_process_zero:
            self.measure(model, processing_class, f"after_{self.stage}")

    def measure(self, model, tokenizer, label: str) -> float:
        start = time.time()
        n = self.args.arith_eval_before_samples if label.startswith("before_") else 0
        result = evaluate_arith(model, tokenizer, n=n or self.args.arith_eval_samples, seed=self.args.arith_eval_seed, batch_size=100)
        result["wall_s"] = round(time.time() - start, 1)
        print(f"arith accuracy {label}: {result['accuracy']:.1%} ({result['correct']}/{result['n']}, {result['wall_s']}s)", flush=True)
        path = Path(self.output_dir) / "arith_eval.json"
        data = json.loads(path.read_text()) if path.exists() else {}
        data[label] = result
        write_json_atomic(path, data, indent=1)
        return result["accuracy"]
