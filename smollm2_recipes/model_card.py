"""A Hub model card for a run's output folder, written with huggingface_hub's `ModelCard` / `ModelCardData`.

What a card needs is read from the folder a run wrote: `resolved_config.yaml` (the recipe with every default
filled in), `config.json` (the architecture), an evaluation results JSON (`{"model", "tasks": {task:
{metric: value}}}`, as `smollm2 eval` writes) and a loss plot (`*loss*.png`, `training_curves.png`). Secrets never reach the card:
token-like keys are dropped from the embedded recipe, and the upload refuses a folder that contains the token.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from smollm2_recipes.recipe_parsing import HIDDEN_KEYS

RESOLVED_CONFIG = "resolved_config.yaml"
# `embedded:` assets are offline copies of published models: the card names the published one.
EMBEDDED_TO_HUB = {
    "embedded:SmolLM2-135M-Instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
    "embedded:smollm2-tokenizer": "HuggingFaceTB/SmolLM2-135M",
}
BASE_MODEL_KEYS = ("base_model", "model_name_or_path", "init_from", "model_path", "pretrained_model", "model")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
HYPERPARAMETER_KEYS = (
    "learning_rate", "lr_scheduler_type", "lr_scheduler_kwargs", "warmup_steps", "max_steps", "num_train_epochs",
    "per_device_train_batch_size", "gradient_accumulation_steps", "global_batch_tokens", "global_batch_size",
    "max_length", "seq_length", "sequence_length", "block_size", "max_prompt_length", "packing", "beta", "loss_type",
    "optim", "adam_beta1", "adam_beta2", "adam_epsilon", "weight_decay", "max_grad_norm", "bf16", "gradient_checkpointing",
    "seq_len", "decay_steps", "decay_type", "weight_averaging", "rope_theta", "max_position_embeddings", "seed", "data_seed",
)
SOURCE_KEYS = ("path", "dataset_name", "dataset", "id", "data_files")
STAGES = ("pretrain", "context_extension", "sft", "dpo", "average")


def _is_secret_key(key: str) -> bool:
    key = key.lower()
    return key in HIDDEN_KEYS or key.endswith("_token") and key not in {"bos_token", "eos_token", "pad_token", "unk_token"} or key in {"token", "api_key", "password"}


def sanitise(value: Any, secrets: tuple[str, ...] = ()) -> Any:
    """The config with token-like keys removed and any known secret value redacted."""
    if isinstance(value, dict):
        return {k: sanitise(v, secrets) for k, v in value.items() if not _is_secret_key(str(k))}
    if isinstance(value, list):
        return [sanitise(v, secrets) for v in value]
    if isinstance(value, str):
        for secret in secrets:
            if secret and secret in value:
                value = value.replace(secret, "<redacted>")
    return value


def _walk(value: Any, path: tuple[str, ...] = ()):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, path + (str(k),))
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v, path)
    else:
        yield path, value


def _hub_id(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    if value in EMBEDDED_TO_HUB:
        return EMBEDDED_TO_HUB[value]
    if HUB_ID.match(value) and not Path(value).exists() and not value.endswith((".yaml", ".json", ".jsonl", ".jinja", ".parquet")):
        return value
    return None


def infer_stage(config: dict) -> str:
    """Which stage wrote the run: an explicit `stage` key, else the keys only that stage's config has."""
    stage = config.get("stage")
    if isinstance(stage, str) and stage in STAGES:
        return stage
    keys = set(config)
    if "beta" in keys:
        return "dpo"
    if {"assistant_only_loss", "completion_only_loss", "dataset_text_field", "packing"} & keys:
        return "sft"
    if config.get("rope_theta") and config.get("max_position_embeddings"):  # set only to extend the context
        return "context_extension"
    return "pretrain"


@dataclass
class RunInfo:
    folder: Path
    config: dict = field(default_factory=dict)
    stage: str = "pretrain"
    base_model: str | None = None
    base_model_local: str | None = None
    datasets: list[str] = field(default_factory=list)
    local_sources: list[str] = field(default_factory=list)
    evaluation: dict | None = None
    evaluation_file: str | None = None
    plots: list[str] = field(default_factory=list)
    architecture: dict = field(default_factory=dict)


def _eval_files(folder: Path) -> list[Path]:
    found = []
    for path in sorted(folder.glob("*.json")) + sorted(folder.glob("*/*.json")):
        if path.parent.name.startswith("checkpoint-") or path.stat().st_size > 5_000_000:
            continue
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "model" in data and isinstance(data.get("tasks"), dict):
            found.append(path)
    return found


def collect(folder: str | Path, stage: str | None = None) -> RunInfo:
    """Everything the card says, read from the run folder."""
    folder = Path(folder)
    info = RunInfo(folder=folder)
    resolved = folder / RESOLVED_CONFIG
    if resolved.is_file():
        info.config = yaml.safe_load(resolved.read_text()) or {}
    info.stage = stage or infer_stage(info.config)
    from smollm2_recipes.models import PRESETS

    for key in BASE_MODEL_KEYS:
        value = info.config.get(key)
        if isinstance(value, str) and value and value not in PRESETS:  # a preset name means a fresh init
            info.base_model = _hub_id(value)
            info.base_model_local = None if info.base_model else value
            break
    for path, value in _walk(info.config):
        if not isinstance(value, str) or path[:1] and path[0] in BASE_MODEL_KEYS:
            continue
        if not any(word in "/".join(path).lower() for word in ("data", "dataset", "source", "mixture", "stage")):
            continue
        hub = _hub_id(value)
        if hub and hub != info.base_model and hub not in info.datasets:
            info.datasets.append(hub)
        elif not hub and path[-1] in SOURCE_KEYS and value not in info.local_sources:  # embedded corpus, local file
            info.local_sources.append(value)
    evals = _eval_files(folder)
    if evals:
        info.evaluation_file = str(evals[-1].relative_to(folder))
        info.evaluation = json.loads(evals[-1].read_text())
    info.plots = [str(p.relative_to(folder)) for p in sorted(folder.glob("*.png")) + sorted(folder.glob("*/*.png"))
                  if any(w in p.name.lower() for w in ("loss", "curve", "training")) and not p.parent.name.startswith("checkpoint-")]
    if (folder / "config.json").is_file():
        arch = json.loads((folder / "config.json").read_text())
        keys = ("model_type", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "max_position_embeddings", "vocab_size", "tie_word_embeddings", "rope_parameters", "rope_theta")
        info.architecture = {k: arch[k] for k in keys if k in arch}
    return info


