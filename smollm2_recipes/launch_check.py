"""Does an accelerate config fit this machine? Checked before `accelerate launch` starts any process.

accelerate itself parses the file (`load_config_from_file`, then its own launch-argument validation, and for
FSDP its plugin reads the resulting environment), so a misspelt key or value fails here with accelerate's own
rules. On top of that we refuse what accelerate would run wrongly or only fail at deep inside a worker:
more processes per machine than GPUs, FSDP on a machine without CUDA (accelerate silently falls back to
plain DDP there), DeepSpeed without the package or a GPU, a multi-node launch without a main address.

    python -m smollm2_recipes.launch_check recipes/accelerate_configs/ddp.yaml --num_processes 2
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

from smollm2_recipes.errors import UserError

GPU_TYPES = ("MULTI_GPU", "FSDP", "DEEPSPEED")
SUPPORTED = ("NO", "MULTI_CPU") + GPU_TYPES


@dataclass
class LaunchPlan:
    distributed_type: str
    num_processes: int
    num_machines: int
    processes_per_machine: int
    device: str  # "cuda" or "cpu"
    notes: list[str]


def _accelerate_launch_args(config_file: str, overrides: dict):
    """Run accelerate's own launch-argument validation on the file plus command-line overrides. It is private
    (no public function merges a config file into launch arguments): setup.py bounds accelerate's version and
    tests/test_accelerate_internals.py fails when the function moves."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    argv = ["--config_file", config_file]
    for key, value in overrides.items():
        if value is not None:
            argv += [f"--{key}", str(value)]
    args = launch_command_parser().parse_args(argv + ["train.py"])
    args, defaults, _ = _validate_launch_command(args)
    return args, defaults


def _check_fsdp_plugin(args) -> None:
    """accelerate's FSDP plugin reads the environment `accelerate launch` would export: build it from that."""
    from unittest import mock

    from accelerate import FullyShardedDataParallelPlugin
    from accelerate.utils.launch import prepare_multi_gpu_env

    env = prepare_multi_gpu_env(argparse.Namespace(**vars(args)))
    fsdp_env = {k: v for k, v in env.items() if k.startswith("FSDP_") or k == "ACCELERATE_USE_FSDP"}
    with mock.patch.dict(os.environ, fsdp_env):
        FullyShardedDataParallelPlugin()
    layer = fsdp_env.get("FSDP_TRANSFORMER_CLS_TO_WRAP")
    if layer and layer != "LlamaDecoderLayer":
        raise ValueError(f"fsdp_transformer_layer_cls_to_wrap is '{layer}'; SmolLM2 models are Llama: use LlamaDecoderLayer")


