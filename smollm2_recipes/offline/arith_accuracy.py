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
from smollm2_recipes.evaluation.generation import eval_mode as _eval_mode
from smollm2_recipes.evaluation.generation import generate_retiring
from smollm2_recipes.offline import arith_problems
from smollm2_recipes.runkit.files import write_json_atomic


def generate(model, tokenizer, prompts: list[list[dict]], batch_size: int = 32, max_new_tokens: int = 96,
             do_sample: bool = False, temperature: float = 1.0, num_return_sequences: int = 1,
             progress: str | None = None) -> list[list[str]]:
    """Completions for chat prompts, `num_return_sequences` per prompt, in left-padded batches of `batch_size`
    prompts of similar length; a row leaves its batch at the tokenizer's eos (<|im_end|> for the instruct
    template)."""
    from tqdm.auto import tqdm

    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    outputs: list[list[str]] = [[] for _ in texts]
    kwargs = {"do_sample": do_sample, "pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id}
    if do_sample:
        kwargs.update(temperature=temperature, top_p=1.0, top_k=0)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    try:
        with _eval_mode(model):
            batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
            for ids in tqdm(batches, desc=progress or "generating", disable=progress is None):
                rows = [texts[i] for i in ids for _ in range(num_return_sequences)]
                batch = tokenizer(rows, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
                decoded = tokenizer.batch_decode(generate_retiring(model, tokenizer, batch, max_new_tokens, **kwargs),
                                                 skip_special_tokens=True)
                for k, i in enumerate(ids):
                    outputs[i] = [d.strip() for d in decoded[k * num_return_sequences:(k + 1) * num_return_sequences]]
    finally:
        tokenizer.padding_side = side
    return outputs


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
