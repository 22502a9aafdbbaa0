import subprocess
import sys

from smollm2_recipes.cli import COMMANDS


def _smollm2(*args):
    return subprocess.run([sys.executable, "-m", "smollm2_recipes", *args], capture_output=True, text=True)


def test_help_lists_every_stage():
    out = _smollm2("--help")
    assert out.returncode == 0
    for name in COMMANDS:
        assert name in out.stdout


def test_unknown_command_suggests_the_closest():
    out = _smollm2("pretrian", "recipe.yaml")
    assert out.returncode == 2 and "unknown command 'pretrian'" in out.stderr and "smollm2 pretrain" in out.stderr


def test_group_without_subcommand_lists_its_members():
    out = _smollm2("synth")
    assert out.returncode == 2 and "synth magpie" in out.stdout and "synth preferences" in out.stdout


def test_scripts_and_cli_share_the_command_table():
    from pathlib import Path

    scripts = Path(__file__).parent.parent / "scripts"
    for script, command in [("run_pretrain", "pretrain"), ("run_context_extension", "extend-context"), ("run_sft", "sft"), ("run_dpo", "dpo")]:
        assert f'run("{command}")' in (scripts / f"{script}.py").read_text()
        assert command in COMMANDS
