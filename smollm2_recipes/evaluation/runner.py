"""Evaluate one model, or each checkpoint of a folder, on a list of tasks; write results under output_dir.

Everything that can be refused is checked before any model is loaded: task names, the model folder and
its tokenizer, the modules the offline tasks need, the datasets the lighteval tasks need."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from smollm2_recipes.errors import UserError
from smollm2_recipes.evaluation.tasks import TaskSpec, check_available, parse_tasks


DTYPES = ("bfloat16", "float16", "float32")


@dataclass
class EvalConfig:
    """`smollm2 eval` options; a recipe (recipes/eval/*.yaml) sets the same keys."""

    model: str = field(default="embedded:SmolLM2-135M-Instruct", metadata={"help": "Hub id, model folder, folder of checkpoints, or embedded: name"})
    each_checkpoint: bool = field(default=False, metadata={"help": "MODEL is a training output folder: evaluate each of its "
                                                                   "checkpoint-*/ (not the final model) and plot the metrics"})
    tasks: list[str] = field(default_factory=lambda: ["chat"], metadata={"help": "comma-separated: name, name|shots or name|shots|metric"})
    limit: int | None = field(default=None, metadata={"help": "at most this many examples per task (partial numbers)"})
    output_dir: str | None = field(default=None, metadata={"help": "default: outputs/eval/<model name>"})
    json: bool = field(default=False, metadata={"help": "print the results object, and nothing else, to stdout"})
    batch_size: int = field(default=8, metadata={"help": "generation / scoring batch size"})
    seed: int = field(default=42)
    use_chat_template: bool | None = field(default=None, metadata={"help": "default: when the tokenizer has one"})
    dtype: str = field(default="bfloat16", metadata={"help": "lighteval tasks' model dtype on a GPU (bfloat16, as the paper; "
                                                                  "float16, float32); a CPU always runs float32"})
    max_length: int | None = field(default=None, metadata={"help": "lighteval tasks: prompt + generation cap in tokens "
                                                                   "(the paper: 2048); default: the model's own"})
    datasets_dir: str | None = field(default=None, metadata={"help": "local dataset copies: <dir>/<owner>/<name> replaces that Hub dataset"})
    max_new_tokens: int = field(default=256, metadata={"help": "humaneval completion length"})
    humaneval_timeout: float = field(default=5.0, metadata={"help": "seconds per HumanEval problem"})
    workers: int = field(default=2, metadata={"help": "parallel sandboxed executions"})
    perplexity_file: str = field(default="embedded:corpus/web", metadata={"help": "text/jsonl file, folder, or embedded:corpus/NAME"})
    perplexity_max_tokens: int = field(default=32768)
    passkey_lengths: list[int] = field(default_factory=lambda: [256, 512, 1024])
    passkey_depths: list[float] = field(default_factory=lambda: [0.0, 0.5, 1.0])
    passkey_n: int = field(default=2, metadata={"help": "passkey trials per (length, depth) cell"})
    arith_n: int = field(default=200)
    chat_prompts: list[str] | None = field(default=None)


def default_output_dir(model: str) -> Path:
    name = Path(model.split(":", 1)[-1].rstrip("/")).name or "model"
    return Path("outputs") / "eval" / name


def check_model(path: str) -> None:
    """A local model folder needs a config and a tokenizer (Hub ids are checked by transformers)."""
    if not os.path.isdir(path):
        if path.startswith((".", "/", "~")) or path.count("/") != 1:  # a Hub id is exactly owner/name
            raise UserError(f"Model path '{path}' does not exist (and is not a Hub id like owner/name).")
        return
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise UserError(f"'{path}' is not a model folder (no config.json) and holds no checkpoints "
                        "(checkpoint-*/ or sub-folders with a config.json).")
    if not any(os.path.isfile(os.path.join(path, f)) for f in ("tokenizer.json", "tokenizer_config.json")):
        raise UserError(f"'{path}' has no tokenizer (tokenizer.json / tokenizer_config.json): save the tokenizer "
                        "with the model (tokenizer.save_pretrained(folder)).")


def run_offline(spec: TaskSpec, model, tokenizer, config: EvalConfig, output_dir: Path) -> dict:
    import torch

    torch.manual_seed(config.seed)
    if spec.name == "humaneval":
        from smollm2_recipes.evaluation.humaneval import evaluate_humaneval

        return evaluate_humaneval(model, tokenizer, config.limit, config.use_chat_template, config.batch_size,
                                  config.max_new_tokens, config.humaneval_timeout, config.workers)
    if spec.name == "perplexity":
        from smollm2_recipes.evaluation.perplexity import evaluate_perplexity

        return evaluate_perplexity(model, tokenizer, config.perplexity_file, config.limit,
                                   max_tokens=config.perplexity_max_tokens, batch_size=config.batch_size)
    if spec.name == "chat":
        from smollm2_recipes.evaluation.chat import evaluate_chat

        return evaluate_chat(model, tokenizer, config.chat_prompts, config.limit)
    if spec.name == "arith":
        from smollm2_recipes.evaluation.tasks import provider

        return provider("arith").evaluate_arith(model, tokenizer, n=config.limit or config.arith_n, seed=config.seed,
                                                batch_size=config.batch_size)
    if spec.name == "passkey":
        from smollm2_recipes.evaluation.tasks import provider

        passkey = provider("passkey")
        limit = getattr(model.config, "max_position_embeddings", None) or max(config.passkey_lengths)
        lengths = [n for n in config.passkey_lengths if n <= limit] or [min(config.passkey_lengths)]
        result = passkey.evaluate_passkey(model, tokenizer, lengths=lengths, depths=config.passkey_depths,
                                          n_per_cell=config.passkey_n, seed=config.seed)
        output_dir.mkdir(parents=True, exist_ok=True)
        passkey.plot_passkey_heatmap(result, output_dir / "passkey_heatmap.png")
        return result
    raise AssertionError(spec.name)


def evaluate_model(model: str, specs: list[TaskSpec], config: EvalConfig, output_dir: Path) -> tuple[dict, dict]:
    """(results {"model", "tasks"}, details {task: extras}) for one model; nothing written here."""
    from smollm2_recipes.evaluation.results import split_metrics

    tasks: dict[str, dict] = {}
    details: dict[str, dict] = {}
    bench = [s for s in specs if not s.offline]
    offline = [s for s in specs if s.offline]
    if bench:
        from smollm2_recipes.evaluation.lighteval_bridge import run_lighteval

        scores = run_lighteval(model, [(s.name, s.shots) for s in bench], str(output_dir), config.limit,
                               config.batch_size, config.use_chat_template, datasets_dir=config.datasets_dir,
                               dtype=config.dtype, max_length=config.max_length)
        tasks.update({s.name: scores.get(s.name, {}) for s in bench})
    if offline:
        from smollm2_recipes.models import load_pretrained

        net, tokenizer = load_pretrained(model, dtype="float32")  # fp32: bf16 generation on CPU is slower and differs
        import torch

        if torch.cuda.is_available():
            net.to("cuda")
        for spec in offline:
            print(f"eval: {spec.name} on {model}", file=sys.stderr)
            tasks[spec.name], details[spec.name] = split_metrics(run_offline(spec, net, tokenizer, config, output_dir))
        del net
    ordered = {s.name: tasks[s.name] for s in specs if s.name in tasks}
    return {"model": model, "tasks": ordered}, details


def evaluate(config: EvalConfig) -> dict:
    """The whole `smollm2 eval`: check, run, save results.json / results.md (and curves for checkpoints)."""
    from smollm2_recipes.assets import resolve
    from smollm2_recipes.evaluation import checkpoint_sweep as ck
    from smollm2_recipes.evaluation.results import save

    specs = parse_tasks(config.tasks)
    check_available(specs)
    if config.dtype not in DTYPES:
        raise UserError(f"--dtype '{config.dtype}' is not one of {', '.join(DTYPES)}.")
    if config.max_length is not None and config.max_length < 1:
        raise UserError(f"--max_length must be a positive number of tokens, got {config.max_length}.")
    path = resolve(config.model)
    found = ck.find_checkpoints(path, inside_model_folder=config.each_checkpoint)
    if config.each_checkpoint and not found:
        raise UserError(f"--each_checkpoint: '{config.model}' holds no checkpoint-*/ folders to evaluate.")
    for target in found or [path]:
        check_model(target)
    bench = [(s.name, s.shots) for s in specs if not s.offline]
    if bench:  # datasets first: a missing one fails in seconds, not after an hour of offline tasks
        from smollm2_recipes.evaluation.lighteval_bridge import check_datasets

        check_datasets(bench, datasets_dir=config.datasets_dir)
    config.output_dir = str(config.output_dir or default_output_dir(config.model))
    output_dir = Path(config.output_dir)
    headlines = {s.name: s.metric for s in specs}
    if not found:
        result, details = evaluate_model(path, specs, config, output_dir)
        result["model"] = config.model
        save(output_dir, result, headlines, details)
        return result
    rows = []
    for folder in found:
        sub = output_dir / folder.name
        result, details = evaluate_model(str(folder), specs, config, sub)
        save(sub, result, headlines, details)
        rows.append({**result, **ck.training_position(folder)})
    final = {"model": config.model, "tasks": rows[-1]["tasks"], "checkpoints": rows}
    save(output_dir, final, headlines, {})
    ck.plot_curves(rows, output_dir)
    return final
