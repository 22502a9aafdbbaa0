"""`smollm2 eval compare`: the paired comparison of two `smollm2 eval` folders scored on the same problems."""

import json
import shutil

import pytest

from smollm2_recipes.cli import run
from smollm2_recipes.errors import UserError
from smollm2_recipes.evaluation.compare import compare
from smollm2_recipes.evaluation.paired_bootstrap import paired_bootstrap_ci


@pytest.fixture(scope="module")
def arith_eval(micro_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "first"
    assert run("eval", [micro_model_dir, "--tasks", "arith", "--arith_n", "8", "--seed", "0", "--output_dir", str(out)]) == 0
    return out


def _with_outcomes(source, target, outcomes, **metrics):
    """A copy of a real eval folder whose per-problem outcomes (and metrics) are replaced."""
    shutil.copytree(source, target)
    details = json.loads((target / "details" / "arith.json").read_text())
    (target / "details" / "arith.json").write_text(json.dumps({**details, "correct_per_problem": outcomes}))
    results = json.loads((target / "results.json").read_text())
    results["tasks"]["arith"].update(metrics)
    (target / "results.json").write_text(json.dumps(results))
    return target


def test_compare_pairs_the_two_folders_problems(arith_eval, tmp_path, capsys):
    first = [0, 1, 0, 0, 1, 0, 0, 0]
    second = [1, 1, 1, 0, 0, 1, 0, 0]
    a = _with_outcomes(arith_eval, tmp_path / "a", first)
    b = _with_outcomes(arith_eval, tmp_path / "b", second)
    assert run("eval compare", [str(a), str(b)]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # the last line is JSON
    expected = paired_bootstrap_ci(first, second)
    assert printed["n"] == 8 and (printed["up"], printed["down"]) == (3, 1)
    assert printed["gain"] == pytest.approx(0.25) and printed["gain_ci95"] == pytest.approx(expected["ci"])
    assert printed["problems_to_resolve_gain"] > 8 and 0 < printed["resolvable_gain"] < 1


def test_a_model_compared_with_itself_gains_nothing(arith_eval):
    result = compare(arith_eval, arith_eval, "arith")
    assert result["n"] == 8 and result["gain"] == 0 and result["gain_ci95"] == [0.0, 0.0]
    assert result["problems_to_resolve_gain"] is None


def test_different_problems_are_refused(arith_eval, tmp_path):
    other_seed = _with_outcomes(arith_eval, tmp_path / "seed1", [0] * 8, seed=1)
    with pytest.raises(UserError, match=r"different arith problems \(seed, n\): \(0, 8\) and \(1, 8\)"):
        compare(arith_eval, other_seed, "arith")
    with pytest.raises(UserError, match="no 'humaneval' result; it has: arith"):
        compare(arith_eval, arith_eval, "humaneval")
