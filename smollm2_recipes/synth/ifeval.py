"""IFEval-style verifiable constraints: each has an instruction text, a checker, and a sampler.

Names follow IFEval's instruction ids (google-research/instruction_following_eval) so the data speaks the
benchmark's language. `sample_constraints` draws a compatible set for a prompt; `check_all` says whether a
response satisfies every one (Smol-constraints keeps a row only when it does).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Any, Callable

from smollm2_recipes.errors import UserError

WORDS = ["summary", "example", "important", "simple", "history", "future", "science", "nature", "team", "data"]
ENDINGS = ["Is there anything else I can help with?", "Hope this helps.", "That is all."]


def _words(text: str) -> list[str]:
    return re.findall(r"\b\w+\b", text)


def _bullets(text: str) -> int:
    return len(re.findall(r"^\s*[\*\-]\s", text, flags=re.MULTILINE))


def _is_json(text: str) -> bool:
    body = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    try:
        json.loads(body)
        return True
    except ValueError:
        return False


@dataclass(frozen=True)
class Constraint:
    id: str
    describe: Callable[[dict], str]
    check: Callable[[str, dict], bool]
    sample: Callable[[random.Random], dict]
    group: str  # at most one constraint per group (two length rules or two case rules would conflict)


CONSTRAINTS: dict[str, Constraint] = {c.id: c for c in [
    Constraint("length_constraints:number_words",
               lambda k: f"Answer with {k['relation']} {k['num_words']} words.",
               lambda r, k: (len(_words(r)) >= k["num_words"]) if k["relation"] == "at least" else (len(_words(r)) < k["num_words"]),
               lambda rng: {"relation": rng.choice(["at least", "less than"]), "num_words": rng.choice([5, 10, 20, 40])}, "length"),
    Constraint("detectable_format:number_bullet_lists",
               lambda k: f"Your answer must contain exactly {k['num_bullets']} bullet points, using markdown bullets such as:\n* point one",
               lambda r, k: _bullets(r) == k["num_bullets"],
               lambda rng: {"num_bullets": rng.choice([2, 3, 4])}, "format"),
    Constraint("change_case:english_lowercase",
               lambda k: "Your entire response must be in lowercase letters; no capital letters are allowed.",
               lambda r, k: bool(r.strip()) and r == r.lower(),
               lambda rng: {}, "case"),
    Constraint("change_case:english_capital",
               lambda k: "Your entire response must be in English, in capital letters only.",
               lambda r, k: bool(r.strip()) and r == r.upper(),
               lambda rng: {}, "case"),
    Constraint("keywords:existence",
               lambda k: f"Include the keywords {', '.join(repr(w) for w in k['keywords'])} in the response.",
               lambda r, k: all(re.search(rf"\b{re.escape(w)}\b", r, flags=re.I) for w in k["keywords"]),
               lambda rng: {"keywords": rng.sample(WORDS, 2)}, "keywords"),
    Constraint("keywords:forbidden_words",
               lambda k: f"Do not include the words {', '.join(repr(w) for w in k['forbidden_words'])} in the response.",
               lambda r, k: not any(re.search(rf"\b{re.escape(w)}\b", r, flags=re.I) for w in k["forbidden_words"]),
               lambda rng: {"forbidden_words": rng.sample(WORDS, 2)}, "keywords"),
    Constraint("punctuation:no_comma",
               lambda k: "In your entire response, refrain from the use of any commas.",
               lambda r, k: bool(r.strip()) and "," not in r,
               lambda rng: {}, "punctuation"),
    Constraint("startend:end_checker",
               lambda k: f"Finish your response with this exact phrase: {k['end_phrase']} No other words should follow it.",
               lambda r, k: r.strip().endswith(k["end_phrase"]),
               lambda rng: {"end_phrase": rng.choice(ENDINGS)}, "end"),
    Constraint("startend:quotation",
               lambda k: "Wrap your entire response with double quotation marks.",
               lambda r, k: len(r.strip()) > 1 and r.strip()[0] == '"' and r.strip()[-1] == '"',
               lambda rng: {}, "end"),
    Constraint("detectable_format:title",
               lambda k: "Your answer must contain a title, wrapped in double angular brackets, such as <<poem of joy>>.",
               lambda r, k: bool(re.search(r"<<[^\n]+>>", r)),
               lambda rng: {}, "title"),
    Constraint("detectable_format:json_format",
               lambda k: "Entire output should be wrapped in JSON format.",
               lambda r, k: _is_json(r),
               lambda rng: {}, "format"),
    Constraint("length_constraints:number_paragraphs",
               lambda k: f"There should be {k['num_paragraphs']} paragraphs. Paragraphs are separated with the markdown divider: ***",
               lambda r, k: len([p for p in re.split(r"\s?\*\*\*\s?", r) if p.strip()]) == k["num_paragraphs"] and r.count("***") == k["num_paragraphs"] - 1,
               lambda rng: {"num_paragraphs": rng.choice([2, 3])}, "length"),
]}


def sample_constraints(rng: random.Random, n: int = 1, allowed: list[str] | None = None) -> list[dict[str, Any]]:
    """Up to `n` constraints from different groups: [{"id": ..., "kwargs": {...}}]."""
    ids = allowed or list(CONSTRAINTS)
    for cid in ids:
        if cid not in CONSTRAINTS:
            raise UserError(f"Unknown constraint '{cid}'. Valid: {', '.join(CONSTRAINTS)}.")
    picked, groups = [], set()
    for cid in rng.sample(ids, len(ids)):
        c = CONSTRAINTS[cid]
        if c.group not in groups:
            picked.append({"id": cid, "kwargs": c.sample(rng)})
            groups.add(c.group)
        if len(picked) == n:
            break
    return picked


def describe(constraints: list[dict]) -> str:
    return " ".join(CONSTRAINTS[c["id"]].describe(c["kwargs"]) for c in constraints)


def check(response: str | None, constraint: dict) -> bool:
    if not response:
        return False
    return bool(CONSTRAINTS[constraint["id"]].check(response, constraint["kwargs"]))


def check_all(response: str | None, constraints: list[dict]) -> list[bool]:
    """One verdict per constraint (IFEval's strict, per-instruction accuracy)."""
    return [check(response, c) for c in constraints]
