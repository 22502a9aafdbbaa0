"""Pretraining on the real pipeline (embedded corpus, real tokenizer, `micro` model, 32-token blocks):
WSD schedule and stage plan, atomic checkpoints, exact resume after SIGKILL, spike guard with rollback,
cooldown branches, weight averaging, and the refusals of bad input."""

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from smollm2_recipes.cli import run as cli_run
from smollm2_recipes.errors import UserError

SEQ = 32
STEP_TOKENS = 4 * SEQ  # 4 sequences per step


def write_recipe(path: Path, steps: int = 24, **overrides) -> Path:
    """A micro pretraining recipe: two stages on the embedded corpus, `steps` optimiser steps in all."""
    first = steps // 2
    recipe = {
        "model": "micro", "init_seed": 0, "tokenizer_name": "embedded:smollm2-tokenizer", "seq_len": SEQ,
        "stages": [
            {"name": "s1", "tokens": first * STEP_TOKENS, "sources": [
                {"name": "web", "path": "embedded:corpus/web", "weight": 0.8},
                {"name": "code", "path": "embedded:corpus/code", "weight": 0.2}]},
            {"name": "s2", "tokens": (steps - first) * STEP_TOKENS, "sources": [
                {"name": "web", "path": "embedded:corpus/web", "weight": 0.5},
                {"name": "code", "path": "embedded:corpus/code", "weight": 0.5}]},
        ],
        "global_batch_tokens": STEP_TOKENS, "per_device_train_batch_size": 2,  # accumulation 2 is derived
        "learning_rate": 3e-3, "warmup_steps": 4,
        "lr_scheduler_kwargs": {"num_decay_steps": 6, "decay_type": "linear"},
        "save_steps": 8, "save_total_limit": 10, "logging_steps": 1, "report_to": "none",
        "disable_tqdm": True, "mfu_peak_tflops": 1.0, "seed": 42,
    }
    recipe.update(overrides)
    path.write_text(yaml.safe_dump(recipe))
    return path


def parse_recipe(path: Path, *flags: str):
    from smollm2_recipes.recipe_parsing import parse
    from smollm2_recipes.data.stages import DataArguments
    from smollm2_recipes.training.pretrain_config import ModelArguments, PretrainConfig

    return parse([PretrainConfig, ModelArguments, DataArguments], [str(path), *flags])


def train(path: Path, *flags: str, **kwargs) -> dict:
    from smollm2_recipes.training.pretrain import run_pretrain

    return run_pretrain(*parse_recipe(path, *flags), **kwargs)


def history(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log_history.jsonl").read_text().splitlines()]


def losses(run: Path) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in history(run) if "loss" in h}


@pytest.fixture(scope="module")
def main_run(tmp_path_factory):
    """One uninterrupted 24-step run, shared by the tests that need a finished run and its checkpoints."""
    root = tmp_path_factory.mktemp("main")
    recipe = write_recipe(root / "recipe.yaml")
    out = root / "run"
    summary = train(recipe, "--output_dir", str(out))
    return recipe, out, summary


def test_run_follows_the_plan_and_the_wsd_schedule(main_run):
    recipe, out, summary = main_run
    plan = json.loads((out / "plan.json").read_text())
    assert plan["max_steps"] == 24 and plan["gradient_accumulation_steps"] == 2 and plan["tokens_per_step"] == STEP_TOKENS
    assert plan["stage_ends"] == [["s1", 12], ["s2", 24]]
    assert summary["global_step"] == 24 and summary["tokens_seen"] == 24 * STEP_TOKENS
    lrs = {h["step"]: h["learning_rate"] for h in history(out) if "learning_rate" in h and "loss" in h}
    peak = 3e-3
    # warmup (4 steps) -> stable at the peak -> linear decay over the last 6 steps, to 0 at the end.
    assert lrs[2] < lrs[3] < peak
    assert all(abs(lrs[s] - peak) < 1e-9 for s in range(5, 20))
    decay = [lrs[s] for s in range(19, 25)]  # the logged lr is the one the step used: 1 - t for t = 0, 1/6, ..
    assert decay == pytest.approx([peak * (1 - t / 6) for t in range(6)], rel=1e-6)
    # the loss falls, the logs carry throughput, MFU and tokens per source, the figure exists
    loss = losses(out)
    assert sum(list(loss.values())[-4:]) < sum(list(loss.values())[:4])
    logged = next(h for h in history(out) if "tokens_per_second" in h)
    assert logged["tokens_per_second"] > 0 and 0 < logged["mfu"] and logged["tokens_web"] > 0 and "tokens_code" in logged
    assert (out / "training_curves.png").stat().st_size > 10_000
    assert (out / "model.safetensors").is_file() and (out / "run_complete.json").is_file()
    # checkpoints are complete, each with its data position
    from smollm2_recipes.training.checkpoints import complete_checkpoints

    names = [p.name for p in complete_checkpoints(out)]
    assert names == ["checkpoint-8", "checkpoint-16", "checkpoint-24"]
    state = json.loads((out / "checkpoint-8" / "data_state_rank0.json").read_text())
    assert state["stream"]["delivered"] == 8 * 4 and state["ledger"]["tokens"] == 8 * STEP_TOKENS


