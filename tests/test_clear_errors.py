"""Mistakes that used to end in a raw traceback now end in one `error:` line, before anything is loaded or
written: a tracker in report_to that is not installed, push_to_hub with the Hub offline, and a closed pipe
on stdout (`smollm2 --help | true`, `... | head -1`)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from smollm2_recipes import cli

REPO = Path(__file__).parent.parent
SFT_RECIPE, PRETRAIN_RECIPE = "recipes/smollm2/tiny/sft.yaml", "recipes/smollm2/tiny/pretrain.yaml"


def _missing_trackers():
    from transformers.integrations import INTEGRATION_TO_CALLBACK, get_available_reporting_integrations

    available = set(get_available_reporting_integrations())
    return [name for name in ("wandb", "comet_ml", "mlflow", "neptune", "clearml") if name in INTEGRATION_TO_CALLBACK and name not in available]


def _one_error_line(capsys) -> str:
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, errors
    return errors[0]


@pytest.mark.parametrize("tracker", _missing_trackers() or [pytest.param("wandb", marks=pytest.mark.skip("every tracker is installed"))])
@pytest.mark.parametrize("command, recipe", [("sft", SFT_RECIPE), ("pretrain", PRETRAIN_RECIPE)])
def test_report_to_a_tracker_that_is_not_installed(command, recipe, tracker, tmp_path, capsys):
    from smollm2_recipes.preflight import TRACKER_PACKAGES

    out = tmp_path / "out"
    rc = cli.run(command, [recipe, "--report_to", tracker, "--output_dir", str(out)])
    line = _one_error_line(capsys)
    assert rc == 2 and f"report_to '{tracker}'" in line and f"pip install {TRACKER_PACKAGES[tracker]}" in line
    assert not out.exists()


def test_report_to_an_unknown_tracker_lists_the_valid_ones(tmp_path, capsys):
    rc = cli.run("sft", [SFT_RECIPE, "--report_to", "wandbb", "--output_dir", str(tmp_path / "out")])
    line = _one_error_line(capsys)
    assert rc == 2 and "'wandbb'" in line and "tensorboard" in line


@pytest.mark.parametrize("command, recipe", [("sft", SFT_RECIPE), ("pretrain", PRETRAIN_RECIPE)])
def test_push_to_hub_offline_stops_before_training(command, recipe, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "run"
    rc = cli.run(command, [recipe, "--push_to_hub", "true", "--output_dir", str(out)])
    line = _one_error_line(capsys)
    assert rc == 2 and "push_to_hub" in line and "HF_HUB_OFFLINE" in line and "smollm2 upload" in line
    assert not out.exists()  # nothing trained, nothing written


def test_push_to_hub_without_a_token_stops_before_training(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no stored token
    monkeypatch.delenv("HF_TOKEN", raising=False)
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf" / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "hf" / "stored_tokens"))
    rc = cli.run("sft", [SFT_RECIPE, "--push_to_hub", "true", "--output_dir", str(tmp_path / "run")])
    line = _one_error_line(capsys)
    assert rc == 2 and "no Hub token" in line and not (tmp_path / "run").exists()


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO)}


@pytest.mark.parametrize("argv", [["--help"], ["model-info", "135M"], ["nosuchcommand"]])
def test_a_closed_stdout_pipe_is_no_traceback(argv, tmp_path):
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before we write: every write to stdout fails with EPIPE
    try:
        proc = subprocess.run([sys.executable, "-m", "smollm2_recipes", *argv], stdout=write_end, stderr=subprocess.PIPE,
                              text=True, env=_env(), cwd=tmp_path, timeout=300)
    finally:
        os.close(write_end)
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr
    assert proc.returncode in (141, 2)  # 141: ended by the closed pipe, as `yes | head -1` is; 2: error on stderr


@pytest.mark.parametrize("pipeline", ["smollm2 --help | true", "smollm2 model-info 135M | head -1"])
def test_shell_pipelines_that_close_early(pipeline, tmp_path):
    smollm2 = f"{sys.executable} -m smollm2_recipes"
    proc = subprocess.run(["bash", "-c", pipeline.replace("smollm2", smollm2, 1)], capture_output=True, text=True,
                          env=_env(), cwd=tmp_path, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    if "head -1" in pipeline:
        assert len(proc.stdout.splitlines()) == 1
