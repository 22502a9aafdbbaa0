"""The paired bootstrap interval of a difference in accuracy (evaluation/paired_bootstrap.py)."""

import numpy as np
import pytest

from smollm2_recipes.errors import UserError
from smollm2_recipes.evaluation.paired_bootstrap import paired_bootstrap_ci


def test_interval_brackets_the_gain_and_is_seeded():
    rng = np.random.default_rng(1)
    first = (rng.random(500) < 0.4).astype(int).tolist()
    second = [max(a, int(b)) for a, b in zip(first, rng.random(500) < 0.1)]  # second solves all of first's and some more
    result = paired_bootstrap_ci(first, second, seed=3)
    lo, hi = result["ci"]
    assert result["n"] == 500 and result["gain"] == pytest.approx(np.mean(second) - np.mean(first))
    assert 0 < lo < result["gain"] < hi
    assert paired_bootstrap_ci(first, second, seed=3) == result
    assert result["seed"] == 3 and result["resamples"] == 10_000


def test_pairing_narrows_the_interval_of_shared_outcomes():
    first = [1, 0] * 250
    same = paired_bootstrap_ci(first, first)
    assert same["gain"] == 0 and same["ci"] == [0.0, 0.0]  # identical outcomes on every problem: no uncertainty
    flipped = paired_bootstrap_ci(first, [1 - x for x in first])
    assert flipped["ci"][0] < -0.05 < 0.05 < flipped["ci"][1]


def test_unequal_lists_are_refused():
    with pytest.raises(UserError, match="got 3 and 2"):
        paired_bootstrap_ci([1, 0, 1], [1, 0])


def test_arith_evaluation_keeps_each_problems_outcome_in_order(micro_model_dir):
    from smollm2_recipes.offline.arith_accuracy import evaluate_arith
    from smollm2_recipes.models import load_pretrained

    model, tokenizer = load_pretrained(micro_model_dir, dtype="float32")
    result = evaluate_arith(model, tokenizer, n=6, seed=0, max_new_tokens=4, progress=False)
    assert len(result["correct_per_problem"]) == 6 and set(result["correct_per_problem"]) <= {0, 1}
    assert sum(result["correct_per_problem"]) == result["correct"]
    assert [s["correct"] for s in result["samples"]] == [bool(c) for c in result["correct_per_problem"][:5]]


def test_up_and_down_count_the_problems_that_changed():
    result = paired_bootstrap_ci([0, 0, 1, 1, 0], [1, 0, 0, 1, 1])
    assert (result["up"], result["down"]) == (2, 1) and result["gain"] == pytest.approx(0.2)


def test_problems_to_resolve_gives_the_power_it_promises():
    """At the n it names, intervals of simulated comparisons (true gain g, a share c of problems changing) lie
    above 0 about 80% of the time, and resolvable_gain inverts it."""
    from smollm2_recipes.evaluation.paired_bootstrap import problems_to_resolve, resolvable_gain

    gain, changed = 0.04, 0.12
    n = problems_to_resolve(gain, changed)
    assert resolvable_gain(changed, n) == pytest.approx(gain, rel=0.01)
    assert problems_to_resolve(0.0, changed) is None and problems_to_resolve(-0.01, changed) is None
    assert problems_to_resolve(gain / 2, changed) > 3 * n  # half the gain needs about four times the problems
    rng = np.random.default_rng(0)
    up_share, down_share = (changed + gain) / 2, (changed - gain) / 2
    cleared = 0
    for draw in range(200):
        u = rng.random(n)
        second = (u < up_share).astype(int).tolist()  # 1 where only the second model is right
        first = ((u >= up_share) & (u < up_share + down_share)).astype(int).tolist()  # 1 where only the first is
        cleared += paired_bootstrap_ci(first, second, resamples=1000, seed=draw)["ci"][0] > 0
    assert 0.65 < cleared / 200 < 0.92
