"""`smollm2 data tokenize` on datatrove (shards in datatrove's format), reading them in the stream, and
`smollm2 data inspect`."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from test_data_helpers import maths, prose, source, tokenizer, write_jsonl

from smollm2_recipes import cli
from smollm2_recipes.data import build_stream
from smollm2_recipes.data.shards import MANIFEST, tokenize_recipe
from smollm2_recipes.errors import UserError

SEQ = 128
ROOT = Path(__file__).resolve().parents[1]


def write_recipe(tmp_path: Path) -> Path:
    """Two sources (prose with a held-out split and an empty document; math) in two stages, as JSON."""
    folder = tmp_path / "prose"
    write_jsonl(folder / "train.jsonl", prose(1, 150) + [""])  # one empty document: kept, skipped, counted
    write_jsonl(folder / "test.jsonl", prose(2, 10))
    math = write_jsonl(tmp_path / "math.jsonl", maths(3, 200))
    path = tmp_path / "recipe.yaml"
    path.write_text(json.dumps({  # JSON is YAML
        "seq_len": SEQ, "mixture_seed": 11, "output_dir": "ignored-by-data-commands", "learning_rate": 0.1,
        "stages": [
            {"name": "one", "tokens": SEQ * 30, "sources": [source("prose", str(folder), 0.8), source("math", math, 0.2)]},
            {"name": "two", "tokens": SEQ * 20, "sources": [source("prose", str(folder), 0.5), source("math", math, 0.5)]},
        ]}))
    return path


@pytest.fixture()
def recipe(tmp_path):
    return write_recipe(tmp_path)


def data_args(recipe, **kw):
    from smollm2_recipes.data.stages import data_args_from_recipe

    return data_args_from_recipe(recipe, **kw)


def shard_hashes(folder: Path) -> dict:
    """sha256 of every file of a shard folder except datatrove's logs (timestamps)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "logs" not in p.relative_to(folder).parts}


def env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false", "RAY_USAGE_STATS_ENABLED": "0"}


