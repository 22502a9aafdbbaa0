"""The embedded corpus: deterministic, held-out splits, checked maths, long documents of >= 8k real tokens."""

from __future__ import annotations

import ast
import hashlib
import random
import re
from fractions import Fraction

import pyarrow.parquet as pq
import pytest
from test_data_helpers import tokenizer

from smollm2_recipes import assets
from smollm2_recipes.offline import corpus


def read(name: str, split: str):
    return pq.read_table(corpus.corpus_path(name) / f"{split}.parquet").to_pylist()


def test_math_corpus_is_deterministic_with_a_disjoint_held_out_split():
    train, test = read("math", "train"), read("math", "test")
    assert len(train) + len(test) == corpus.MATH_DOCUMENTS
    assert 0.03 < len(test) / corpus.MATH_DOCUMENTS < 0.07
    assert not {r["id"] for r in train} & {r["id"] for r in test}
    assert all(corpus.is_held_out(r["id"]) for r in test) and not any(corpus.is_held_out(r["id"]) for r in train)
    rebuilt = dict(corpus.build_math())  # same generator seed -> the same documents, byte for byte
    assert all(rebuilt[r["id"]] == r["text"] for r in train[:2000] + test)
    assert len({r["text"] for r in train + test}) == corpus.MATH_DOCUMENTS  # no problem repeated


def _number(s: str) -> Fraction:
    s = s.strip().rstrip(".").replace("$", "").split()[0]
    return Fraction(s)


def test_math_solutions_are_step_by_step_and_answers_check_out():
    r = random.Random(123)
    kinds = set()
    for _ in range(400):
        doc = corpus.math_problem(r)
        if doc is None:
            continue
        problem, solution = doc.split("\n\nSolution:\n")
        steps = [l for l in solution.splitlines() if l.startswith("Step ")]
        answer = _number(doc.rsplit("Answer: ", 1)[1])
        assert steps and problem.startswith("Problem: ")
        kinds.add(problem.split()[1])
        # The answer is what the last computation step arrives at.
        last = steps[-1].rsplit("=", 1)[1] if "=" in steps[-1] else None
        if last is not None and not steps[-1].startswith("Step 3: Check"):
            assert _number(last.replace("hours", "").replace("cups", "").replace("square meters", "")) == answer, doc
        m = re.match(r"Problem: Solve for x: (\d+)x ([+-]) (\d+) = (-?\d+)\.", problem)
        if m:  # independent check: substitute the answer back into the equation
            a, sign, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
            assert a * answer + (b if sign == "+" else -b) == c
    assert len(kinds) >= 6


def test_web_and_code_are_real_standard_library_text():
    import pydoc_data.topics

    web = {r["id"]: r["text"] for r in read("web", "train") + read("web", "test")}
    assert web["topic:assert"] == pydoc_data.topics.topics["assert"].strip()
    assert any(k.startswith("docstrings:") for k in web) and len(web) > 300
    code = read("code", "train")
    assert len(code) > 300
    for row in code[:: max(1, len(code) // 15)]:
        ast.parse(row["text"])  # real, parseable Python
    digest = hashlib.sha256("".join(r["text"] for r in code).encode()).hexdigest()
    assert digest == hashlib.sha256("".join(t for i, t in corpus.build_code() if not corpus.is_held_out(i)).encode()).hexdigest()


@pytest.mark.slow
def test_long_documents_have_at_least_8k_real_tokens():
    rows = read("long", "train") + read("long", "test")
    assert len(rows) >= 40
    lengths = [len(e.ids) for e in tokenizer()._tokenizer.encode_batch_fast([r["text"] for r in rows[::7]], add_special_tokens=False)]
    assert min(lengths) >= corpus.LONG_MIN_TOKENS


def test_embedded_corpus_resolves_through_assets():
    assert assets.resolve("embedded:corpus/math") == str(corpus.corpus_path("math"))
    assert (corpus.corpus_path("math") / "test.parquet").is_file()


def test_corpus_build_without_names_builds_all_four(capsys):
    """`smollm2 corpus build` as the quickstart runs it: no names means all of them."""
    import json

    from smollm2_recipes import cli
    from smollm2_recipes.offline.corpus import NAMES

    assert cli.run("corpus build", ["--json"]) == 0
    assert sorted(json.loads(capsys.readouterr().out.strip().splitlines()[-1])) == sorted(NAMES)
    assert cli.run("corpus build", ["math", "--json"]) == 0
    assert list(json.loads(capsys.readouterr().out.strip().splitlines()[-1])) == ["math"]
