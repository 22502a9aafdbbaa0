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

# Recipe blocks another command reads: `executor:` holds `smollm2 data tokenize`'s Slurm / Ray settings.
OTHER_COMMANDS_KEYS = {"executor"}

# old key -> (new key or None to drop, why). Values of mapped keys are carried over unchanged.
LEGACY_KEYS: dict[str, tuple[str | None, str]] = {
    "warmup_ratio": ("warmup_steps", "transformers 5 removed warmup_ratio; a float warmup_steps < 1 is a ratio"),
    "torch_dtype": ("dtype", "transformers 5 renamed torch_dtype to dtype"),
    "overwrite_output_dir": (None, "transformers 5 removed overwrite_output_dir; this project never overwrites a finished run"),
    "logging_dir": (None, "transformers 5 removed logging_dir; logs go under output_dir"),
    "max_seq_length": ("max_length", "TRL renamed max_seq_length to max_length"),
    "evaluation_strategy": ("eval_strategy", "transformers renamed evaluation_strategy to eval_strategy"),
    "tokenizer_name_or_path": ("tokenizer_name", "alignment-handbook's Nov-2024 key"),
    "hub_private_repo": (None, "set on the Hub repository instead"),
    "push_to_hub_revision": (None, "TRL 1 removed push_to_hub_revision"),
    "dataset_num_proc": (None, "dropped: this project tokenises through its own data pipeline"),
    "preprocessing_num_workers": (None, "dropped: this project tokenises through its own data pipeline"),
}
# Values renamed by TRL: key -> {old value: (new value, why)}.
LEGACY_VALUES: dict[str, dict[Any, tuple[Any, str]]] = {
    "packing_strategy": {"ffd": ("bfd", "TRL 0.20 renamed first-fit decreasing 'ffd' to best-fit decreasing 'bfd'")},
}
# alignment-handbook's Nov-2024 data keys (recipes/smollm2/{sft,dpo}/config.yaml at commit ae3f44f), read
# into the mixture keys of post_training.data.ChatDataArguments.
HANDBOOK_DATA_KEYS = ("dataset_mixer", "dataset_splits", "dataset_configs")
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


def _note(msg: str, notes: list[str]) -> None:
    if msg not in notes:  # once per recipe, however many keys lead to it
        notes.append(msg)
        print(msg, file=sys.stderr)


def _handbook_mixture(recipe: dict[str, Any], where: str) -> dict[str, Any]:
    """alignment-handbook < 0.4's `dataset_mixer` ({hub_id: fraction of its train rows}), `dataset_splits`
    (the split names holding "train" are trained on, those holding "test" evaluated on, whole) and
    `dataset_configs` (one per dataset, in the mixer's order) as the current mixture keys."""
    mixer = recipe.get("dataset_mixer")
    splits = recipe.get("dataset_splits") or ["train", "test"]
    configs = recipe.get("dataset_configs")
    if not isinstance(mixer, dict) or not mixer:
        raise UserError(f"{where}: dataset_mixer must be a mapping {{dataset: fraction}}, got {mixer!r}.")
    if isinstance(splits, str):
        splits = [splits]
    train = [s for s in splits if "train" in s]
    test = [s for s in splits if "test" in s and "train" not in s]
    if len(train) != 1 or len(test) > 1 or len(train) + len(test) != len(splits):
        raise UserError(f"{where}: dataset_splits {splits} must name one split containing 'train' and at most one containing 'test'.")
    if configs is not None:
        configs = [configs] if isinstance(configs, str) else list(configs)
        if len(configs) != len(mixer):
            raise UserError(f"{where}: dataset_configs has {len(configs)} entries for the {len(mixer)} datasets of dataset_mixer; "
                            "give one per dataset, in the same order.")
    sources = [{"id": name, "weight": weight, "split": train[0], **({"config": configs[i]} if configs else {})}
               for i, (name, weight) in enumerate(mixer.items())]
    out = {"dataset_mixture": sources}
    if test:
        out["dataset_test_split"] = test[0]
    return out


def normalise_keys(recipe: dict[str, Any], types: Iterable[type], where: str, notes: list[str] | None = None) -> dict[str, Any]:
    """Map legacy keys and values (each with a one-line note, printed once), reject unknown keys. Returns a
    new dict."""
    types = list(types)
    valid = field_names(types)
    notes = [] if notes is None else notes
    out: dict[str, Any] = {}
    if "dataset_mixture" in valid and any(k in recipe for k in HANDBOOK_DATA_KEYS):
        if "dataset_mixture" in recipe or "dataset_name" in recipe:
            raise UserError(f"{where}: give either the Nov-2024 keys {', '.join(HANDBOOK_DATA_KEYS)} or dataset_mixture / dataset_name, not both.")
        mapped = _handbook_mixture(recipe, where)
        for key in HANDBOOK_DATA_KEYS:
            if key in recipe:
                _note(f"note: recipe key '{key}' is read into dataset_mixture / dataset_test_split (alignment-handbook's Nov-2024 form).", notes)
        recipe = {k: v for k, v in recipe.items() if k not in HANDBOOK_DATA_KEYS}
        recipe.update({k: v for k, v in mapped.items() if k not in recipe})
    for key, value in recipe.items():
        if key in LEGACY_VALUES and isinstance(value, str) and value in LEGACY_VALUES[key]:
            new_value, why = LEGACY_VALUES[key][value]
            _note(f"note: {key}: {value} is read as {key}: {new_value} ({why}).", notes)
            value = new_value
        if key in valid or key in _PARSER_KEYS:
            out[key] = value
            continue
        if key in OTHER_COMMANDS_KEYS:  # one recipe serves both: the training stage leaves this block alone
            continue
        if key == "use_flash_attention_2" and "attn_implementation" in valid:
            if value and "attn_implementation" not in recipe:
                out["attn_implementation"] = "flash_attention_2"
                _note("note: recipe key 'use_flash_attention_2: true' is read as 'attn_implementation: flash_attention_2' "
                      "(transformers replaced the flag with attn_implementation).", notes)
            else:
                _note("note: recipe key 'use_flash_attention_2' is ignored (attn_implementation decides).", notes)
            continue
        if key in LEGACY_KEYS:
            new, why = LEGACY_KEYS[key]
            if new is not None and new in valid and new not in recipe:
                out[new] = value
                msg = f"note: recipe key '{key}' is read as '{new}' ({why})."
            else:
                msg = f"note: recipe key '{key}' is ignored ({why})."
            _note(msg, notes)
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
