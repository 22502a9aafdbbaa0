"""One YAML per run, parsed by TRL's `TrlParser` into typed dataclasses.

`parse(types, argv)` accepts `RECIPE.yaml [--key value ...]`: the YAML overrides dataclass defaults and
command-line flags override the YAML. Keys the 2024/2025 stack used and transformers 5 / TRL 1 renamed
or removed (alignment-handbook recipes carry them) are mapped with a printed note; any other unknown
key fails with its name and the closest valid key, before any work starts.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import sys
from pathlib import Path
from typing import Any, Iterable

import yaml

from smollm2_recipes.errors import UserError
from smollm2_recipes.preflight import check_training_services
from smollm2_recipes.runkit.files import write_atomic
from smollm2_recipes.runkit.validation import check_numbers, reject_unknown_keys

# old key -> (new key or None to drop, why). Values of mapped keys are carried over unchanged.
LEGACY_KEYS: dict[str, tuple[str | None, str]] = {
    "warmup_ratio": ("warmup_steps", "transformers 5 removed warmup_ratio; a float warmup_steps < 1 is a ratio"),
    "torch_dtype": ("dtype", "transformers 5 renamed torch_dtype to dtype"),
    "overwrite_output_dir": (None, "transformers 5 removed overwrite_output_dir; this project never overwrites a finished run"),
    "logging_dir": (None, "transformers 5 removed logging_dir; logs go under output_dir"),
    "max_seq_length": ("max_length", "TRL renamed max_seq_length to max_length"),
    "use_flash_attention_2": (None, "set attn_implementation instead"),
    "hub_private_repo": (None, "set on the Hub repository instead"),
    "push_to_hub_revision": (None, "TRL 1 removed push_to_hub_revision"),
    "dataset_num_proc": (None, "dropped: this project tokenises through its own data pipeline"),
    "preprocessing_num_workers": (None, "dropped: this project tokenises through its own data pipeline"),
}
# Keys that never reach a dataclass: TrlParser's own `env` block.
_PARSER_KEYS = {"env"}
HIDDEN_KEYS = {"hub_token", "push_to_hub_token"}  # never written to disk or logs


def _has_accelerator() -> bool:
    import torch

    return torch.cuda.is_available() or (hasattr(torch, "xpu") and torch.xpu.is_available())


def field_names(types: Iterable[type]) -> set[str]:
    return {f.name for t in types for f in dataclasses.fields(t) if f.init}


def load_recipe(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise UserError(f"Recipe '{path}' is a directory, not a YAML file; name one of its .yaml files.")
    if not path.is_file():
        raise UserError(f"Recipe '{path}' does not exist. Recipes live under recipes/ (e.g. recipes/smollm2/tiny/sft.yaml).")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        where = f" (line {err.problem_mark.line + 1})" if getattr(err, "problem_mark", None) else ""
        reason = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"Recipe '{path}' is not valid YAML{where}: {reason}.") from None
    if not isinstance(data, dict):
        raise UserError(f"Recipe '{path}' must be a YAML mapping of key: value, got {type(data).__name__}.")
    return data


def normalise_keys(recipe: dict[str, Any], types: Iterable[type], where: str, notes: list[str] | None = None) -> dict[str, Any]:
    """Map legacy keys, reject unknown ones. Returns a new dict."""
    types = list(types)
    valid = field_names(types)
    out: dict[str, Any] = {}
    for key, value in recipe.items():
        if key in valid or key in _PARSER_KEYS:
            out[key] = value
            continue
        if key in LEGACY_KEYS:
            new, why = LEGACY_KEYS[key]
            if new is not None and new in valid and new not in recipe:
                out[new] = value
                msg = f"note: recipe key '{key}' is read as '{new}' ({why})."
            else:
                msg = f"note: recipe key '{key}' is ignored ({why})."
            if notes is not None:
                notes.append(msg)
            print(msg, file=sys.stderr)
            continue
        reject_unknown_keys([key], valid, where)
    return out


def parse(types: Iterable[type], argv: list[str] | None = None, recipe_required: bool = True):
    """Parse `[RECIPE.yaml] [--key value ...]` into instances of `types` (in order)."""
    from smollm2_recipes.runkit.parsing import recipe_parser

    types = list(types)
    argv = list(sys.argv[1:] if argv is None else argv)
    recipe_path = None
    if argv and not argv[0].startswith("-"):
        recipe_path = argv.pop(0)
    elif "--config" in argv:
        i = argv.index("--config")
        recipe_path = argv[i + 1] if i + 1 < len(argv) else None
        del argv[i : i + 2]
    if recipe_path is None and recipe_required and not {"-h", "--help"} & set(argv):
        raise UserError("No recipe given. Usage: smollm2 <stage> RECIPE.yaml [--key value ...]; recipes live under recipes/.")

    valid = field_names(types)
    for arg in argv:  # catch misspelt command-line flags with a suggestion, not argparse's wall
        if arg.startswith("--") and arg not in ("--help",):
            key = arg[2:].split("=", 1)[0].replace("-", "_")
            if key not in valid and not key.startswith("no_"):
                reject_unknown_keys([key], valid, "the command line")

    parser = recipe_parser(types)  # argparse errors as one line, the usage only with --help
    if "use_cpu" in valid and not _has_accelerator():
        # transformers refuses `bf16: true` without a GPU unless use_cpu is set; on a CPU-only machine the
        # run is on the CPU anyway, and bf16 autocast uses the CPU's bf16 units (AMX) where it has them.
        parser.set_defaults_with_config(use_cpu=True)
    if recipe_path is not None:
        recipe = normalise_keys(load_recipe(recipe_path), types, f"recipe '{recipe_path}'")
        for key, value in recipe.pop("env", {}).items():
            os.environ[key] = str(value)
        remaining = parser.set_defaults_with_config(**recipe)
        assert not remaining, remaining  # normalise_keys already rejected unknown keys
    try:
        parsed = parser.parse_args_into_dataclasses(args=argv)
    except (ValueError, TypeError) as err:
        raise UserError(f"Invalid configuration{f' in {recipe_path}' if recipe_path else ''}: {err}") from err
    check_numbers(*parsed)  # every stage, before anything is written
    for obj in parsed:
        setattr(obj, "_recipe_path", recipe_path)
        if hasattr(obj, "report_to") and hasattr(obj, "push_to_hub"):  # any stage's TrainingArguments
            check_training_services(obj)
    return parsed


def _yaml_safe(value):
    if isinstance(value, enum.Enum):
        return _yaml_safe(value.value)
    if isinstance(value, dict):
        return {str(k): _yaml_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_yaml_safe(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _plain(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return _yaml_safe(value)


def config_dict(*configs) -> dict[str, Any]:
    """Every init field of the given dataclasses as plain YAML-able values, secrets removed."""
    return {
        f.name: _plain(getattr(cfg, f.name))
        for cfg in configs
        for f in dataclasses.fields(cfg)
        if f.init and f.name not in HIDDEN_KEYS and not f.name.startswith("_")
    }


def save_resolved_config(output_dir: str | os.PathLike, *configs, name: str = "resolved_config.yaml") -> Path:
    """Write the fully resolved config (defaults + recipe + overrides) into the run's folder, atomically:
    a run can be re-read and resumed from it."""
    return write_atomic(Path(output_dir) / name, yaml.safe_dump(config_dict(*configs), sort_keys=True, allow_unicode=True))