@pytest.mark.slow
def test_sigkill_and_resume_reads_the_same_tokens_and_reaches_the_same_loss(main_run, tmp_path):
    recipe, reference, ref_summary = main_run
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "smollm2_recipes", "pretrain", str(recipe), "--output_dir", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    log = open(tmp_path / "killed.log", "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 300
        while not (out / "checkpoint-8" / "checkpoint_complete.json").is_file():
            assert proc.poll() is None, (tmp_path / "killed.log").read_text()[-2000:]
            assert time.time() < deadline
            time.sleep(0.02)
        time.sleep(0.3)  # somewhere past step 8, possibly in the middle of the next save
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        log.close()
    assert not (out / "run_complete.json").exists(), "the run finished before it could be killed"
    summary = train(recipe, "--output_dir", str(out), "--resume_from_checkpoint", "latest")
    assert summary["global_step"] == 24
    assert summary["token_digest"] == ref_summary["token_digest"]  # exactly the same tokens, in the same order
    assert summary["tokens_seen"] == ref_summary["tokens_seen"]
    assert abs(summary["final_loss"] - ref_summary["final_loss"]) / ref_summary["final_loss"] < 1e-4
    resumed, ref = losses(out), losses(reference)
    assert all(abs(resumed[s] - ref[s]) / ref[s] < 1e-4 for s in range(9, 25))


class CorruptedStream(torch.utils.data.IterableDataset):
    """The real stream with the blocks of one global batch replaced by random token ids (a corrupted batch)."""

    def __init__(self, inner, corrupt: set[int]):
        self.inner, self.corrupt, self.seen = inner, corrupt, 0

    def __iter__(self):
        for block in self.inner:
            if self.seen in self.corrupt:
                g = torch.Generator().manual_seed(self.seen)
                ids = torch.randint(40000, 49152, block["input_ids"].shape, generator=g)  # ids the corpus never uses
                block = {**block, "input_ids": ids, "labels": ids.clone()}
            self.seen += 1
            yield block

    def state_dict(self):
        return {"inner": self.inner.state_dict(), "seen": self.seen}

    def load_state_dict(self, state):
        self.inner.load_state_dict(state["inner"])
        self.seen = state["seen"]

    def stats(self):
        return self.inner.stats()

    def stage_boundaries(self):
        return self.inner.stage_boundaries()


@pytest.mark.slow
def test_spike_guard_logs_a_corrupted_batch_and_rolls_back_past_it(tmp_path):
    from smollm2_recipes.data.mixture import build_stream
    from smollm2_recipes.training.spike_guard import read_spikes

    recipe = write_recipe(tmp_path / "recipe.yaml", steps=24)
    config, model_args, data_args = parse_recipe(recipe, "--output_dir", str(tmp_path / "run"), "--spike_factor", "1.12",
                                                 "--spike_window", "5", "--spike_warmup", "5", "--spike_action", "rollback")
    bad_step = 19  # its 4 blocks are global blocks 72..75
    bad = set(range((bad_step - 1) * 4, bad_step * 4))
    factory = lambda args: CorruptedStream(build_stream(args, None), bad)  # noqa: E731
    from smollm2_recipes.training.pretrain import run_pretrain

    summary = run_pretrain(config, model_args, data_args, stream_factory=factory)
    spikes = read_spikes(str(tmp_path / "run"))
    assert len(spikes) == 1, spikes
    assert spikes[0]["step"] == bad_step and spikes[0]["blocks"] == sorted(bad) and spikes[0]["loss"] > 1.12 * spikes[0]["running_mean"]
    assert spikes[0]["tokens_seen"] == bad_step * STEP_TOKENS  # the data position of the spike
    assert json.loads((tmp_path / "run" / "skip_blocks.json").read_text()) == sorted(bad)
    assert summary["rollbacks"] == 1 and summary["global_step"] == 24
    # after the rollback (to checkpoint-16) step 19 read the next blocks instead, and no spike followed
    assert losses(tmp_path / "run")[bad_step] < spikes[0]["running_mean"]


def test_cooldown_branch_starts_from_a_stable_checkpoint_and_leaves_the_main_run_alone(main_run, tmp_path):
    recipe, out, _ = main_run
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    branch = tmp_path / "cooldown"
    warnings, handler = [], logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())
    logging.getLogger("transformers").addHandler(handler)
    try:
        summary = train(recipe, "--output_dir", str(branch), "--cooldown_from", str(out / "checkpoint-8"),
                        "--decay_steps", "6", "--decay_type", "1-sqrt", "--save_steps", "100")
    finally:
        logging.getLogger("transformers").removeHandler(handler)
    assert not [w for w in warnings if "missing keys" in w], warnings  # the tied lm_head is not "missing"
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before  # main run untouched
    assert summary["global_step"] == 14
    hist = [h for h in history(branch) if "loss" in h and h["step"] > 8]
    lrs = [h["learning_rate"] for h in hist]
    assert [h["step"] for h in hist] == list(range(9, 15))
    # 1-sqrt decay from the peak: 1 - sqrt(t) at t = 0, 1/6, ..., 5/6
    expected = [3e-3 * (1 - (t / 6) ** 0.5) for t in range(6)]
    assert lrs == pytest.approx(expected, rel=1e-6)
    # same weights, optimiser and data position as the main run at step 8: the first loss is the main run's
    assert hist[0]["loss"] == pytest.approx(losses(out)[9], rel=1e-5)
    plan = json.loads((branch / "plan.json").read_text())
    assert plan["cooldown_from"].endswith("checkpoint-8") and plan["lr_scheduler_kwargs"]["decay_type"] == "1-sqrt"


