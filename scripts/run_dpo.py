"""`accelerate launch scripts/run_dpo.py RECIPE.yaml [--key value ...]`: the same code as `smollm2 dpo`.

The stage's logic lives in the library (see smollm2_recipes/cli.py for where), so scripts never drift
apart from the command line tool."""

import sys

from smollm2_recipes.cli import run

if __name__ == "__main__":
    sys.exit(run("dpo"))
