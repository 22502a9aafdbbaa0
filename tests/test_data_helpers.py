"""Shared helpers (no tests) for the data tests: small local sources with real text and the real SmolLM2 tokenizer."""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path

from smollm2_recipes.offline.corpus import math_problem


@functools.lru_cache(maxsize=1)
def tokenizer():
    from smollm2_recipes.runkit import load_tokenizer

    return load_tokenizer("embedded:smollm2-tokenizer")


def prose(seed: int, n: int, words: tuple[int, int] = (20, 400), marker: str = "") -> list[str]:
    """Documents of varied length built from the Python reference prose (pydoc_data.topics)."""
    import pydoc_data.topics

    vocab = " ".join(sorted(pydoc_data.topics.topics.values())[:10]).split()
    r = random.Random(seed)
    return [f"{marker}{i}: " + " ".join(r.choices(vocab, k=r.randint(*words))) for i in range(n)]


def maths(seed: int, n: int) -> list[str]:
    r = random.Random(seed)
    out = []
    while len(out) < n:
        doc = math_problem(r)
        if doc:
            out.append(doc)
    return out


def write_jsonl(path: Path, texts, column: str = "text") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for t in texts:
            f.write(json.dumps({column: t}) + "\n")
    return str(path)


def source(name: str, path: str, weight: float, **extra) -> dict:
    return {"name": name, "path": path, "weight": weight, **extra}
