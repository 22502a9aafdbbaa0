"""`smollm2 quickstart` (`make quickstart`): the whole SmolLM2 story in miniature on a laptop CPU, with the
real SmolLM2 tokenizer and SmolLM2-135M-Instruct, ending in outputs/quickstart/REPORT.md and, next to it,
report.json (the same figures for programs).

Each step is a real `smollm2 ...` command run in a subprocess (the same code a user runs), writing into
its own folder. A step whose folder holds a `.done` marker from an earlier run with the same settings is
reused and says so, so a second run only redoes what changed. Figures for the report are read back from
the files each step wrote (JSON results, trainer logs), never recomputed here.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Callable

from smollm2_recipes.errors import UserError
from smollm2_recipes.runkit.parsing import ArgumentParser


TINY = "recipes/smollm2/tiny"  # the CPU recipes every step shrinks or runs as they are


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


def _chat_rows(folder: Path) -> list[tuple[str, str]]:
    text = (folder / "chat.txt").read_text() if (folder / "chat.txt").exists() else ""
    return [("answer", text.split("assistant:", 1)[-1].strip().splitlines()[0] if "assistant:" in text else "(none)")]


def _pretrain_rows(folder: Path) -> list[tuple[str, str]]:
    """Held-out loss of each stage's own mixture at the start and at the end of that stage."""
    run = folder / "run"
    summary = _read_json(run / "run_complete.json")
    history = [json.loads(line) for line in (run / "log_history.jsonl").read_text().splitlines()] if (run / "log_history.jsonl").exists() else []
    rows, start = [], 0
    for name, end in summary.get("stage_ends", []):
        key = f"eval_{name}_loss"
        evals = [(h["step"], h[key]) for h in history if key in h]
        before = next((v for step, v in evals if step >= start), None)
        after = next((v for step, v in evals if step == end), None)
        train = [h["loss"] for h in history if "loss" in h and start < h["step"] <= end]
        rows.append((f"stage {name} (steps {start}-{end}) held-out loss", f"{_fmt(before)} → {_fmt(after)}"
                     + (f" (train loss at end {_fmt(train[-1])})" if train else "")))
        start = end
    speeds = [h["tokens_per_second"] for h in history if "tokens_per_second" in h]
    if speeds:
        rows.append(("tokens/s (median of logged steps)", f"{sorted(speeds)[len(speeds) // 2]:.0f}"))
    rows.append(("tokens seen", f"{summary.get('tokens_seen', 0):,}"))
    rows.append(("![loss and LR with stage boundaries", "run/training_curves.png"))
    return rows


def _context_rows(folder: Path) -> list[tuple[str, str]]:
    by_position = _read_json(folder / "run" / "loss_by_position.json")
    rows = [(f"held-out loss at positions {bucket} (before → after)",
             f"{_fmt(loss)} → {_fmt(by_position['after'].get(bucket))}") for bucket, loss in by_position.get("before", {}).items()]
    if by_position:
        rows.append(("worst bucket beyond the original length / inside it, after (goal ≤ 1.1; before)",
                     f"{by_position['after_beyond_over_inside']:.3f} (before {by_position['before_beyond_over_inside']:.3f})"))
    result = _read_json(folder / "run" / "passkey.json")
    by_length = [f"{length}: {_fmt(sum(row[j] for row in result['accuracy']) / len(result['accuracy']))}"
                 for j, length in enumerate(result.get("lengths", []))]
    return rows + [("passkey accuracy by length (tokens: accuracy)", ", ".join(by_length)),
                   ("passkey: why no retrieval is expected here", "a 7M-parameter model cannot retrieve a passkey at any length; "
                    "the 135M can: smollm2 eval HuggingFaceTB/SmolLM2-135M --tasks passkey"),
                   ("![held-out loss by position bucket, before and after", "run/loss_by_position.png"),
                   ("![passkey heatmap", "run/passkey_heatmap.png")]


