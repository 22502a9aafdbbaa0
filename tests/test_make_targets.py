"""`make pretrain|extend-context|sft|dpo|eval` without RECIPE / MODEL: the flagship recipe through
`accelerate launch` on every CUDA GPU found, the CPU recipe elsewhere, one line first saying which; and
`make sft && make dpo` chaining on this CPU (DPO's default model is SFT's output_dir)."""

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from smollm2_recipes.errors import UserError
from smollm2_recipes.stage_outputs import latest_stage_output

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
# -o: the test venv counts as installed (make would otherwise reinstall it when the Makefile is newer).
MAKE = ["make", "--no-print-directory", "-f", str(REPO / "Makefile"), "-o", f"{VENV}/.installed", f"VENV={VENV}"]
STAGES = [("pretrain", "pretrain"), ("extend-context", "context_extension"), ("sft", "sft"), ("dpo", "dpo")]
pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")


def _dry_run(target: str, *variables: str, cwd: Path) -> list[str]:
    proc = subprocess.run([*MAKE, "-n", target, *variables], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


@pytest.mark.parametrize("target, stage", STAGES)
def test_without_recipe_on_a_cpu_the_tiny_recipe_runs_and_the_first_line_says_so(target, stage, tmp_path):
    first, command = _dry_run(target, "HAS_CUDA=", cwd=tmp_path)
    assert f"recipes/smollm2/tiny/{stage}.yaml runs" in first
    assert f"make {target} RECIPE=recipes/smollm2/{stage}.yaml ACCELERATE_CONFIG=recipes/accelerate_configs/ddp.yaml" in first
    assert command.split()[1:3] == [target, str(REPO / "recipes/smollm2/tiny" / f"{stage}.yaml")]


@pytest.mark.parametrize("target, stage", STAGES)
def test_without_recipe_on_gpus_the_flagship_runs_through_accelerate_on_all_of_them(target, stage, tmp_path):
    first, command = _dry_run(target, "HAS_CUDA=1", "GPUS=4", cwd=tmp_path)
    assert f"4 CUDA GPU(s) found: the flagship recipe recipes/smollm2/{stage}.yaml" in first
    assert f"make {target} RECIPE=recipes/smollm2/tiny/{stage}.yaml" in first
    launch = command.split("&&")[1].split()
    assert launch[1:3] == ["launch", "--quiet"] and "--num_processes 4" in command
    assert launch[-2:] == [str(REPO / "scripts" / f"run_{stage}.py"), str(REPO / "recipes/smollm2" / f"{stage}.yaml")]
    assert command.startswith(f"{VENV}/bin/python -m smollm2_recipes.launch_check {REPO}/recipes/accelerate_configs/ddp.yaml --num_processes 4")


def test_a_given_recipe_runs_as_given(tmp_path):
    lines = _dry_run("sft", "HAS_CUDA=1", "GPUS=4", "RECIPE=my.yaml", "ARGS=--max_steps 3", cwd=tmp_path)
    assert lines == [f"{VENV}/bin/smollm2 sft my.yaml --max_steps 3"]


def test_the_tiny_dpo_recipe_starts_from_the_tiny_sft_output():
    tiny = REPO / "recipes" / "smollm2" / "tiny"
    sft, dpo = (yaml.safe_load((tiny / f"{n}.yaml").read_text()) for n in ("sft", "dpo"))
    assert dpo["model_name_or_path"] == sft["output_dir"]


def test_make_eval_without_a_finished_stage_says_which_to_run_first(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"no MODEL given and no finished stage output in outputs/tiny/dpo, outputs/tiny/sft.*make sft"):
        latest_stage_output("recipes/smollm2/tiny")


@pytest.mark.slow  # two real runs of SmolLM2-135M-Instruct (a few steps each; about 2-4 min on 2 busy cores)
@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="with GPUs `make sft` runs the flagship recipe")
def test_make_sft_and_make_dpo_chain_on_a_cpu(tmp_path, monkeypatch):
    # Only the run length is shortened through ARGS; the recipes, their output_dir and DPO's starting model are
    # the Makefile's defaults. outputs/ lands in the working directory (tmp_path), not in the checkout.
    sft_args = "--max_steps 2 --max_train_samples 16 --max_length 256 --arith_eval_samples 0 --bf16 false --logging_steps 1"
    mixture = '[{"path":"arith:onpolicy","num_samples":4,"samples_per_prompt":2,"max_new_tokens":24,"seed":1}]'
    dpo_args = f"--max_steps 1 --per_device_train_batch_size 2 --arith_eval_samples 0 --bf16 false --dataset_mixture '{mixture}'"
    make = shlex.join(MAKE)
    script = f"{make} sft ARGS={shlex.quote(sft_args)} && {make} dpo ARGS={shlex.quote(dpo_args)}"
    proc = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=1200,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("make sft: no CUDA GPU: the CPU recipe recipes/smollm2/tiny/sft.yaml runs")
    assert any(line.startswith("make dpo: no CUDA GPU: the CPU recipe recipes/smollm2/tiny/dpo.yaml runs") for line in lines)
    for stage in ("sft", "dpo"):
        assert (tmp_path / "outputs" / "tiny" / stage / "model.safetensors").is_file()
    resolved = yaml.safe_load((tmp_path / "outputs/tiny/dpo/resolved_config.yaml").read_text())
    assert resolved["model_name_or_path"] == "outputs/tiny/sft"
    monkeypatch.chdir(tmp_path)
    assert latest_stage_output("recipes/smollm2/tiny") == "outputs/tiny/dpo"  # what `make eval` evaluates next
