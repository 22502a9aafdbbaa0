"""Which model `make eval` evaluates when no MODEL is given: the output of the furthest pipeline stage
that has finished (dpo, then sft, context extension, pretraining), read from the `output_dir` of the
recipes `make` runs by default (the flagship ones with GPUs, the tiny ones on a CPU).

    python -m smollm2_recipes.stage_outputs recipes/smollm2/tiny   # prints the folder, or exits 2
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from smollm2_recipes.errors import UserError
from smollm2_recipes.package_data import find_recipe

STAGES_LATEST_FIRST = ("dpo", "sft", "context_extension", "pretrain")
MAKE_TARGET = {"dpo": "dpo", "sft": "sft", "context_extension": "extend-context", "pretrain": "pretrain"}


def latest_stage_output(recipes_folder: str) -> str:
    """The `output_dir` of the furthest finished stage among `recipes_folder/<stage>.yaml` (relative to the
    working directory, as the stage itself wrote it)."""
    looked = []
    for stage in STAGES_LATEST_FIRST:
        recipe = find_recipe(f"{recipes_folder}/{stage}.yaml")
        output_dir = (yaml.safe_load(recipe.read_text()) or {}).get("output_dir")
        if output_dir and (Path(output_dir) / "config.json").is_file():
            return output_dir
        looked.append(str(output_dir))
    raise UserError(f"make eval: no MODEL given and no finished stage output in {', '.join(looked)}; run `make sft` "
                    "(or make pretrain) first, or pass MODEL=<folder, Hub id or embedded: name>.")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        print(latest_stage_output(argv[0] if argv else "recipes/smollm2/tiny"))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