def _compare_rows(folder: Path, stable_step: int) -> list[tuple[str, str]]:
    checkpoints = _read_json(folder / "eval-checkpoints" / "results.json").get("checkpoints", [])
    by_step = {c.get("step"): c["tasks"].get("perplexity", {}).get("perplexity") for c in checkpoints}
    rows = [(f"stable-phase checkpoint-{stable_step} (constant LR): held-out perplexity", _fmt(by_step.get(stable_step)))]
    for name, label in [("cooldown", "cooldown branch from it (1-sqrt)"), ("average", "average of the stable-phase checkpoints"),
                        ("final", "main run after its own decay")]:
        ppl = _read_json(folder / f"eval-{name}" / "results.json").get("tasks", {}).get("perplexity", {})
        rows.append((f"{label}: held-out perplexity", _fmt(ppl.get("perplexity"))))
    rows.append(("![held-out perplexity of the main run's checkpoints against tokens", "eval-checkpoints/curves/perplexity_perplexity.png"))
    return rows


def _magpie_counts(folder: Path) -> dict:
    """The MagPie summary's counts, read defensively (older summaries lack `rows`, `tags_parsed`, `truncated_written`)."""
    magpie = _read_json(folder / "magpie" / "summary.json")
    tags = magpie.get("tags", {})
    return {"tags_parsed": magpie.get("tags_parsed", tags.get("parsed")), "tags_total": tags.get("total"),
            "rows": magpie.get("rows", magpie.get("rows_written")), "generated": magpie.get("generated"),
            "truncated_written": magpie.get("truncated_written"), "truncated_dropped": magpie.get("truncated_dropped")}


def _synth_rows(folder: Path) -> list[tuple[str, str]]:
    magpie, prefs = _magpie_counts(folder), _read_json(folder / "preferences" / "summary.json")
    return [("MagPie conversations written (generated)", f"{magpie['rows']} ({magpie['generated']})"),
            ("MagPie tags parsed as JSON", f"{magpie['tags_parsed']}/{magpie['tags_total']}"),
            ("MagPie turns cut at max_new_tokens: written (dropped)", f"{magpie['truncated_written']} ({magpie['truncated_dropped']})"),
            (f"preference pairs ({prefs.get('verifier', '?')} verifier)", f"{prefs.get('pairs')} from {prefs.get('prompts')} prompts"
             + (f"; {prefs['no_contrast']} prompts had no right/wrong contrast" if prefs.get("no_contrast") else ""))] \
        + _example_rows(folder)


def _cell(text, limit: int = 140) -> str:
    """One table cell: whitespace flattened, pipes escaped, shortened for the report (the rows are whole)."""
    text = " ".join(str(text or "").split()).replace("|", "\\|")
    return text if len(text) <= limit else text[:limit] + " …"


def _example_rows(folder: Path) -> list[tuple[str, str]]:
    """The 3 example rows each synth summary.json carries."""
    rows = []
    for i, ex in enumerate(_read_json(folder / "magpie" / "summary.json").get("examples", [])[:3], 1):
        rows.append((f"MagPie example {i}", " / ".join(f"{m['role']}: {_cell(m['content'], 100)}" for m in ex.get("messages", [])[:2])))
    for i, ex in enumerate(_read_json(folder / "preferences" / "summary.json").get("examples", [])[:3], 1):
        rows.append((f"preference pair example {i}", f"prompt: {_cell(ex['prompt'][0]['content'], 80)} / chosen: "
                     f"{_cell(ex['chosen'][0]['content'], 80)} / rejected: {_cell(ex['rejected'][0]['content'], 80)}"))
    return rows


def _arith_rows(folder: Path) -> list[tuple[str, str]]:
    results = _read_json(folder / "run" / "arith_eval.json")
    return [(f"arith accuracy {label.replace('_', ' ')}", f"{r['accuracy']:.1%} ({r['correct']}/{r['n']})") for label, r in results.items()]


def dpo_gain(out: Path) -> dict | None:
    """After-SFT vs after-DPO on the same held-out problems (both runs evaluate seed-0 problems in order), with a
    paired bootstrap 95% interval of the difference; None when either per-problem list is missing."""
    from smollm2_recipes.evaluation.paired_bootstrap import paired_bootstrap_ci

    sft = _read_json(out / "sft" / "run" / "arith_eval.json").get("after_sft", {})
    dpo = _read_json(out / "dpo" / "run" / "arith_eval.json").get("after_dpo", {})
    if "correct_per_problem" not in sft or "correct_per_problem" not in dpo or sft.get("seed") != dpo.get("seed"):
        return None
    return paired_bootstrap_ci(sft["correct_per_problem"], dpo["correct_per_problem"], seed=0)


