"""`smollm2 eval compare FIRST SECOND [--task arith]`: is SECOND's gain over FIRST beyond noise? Two `smollm2 eval`
output folders, scored on the same problems, give a paired bootstrap 95% interval of the difference
(paired_bootstrap.py), the problems that changed either way, and how many problems a gain that size needs.

    smollm2 eval outputs/sft --tasks arith --arith_n 2000 --seed 0 --output_dir outputs/eval-sft
    smollm2 eval outputs/dpo --tasks arith --arith_n 2000 --seed 0 --output_dir outputs/eval-dpo
    smollm2 eval compare outputs/eval-sft outputs/eval-dpo

Per-problem outcomes come from `details/<task>.json`: `correct_per_problem` (arith, in problem order, the same
problems when n and seed match) or `samples[].status` (humaneval, matched by task_id). The last line printed is
JSON."""

from __future__ import annotations

import json
from pathlib import Path

from smollm2_recipes.errors import UserError

TASKS = ("arith", "humaneval")  # the tasks whose details keep each problem's outcome


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} does not exist: pass folders written by `smollm2 eval ... --output_dir DIR`.") from None
    except ValueError as err:
        raise UserError(f"{path} is not valid JSON ({err}).") from None


def outcomes(folder: Path, task: str) -> tuple[dict, dict[str, int]]:
    """(the task's metrics from results.json, {problem id: 0/1})."""
    tasks = _read(folder / "results.json").get("tasks", {})
    if task not in tasks:
        raise UserError(f"{folder / 'results.json'} has no '{task}' result; it has: {', '.join(tasks) or 'none'}.")
    details = _read(folder / "details" / f"{task}.json")
    try:
        if task == "arith":
            return tasks[task], {str(i): int(c) for i, c in enumerate(details["correct_per_problem"])}
        return tasks[task], {s["task_id"]: int(s["status"] == "passed") for s in details["samples"]}
    except (KeyError, TypeError):
        raise UserError(f"{folder / 'details' / f'{task}.json'} keeps no per-problem outcomes "
                        "(written by an older `smollm2 eval`?); evaluate the model again.") from None


def compare(first: Path, second: Path, task: str) -> dict:
    from smollm2_recipes.evaluation.paired_bootstrap import paired_bootstrap_ci

    (meta_a, a), (meta_b, b) = outcomes(first, task), outcomes(second, task)
    if task == "arith" and (meta_a.get("seed"), meta_a.get("n")) != (meta_b.get("seed"), meta_b.get("n")):
        raise UserError(f"the two folders scored different arith problems (seed, n): {(meta_a.get('seed'), meta_a.get('n'))} and "
                        f"{(meta_b.get('seed'), meta_b.get('n'))}; evaluate both with the same --seed and --arith_n.")
    if a.keys() != b.keys():
        raise UserError(f"the two folders scored different {task} problems ({len(a)} and {len(b)}, {len(a.keys() ^ b.keys())} "
                        "not in both); evaluate both on the same problems (same --limit).")
    result = paired_bootstrap_ci([a[k] for k in a], [b[k] for k in a])
    result["gain_ci95"] = result.pop("ci")
    keep = ("n", "first", "second", "gain", "gain_ci95", "up", "down", "resolvable_gain", "problems_to_resolve_gain")
    return {"task": task, **{k: result[k] for k in keep}}


def main(argv: list[str]) -> int:
    from smollm2_recipes.runkit.parsing import ArgumentParser

    parser = ArgumentParser(prog="smollm2 eval compare", description=__doc__.split("\n\n")[0])
    parser.add_argument("first", type=Path, help="the `smollm2 eval` output folder of the baseline")
    parser.add_argument("second", type=Path, help="the `smollm2 eval` output folder of the model compared with it")
    parser.add_argument("--task", default="arith", choices=TASKS)
    args = parser.parse_args(argv)
    r = compare(args.first, args.second, args.task)
    lo, hi = r["gain_ci95"]
    print(f"{args.task} on the same {r['n']} problems: {r['first']:.1%} -> {r['second']:.1%}, gain {r['gain']:+.1%} "
          f"[{lo:+.1%}, {hi:+.1%}] (paired bootstrap 95%); {r['up']} problems up, {r['down']} down")
    need = r["problems_to_resolve_gain"]
    print(f"these {r['n']} problems resolve gains above {r['resolvable_gain']:.1%} (80% power); "
          + (f"a true gain of {r['gain']:+.1%} needs ~{need:,} problems" if need else "the measured gain is not above 0"))
    print(json.dumps(r))
    return 0
