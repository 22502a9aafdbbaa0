"""The quickstart cannot rot: every command of every step (FAST and full) is a real `smollm2` command whose
recipe and flags parse, and the step machinery reuses finished work and writes the report."""

import subprocess
import sys
from pathlib import Path

import pytest

from smollm2_recipes.cli import COMMANDS, _match
from smollm2_recipes.quickstart import build_steps

REPO = Path(__file__).parent.parent


def _parse_types(name, argv):
    from test_recipes import _types  # the same dataclasses the recipe test uses for each stage

    if name in ("pretrain", "extend-context", "sft", "dpo"):
        return _types(REPO / "recipes" / "smollm2" / "tiny" / ({"extend-context": "context_extension"}.get(name, name) + ".yaml"))
    return None


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "full"])
def test_every_step_command_exists_and_parses(tmp_path, fast, monkeypatch):
    from smollm2_recipes.configs import parse
    from smollm2_recipes.evaluation.cli import parse_args as parse_eval

    monkeypatch.chdir(REPO)
    steps = build_steps(tmp_path, fast)
    assert [s.name for s in steps] == ["assets", "chat", "corpus", "pretrain", "cooldown", "context", "synth", "sft", "dpo", "evaluate"]
    for step in steps:
        for argv in step.commands:
            argv = [a.replace("{out}", str(tmp_path / step.name)) for a in argv]
            name, rest = _match(argv)
            assert name in COMMANDS, argv
            if name == "eval":
                assert parse_eval(rest).tasks
            types = _parse_types(name, rest)
            if types:
                assert parse(types, rest)


def test_fast_mode_shrinks_pretraining_in_whole_steps(tmp_path, monkeypatch):
    import yaml

    monkeypatch.chdir(REPO)
    full = yaml.safe_load(Path(build_steps(tmp_path / "full", False)[3].commands[0][1]).read_text())
    fast = yaml.safe_load(Path(build_steps(tmp_path / "fast", True)[3].commands[0][1]).read_text())
    step = fast["global_batch_tokens"]
    assert all(s["tokens"] % step == 0 for s in fast["stages"])
    assert sum(s["tokens"] for s in fast["stages"]) < sum(s["tokens"] for s in full["stages"]) / 2
    assert [s["name"] for s in fast["stages"]] == [s["name"] for s in full["stages"]]  # skips nothing


def test_quickstart_runs_steps_reuses_them_and_writes_the_report(tmp_path):
    out = tmp_path / "qs"
    cmd = [sys.executable, "-m", "smollm2_recipes", "quickstart", "--output_dir", str(out), "--only", "assets", "chat"]
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert first.returncode == 0, first.stderr[-2000:]
    report = (out / "REPORT.md").read_text()
    assert "| answer | The capital of France is Paris. |" in report
    second = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert second.returncode == 0 and second.stdout.count("reusing") == 2
    bad = subprocess.run(cmd[:-2] + ["pretrian"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "Unknown step(s) ['pretrian']" in bad.stderr
