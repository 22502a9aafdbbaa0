"""HumanEval: the sandbox refuses what it must and times out loops; the harness passes the reference
solutions and fails wrong ones; a tiny model runs end to end."""

from smollm2_recipes.evaluation import humaneval
from smollm2_recipes.evaluation.sandbox import run_program


def test_sandbox_runs_code_and_counts_failures(tmp_path):
    target = tmp_path / "escaped.txt"
    assert run_program("assert sum(range(4)) == 6").passed
    assert run_program("assert 1 == 2").status == "failed"
    loop = run_program("while True:\n    pass", timeout=1.5)
    assert loop.status == "timeout" and not loop.passed
    escape = run_program(f"open({str(target)!r}, 'w').write('x')")
    assert escape.status == "failed" and "PermissionError" in escape.detail and not target.exists()
    assert run_program(f"import os\nos.system('touch {target}')").status == "failed" and not target.exists()
    assert run_program("open('scratch.txt', 'w').write('ok')\nassert open('scratch.txt').read() == 'ok'").passed


def test_reference_solutions_pass_and_wrong_ones_fail():
    problems = humaneval.load_problems()[:4]
    assert len(humaneval.load_problems()) == 164
    for p in problems:
        assert run_program(humaneval.program(p, p["canonical_solution"])).passed, p["task_id"]
        assert not run_program(humaneval.program(p, "    return None\n")).passed, p["task_id"]
    # chat mode: the answer's code block, with a full definition, replaces the prompt's stub
    p = problems[0]
    answer = f"Sure!\n```python\n{p['prompt']}{p['canonical_solution']}```\nThis works because..."
    assert run_program(humaneval.program(p, answer, chat=True)).passed


def test_humaneval_end_to_end_on_a_tiny_model(micro_model_dir):
    from smollm2_recipes.models import load_pretrained

    model, tokenizer = load_pretrained(micro_model_dir, dtype="float32")
    result = humaneval.evaluate_humaneval(model, tokenizer, limit=3, max_new_tokens=8, batch_size=2, timeout=3, progress=False)
    assert result["n"] == 3 and result["pass@1"] == result["passed"] / 3
    assert [s["task_id"] for s in result["samples"]] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert result["chat_template"] is True  # the micro model carries the instruct tokenizer's template
    assert all(s["status"] in ("passed", "failed", "timeout") for s in result["samples"])


def test_base_model_completes_the_prompt(base_tokenizer_path):
    from transformers import AutoTokenizer

    from smollm2_recipes.models import build_model

    tokenizer = AutoTokenizer.from_pretrained(base_tokenizer_path)
    model = build_model("micro", seed=1)
    assert tokenizer.pad_token is None and not tokenizer.chat_template
    result = humaneval.evaluate_humaneval(model, tokenizer, limit=2, max_new_tokens=6, batch_size=2, timeout=3, progress=False)
    assert result["chat_template"] is False and result["n"] == 2
    for sample in result["samples"]:  # completion mode: cut at the first stop sequence
        assert not any(stop in sample["completion"] for stop in humaneval.STOPS)
    assert tokenizer.pad_token is None and tokenizer.padding_side == "right"  # left as found
