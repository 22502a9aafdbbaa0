"""Results on disk: `results.json` (the one object `--json` prints), `results.md` (tables, and the chat
answers), `details/<task>.json` (per-sample outputs). Every file is written to a temp name and renamed,
so an interrupted run never leaves a half-written file."""

from __future__ import annotations

import json
import math
from pathlib import Path

from smollm2_recipes.runkit import write_atomic

# counts and settings, not scores: left out of tables and curves
BOOKKEEPING = {"n", "passed", "correct", "tokens", "documents", "prompts", "subtasks", "empty", "seed", "timeouts",
               "n_per_cell", "max_position_embeddings"}


def split_metrics(result: dict) -> tuple[dict, dict]:
    """A task's full result -> (scalar metrics for the JSON, everything else for details/)."""
    metrics, details = {}, {}
    for key, value in result.items():
        if isinstance(value, bool):
            details[key] = value
        elif isinstance(value, (int, float)):
            metrics[key] = value if isinstance(value, int) or math.isfinite(value) else None
        else:
            details[key] = value
    return metrics, details


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.1f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def markdown(result: dict, headlines: dict[str, str] | None = None, chat_answers: list[dict] | None = None) -> str:
    """One run: | task | metric | value | (headline metric first). A checkpoint folder: one row per
    checkpoint, one column per task headline metric."""
    headlines = headlines or {}
    lines = [f"# Evaluation of `{result['model']}`", ""]
    if "checkpoints" in result:
        cols = [(t, headlines.get(t) or next(iter(m), "")) for t, m in result["checkpoints"][0]["tasks"].items()] if result["checkpoints"] else []
        lines += ["| checkpoint | step | tokens | " + " | ".join(f"{t} {m}" for t, m in cols) + " |",
                  "|---|---:|---:|" + "---:|" * len(cols)]
        for ck in result["checkpoints"]:
            vals = [_fmt(ck["tasks"].get(t, {}).get(m)) for t, m in cols]
            lines.append(f"| {Path(ck['model']).name} | {_fmt(ck.get('step'))} | {_fmt(ck.get('tokens'))} | " + " | ".join(vals) + " |")
        lines.append("")
    lines += ["| task | metric | value |", "|---|---|---:|"]
    for task, metrics in result["tasks"].items():
        head = headlines.get(task)
        for key in sorted(metrics, key=lambda k: (k != head, k)):
            lines.append(f"| {task} | {'**' + key + '**' if key == head else key} | {_fmt(metrics[key])} |")
    if chat_answers:
        lines += ["", "## chat answers", ""]
        for row in chat_answers:
            answer = row["answer"].replace("\n", "\n> ")
            lines += [f"**user:** {row['prompt']}", "", f"> {answer}", ""]
    return "\n".join(lines) + "\n"


def save(output_dir: Path, result: dict, headlines: dict[str, str], details: dict[str, dict]) -> None:
    output_dir = Path(output_dir)
    for task, extra in details.items():
        if extra:
            write_atomic(output_dir / "details" / f"{task}.json", json.dumps(extra, indent=1, default=str))
    chat = details.get("chat", {}).get("answers")
    write_atomic(output_dir / "results.md", markdown(result, headlines, chat))
    write_atomic(output_dir / "results.json", json.dumps(result, indent=2))