def _dpo_rows(folder: Path, fast: bool) -> list[tuple[str, str]]:
    gain = dpo_gain(folder.parent)
    if gain is None:
        return _arith_rows(folder) + [("DPO gain", "(no per-problem results to compare)")]
    lo, hi = gain["ci"]
    verdict = "no goal in FAST mode" if fast else ("above 0: a gain beyond noise" if lo > 0 else "goal (above 0) not met")
    return _arith_rows(folder) + [(f"DPO gain on the same {gain['n']} problems, paired bootstrap 95% interval",
                                   f"{gain['gain']:+.1%} [{lo:+.1%}, {hi:+.1%}] ({verdict})")]


# the instruct model we start from and the final one: all 164 problems each (~5 min per model on 2 cores)
HUMANEVAL_MODELS = ("before", "after-dpo")
FAST_HUMANEVAL = "left out in FAST mode: too few of 164 problems fit in 6 minutes to tell the models apart"


def _evals_rows(folder: Path, fast: bool) -> list[tuple[str, str]]:
    if fast:
        return [("HumanEval", FAST_HUMANEVAL)]
    rows = []
    for name in HUMANEVAL_MODELS:
        result = _read_json(folder / name / "results.json").get("tasks", {}).get("humaneval", {})
        rows.append((f"HumanEval pass@1 {name.replace('-', ' ')} (solved/problems)",
                     f"{_fmt(result.get('pass@1'))} ({result.get('passed')}/{result.get('n')})"))
    return rows