def check_accelerate_config(
    config_file: str | os.PathLike,
    num_processes: int | None = None,
    num_machines: int | None = None,
    main_process_ip: str | None = None,
    machine_rank: int | None = None,
    cuda_devices: int | None = None,
    cpu_cores: int | None = None,
) -> LaunchPlan:
    """Raise `UserError` if the config (with `accelerate launch`-style overrides) does not fit this machine.
    `cuda_devices` / `cpu_cores` default to what this machine has (parameters for testing other machines)."""
    config_file = str(config_file)
    if not os.path.isfile(config_file):
        raise UserError(f"Accelerate config '{config_file}' does not exist. Configs live in recipes/accelerate_configs/ (ddp.yaml, fsdp.yaml, zero3.yaml).")
    if cuda_devices is None:
        import torch

        cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    cpu_cores = cpu_cores or os.cpu_count() or 1
    overrides = dict(num_processes=num_processes, num_machines=num_machines, main_process_ip=main_process_ip, machine_rank=machine_rank)
    try:
        args, defaults = _accelerate_launch_args(config_file, overrides)
    except (ValueError, TypeError, KeyError, AssertionError) as err:
        raise UserError(f"accelerate rejects '{config_file}': {err}") from err
    except SystemExit as err:  # argparse inside accelerate
        raise UserError(f"accelerate could not parse the launch arguments for '{config_file}' (exit {err.code}).") from err

    dist = getattr(defaults.distributed_type, "name", str(defaults.distributed_type))
    if dist not in SUPPORTED:
        raise UserError(f"'{config_file}' has distributed_type {dist}; these recipes support {', '.join(SUPPORTED)}.")
    procs, machines = int(args.num_processes or 1), int(args.num_machines or 1)
    if procs % machines:
        raise UserError(f"num_processes {procs} is not a multiple of num_machines {machines} in '{config_file}': each machine runs num_processes / num_machines processes.")
    per_machine = procs // machines
    if machines > 1 and not args.main_process_ip:
        raise UserError(f"'{config_file}' asks for {machines} machines but no main_process_ip: pass --main_process_ip (the SLURM example in recipes/slurm/ does).")
    if machines > 1 and not (0 <= int(args.machine_rank or 0) < machines):
        raise UserError(f"machine_rank {args.machine_rank} is outside 0..{machines - 1} for num_machines {machines}.")

    notes: list[str] = []
    precision = str(getattr(args, "mixed_precision", None) or "no")
    if precision != "no":
        notes.append(f"mixed_precision '{precision}' in the launch overrides the recipe's bf16 key in every process "
                     "(even bf16: false); the configs in recipes/accelerate_configs/ leave it 'no' so the recipe decides")
    use_cpu = bool(getattr(args, "cpu", False) or getattr(defaults, "use_cpu", False)) or dist in ("NO", "MULTI_CPU")
    if dist == "DEEPSPEED":
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None:
            raise UserError(f"'{config_file}' uses DeepSpeed, which is not installed. Fix: pip install deepspeed (needs CUDA), or use recipes/accelerate_configs/fsdp.yaml.")
    if dist in ("FSDP", "DEEPSPEED") and cuda_devices == 0:
        what = "FSDP" if dist == "FSDP" else "DeepSpeed ZeRO"
        raise UserError(
            f"'{config_file}' uses {what}, which needs CUDA GPUs, and this machine has none (on a CPU accelerate would "
            "silently fall back to plain DDP). Use recipes/accelerate_configs/ddp.yaml --num_processes N for CPU processes."
        )
    if dist == "FSDP":
        try:
            _check_fsdp_plugin(args)
        except (ValueError, TypeError, KeyError) as err:
            raise UserError(f"accelerate rejects the FSDP settings in '{config_file}': {err}") from err
    if dist in GPU_TYPES and cuda_devices > 0:
        if per_machine > cuda_devices:
            raise UserError(
                f"'{config_file}' starts {per_machine} processes per machine (num_processes {procs} / num_machines {machines}) "
                f"but this machine has {cuda_devices} CUDA GPU(s). Pass --num_processes {cuda_devices * machines}, "
                "and raise gradient_accumulation_steps to keep the global batch."
            )
        device = "cuda"
    else:
        device = "cpu"
        if dist == "MULTI_GPU" and not use_cpu:
            notes.append(f"no CUDA GPU: the {per_machine} processes run on the CPU over gloo")
        if per_machine > cpu_cores:
            raise UserError(
                f"'{config_file}' starts {per_machine} processes per machine, this machine has no CUDA GPU and {cpu_cores} CPU core(s): "
                f"pass --num_processes {min(2, cpu_cores)} (or at most {cpu_cores})."
            )
    return LaunchPlan(dist, procs, machines, per_machine, device, notes)


def check_launch_environment(environ: dict | None = None, cuda_devices: int | None = None, cpu_cores: int | None = None) -> None:
    """The same refusals from inside a process that `accelerate launch` started (it exports its choices as
    environment variables), for launches that skipped the pre-launch check. Call it before loading anything."""
    env = os.environ if environ is None else environ
    local = int(env.get("LOCAL_WORLD_SIZE", env.get("WORLD_SIZE", "1")) or 1)
    if int(env.get("WORLD_SIZE", "1") or 1) <= 1:
        return
    if cuda_devices is None:
        import torch

        cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    cpu_cores = cpu_cores or os.cpu_count() or 1
    if env.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        import importlib.util

        if importlib.util.find_spec("deepspeed") is None or cuda_devices == 0:
            raise UserError("This launch uses DeepSpeed, which needs the deepspeed package and CUDA GPUs; this machine lacks "
                            f"{'the package' if cuda_devices else 'a CUDA GPU'}. Use recipes/accelerate_configs/ddp.yaml.")
    if env.get("ACCELERATE_USE_FSDP", "false").lower() == "true" and cuda_devices == 0:
        raise UserError("This launch uses FSDP on a machine without CUDA GPUs, where accelerate silently falls back to plain DDP. "
                        "Use recipes/accelerate_configs/ddp.yaml --num_processes N for CPU processes.")
    if cuda_devices and local > cuda_devices:
        raise UserError(f"{local} processes on this machine but {cuda_devices} CUDA GPU(s): launch with --num_processes {cuda_devices} "
                        "per machine (and raise gradient_accumulation_steps to keep the global batch).")
    if not cuda_devices and local > cpu_cores:
        raise UserError(f"{local} CPU processes on a machine with {cpu_cores} core(s) and no CUDA GPU: launch with --num_processes {cpu_cores} or fewer.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m smollm2_recipes.launch_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("config_file")
    parser.add_argument("--num_processes", type=int)
    parser.add_argument("--num_machines", type=int)
    parser.add_argument("--main_process_ip")
    parser.add_argument("--machine_rank", type=int)
    ns = parser.parse_args(argv)
    try:
        plan = check_accelerate_config(ns.config_file, ns.num_processes, ns.num_machines, ns.main_process_ip, ns.machine_rank)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for note in plan.notes:
        print(f"note: {note}", file=sys.stderr)
    print(
        f"ok: {ns.config_file}: {plan.distributed_type}, {plan.num_processes} process(es) on {plan.num_machines} machine(s), "
        f"{plan.processes_per_machine} per machine on {plan.device}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
