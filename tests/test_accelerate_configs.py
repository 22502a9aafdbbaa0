"""The accelerate configs are parsed and validated by accelerate itself (launch-argument validation, and the
FSDP plugin built from the environment `accelerate launch` would export), and configs that do not fit the
machine are refused before any process starts."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from smollm2_recipes.errors import UserError
from smollm2_recipes.launch_check import check_accelerate_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "recipes" / "accelerate_configs"


@pytest.mark.parametrize("name, kind", [("ddp", "MULTI_GPU"), ("fsdp", "FSDP")])
def test_configs_fit_an_8_gpu_node(name, kind):
    plan = check_accelerate_config(CONFIGS / f"{name}.yaml", cuda_devices=8)
    assert (plan.distributed_type, plan.num_processes, plan.processes_per_machine, plan.device) == (kind, 8, 8, "cuda")


def test_zero3_is_parsed_by_accelerate_and_needs_deepspeed():
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(CONFIGS / "zero3.yaml"))
    assert config.distributed_type.name == "DEEPSPEED"
    assert config.deepspeed_config["zero_stage"] == 3 and config.deepspeed_config["zero3_save_16bit_model"] is True
    try:
        import deepspeed  # noqa: F401
    except ImportError:
        with pytest.raises(UserError, match="DeepSpeed, which is not installed"):
            check_accelerate_config(CONFIGS / "zero3.yaml", cuda_devices=8)
    else:
        assert check_accelerate_config(CONFIGS / "zero3.yaml", cuda_devices=8).distributed_type == "DEEPSPEED"


def test_fsdp_settings_reach_accelerates_plugin(tmp_path):
    bad = tmp_path / "fsdp.yaml"
    bad.write_text((CONFIGS / "fsdp.yaml").read_text().replace("TRANSFORMER_BASED_WRAP", "TRANSFORMER_WRAP"))
    with pytest.raises(UserError, match="TRANSFORMER_WRAP"):
        check_accelerate_config(bad, cuda_devices=8)


def test_multi_node_needs_main_address_and_divides_processes():
    plan = check_accelerate_config(CONFIGS / "fsdp.yaml", num_processes=32, num_machines=4, main_process_ip="10.0.0.1", machine_rank=3, cuda_devices=8)
    assert (plan.num_machines, plan.processes_per_machine) == (4, 8)
    with pytest.raises(UserError, match="main_process_ip"):
        check_accelerate_config(CONFIGS / "ddp.yaml", num_processes=16, num_machines=2, cuda_devices=8)
    with pytest.raises(UserError, match="not a multiple"):
        check_accelerate_config(CONFIGS / "ddp.yaml", num_processes=15, num_machines=2, main_process_ip="h", cuda_devices=8)


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("ddp", dict(cuda_devices=4), "8 processes per machine .* 4 CUDA GPU"),
        ("fsdp", dict(cuda_devices=0), "FSDP, which needs CUDA GPUs"),
        ("ddp", dict(cuda_devices=0, cpu_cores=2), "no CUDA GPU and 2 CPU core"),
    ],
)
def test_config_that_does_not_fit_the_machine_is_refused(name, kwargs, message):
    with pytest.raises(UserError, match=message):
        check_accelerate_config(CONFIGS / f"{name}.yaml", **kwargs)


def test_ddp_config_runs_as_cpu_processes_without_cuda():
    plan = check_accelerate_config(CONFIGS / "ddp.yaml", num_processes=2, cuda_devices=0, cpu_cores=2)
    assert (plan.num_processes, plan.device) == (2, "cpu") and "gloo" in plan.notes[0]


def test_unknown_key_and_missing_file(tmp_path):
    bad = tmp_path / "ddp.yaml"
    bad.write_text((CONFIGS / "ddp.yaml").read_text().replace("num_machines:", "num_machine:"))
    with pytest.raises(UserError, match="num_machine"):
        check_accelerate_config(bad, cuda_devices=8)
    with pytest.raises(UserError, match="does not exist"):
        check_accelerate_config(tmp_path / "nope.yaml")


def test_command_line_reports_one_error_line():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, "-m", "smollm2_recipes.launch_check", str(CONFIGS / "fsdp.yaml")],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "FSDP" in errors[0] and "Traceback" not in proc.stderr


def test_slurm_example_gives_each_node_its_rank_and_the_main_address():
    script = ROOT / "recipes" / "slurm" / "train.slurm"
    env = {**os.environ, "SLURM_NNODES": "2", "SLURM_JOB_NODELIST": "node-a,node-b", "GPUS_PER_NODE": "1",
           "ACCELERATE_CONFIG": str(CONFIGS / "ddp.yaml"), "PRINT_ONLY": "1", "VENV": str(Path(sys.executable).parent.parent),
           "PATH": "/usr/bin:/bin"}  # no scontrol: the node list is read directly
    proc = subprocess.run(["bash", str(script), "scripts/run_pretrain.py", "recipes/smollm2/tiny/pretrain.yaml", "--max_steps", "5"],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    launches = [line for line in proc.stdout.splitlines() if "accelerate launch" in line]
    assert len(launches) == 2
    for rank, line in enumerate(launches):
        assert f"--machine_rank {rank}" in line and "--main_process_ip node-a" in line
        assert "--num_machines 2 --num_processes 2" in line and line.endswith("recipes/smollm2/tiny/pretrain.yaml --max_steps 5")


@pytest.mark.parametrize(
    "env, cuda, message",
    [
        ({"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2", "ACCELERATE_USE_FSDP": "true"}, 0, "FSDP on a machine without CUDA"),
        ({"WORLD_SIZE": "16", "LOCAL_WORLD_SIZE": "8"}, 4, "8 processes on this machine but 4 CUDA GPU"),
        ({"WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "8"}, 0, "8 CPU processes on a machine with 2 core"),
    ],
)
def test_running_launch_that_does_not_fit_is_refused(env, cuda, message):
    from smollm2_recipes.launch_check import check_launch_environment

    with pytest.raises(UserError, match=message):
        check_launch_environment(env, cuda_devices=cuda, cpu_cores=2)
    check_launch_environment({"WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}, cuda_devices=0, cpu_cores=2)  # fits: no error
    check_launch_environment({}, cuda_devices=0, cpu_cores=2)  # not a distributed launch


def test_mixed_precision_in_a_config_is_flagged(tmp_path):
    """accelerate exports mixed_precision to every process, where it silently overrides a recipe's `bf16: false`."""
    config = tmp_path / "ddp.yaml"
    config.write_text((CONFIGS / "ddp.yaml").read_text().replace("mixed_precision: 'no'", "mixed_precision: bf16"))
    assert any("overrides the recipe's bf16" in note for note in check_accelerate_config(config, cuda_devices=8).notes)
    assert not check_accelerate_config(CONFIGS / "ddp.yaml", cuda_devices=8).notes
