"""Verified arithmetic word problems: the offline data behind the tiny SFT/DPO recipes.

Each problem is 2-3 steps on a running count ("Mia has 12 pens. She buys 3 boxes with 4 pens in each.
She gives away 5 pens. How many pens does Mia have now?"), built together with its step-by-step
solution, so every answer is known exactly and `check_answer` can verify any model output.

The problem space is split by a hash of the question text: held-out problems (`heldout`) can never
appear in the training rows (`sft_rows`, `preference_rows`), whatever seeds either side uses.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

NAMES = ["Mia", "Tom", "Ava", "Leo", "Zoe", "Sam", "Ivy", "Max", "Ella", "Ben", "Lily", "Noah", "Ruby", "Omar", "Nina", "Jack"]
ITEMS = ["apples", "pens", "stickers", "marbles", "books", "cookies", "cards", "shells", "coins", "stamps", "eggs", "beads"]
CONTAINERS = ["boxes", "bags", "packs", "jars", "crates"]
HELDOUT_BUCKETS = 10  # 1 in 10 questions (by hash) is reserved for evaluation
ANSWER_RE = re.compile(r"answer is\s*\$?\s*(-?\d[\d,]*)", re.IGNORECASE)
NUMBER_RE = re.compile(r"-?\d[\d,]*")


@dataclass
class Problem:
    question: str
    answer: int
    steps: list[str] = field(default_factory=list)  # one line of working per operation

    @property
    def solution(self) -> str:
        return "\n".join(self.steps + [f"The answer is {self.answer}."])

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.question}, {"role": "assistant", "content": self.solution}]


def _apply(rng: random.Random, name: str, item: str, x: int) -> tuple[str, str, int] | None:
    """One random operation on the running count x: (sentence, working line, new count), or None if the
    drawn operation does not fit x (e.g. giving away more than there is)."""
    kind = rng.choice(["add", "sub", "packs", "times", "share"])
    if kind == "add":
        b = rng.randint(2, 20)
        verb = rng.choice([f"buys {b} more {item}", f"finds {b} more {item}", f"gets {b} more {item} from a friend"])
        return f"{name} {verb}.", f"{x} + {b} = {x + b}.", x + b
    if kind == "sub":
        if x < 3:
            return None
        b = rng.randint(1, min(x - 1, 20))
        verb = rng.choice([f"gives away {b} {item}", f"loses {b} {item}", f"sells {b} {item}"])
        return f"{name} {verb}.", f"{x} - {b} = {x - b}.", x - b
    if kind == "packs":
        b, c = rng.randint(2, 6), rng.randint(2, 9)
        box = rng.choice(CONTAINERS)
        return (f"{name} buys {b} {box} with {c} {item} in each.", f"{b} * {c} = {b * c}. {x} + {b * c} = {x + b * c}.", x + b * c)
    if kind == "times":
        if x > 60:
            return None
        k, word = rng.choice([(2, "doubles"), (3, "triples")])
        return f"Then the number of {item} {name} has {word}.", f"{x} * {k} = {x * k}.", x * k
    divisors = [k for k in (2, 3, 4, 5) if x % k == 0 and x // k >= 2]
    if not divisors:
        return None
    k = rng.choice(divisors)
    return (f"{name} splits the {item} equally into {k} groups and keeps one group.", f"{x} / {k} = {x // k}.", x // k)


def make_problem(rng: random.Random) -> Problem:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    x = rng.randint(3, 40)
    sentences, steps = [f"{name} has {x} {item}."], []
    n_steps = rng.choice([2, 3])
    while len(steps) < n_steps:
        op = _apply(rng, name, item, x)
        if op is None:
            continue
        sentence, step, x = op
        sentences.append(sentence)
        steps.append(step)
    sentences.append(f"How many {item} does {name} have now?")
    return Problem(" ".join(sentences), x, steps)


def is_heldout(question: str) -> bool:
    return int(hashlib.md5(question.encode()).hexdigest(), 16) % HELDOUT_BUCKETS == 0


def _problems(n: int, seed: int, heldout_side: bool) -> list[Problem]:
    rng = random.Random(f"arith-{'heldout' if heldout_side else 'train'}-{seed}")
    seen: set[str] = set()
    out: list[Problem] = []
    while len(out) < n:
        p = make_problem(rng)
        if p.question in seen or is_heldout(p.question) != heldout_side:
            continue
        seen.add(p.question)
        out.append(p)
    return out


def train_problems(n: int, seed: int = 0) -> list[Problem]:
    return _problems(n, seed, heldout_side=False)


def heldout(n: int = 200, seed: int = 0) -> list[Problem]:
    """The evaluation set: distinct problems no training helper can produce."""
    return _problems(n, seed, heldout_side=True)


def extract_answer(text: str) -> int | None:
    """The model's final answer: the number after the last 'answer is', else the last number in the text."""
    found = ANSWER_RE.findall(text) or NUMBER_RE.findall(text)
    if not found:
        return None
    try:
        return int(found[-1].replace(",", ""))
    except ValueError:
        return None


def check_answer(text: str, answer: int) -> bool:
    return extract_answer(text) == answer


def sft_rows(n: int, seed: int = 0) -> list[dict]:
    """Chat-form SFT rows: {"messages": [user question, assistant solution]}."""
    return [{"messages": p.messages()} for p in train_problems(n, seed)]


def corrupt_solution(problem: Problem, rng: random.Random) -> str:
    """A plausible wrong solution: one step's result slips by a small amount and the error carries on."""
    delta = rng.choice([-3, -2, -1, 1, 2, 3])
    wrong_answer = problem.answer + delta
    steps = list(problem.steps)
    last = steps[-1]
    # Rewrite the final result of the last step so the working looks consistent up to the slip.
    head, _, _ = last.rpartition("= ")
    steps[-1] = f"{head}= {wrong_answer}."
    return "\n".join(steps + [f"The answer is {wrong_answer}."])


def preference_rows(n: int, seed: int = 0) -> list[dict]:
    """Offline preference pairs (prompt / chosen / rejected, conversational): chosen is the verified
    solution, rejected a solution with an arithmetic slip. On-policy pairs (the model's own samples,
    judged by `check_answer`) are built by smollm2_recipes.offline.onpolicy_pairs."""
    rng = random.Random(f"arith-pairs-{seed}")
    rows = []
    for p in train_problems(n, seed + 1_000_003):
        rows.append({
            "prompt": [{"role": "user", "content": p.question}],
            "chosen": [{"role": "assistant", "content": p.solution}],
            "rejected": [{"role": "assistant", "content": corrupt_solution(p, rng)}],
        })
    return rows


def write_jsonl(rows: list[dict], path: str | Path) -> Path:
    """Write rows atomically (temp name, then rename)."""
    from smollm2_recipes.runkit import write_atomic

    return write_atomic(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