def test_cooldown_refuses_a_decay_phase_checkpoint_and_a_missing_length(main_run, tmp_path):
    recipe, out, _ = main_run
    with pytest.raises(UserError, match="already in the main run's decay"):
        train(recipe, "--output_dir", str(tmp_path / "b"), "--cooldown_from", str(out / "checkpoint-24"), "--decay_steps", "4")
    with pytest.raises(UserError, match="--decay_steps"):
        train(recipe, "--output_dir", str(tmp_path / "b"), "--cooldown_from", str(out / "checkpoint-8"))
    assert not (tmp_path / "b").exists()


def test_average_checkpoints_into_a_model_folder(main_run, tmp_path, capsys):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    _, out, _ = main_run
    a, b = out / "checkpoint-8", out / "checkpoint-16"
    assert cli_run("average", [str(a), str(b), "--output_dir", str(tmp_path / "avg"), "--weights", "1", "3"]) == 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "avg")  # a normal model folder
    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    got = model.state_dict()
    for key in ("model.embed_tokens.weight", "model.layers.1.mlp.up_proj.weight"):
        assert torch.allclose(got[key], 0.25 * wa[key] + 0.75 * wb[key], atol=1e-6)
    assert (tmp_path / "avg" / "tokenizer.json").is_file()
    # refusals: weights that do not match, and a non-empty output folder
    assert cli_run("average", [str(a), str(b), "--output_dir", str(tmp_path / "x"), "--weights", "1"]) == 2
    assert cli_run("average", [str(a), str(b), "--output_dir", str(tmp_path / "avg")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert cli_run("average", [str(a), "--output_dir", str(tmp_path / "one")]) == 2  # an average of one is a copy
    assert "at least two checkpoints" in capsys.readouterr().err and not (tmp_path / "one").exists()


@pytest.mark.slow
def test_swa_during_training_saves_an_averaged_model(tmp_path):
    from transformers import AutoModelForCausalLM

    recipe = write_recipe(tmp_path / "recipe.yaml", steps=8, warmup_steps=2, lr_scheduler_kwargs={"num_decay_steps": 2})
    out = tmp_path / "run"
    summary = train(recipe, "--output_dir", str(out), "--weight_averaging", "swa", "--averaging_every", "2",
                    "--averaging_start", "2", "--save_steps", "4")
    averaged = AutoModelForCausalLM.from_pretrained(out / "averaged").state_dict()
    final = AutoModelForCausalLM.from_pretrained(out).state_dict()
    key = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(averaged[key], final[key])
    assert summary["averaged_model"].endswith("averaged")
    # the running average is part of the checkpoint (4 updates: steps 2, 4, 6, 8; checkpoint-4 holds 2)
    from safetensors import safe_open

    with safe_open(out / "checkpoint-4" / "averaged" / "averaged.safetensors", "pt") as f:
        assert f.metadata()["n_averaged"] == "2"


def test_bad_input_is_refused_before_anything_is_written(main_run, tmp_path, capsys):
    recipe, out, _ = main_run

    def refused(*flags, match):
        assert cli_run("pretrain", [str(recipe), *flags]) == 2
        err = capsys.readouterr().err
        assert match in err, err

    fresh = tmp_path / "fresh"
    refused("--output_dir", str(fresh), "--per_device_train_batch_size", "3", match="Valid per_device_train_batch_size")
    refused("--output_dir", str(fresh), "--max_steps", "30", match="stage budgets add up to")
    refused("--output_dir", str(fresh), "--lr_scheduler_kwargs", '{"num_decay_steps": 23}', match="longer than the run")
    refused("--output_dir", str(fresh), "--resume_from_checkpoint", "latest", match="no complete checkpoint")
    assert not fresh.exists()
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    refused("--output_dir", str(out), match="already holds a finished run")
    # a checkpoint of another shape
    refused("--output_dir", str(fresh), "--model", "tiny", "--resume_from_checkpoint", str(out / "checkpoint-8"),
            match="another shape")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before
    bad_stages = write_recipe(tmp_path / "odd.yaml", stages=[{"name": "x", "tokens": STEP_TOKENS * 3 + SEQ, "sources": [
        {"name": "web", "path": "embedded:corpus/web"}]}])
    assert cli_run("pretrain", [str(bad_stages), "--output_dir", str(fresh)]) == 2
    assert "not a whole number of steps" in capsys.readouterr().err


def test_incomplete_checkpoints_are_never_resumed(tmp_path):
    from smollm2_recipes.training import checkpoints as ckpt

    run = tmp_path / "run"
    (run / "checkpoint-4").mkdir(parents=True)
    (run / "checkpoint-4" / "trainer_state.json").write_text('{"global_step": 4}')
    ckpt.write_json_atomic(run / "checkpoint-4" / ckpt.COMPLETE, {"step": 4})
    (run / ".staging" / "checkpoint-8").mkdir(parents=True)  # a save killed half way
    (run / "checkpoint-12").mkdir()  # a folder without the marker (copied by hand, or another tool)
    assert ckpt.resolve_resume("latest", run) == str(run / "checkpoint-4")
    with pytest.raises(UserError, match="not a complete checkpoint"):
        ckpt.resolve_resume(str(run / "checkpoint-12"), run)
    ckpt.clean_partial(run)
    assert not (run / ".staging").exists() and (run / "checkpoint-4").is_dir()
    for step in (8, 12, 16):
        staged = run / ".staging" / f"checkpoint-{step}"
        staged.mkdir(parents=True)
        (staged / "trainer_state.json").write_text(json.dumps({"global_step": step}))
        ckpt.publish(staged, run, step)
    ckpt.rotate(run, 2)
    assert [p.name for p in ckpt.complete_checkpoints(run)] == ["checkpoint-12", "checkpoint-16"]


def test_global_batch_is_exact_for_any_world_size(tmp_path):
    from smollm2_recipes.training.pretrain_config import resolve_batch

    config, _, _ = parse_recipe(write_recipe(tmp_path / "r.yaml"), "--output_dir", str(tmp_path / "o"))
    assert resolve_batch(config, SEQ) == (4, 2) and config.gradient_accumulation_steps == 1  # derived, not written back
    config, _, _ = parse_recipe(write_recipe(tmp_path / "r.yaml"), "--output_dir", str(tmp_path / "o"), "--per_device_train_batch_size", "4")
    assert resolve_batch(config, SEQ) == (4, 1)
    config, _, _ = parse_recipe(write_recipe(tmp_path / "r.yaml"), "--output_dir", str(tmp_path / "o"), "--global_batch_tokens", "100")
    with pytest.raises(UserError, match="not a multiple of seq_len"):
        resolve_batch(config, SEQ)
