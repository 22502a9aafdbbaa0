"""Issue 17's run-safety cases through the real stages: a token passed as --hub_token is never written to disk
(training_args.bin in checkpoints and the final folder, resolved configs, logs), and a second run on an output
folder that a running process holds is refused by the real CLI with the holder's PID and host."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from smollm2_recipes import cli

REPO = Path(__file__).resolve().parents[1]
TOKEN = "hf_NeverOnDisk0123456789abcdefXYZ"


def _files_holding(folder: Path, secret: str) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def _training_args_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("training_args.bin"))


@pytest.mark.slow
def test_hub_token_is_never_written_by_pretrain(tmp_path):
    from test_pretrain import write_recipe

    out = tmp_path / "run"
    recipe = write_recipe(tmp_path / "r.yaml", steps=8, save_steps=4, lr_scheduler_kwargs={"num_decay_steps": 2}, warmup_steps=1)
    assert cli.run("pretrain", [str(recipe), "--output_dir", str(out), "--hub_token", TOKEN]) == 0
    saved = _training_args_files(out)
    assert len(saved) >= 2  # the checkpoints' (at least), so the scan below covers what the Trainer pickles
    for path in saved:
        assert torch.load(path, weights_only=False).hub_token is None
    assert _files_holding(out, TOKEN) == []


@pytest.mark.slow
def test_hub_token_is_never_written_by_sft(tmp_path, micro_model_dir):
    out = tmp_path / "sft"
    rc = cli.run("sft", ["recipes/smollm2/tiny/sft.yaml", "--model_name_or_path", micro_model_dir, "--output_dir", str(out),
                         "--bf16", "false", "--max_steps", "2", "--arith_eval_samples", "0", "--save_strategy", "steps",
                         "--save_steps", "1", "--hub_token", TOKEN, "--dataset_mixture",
                         '[{"path": "arith:sft", "num_samples": 16}]'])
    assert rc == 0
    saved = _training_args_files(out)
    assert any(p.parent == out for p in saved) and any(p.parent != out for p in saved)  # final folder and a checkpoint
    for path in saved:
        assert torch.load(path, weights_only=False).hub_token is None
    assert _files_holding(out, TOKEN) == []


def test_live_config_keeps_its_token_for_the_upload():
    import copy

    from smollm2_recipes.post_training.sft import SmolSFTConfig

    args = SmolSFTConfig(output_dir="unused", hub_token=TOKEN, use_cpu=True)
    assert copy.copy(args).hub_token == TOKEN and copy.deepcopy(args).hub_token == TOKEN
    import pickle

    assert pickle.loads(pickle.dumps(args)).hub_token is None


HOLDER = textwrap.dedent("""
    import sys, time
    from smollm2_recipes.runkit import claim_output_dir
    with claim_output_dir(sys.argv[1], finished_marker="run_complete.json"):
        print("held", flush=True)
        time.sleep(120)
""")


@pytest.mark.slow
def test_second_pretrain_on_a_held_folder_is_refused_by_the_cli(tmp_path):
    from test_pretrain import write_recipe

    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        recipe = write_recipe(tmp_path / "r.yaml", steps=8, lr_scheduler_kwargs={"num_decay_steps": 2}, warmup_steps=1)
        second = subprocess.run([sys.executable, "-m", "smollm2_recipes", "pretrain", str(recipe), "--output_dir", str(out)],
                                capture_output=True, text=True, env=env, timeout=600, cwd=REPO)
        lines = [line for line in second.stderr.splitlines() if line.strip()]
        assert second.returncode == 2, second.stderr[-2000:]
        assert len(lines) == 1 and f"PID {holder.pid} on host {socket.gethostname()}" in lines[0], second.stderr[-2000:]
        assert sorted(p.name for p in out.iterdir()) == [".smollm2.lock"]  # the refused run wrote nothing
    finally:
        holder.send_signal(signal.SIGTERM)
        holder.wait(timeout=30)
