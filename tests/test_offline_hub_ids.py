"""Offline, a name that is neither local nor a cached Hub id stops at `assets.resolve`, before any model
loads, with one line naming it and the offline alternative; the flagship recipes stop that way here."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from smollm2_recipes import cli
from smollm2_recipes.assets import resolve
from smollm2_recipes.errors import UserError

REPO = Path(__file__).parent.parent
ALTERNATIVE = "recipes/smollm2/tiny/"


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_an_uncached_hub_id_offline_is_one_line_naming_it_and_the_alternative(empty_hub_cache):
    with pytest.raises(UserError) as err:
        resolve("HuggingFaceTB/SmolLM2-1.7B")
    message = str(err.value)
    assert "'HuggingFaceTB/SmolLM2-1.7B'" in message and "HF_HUB_OFFLINE" in message
    assert ALTERNATIVE in message and "embedded:SmolLM2-135M-Instruct" in message and "\n" not in message


def test_a_cached_hub_id_resolves_offline(empty_hub_cache):
    # The cache layout huggingface_hub documents: refs/main names the snapshot folder that holds the files.
    repo = empty_hub_cache / "models--HuggingFaceTB--SmolLM2-1.7B"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (repo / "snapshots" / ("0" * 40) / "config.json").write_text("{}")
    assert resolve("HuggingFaceTB/SmolLM2-1.7B") == "HuggingFaceTB/SmolLM2-1.7B"


def test_local_paths_and_data_names_pass_through(empty_hub_cache, tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    for name in (str(folder), "arith:sft", "data/train.jsonl", "data/*.parquet"):
        assert resolve(name) == name


def test_a_missing_earlier_stage_output_says_to_run_that_stage_first(empty_hub_cache):
    from smollm2_recipes.runkit.loading import check_model_source

    assert resolve("outputs/tiny/sft") == "outputs/tiny/sft"  # not taken for a Hub id: the stage reports it
    with pytest.raises(UserError, match=r"'outputs/tiny/sft' does not exist yet: it is the output of `smollm2 sft`; run that stage first"):
        check_model_source("outputs/tiny/sft", made_by="sft")


@pytest.mark.parametrize("command, stage, hub_id", [("sft", "sft", "HuggingFaceTB/SmolLM2-1.7B"),
                                                     ("pretrain", "pretrain", "HuggingFaceTB/"),
                                                     ("extend-context", "context_extension", "outputs/smollm2-1.7B/pretrain"),
                                                     ("dpo", "dpo", "outputs/smollm2/1.7B/sft")])
def test_flagship_recipes_stop_offline_with_one_line(command, stage, hub_id, empty_hub_cache, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.run(command, [f"recipes/smollm2/{stage}.yaml", "--output_dir", str(out)])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert rc == 2 and len(errors) == 1 and hub_id in errors[0], errors
    assert not out.exists()


@pytest.mark.slow  # accelerate's launcher starts a second Python (about 30 s on a busy 2-core machine)
def test_the_usage_line_accelerate_launch_run_sft_stops_offline_before_loading(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"), "PYTHONPATH": str(REPO)}
    accelerate = Path(sys.executable).with_name("accelerate")
    proc = subprocess.run([str(accelerate), "launch", "--num_processes", "1", "scripts/run_sft.py", "recipes/smollm2/sft.yaml",
                           "--output_dir", str(tmp_path / "out")], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr[-2000:]
    assert "'HuggingFaceTB/SmolLM2-1.7B'" in errors[0] and ALTERNATIVE in errors[0]
    assert "Loading" not in proc.stderr and not (tmp_path / "out").exists()