def test_tokenize_writes_datatrove_shards_that_train_identically(recipe, tmp_path, capsys):
    out = tmp_path / "shards"
    assert cli.run("data tokenize", [str(recipe), "--output_dir", str(out), "--tasks", "3", "--workers", "2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary) == {"prose/train", "prose/test", "math/train"}  # math.jsonl has no held-out split
    assert summary["prose/train"]["documents"] == 151
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["tokenizer"]["vocab_size"] == len(tokenizer()) and manifest["tokenizer"]["eos_token_id"] == tokenizer().eos_token_id
    assert manifest["token_size"] == 2 and not (out / ".work").exists()
    folder = out / "prose" / "train"
    assert sorted(p.name for p in folder.iterdir()) == ["000_prose.ds", "000_prose.ds.index", "000_prose.ds.metadata", "prose.ds.metadata"]
    # datatrove's format: uint16 tokens, each document followed by EOS, uint64 document ends; natural order
    texts = [json.loads(line)["text"] for line in open(recipe.parent / "prose" / "train.jsonl")]
    eos = tokenizer().eos_token_id
    expected = np.concatenate([tokenizer()(t, add_special_tokens=False)["input_ids"] + [eos] for t in texts])
    tokens = np.fromfile(folder / "000_prose.ds", dtype=np.uint16)
    assert (tokens == expected).all()
    ends = np.fromfile(folder / "000_prose.ds.index", dtype=np.uint64)
    assert len(ends) == 151 and ends[-1] == len(expected) and summary["prose/train"]["tokens"] == len(expected)
    # ...which datatrove's own loader (the one nanotron uses) reads
    from datatrove.utils.dataset import DatatroveFolderDataset

    loaded = DatatroveFolderDataset(str(folder), seq_len=SEQ, token_size=2)
    assert loaded[0]["input_ids"].tolist() == expected[: SEQ + 1].tolist()

    on_the_fly_stream = build_stream(data_args(recipe), tokenizer())
    on_the_fly = [b["input_ids"] for b in on_the_fly_stream]
    from_shards_stream = build_stream(data_args(recipe, shards_dir=str(out)), tokenizer())
    from_shards = [b["input_ids"] for b in from_shards_stream]
    assert len(on_the_fly) == len(from_shards) == 50
    assert all((a == b).all() for a, b in zip(on_the_fly, from_shards))
    for name in ("prose", "math"):  # the same documents taken, the same empty ones skipped
        for key in ("documents", "empty_documents", "long_documents", "tokens", "epochs"):
            assert from_shards_stream.stats()[name][key] == on_the_fly_stream.stats()[name][key], (name, key)
    # each rank reads only its own blocks, and resumes exactly
    s = build_stream(data_args(recipe, shards_dir=str(out)), tokenizer(), rank=1, world_size=2)
    assert [g for g, _, _ in s.iter_blocks()] == list(range(1, 50, 2))
    s = build_stream(data_args(recipe, shards_dir=str(out)), tokenizer(), rank=1, world_size=2)
    it = iter(s)
    for _ in range(7):
        next(it)
    resumed = build_stream(data_args(recipe, shards_dir=str(out)), tokenizer(), rank=1, world_size=2)
    resumed.load_state_dict(json.loads(json.dumps(s.state_dict())))
    rest = list(resumed)
    assert len(rest) == 18 and all((a["input_ids"] == b).all() for a, b in zip(rest, on_the_fly[15::2]))


@pytest.mark.slow
def test_killed_tokenize_reruns_only_unfinished_tasks_to_identical_shards(recipe, tmp_path):
    reference = tmp_path / "reference"
    tokenize_recipe(data_args(recipe), reference, tokenizer(), tasks=1, workers=1)

    out = tmp_path / "killed"
    command = [sys.executable, "-m", "smollm2_recipes", "data", "tokenize", str(recipe), "--output_dir", str(out), "--tasks", "12", "--workers", "1"]
    # its own process group: the kill takes datatrove's helper processes too (a multiprocess.Manager server
    # outlives a SIGKILL of its parent alone), as a scheduler killing a job's cgroup would
    proc = subprocess.Popen(command, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    completions = out / "logs" / "tokenize" / "completions"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and len(list(completions.glob("*"))) < 2:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-run: some tasks done, one half-written, the rest not started
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in completions.glob("*")}
    assert 2 <= len(done) < 12 and not (out / MANIFEST).exists()
    with pytest.raises(UserError, match="half-written"):
        build_stream(data_args(recipe, shards_dir=str(out)), tokenizer())

    rerun = subprocess.run(command, env=env(), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"Skipping {len(done)} already completed tasks" in rerun.stderr
    assert {p.name: p.stat().st_mtime_ns for p in completions.glob("*") if p.name in done} == done  # not run again
    assert len(list(completions.glob("*"))) == 12
    assert shard_hashes(out) == shard_hashes(reference)  # 12 tasks, killed and resumed == 1 task, uninterrupted


@pytest.mark.slow
def test_ray_executor_on_a_local_ray_writes_the_same_shards(recipe, tmp_path):
    """`--executor ray` with no address starts a Ray instance on this machine (in a subprocess, so it is
    shut down with it) and gives the same bytes as the local executor."""
    reference = tmp_path / "reference"
    tokenize_recipe(data_args(recipe), reference, tokenizer(), tasks=1, workers=1)
    out = tmp_path / "ray"
    command = [sys.executable, "-m", "smollm2_recipes", "data", "tokenize", str(recipe), "--output_dir", str(out),
               "--executor", "ray", "--tasks", "2", "--json"]
    run = subprocess.run(command, env=env(), capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(run.stdout.strip().splitlines()[-1])["prose/train"]["documents"] == 151
    assert len(list((out / "logs" / "tokenize" / "completions").glob("*"))) == 2
    assert shard_hashes(out) == shard_hashes(reference)


def test_shard_folder_mismatches_are_one_line_errors(recipe, tmp_path, capsys):
    out = tmp_path / "shards"
    tokenize_recipe(data_args(recipe), out, tokenizer())
    # another tokenizer: a real (tiny) one with its own vocabulary
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tiny = Tokenizer(models.WordLevel({"<eos>": 0, "<unk>": 1, "a": 2}, unk_token="<unk>"))
    tiny.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tiny, eos_token="<eos>", unk_token="<unk>").save_pretrained(tmp_path / "tiny_tok")
    other = tmp_path / "other"
    tokenize_recipe(data_args(recipe, tokenizer_name=str(tmp_path / "tiny_tok")), other)
    with pytest.raises(UserError, match=r"tokenised with .*tiny_tok.* \(vocab_size 3\), but the recipe's tokenizer"):
        build_stream(data_args(recipe, shards_dir=str(other)), tokenizer())
    before = shard_hashes(other)
    assert cli.run("data tokenize", [str(recipe), "--output_dir", str(other)]) == 2  # never mixes two tokenizers
    assert "vocab_size 3" in capsys.readouterr().err and shard_hashes(other) == before
    # a recipe with a source the folder does not hold
    extra = tmp_path / "extra.yaml"
    raw = json.loads(recipe.read_text())
    raw["stages"][1]["sources"].append(source("code", write_jsonl(tmp_path / "code.jsonl", prose(9, 20)), 0.2))
    extra.write_text(json.dumps(raw))
    with pytest.raises(UserError, match="has no source 'code' split 'train' \\(it has: prose/train, prose/test, math/train\\)"):
        build_stream(data_args(extra, shards_dir=str(out)), tokenizer())
    # a truncated shard file
    ds = out / "math" / "train" / "000_math.ds"
    ds.write_bytes(ds.read_bytes()[:-10])
    with pytest.raises(UserError, match="000_math.ds is half-written"):
        build_stream(data_args(recipe, shards_dir=str(out)), tokenizer())
    with pytest.raises(UserError, match="holds no shards"):
        build_stream(data_args(recipe, shards_dir=str(tmp_path / "nothing")), tokenizer())


def test_executor_mistakes_exit_2_and_write_nothing(recipe, tmp_path, capsys, monkeypatch):
    out = tmp_path / "x"
    assert cli.run("data tokenize", [str(recipe), "--output_dir", str(out), "--executor", "kubernetes"]) == 2
    assert "error: --executor 'kubernetes' is unknown; valid: local, slurm, ray." in capsys.readouterr().err
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no sbatch anywhere
    assert cli.run("data tokenize", [str(recipe), "--output_dir", str(out), "--executor", "slurm", "--slurm_partition", "cpu"]) == 2
    assert "`sbatch` is not on PATH" in capsys.readouterr().err
    monkeypatch.undo()
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert cli.run("data tokenize", [str(recipe), "--output_dir", str(out), "--executor", "ray", "--ray_address", f"127.0.0.1:{port}"]) == 2
    assert f"Ray address 127.0.0.1:{port} is unreachable" in capsys.readouterr().err
    assert not out.exists()


def test_slurm_dry_run_writes_the_sbatch_scripts(recipe, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin") + os.pathsep + os.environ["PATH"])
    out = tmp_path / "x"
    assert cli.run("data tokenize", [str(recipe), "--output_dir", str(out), "--executor", "slurm", "--dry_run", "--tasks", "16",
                                     "--slurm_partition", "hopper-cpu", "--slurm_time", "02:00:00", "--slurm_cpus_per_task", "4"]) == 0
    printed = capsys.readouterr().out
    first = out / "logs" / "tokenize" / "launch_script.slurm"
    second = out / "logs" / "merge" / "launch_script.slurm"
    assert f"sbatch scripts written: {first} then {second}" in printed
    script = first.read_text()
    for line in ("#SBATCH --partition=hopper-cpu", "#SBATCH --time=02:00:00", "#SBATCH --cpus-per-task=4", "#SBATCH --array=0-15"):
        assert line in script
    assert "launch_pickled_pipeline" in script and (out / "logs" / "tokenize" / "executor.pik").is_file()
    assert json.loads((out / "logs" / "tokenize" / "ranks_to_run.json").read_text()) == list(range(16))
    assert "#SBATCH --array=0-0" in second.read_text() and not (out / MANIFEST).exists()


def test_on_the_fly_with_several_ranks_states_its_cost_once(recipe, capsys):
    build_stream(data_args(recipe), tokenizer(), rank=0, world_size=8)
    build_stream(data_args(recipe), tokenizer(), rank=3, world_size=8)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "8 ranks" in lines[0] and "smollm2 data tokenize RECIPE --output_dir DIR" in lines[0]


def test_inspect_json_reports_shares_epochs_padding_and_speed(recipe, capsys):
    assert cli.run("data inspect", [str(recipe), "--json", "--tokens", str(SEQ * 25)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [s["name"] for s in report["stages"]] == ["one", "two"]
    one = report["stages"][0]
    assert set(one) >= {"name", "sources", "padding_tokens", "tokens_per_second"}
    assert one["padding_tokens"] == 0 and one["tokens_per_second"] > 0
    by_name = {s["name"]: s for s in one["sources"]}
    for s in one["sources"]:
        assert set(s) >= {"name", "weight", "observed_share", "tokens", "documents", "epochs"}
    assert by_name["prose"]["weight"] == 0.8 and by_name["prose"]["observed_share"] == 0.8
    assert by_name["prose"]["tokens"] + by_name["math"]["tokens"] == SEQ * 25
    assert by_name["math"]["documents"] > 0 and 0 < by_name["math"]["epochs"] < 1
    assert report["stages"][1]["sources"][0]["tokens"] == SEQ * 20 // 2  # capped at the stage's own budget

    assert cli.run("data inspect", [str(recipe), "--stage", "two", "--tokens", "2000"]) == 0
    text = capsys.readouterr().out
    assert "stage two" in text and "stage one" not in text and "observed" in text


def test_data_commands_report_bad_input_as_one_line(recipe, tmp_path, capsys):
    assert cli.run("data inspect", [str(recipe), "--stage", "three"]) == 2
    assert "error: Unknown stage 'three'. Stages: one, two." in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(recipe.read_text().replace('"weight": 0.8', '"weight": -1'))
    assert cli.run("data tokenize", [str(bad), "--output_dir", str(tmp_path / "x")]) == 2
    assert "error: source 'prose': weight -1.0 is invalid" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_the_recipes_executor_block_feeds_tokenize_and_pretraining_leaves_it_alone(recipe, tmp_path, capsys, monkeypatch):
    """One recipe for both commands: `executor:` gives `data tokenize` its Slurm settings (flags override
    them), and `smollm2 pretrain` parses the same file without calling the block an unknown key."""
    from smollm2_recipes.data.stages import DataArguments
    from smollm2_recipes.recipe_parsing import parse
    from smollm2_recipes.training.pretrain_config import ModelArguments, PretrainConfig

    raw = json.loads(recipe.read_text())
    raw["executor"] = {"slurm": {"partition": "from-recipe", "time": "01:00:00"}}
    with_block = tmp_path / "with_executor.yaml"
    with_block.write_text(json.dumps(raw))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin") + os.pathsep + os.environ["PATH"])
    out = tmp_path / "x"
    assert cli.run("data tokenize", [str(with_block), "--output_dir", str(out), "--executor", "slurm", "--dry_run",
                                     "--slurm_time", "03:00:00"]) == 0
    script = (out / "logs" / "tokenize" / "launch_script.slurm").read_text()
    assert "#SBATCH --partition=from-recipe" in script and "#SBATCH --time=03:00:00" in script
    config, _, data_args = parse([PretrainConfig, ModelArguments, DataArguments], [str(with_block), "--output_dir", str(tmp_path / "run")])
    assert data_args.stage_specs and not hasattr(config, "executor")
