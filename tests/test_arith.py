"""The arithmetic word-problem generator and its verifier (smollm2_recipes/data/arith_problems.py)."""

import random

from smollm2_recipes.offline import arith_problems


def test_solutions_are_verified_and_steps_are_true_arithmetic():
    for p in arith_problems.train_problems(300, seed=3):
        assert arith_problems.check_answer(p.solution, p.answer)
        assert 2 <= len(p.steps) <= 3
        for step in p.steps:  # every "a op b = c." in the working is correct
            for eq in step.rstrip(".").split(". "):
                lhs, rhs = eq.split(" = ")
                assert eval(lhs.replace("/", "//")) == int(rhs), eq


def test_heldout_is_disjoint_from_training_and_deterministic():
    held = arith_problems.heldout(250, seed=0)
    assert len({p.question for p in held}) == 250
    assert [p.question for p in held] == [p.question for p in arith_problems.heldout(250, seed=0)]
    train = {p.question for p in arith_problems.train_problems(3000, seed=0)} | {r["prompt"][0]["content"] for r in arith_problems.preference_rows(500)}
    assert not train & {p.question for p in held}


def test_checker_reads_the_final_answer():
    assert arith_problems.extract_answer("3 + 4 = 7.\nThe answer is 7.") == 7
    assert arith_problems.extract_answer("so 12 - 2 = 10, the answer is 1,024") == 1024
    assert arith_problems.extract_answer("maybe 5 or 6") == 6  # no 'answer is': the last number
    assert arith_problems.extract_answer("no idea") is None
    assert not arith_problems.check_answer("The answer is 8.", 7)


def test_preference_rows_pair_a_correct_and_a_wrong_solution():
    rows = arith_problems.preference_rows(50, seed=1)
    held = {p.question: p.answer for p in arith_problems.train_problems(50, 1 + 1_000_003)}
    for row in rows:
        answer = held[row["prompt"][0]["content"]]
        assert arith_problems.check_answer(row["chosen"][0]["content"], answer)
        assert not arith_problems.check_answer(row["rejected"][0]["content"], answer)
        assert row["chosen"] != row["rejected"]


def test_sft_rows_are_chat_rows_ending_with_the_assistant():
    rows = arith_problems.sft_rows(20, seed=5)
    assert all([m["role"] for m in r["messages"]] == ["user", "assistant"] for r in rows)
    assert arith_problems.corrupt_solution(arith_problems.train_problems(1)[0], random.Random(0)) != arith_problems.train_problems(1)[0].solution


def test_accuracy_callback_scores_the_starting_model_on_its_own_count(micro_model_dir, tmp_path):
    """arith_eval_before_samples: fewer problems for the starting model (it rambles to max_new_tokens), the full
    count for the trained one, both kept in arith_eval.json in problem order."""
    import json

    from smollm2_recipes.models import load_pretrained
    from smollm2_recipes.offline.arith_accuracy import ArithEvalArguments

    model, tokenizer = load_pretrained(micro_model_dir, dtype="float32")
    callback = ArithEvalArguments(arith_eval_samples=5, arith_eval_before_samples=2).callback("sft", str(tmp_path))
    callback.measure(model, tokenizer, "before_sft")
    callback.measure(model, tokenizer, "after_sft")
    results = json.loads((tmp_path / "arith_eval.json").read_text())
    assert [results["before_sft"]["n"], results["after_sft"]["n"]] == [2, 5]
    questions = [s["question"] for s in results["after_sft"]["samples"]]
    assert [s["question"] for s in results["before_sft"]["samples"]] == questions[:2]  # the same first problems


def test_greedy_onpolicy_pairs_reject_the_answer_an_evaluation_would_score(instruct_model_path, tmp_path):
    """temperature 0: one greedy answer per problem, the same on every call, and it is the rejected side of
    each pair (SmolLM2-135M-Instruct before SFT gets none right in 16 tokens: every chosen is the reference)."""
    import pytest

    from smollm2_recipes.errors import UserError
    from smollm2_recipes.models import load_pretrained
    from smollm2_recipes.offline.arith_accuracy import generate
    from smollm2_recipes.offline.onpolicy_pairs import onpolicy_pairs

    model, tokenizer = load_pretrained(instruct_model_path, dtype="float32")
    kwargs = {"samples_per_prompt": 1, "temperature": 0, "max_new_tokens": 16}
    first = onpolicy_pairs(model, tokenizer, 3, seed=1, out_dir=str(tmp_path), **kwargs)
    assert first == onpolicy_pairs(model, tokenizer, 3, seed=1, **kwargs)  # greedy: the same answers every time
    problems = arith_problems.train_problems(3, 1 + 7_919)
    greedy = generate(model, tokenizer, [[{"role": "user", "content": p.question}] for p in problems], max_new_tokens=16)
    answers = [g[0] for g in greedy]
    assert all(answers) and not any(arith_problems.check_answer(a, p.answer) for a, p in zip(answers, problems))
    assert [row["rejected"][0]["content"] for row in first] == answers
    assert [row["chosen"][0]["content"] for row in first] == [p.solution for p in problems]
    assert (tmp_path / "onpolicy_pairs.jsonl").is_file()
    with pytest.raises(UserError, match="temperature 0 .greedy. gives one answer per problem: set samples_per_prompt to 1, not 2"):
        onpolicy_pairs(model, tokenizer, 3, samples_per_prompt=2, temperature=0)
    with pytest.raises(UserError, match="temperature must be a number >= 0"):
        onpolicy_pairs(model, tokenizer, 3, temperature=-0.5)