def build_steps(out: Path, fast: bool) -> list[Step]:
    """The pipeline. `fast` shrinks every step (fewer tokens, rows, problems) but skips none."""
    pretrain_recipe = str(_shrunk_pretrain_recipe(out, 1 / 4 if fast else 1.0))
    pretrain = out / "pretrain" / "run"
    plan = _read_yaml(pretrain_recipe)
    save = plan["save_steps"]
    stable_ckpt, early_ckpt = pretrain / f"checkpoint-{2 * save}", pretrain / f"checkpoint-{save}"
    decay_steps = max(2, save // 2)
    arith_n = "40" if fast else "500"  # the same problems after SFT and after DPO: a paired comparison
    # 32 half-length rows (~130 problems): enough to move arithmetic accuracy, not to learn it well
    sft_budget = ["--max_steps", "32", "--max_length", "512"] if fast else []
    rows = "4" if fast else "20"
    steps = [
        Step("assets", "Embedded assets", [["assets"]], full_size="(real runs load Hub ids directly)"),
        Step("chat", "Chat with the embedded SmolLM2-135M-Instruct",
             [["chat", "embedded:SmolLM2-135M-Instruct", "--prompt", "What is the capital of France?"]],
             full_size="smollm2 chat HuggingFaceTB/SmolLM2-1.7B-Instruct", summarise=_chat_rows),
        Step("corpus", "Embedded pretraining corpus (web, code, math, long)", [["corpus", "build"]],
             full_size="the Hub datasets named in recipes/smollm2/1.7B/pretrain.yaml (smollm2 data inspect RECIPE)"),
        Step("pretrain", "Four-stage pretraining with WSD (tiny model, real tokenizer)",
             [["pretrain", pretrain_recipe, "--output_dir", "{out}/run"]],
             full_size="accelerate launch --config_file recipes/accelerate_configs/ddp.yaml scripts/run_pretrain.py recipes/smollm2/1.7B/pretrain.yaml",
             summarise=_pretrain_rows),
        Step("cooldown", "Cooldown branch and checkpoint average vs the main run (Hägele et al.)",
             [["pretrain", pretrain_recipe, "--cooldown_from", str(stable_ckpt), "--decay_steps", str(decay_steps),
               "--decay_type", "1-sqrt", "--output_dir", "{out}/branch"],
              ["average", str(early_ckpt), str(stable_ckpt), "--output_dir", "{out}/average"],
              ["eval", str(pretrain), "--each_checkpoint", "--tasks", "perplexity", "--output_dir", "{out}/eval-checkpoints"],
              ["eval", "{out}/branch", "--tasks", "perplexity", "--output_dir", "{out}/eval-cooldown"],
              ["eval", "{out}/average", "--tasks", "perplexity", "--output_dir", "{out}/eval-average"],
              ["eval", str(pretrain), "--tasks", "perplexity", "--output_dir", "{out}/eval-final"]],
             full_size="smollm2 pretrain recipes/smollm2/1.7B/pretrain.yaml --cooldown_from OUT/checkpoint-N --decay_steps 100000 --decay_type 1-sqrt --output_dir OUT-cooldown-N",
             summarise=partial(_compare_rows, stable_step=2 * save)),
        Step("context", "Context extension 256 → 1024 tokens (RoPE theta 10k → 100k)",
             [["extend-context", str(_shrunk_context_recipe(out, fast)), "--model", str(pretrain), "--output_dir", "{out}/run"]],
             full_size="smollm2 extend-context recipes/smollm2/1.7B/context_extension.yaml", summarise=_context_rows),
        Step("synth", "MagPie-style conversations and a verified preference set (distilabel)",
             [["synth", "magpie", "recipes/synth/tiny_magpie.yaml", "--output_dir", "{out}/magpie", "--num_rows", rows],
              ["synth", "preferences", "recipes/synth/tiny_preferences.yaml", "--output_dir", "{out}/preferences", "--num_rows", rows]],
             full_size="smollm2 synth magpie recipes/synth/magpie_ultra.yaml", summarise=_synth_rows),
        Step("sft", "SFT of SmolLM2-135M-Instruct on verified arithmetic (TRL SFTTrainer)",
             [["sft", f"{TINY}/sft.yaml", "--output_dir", "{out}/run", "--arith_eval_samples", arith_n, *sft_budget]],
             full_size="accelerate launch --config_file recipes/accelerate_configs/ddp.yaml scripts/run_sft.py recipes/smollm2/1.7B/sft.yaml",
             summarise=_arith_rows),
        Step("dpo", "DPO on on-policy pairs picked by the verifier (TRL DPOTrainer)",
             [["dpo", str(_shrunk_dpo_recipe(out, fast)), "--model_name_or_path", str(out / "sft" / "run"),
               "--output_dir", "{out}/run", "--arith_eval_samples", arith_n]],
             full_size="accelerate launch --config_file recipes/accelerate_configs/ddp.yaml scripts/run_dpo.py recipes/smollm2/1.7B/dpo.yaml",
             summarise=partial(_dpo_rows, fast=fast)),
        Step("evaluate", "Offline evaluation before/after: HumanEval, all 164 problems" + (" (left out in FAST mode)" if fast else ""),
             [] if fast else  # FAST keeps the step and says why it has no figures
             [["eval", model, "--tasks", "humaneval", "--output_dir", f"{{out}}/{name}"]
              for name, model in zip(HUMANEVAL_MODELS, ["embedded:SmolLM2-135M-Instruct", str(out / "dpo" / "run")])],
             full_size="smollm2 eval recipes/eval/smollm2_instruct.yaml HuggingFaceTB/SmolLM2-1.7B-Instruct",
             summarise=partial(_evals_rows, fast=fast)),
    ]
    return steps


def _read_yaml(path) -> dict:
    import yaml

    return yaml.safe_load(Path(path).read_text())


def _write_yaml_once(path: Path, data: dict, source: str) -> Path:
    import yaml

    text = f"# Derived by `smollm2 quickstart` from {source}.\n" + yaml.safe_dump(data, sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def _scale_stages(recipe: dict, scale: float) -> int:
    """Scale every stage's token budget in whole optimiser steps; returns the run's steps."""
    step = recipe["global_batch_tokens"]
    for stage in recipe["stages"]:
        stage["tokens"] = max(step, round(stage["tokens"] * scale / step) * step)
    return sum(stage["tokens"] for stage in recipe["stages"]) // step


def _shrunk_pretrain_recipe(out: Path, scale: float) -> Path:
    """The tiny pretraining recipe with every stage's budget scaled (FAST=1), in whole optimiser steps."""
    src = f"{TINY}/pretrain.yaml"
    recipe = _read_yaml(src)
    if scale != 1.0:
        recipe["save_steps"] = _scale_stages(recipe, scale) // 3
        recipe["warmup_steps"] = max(2, round(recipe["warmup_steps"] * scale))
    recipe["save_total_limit"] = None  # the cooldown and the average read the stable-phase checkpoints
    return _write_yaml_once(out / "recipes" / "pretrain.yaml", recipe, src)


def _shrunk_dpo_recipe(out: Path, fast: bool) -> Path:
    src = f"{TINY}/dpo.yaml"
    recipe = _read_yaml(src)
    if fast:
        for source in recipe["dataset_mixture"]:
            source["num_samples"] = min(source.get("num_samples", 8), 8)
    return _write_yaml_once(out / "recipes" / "dpo.yaml", recipe, src)


def _shrunk_context_recipe(out: Path, fast: bool) -> Path:
    src = f"{TINY}/context_extension.yaml"
    recipe = _read_yaml(src)
    if fast:  # a quarter of the tokens, half the passkey samples per cell
        recipe["save_steps"] = max(1, _scale_stages(recipe, 1 / 4) // 2)
        recipe["passkey_samples"] = max(1, recipe["passkey_samples"] // 2)
    return _write_yaml_once(out / "recipes" / "context_extension.yaml", recipe, src)


def _settings_key(step: Step) -> str:
    """What a step's result depends on: its commands and the text of the recipes they read."""
    recipes = {a: Path(a).read_text() for argv in step.commands for a in argv if a.endswith(".yaml") and Path(a).is_file()}
    return json.dumps({"commands": step.commands, "recipes": recipes}, sort_keys=True)


def _run_teed(cmd: list[str], log_path: Path) -> tuple[int, str]:
    """Run a command with its output (progress bars included) on the terminal and in the step's log."""
    chunks = []
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        while chunk := proc.stdout.read1(4096):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            log.write(chunk)
            chunks.append(chunk)
        return proc.wait(), b"".join(chunks).decode(errors="replace")


def run_step(step: Step, folder: Path, rerun: bool) -> bool:
    """Run a step unless an earlier run finished it with the same settings (and nothing upstream re-ran).
    Returns whether it ran. A step that did not finish leaves no `.done`, and its folder is redone."""
    done = folder / ".done"
    if not rerun and done.exists() and done.read_text() == _settings_key(step):
        step.reused = True
        print(f"  reusing {folder} (finished in an earlier run with the same settings)", flush=True)
    else:
        if folder.exists():
            shutil.rmtree(folder)  # the quickstart's own unfinished or outdated intermediate results
        folder.mkdir(parents=True)
        start = time.time()
        for argv in step.commands:
            cmd = _smollm2() + [a.replace("{out}", str(folder)) for a in argv]
            print(f"  $ smollm2 {shlex.join(cmd[3:])}", flush=True)
            returncode, output = _run_teed(cmd, folder / "log.txt")
            if step.name == "chat":
                (folder / "chat.txt").write_text(output)
            if returncode != 0:
                tail = output.replace("\r", "\n").splitlines()[-15:]
                raise UserError(f"step '{step.name}' failed (exit {returncode}); see {folder / 'log.txt'}:\n" + "\n".join(tail))
        step.seconds = time.time() - start
        done.write_text(_settings_key(step))
    if step.summarise:
        step.figures = step.summarise(folder)
    return not step.reused


def write_report(steps: list[Step], out: Path, fast: bool, total_seconds: float) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["# SmolLM2 quickstart report", "", f"Run {now}, {'FAST=1' if fast else 'full'} mode, {total_seconds / 60:.1f} min in all"
             " (steps marked reused were finished by an earlier run).", "",
             "| step | time | figure | value |", "|---|---|---|---|"]
    for step in steps:  # one table with every figure: the summary to read first (and to paste)
        time_taken = "reused" if step.reused else f"{step.seconds:.0f} s"
        table = [(k, v) for k, v in step.figures if not k.startswith("![")] or [("", "")]
        lines += [f"| {step.name if i == 0 else ''} | {time_taken if i == 0 else ''} | {k} | {v} |" for i, (k, v) in enumerate(table)]
    lines.append("")
    for step in steps:
        ran = ["smollm2 " + shlex.join(a.replace("{out}", str(out / step.name)) for a in argv) for argv in step.commands]
        lines += [f"## {step.title}", ""] + [f"{k}]({step.name}/{v})" for k, v in step.figures if k.startswith("![")]
        lines += ["", "Ran:", "```", *ran, "```", f"Full size: `{step.full_size}`", ""]
    report = "\n".join(lines)
    (out / "REPORT.md").write_text(report)
    return report


def report_figures(steps: list[Step], out: Path, fast: bool, total_seconds: float) -> dict:
    """report.json: the report's figures for programs, read back from the files each step wrote."""
    magpie = _magpie_counts(out / "synth")
    by_position = _read_json(out / "context" / "run" / "loss_by_position.json")
    gain = dpo_gain(out)
    humaneval = {}
    for name in () if fast else HUMANEVAL_MODELS:
        result = _read_json(out / "evaluate" / name / "results.json").get("tasks", {}).get("humaneval", {})
        humaneval[name] = {"solved": result.get("passed"), "n": result.get("n"), "pass@1": result.get("pass@1")}
    return {
        "mode": "fast" if fast else "full",
        "total_seconds": round(total_seconds, 1),
        "steps": {s.name: {"seconds": round(s.seconds, 1), "reused": s.reused, "figures": dict(s.figures)} for s in steps},
        "synth": {"magpie": {k: magpie[k] for k in ("tags_parsed", "rows", "truncated_written")},
                  "preference_pairs": _read_json(out / "synth" / "preferences" / "summary.json").get("pairs")},
        "context": {"loss_by_position": {k: by_position.get(k) for k in ("before", "after", "original_length")}},
        "dpo": {"n": gain["n"], "after_sft": gain["first"], "after_dpo": gain["second"], "gain": gain["gain"],
                "gain_ci95": gain["ci"]} if gain else {"n": None, "after_sft": None, "after_dpo": None, "gain_ci95": None},
        "evaluate": {"humaneval": humaneval, **({"humaneval_note": FAST_HUMANEVAL} if fast else {})},
    }


def write_report_json(steps: list[Step], out: Path, fast: bool, total_seconds: float) -> Path:
    import os

    path, tmp = out / "report.json", out / "report.json.tmp"
    tmp.write_text(json.dumps(report_figures(steps, out, fast, total_seconds), indent=1))
    os.replace(tmp, path)
    return path


def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="smollm2 quickstart", description="The whole SmolLM2 pipeline in miniature, offline.")
    parser.add_argument("--output_dir", default="outputs/quickstart")
    parser.add_argument("--fast", action="store_true", help="shrink every step, skip none but HumanEval (about 6 minutes on 2 CPU cores; the full run about 25)")
    parser.add_argument("--only", nargs="*", help="run only these steps (names as printed)")
    args = parser.parse_args(argv)
    out = Path(args.output_dir)
    if args.only:  # checked before anything lands in output_dir (building the steps writes their recipes)
        with tempfile.TemporaryDirectory() as scratch:
            names = [s.name for s in build_steps(Path(scratch), args.fast)]
        unknown = set(args.only) - set(names)
        if unknown:
            raise UserError(f"Unknown step(s) {sorted(unknown)}; steps are: {', '.join(names)}.")
    out.mkdir(parents=True, exist_ok=True)
    steps = build_steps(out, args.fast)
    if args.only:
        steps = [s for s in steps if s.name in args.only]
    start, rerun = time.time(), False
    for i, step in enumerate(steps, 1):
        print(f"[{i}/{len(steps)}] {step.title}", flush=True)
        rerun = run_step(step, out / step.name, rerun) or rerun  # a step that re-ran invalidates what follows
    total = time.time() - start
    report = write_report(steps, out, args.fast, total)
    write_report_json(steps, out, args.fast, total)
    print("\n" + report)
    print(f"report: {out / 'REPORT.md'} (figures for programs: {out / 'report.json'})")
    return 0
