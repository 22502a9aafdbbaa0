"""`smollm2 eval MODEL --tasks LIST [--limit N] [--output_dir DIR] [--json]`, or
`smollm2 eval RECIPE.yaml [--key value ...]` (recipes/eval/*.yaml name the paper's suites).

MODEL is a Hub id, a model folder, an `embedded:` name, or a folder of checkpoints (each is evaluated and
every metric is plotted against training tokens). With --json, stdout carries exactly one JSON object
({"model", "tasks": {task: {metric: value}}}, plus "checkpoints" for a folder of them); progress and logs
go to stderr. `smollm2 eval compare FIRST SECOND` gives the paired bootstrap interval of two such output
folders scored on the same problems (compare.py)."""

from __future__ import annotations

import contextlib
import json
import sys

from smollm2_recipes.errors import UserError

EPILOG = "tasks (name[|shots[|metric]]):\n"


def parse_args(argv: list[str]):
    """argv -> EvalConfig, through the project's recipe parser: a leading .yaml is a recipe, any other
    leading word is MODEL."""
    from smollm2_recipes.recipe_parsing import parse
    from smollm2_recipes.evaluation.runner import EvalConfig
    from smollm2_recipes.evaluation.tasks import describe

    argv = list(argv)
    if {"-h", "--help"} & set(argv):
        print(__doc__.strip() + "\n\n" + EPILOG + describe() + "\n", file=sys.stderr)
    if argv and not argv[0].startswith("-") and not argv[0].endswith((".yaml", ".yml")):
        argv = ["--model", argv[0], *argv[1:]]
    elif len(argv) > 1 and argv[0].endswith((".yaml", ".yml")) and not argv[1].startswith("-"):
        argv = [argv[0], "--model", argv[1], *argv[2:]]  # `smollm2 eval RECIPE.yaml MODEL`
    (config,) = parse([EvalConfig], argv, recipe_required=False)
    if config.limit is not None and config.limit < 1:
        raise UserError(f"--limit must be a positive number of examples, got {config.limit}.")
    return config


def main(argv: list[str]) -> int:
    config = parse_args(argv)
    from smollm2_recipes.evaluation.runner import evaluate

    # --json: stdout is the result object alone; anything a library prints goes to stderr
    with contextlib.redirect_stdout(sys.stderr):
        result = evaluate(config)
    if config.json:
        print(json.dumps(result))
    else:
        from pathlib import Path

        print(Path(config.output_dir, "results.md").read_text())
        print(f"saved under {config.output_dir}/ (results.json, results.md, details/)", file=sys.stderr)
    return 0
