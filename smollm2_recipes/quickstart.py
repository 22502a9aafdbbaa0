"""`smollm2 quickstart` (`make quickstart`): the whole SmolLM2 story in miniature on a laptop CPU, with the
real SmolLM2 tokenizer and SmolLM2-135M-Instruct, ending in outputs/quickstart/REPORT.md.

Each step is a real `smollm2 ...` command run in a subprocess (the same code a user runs), writing into
its own folder. A step whose folder holds a `.done` marker from an earlier run with the same settings is
reused and says so, so a second run only redoes what changed. Figures for the report are read back from
the files each step wrote (JSON results, trainer logs), never recomputed here.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from smollm2_recipes.errors import UserError


@dataclass
class Step:
    name: str
    title: str
    commands: list[list[str]]  # run in order; argv after `smollm2`
    full_size: str = ""  # the command that runs the full-size recipe of this step
    summarise: Callable[[Path], list[tuple[str, str]]] | None = None  # (figure, value) rows for the report
    figures: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    reused: bool = False


def _smollm2() -> list[str]:
    return [sys.executable, "-m", "smollm2_recipes"]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _eval_rows(folder: Path) -> list[tuple[str, str]]:
    results = _read_json(folder / "results.json")
    rows = []
    for task, metrics in results.get("tasks", {}).items():
        for metric, value in metrics.items():
            if isinstance(value, (int, float)):
                rows.append((f"{task} {metric}", _fmt(value)))
    return rows


def _chat_rows(folder: Path) -> list[tuple[str, str]]:
    text = (folder / "chat.txt").read_text() if (folder / "chat.txt").exists() else ""
    return [("answer", text.split("assistant:", 1)[-1].strip().splitlines()[0] if "assistant:" in text else "(none)")]


def build_steps(out: Path, fast: bool) -> list[Step]:
    """The pipeline. `fast` shrinks every step (fewer tokens, rows, problems) but skips none."""
    steps = [
        Step("assets", "Embedded assets", [["assets"]], full_size="(real runs load Hub ids directly)"),
        Step(
            "chat",
            "Chat with the embedded SmolLM2-135M-Instruct",
            [["chat", "embedded:SmolLM2-135M-Instruct", "--prompt", "What is the capital of France?"]],
            full_size="smollm2 chat HuggingFaceTB/SmolLM2-1.7B-Instruct --prompt '...'",
            summarise=_chat_rows,
        ),
    ]
    return steps


def _settings_key(step: Step) -> str:
    return json.dumps(step.commands, sort_keys=True)


def run_step(step: Step, folder: Path, log) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    done = folder / ".done"
    if done.exists() and done.read_text() == _settings_key(step):
        step.reused = True
        print(f"  reusing {folder} (done in an earlier run with the same settings)", flush=True)
    else:
        done.unlink(missing_ok=True)
        start = time.time()
        for argv in step.commands:
            cmd = _smollm2() + [a.replace("{out}", str(folder)) for a in argv]
            print(f"  $ smollm2 {shlex.join(cmd[3:])}", flush=True)
            capture = folder / "chat.txt" if step.name == "chat" else None
            with open(folder / "log.txt", "a") as logf:
                proc = subprocess.run(cmd, stdout=subprocess.PIPE if capture else logf, stderr=logf, text=True)
                if capture:
                    capture.write_text(proc.stdout)
                    print(proc.stdout, flush=True)
            if proc.returncode != 0:
                tail = (folder / "log.txt").read_text().splitlines()[-15:]
                raise UserError(f"step '{step.name}' failed (exit {proc.returncode}); see {folder / 'log.txt'}:\n" + "\n".join(tail))
        step.seconds = time.time() - start
        done.write_text(_settings_key(step))
    if step.summarise:
        step.figures = step.summarise(folder)


def write_report(steps: list[Step], out: Path, fast: bool, total_seconds: float) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# SmolLM2 quickstart report", "", f"Run {now}, {'FAST=1' if fast else 'full'} mode, {total_seconds / 60:.1f} min in all.", ""]
    for step in steps:
        status = "reused" if step.reused else f"{step.seconds:.0f} s"
        lines += [f"## {step.title} ({status})", ""]
        if step.figures:
            lines += ["| figure | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in step.figures if not k.startswith("![")]
            lines += [""] + [f"{k}]({v})" for k, v in step.figures if k.startswith("![")]
        if step.full_size:
            lines += ["", f"Full size: `{step.full_size}`"]
        lines.append("")
    report = "\n".join(lines)
    (out / "REPORT.md").write_text(report)
    return report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="smollm2 quickstart", description="The whole SmolLM2 pipeline in miniature, offline.")
    parser.add_argument("--output_dir", default="outputs/quickstart")
    parser.add_argument("--fast", action="store_true", help="shrink every step (about 8 minutes)")
    parser.add_argument("--only", nargs="*", help="run only these steps (names as printed)")
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps = build_steps(out, args.fast)
    if args.only:
        unknown = set(args.only) - {s.name for s in steps}
        if unknown:
            raise UserError(f"Unknown step(s) {sorted(unknown)}; steps are: {', '.join(s.name for s in steps)}.")
        steps = [s for s in steps if s.name in args.only]
    start = time.time()
    for i, step in enumerate(steps, 1):
        print(f"[{i}/{len(steps)}] {step.title}", flush=True)
        run_step(step, out / step.name, None)
    report = write_report(steps, out, args.fast, time.time() - start)
    print("\n" + report)
    print(f"report: {out / 'REPORT.md'}")
    return 0
