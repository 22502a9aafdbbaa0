"""Two CPU processes (gloo) launched with `accelerate launch --config_file recipes/accelerate_configs/ddp.yaml
--num_processes 2` train exactly like one process with the same global batch, for the tiny pretraining and
SFT recipes through their real entry points (scripts/run_pretrain.py, scripts/run_sft.py).

All four runs start at once (one process and two processes of each recipe): on a small machine they overlap,
instead of leaving cores idle while one launch starts up.

FSDP and ZeRO-3 cannot run here: on a CPU accelerate silently replaces FSDP with plain DDP, and DeepSpeed needs
CUDA, so their configs are checked by accelerate's own parsing in test_accelerate_configs.py instead.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DDP = ROOT / "recipes" / "accelerate_configs" / "ddp.yaml"
ACCELERATE = Path(sys.executable).parent / "accelerate"
# fp32 on the CPU: the runs differ only in how the gradient sum is ordered (gloo all-reduce vs accumulation),
# so per-step losses and gradient norms agree to float32 rounding. (A bf16 mixed_precision in the accelerate
# config once made them differ by 3e-3 in the gradient norm: that is what this tolerance catches.)
RTOL = 1e-5
SFT_STEPS = 2


def _launch(script: str, args: list[str], processes: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "MALLOC_MMAP_THRESHOLD_": "10000000000",
           "MALLOC_TRIM_THRESHOLD_": "10000000000", "MALLOC_TOP_PAD_": "1000000000"}
    if processes == 1:
        cmd = [sys.executable, script, *args]
    else:
        cmd = [str(ACCELERATE), "launch", "--config_file", str(DDP), "--num_processes", str(processes), "--main_process_port", "0", script, *args]
    # Own process group: a hung run is killed with its workers (accelerate's launcher spawns them).
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def _wait_all(procs: list[tuple[subprocess.Popen, Path]]) -> None:
    """Wait for every run (none is left behind if one fails), then report the first failure's log tail."""
    try:
        for proc, _ in procs:
            proc.wait(timeout=900)
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    for proc, log in procs:
        assert proc.returncode == 0, f"{log.name}:\n" + log.read_text()[-4000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Start the four runs; yield their output folders once all have finished."""
    from transformers import AutoTokenizer

    from smollm2_recipes import assets, models

    tmp = tmp_path_factory.mktemp("distributed")
    # Pretraining: the tiny recipe with the micro model and one global batch per stage.
    recipe = yaml.safe_load((ROOT / "recipes/smollm2/tiny/pretrain.yaml").read_text())
    steps = 2  # every stage gets a share of two global batches, so the run still crosses all its stage boundaries
    share, extra = divmod(steps * recipe["global_batch_tokens"], len(recipe["stages"]))
    for i, stage in enumerate(recipe["stages"]):
        stage["tokens"] = share + (extra if i == 0 else 0)
    sequences = recipe["global_batch_tokens"] // recipe["seq_len"]
    # Half the global batch per device: one process accumulates 2 micro-batches, two processes 1 each.
    recipe.update(per_device_train_batch_size=sequences // 2, model="micro", eval_blocks=0, report_to="none", logging_steps=1, save_steps=steps, warmup_steps=1, bf16=False)
    pretrain_recipe = tmp / "pretrain.yaml"
    pretrain_recipe.write_text(yaml.safe_dump(recipe))
    # SFT: the tiny recipe from a micro model carrying the real instruct tokenizer; global batch 2 = one
    # process x 2 accumulation steps = two processes x 1.
    start = tmp / "micro-instruct"
    tokenizer = AutoTokenizer.from_pretrained(assets.resolve("embedded:SmolLM2-135M-Instruct"))
    models.build_model("micro", seed=0, bos_token_id=1, eos_token_id=2, pad_token_id=2).save_pretrained(start)
    tokenizer.save_pretrained(start)
    sft_args = ["recipes/smollm2/tiny/sft.yaml", "--model_name_or_path", str(start), "--arith_eval_samples", "0",
                "--max_steps", str(SFT_STEPS), "--bf16", "false", "--logging_steps", "1", "--global_batch_size", "2",
                "--per_device_train_batch_size", "1", "--max_length", "256", "--save_strategy", "steps", "--save_steps", str(SFT_STEPS)]

    out = {}
    procs = []
    for name, script, args in (("pretrain", "scripts/run_pretrain.py", [str(pretrain_recipe)]), ("sft", "scripts/run_sft.py", sft_args)):
        for n in (1, 2):
            folder = tmp / f"{name}-{n}proc"
            log = tmp / f"{name}-{n}proc.log"
            procs.append((_launch(script, [*args, "--output_dir", str(folder)], n, log), log))
            out[name, n] = folder
    _wait_all(procs)
    out["pretrain_recipe"], out["pretrain_steps"] = pretrain_recipe, steps
    return out


def _assert_same_steps(one: list[dict], two: list[dict], steps: int) -> None:
    assert len(one) == len(two) == steps
    for a, b in zip(one, two):
        assert b["loss"] == pytest.approx(a["loss"], rel=RTOL), (a, b)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=RTOL), (a, b)


def test_pretraining_two_processes_match_one(runs):
    one, two = runs["pretrain", 1], runs["pretrain", 2]
    plan1, plan2 = (json.loads((d / "plan.json").read_text()) for d in (one, two))
    assert (plan1["world_size"], plan1["gradient_accumulation_steps"]) == (1, 2)
    assert (plan2["world_size"], plan2["gradient_accumulation_steps"]) == (2, 1)
    recipe = yaml.safe_load(runs["pretrain_recipe"].read_text())
    assert plan1["tokens_per_step"] == plan2["tokens_per_step"] == recipe["global_batch_tokens"]

    def steps(folder):
        return [h for h in map(json.loads, (folder / "log_history.jsonl").read_text().splitlines()) if "loss" in h and "grad_norm" in h]

    _assert_same_steps(steps(one), steps(two), runs["pretrain_steps"])
    final1, final2 = (json.loads((d / "run_complete.json").read_text()) for d in (one, two))
    assert final2["final_loss"] == pytest.approx(final1["final_loss"], rel=RTOL)
    assert final1["tokens_seen"] == final2["tokens_seen"] == runs["pretrain_steps"] * recipe["global_batch_tokens"]


def test_pretraining_two_processes_read_each_block_once(runs):
    """Each rank's token ledger (a chained hash of every micro-batch it trained on, saved in the checkpoint) is
    recomputed from the data stream: the ranks trained on disjoint blocks whose union is exactly what the
    single process trained on."""
    import torch

    from smollm2_recipes.recipe_parsing import parse
    from smollm2_recipes.data.stages import DataArguments
    from smollm2_recipes.data.mixture import build_stream
    from smollm2_recipes.training.pretrain_config import ModelArguments, PretrainConfig
    from smollm2_recipes.training.stream import TokenLedger

    _, _, data_args = parse([PretrainConfig, ModelArguments, DataArguments], [str(runs["pretrain_recipe"])])
    recipe = yaml.safe_load(runs["pretrain_recipe"].read_text())
    per_device, n_steps = recipe["per_device_train_batch_size"], runs["pretrain_steps"]

    def trained_blocks(folder: Path, rank: int, world: int) -> list[bytes]:
        state = json.loads((folder / f"checkpoint-{n_steps}" / f"data_state_rank{rank}.json").read_text())
        n = state["stream"]["delivered"]
        stream, blocks = iter(build_stream(data_args, rank=rank, world_size=world)), []
        while len(blocks) < n:
            blocks.append(next(stream)["input_ids"])
        ledger = TokenLedger()
        for i in range(0, n, per_device):
            ledger.update(torch.stack(blocks[i : i + per_device]))
        assert ledger.digest == state["ledger"]["digest"], f"rank {rank} of {world} did not train on the stream's blocks"
        return [b.numpy().tobytes() for b in blocks]

    single = trained_blocks(runs["pretrain", 1], 0, 1)
    rank0, rank1 = trained_blocks(runs["pretrain", 2], 0, 2), trained_blocks(runs["pretrain", 2], 1, 2)
    assert len(single) == n_steps * 2 * per_device and len(rank0) == len(rank1) == len(single) // 2
    assert not set(rank0) & set(rank1)  # no block on both ranks
    assert len(set(rank0 + rank1)) == len(rank0 + rank1)  # none twice on one rank
    assert sorted(rank0 + rank1) == sorted(single)  # together: exactly the single process's blocks


def test_sft_two_processes_match_one(runs):
    """Per-step loss and gradient norm agree: with a global batch of 2 examples, a rank that repeated the other's
    example would give the gradient of one example, not of two, and the norms would differ."""
    one, two = runs["sft", 1], runs["sft", 2]
    configs = [yaml.safe_load((d / "resolved_config.yaml").read_text()) for d in (one, two)]
    assert [c["gradient_accumulation_steps"] for c in configs] == [2, 1]

    def steps(folder):
        state = json.loads((folder / f"checkpoint-{SFT_STEPS}" / "trainer_state.json").read_text())
        return [h for h in state["log_history"] if "loss" in h]

    s1, s2 = steps(one), steps(two)
    _assert_same_steps(s1, s2, SFT_STEPS)
    assert [h["num_tokens"] for h in s1] == [h["num_tokens"] for h in s2]  # TRL counts tokens over all processes