def _eval_results(info: RunInfo, model_name: str):
    from huggingface_hub import EvalResult

    results = []
    for task, metrics in (info.evaluation or {}).get("tasks", {}).items():
        for metric, value in (metrics or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                results.append(EvalResult(task_type="text-generation", dataset_type=task, dataset_name=task,
                                          metric_type=metric, metric_value=float(value)))
    return results


TEMPLATE = """---
{{ card_data }}
---

# {{ model_name }}

{{ summary }}

Made by the **{{ stage }}** stage of smollm2-recipes, which reproduces the SmolLM2 training pipeline
(pretraining, context extension, SFT, DPO) on the Hugging Face stack.

## Model
{{ architecture_table }}

## Training
- Base model: {{ base_model_text }}
- Datasets: {{ datasets_text }}

| hyperparameter | value |
|---|---|
{{ hyperparameter_rows }}
{% if plots %}
## Training loss
{% for plot in plots %}
![training loss]({{ plot }})
{% endfor %}
{% endif %}
## Evaluation
{{ eval_text }}

## Recipe
The resolved recipe (every default filled in) that produced this model, also in `resolved_config.yaml`:

```yaml
{{ recipe_yaml }}```

## Use
```python
from transformers import AutoModelForCausalLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{{ repo_id }}")
model = AutoModelForCausalLM.from_pretrained("{{ repo_id }}")
```
"""


def build_card(info: RunInfo, repo_id: str, license: str = "apache-2.0", secrets: tuple[str, ...] = ()):
    """A `huggingface_hub.ModelCard` whose YAML metadata the Hub accepts (base_model, datasets, license,
    tags, model-index) and whose text carries the recipe, hyperparameters, eval table and loss plot."""
    from huggingface_hub import ModelCard, ModelCardData

    model_name = repo_id.split("/")[-1]
    config = sanitise(info.config, secrets)
    eval_results = _eval_results(info, model_name)
    card_data = ModelCardData(
        base_model=info.base_model,
        datasets=info.datasets or None,
        license=license,
        language=["en"],
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=["smollm2", "smollm2-recipes", "llama", info.stage],
        model_name=model_name,
        eval_results=eval_results or None,
    )
    arch = info.architecture
    shown_keys = [k for k in HYPERPARAMETER_KEYS if config.get(k) is not None]
    if (config.get("max_steps") or 0) > 0 and "num_train_epochs" in shown_keys:
        shown_keys.remove("num_train_epochs")  # max_steps wins over epochs in the Trainer
    rows = "\n".join(f"| `{k}` | `{json.dumps(config[k]) if isinstance(config[k], (dict, list)) else config[k]}` |"
                      for k in shown_keys) or "| (no resolved_config.yaml in the folder) | |"
    if info.evaluation:
        table = ["| task | metric | value |", "|---|---|---|"]
        for task, metrics in info.evaluation.get("tasks", {}).items():
            for metric, value in (metrics or {}).items():
                shown = f"{value:.4f}" if isinstance(value, float) else value
                table.append(f"| {task} | {metric} | {shown} |")
        eval_text = f"From `{info.evaluation_file}` (model `{info.evaluation.get('model')}`):\n\n" + "\n".join(table)
    else:
        eval_text = "No evaluation results in the folder (run `smollm2 eval` and save its JSON next to the model)."
    architecture_table = (
        "| " + " | ".join(arch) + " |\n|" + "---|" * len(arch) + "\n| " + " | ".join(f"{json.dumps(v) if isinstance(v, dict) else v}" for v in arch.values()) + " |"
    ) if arch else "(no config.json)"
    preset = info.config.get("model") if isinstance(info.config.get("model"), str) else None
    base_text = info.base_model or info.base_model_local
    data_text = ", ".join(info.datasets + info.local_sources) or "see the recipe below"
    scratch = "none: trained from scratch" + (f" (model preset `{preset}`)" if preset else "")
    summary = f"A {arch.get('model_type', 'Llama')} model with {arch.get('num_hidden_layers', '?')} layers of width {arch.get('hidden_size', '?')}" + (
        f", trained from `{base_text}`." if base_text else f", {scratch[6:]}.")
    recipe_yaml = yaml.safe_dump(config, sort_keys=True, allow_unicode=True) if config else "# no resolved_config.yaml in the folder\n"
    return ModelCard.from_template(
        card_data, template_str=TEMPLATE, model_name=model_name, repo_id=repo_id, summary=summary, stage=info.stage,
        architecture_table=architecture_table, base_model_text=f"`{base_text}`" if base_text else scratch, datasets_text=data_text,
        hyperparameter_rows=rows, plots=info.plots, eval_text=eval_text, recipe_yaml=recipe_yaml,
    )
