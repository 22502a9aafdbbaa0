"""One datatrove executor builder for every data command (tokenize, curate): local, Slurm or Ray.

The same pipeline runs on a laptop (`LocalPipelineExecutor`), a Slurm cluster (`SlurmPipelineExecutor`,
one array job) or a Ray cluster (`RayPipelineExecutor`); see
https://github.com/huggingface/datatrove#executors. Every executor records finished tasks under
`logging_dir/completions/`, so running the same command again runs only the unfinished ones.

Cluster settings come from a recipe block or from flags (flags win):

    executor:
      slurm: {partition: hopper-cpu, time: "04:00:00", cpus_per_task: 4, mem_per_cpu_gb: 2}
      ray: {address: "10.0.0.1:6379", cpus_per_task: 1, mem_per_cpu_gb: 2}

Use: `check_executor(...)` first (before writing anything), then `build_executor(...)`, then
`run_executor(...)`.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import shutil
import socket
from pathlib import Path
from typing import Any

from smollm2_recipes.errors import UserError

EXECUTORS = ("local", "slurm", "ray")


@dataclasses.dataclass
class SlurmSettings:
    """`SlurmPipelineExecutor` options this project exposes (datatrove/executor/slurm.py)."""

    partition: str | None = None
    time: str = "04:00:00"
    cpus_per_task: int = 1
    mem_per_cpu_gb: int = 2
    job_name: str = "smollm2_data"
    qos: str = "normal"
    venv_path: str | None = None
    env_command: str | None = None
    sbatch_args: dict | None = None


@dataclasses.dataclass
class RaySettings:
    """`RayPipelineExecutor` options plus the address passed to `ray.init` ("local" starts one here)."""

    address: str = "local"
    cpus_per_task: int = 1
    mem_per_cpu_gb: float = 2


def _settings(cls, values: dict | None, where: str):
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise UserError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(known))}.")
    settings = cls(**values)
    for name in ("cpus_per_task", "mem_per_cpu_gb"):
        value = getattr(settings, name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise UserError(f"{where}.{name} = {value!r}: must be a positive number.")
    return settings


def add_executor_args(parser: argparse.ArgumentParser) -> None:
    """--executor/--tasks/--workers/--dry_run plus the Slurm and Ray flags (each overrides the recipe)."""
    group = parser.add_argument_group("executor (datatrove)")
    # No argparse `choices`: an unknown executor gets the project's one-line UserError (exit 2) instead.
    group.add_argument("--executor", default="local", help=f"where tasks run: {' | '.join(EXECUTORS)} (default local)")
    group.add_argument("--tasks", type=int, default=None, help="number of datatrove tasks (default: one per input file)")
    group.add_argument("--workers", type=int, default=None, help="tasks run at once (default: all; local: 1 per core)")
    group.add_argument("--dry_run", action="store_true", help="slurm: write the sbatch script and print where it is; others: plan only")
    group.add_argument("--logging_dir", default=None, help="datatrove logs + task completions (default OUTPUT_DIR/logs)")
    group.add_argument("--slurm_partition", default=None)
    group.add_argument("--slurm_time", default=None, help='e.g. "04:00:00"')
    group.add_argument("--slurm_cpus_per_task", type=int, default=None)
    group.add_argument("--slurm_mem_per_cpu_gb", type=int, default=None)
    group.add_argument("--slurm_venv_path", default=None, help="activate script sourced by each job")
    group.add_argument("--ray_address", default=None, help='Ray cluster "host:port" (default: start a local Ray)')
    group.add_argument("--ray_cpus_per_task", type=int, default=None)


def settings_from_args(args: argparse.Namespace, recipe_block: dict | None = None) -> tuple[dict, dict]:
    """(slurm, ray) setting dicts: the recipe's `executor:` block, overridden by the flags given."""
    block = dict(recipe_block or {})
    unknown = sorted(set(block) - {"slurm", "ray"})
    if unknown:
        raise UserError(f"recipe executor block: unknown key(s) {', '.join(unknown)}; valid: slurm, ray.")
    slurm, ray = dict(block.get("slurm") or {}), dict(block.get("ray") or {})
    for key in ("partition", "time", "cpus_per_task", "mem_per_cpu_gb", "venv_path"):
        if getattr(args, f"slurm_{key}", None) is not None:
            slurm[key] = getattr(args, f"slurm_{key}")
    for key in ("address", "cpus_per_task"):
        if getattr(args, f"ray_{key}", None) is not None:
            ray[key] = getattr(args, f"ray_{key}")
    return slurm, ray


def check_ray_address(address: str, what: str = "--executor ray") -> None:
    """One line, before anything is written, when the `ray` package is missing or a Ray address does not
    answer ("local"/"auto": a Ray instance this machine starts). Shared by the datatrove executors and
    `smollm2 synth --ray`."""
    if importlib.util.find_spec("ray") is None:
        raise UserError(f"{what} needs the `ray` package: pip install 'ray[default]==2.60.0'.")
    if address in ("local", "auto"):
        return
    host, _, port = address.removeprefix("ray://").removeprefix("http://").rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"Ray address {address!r}: expected host:port (e.g. 10.0.0.1:6379), ray://host:port or 'local'.")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as err:
        raise UserError(f"Ray address {address} is unreachable ({err.strerror or err}); start Ray there "
                        "(`ray start --head`) or leave the address out to run on a local Ray instance.") from None


def check_executor(executor: str, *, tasks: int, workers: int | None, slurm: dict | None = None, ray: dict | None = None,
                   dry_run: bool = False) -> tuple[SlurmSettings | None, RaySettings | None]:
    """Validate the choice before anything is written; returns the typed settings it will use."""
    if executor not in EXECUTORS:
        raise UserError(f"--executor {executor!r} is unknown; valid: {', '.join(EXECUTORS)}.")
    if not isinstance(tasks, int) or tasks < 1:
        raise UserError(f"--tasks {tasks!r} must be an integer >= 1.")
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise UserError(f"--workers {workers!r} must be an integer >= 1.")
    if executor == "slurm":
        settings = _settings(SlurmSettings, slurm, "executor.slurm")
        if not settings.partition:
            raise UserError("--executor slurm needs a partition: --slurm_partition NAME or `executor: {slurm: {partition: NAME}}` in the recipe.")
        if not dry_run and shutil.which("sbatch") is None:
            raise UserError("--executor slurm: `sbatch` is not on PATH; run on a Slurm login node, or add --dry_run to only write the script.")
        return settings, None
    if executor == "ray":
        settings = _settings(RaySettings, ray, "executor.ray")
        if dry_run:
            check_ray_address("local")  # the package only
        else:
            check_ray_address(settings.address)
        return None, settings
    return None, None


def build_executor(pipeline: list, *, executor: str, tasks: int, workers: int | None, logging_dir: str | Path,
                   slurm: dict | None = None, ray: dict | None = None, dry_run: bool = False):
    """A datatrove executor for `pipeline` with `tasks` tasks, recording completions under `logging_dir`."""
    slurm_settings, ray_settings = check_executor(executor, tasks=tasks, workers=workers, slurm=slurm, ray=ray, dry_run=dry_run)
    logging_dir = str(logging_dir)
    if executor == "local":
        from datatrove.executor import LocalPipelineExecutor

        # "fork" is started in milliseconds and keeps what the parent imported; tasks share no state.
        return LocalPipelineExecutor(pipeline, tasks=tasks, workers=workers or min(tasks, os.cpu_count() or 1),
                                     logging_dir=logging_dir, start_method="fork")
    if executor == "slurm":
        from datatrove.executor import SlurmPipelineExecutor

        fields = dataclasses.asdict(slurm_settings)
        return SlurmPipelineExecutor(pipeline, tasks=tasks, workers=workers or -1, logging_dir=logging_dir, **fields)
    from datatrove.executor import RayPipelineExecutor

    fields = dataclasses.asdict(ray_settings)
    fields.pop("address")
    return RayPipelineExecutor(pipeline, tasks=tasks, workers=workers or -1, logging_dir=logging_dir, **fields)


def write_slurm_script(executor) -> Path:
    """--dry_run --executor slurm: write what `SlurmPipelineExecutor.launch_job` writes (executor.pik,
    ranks_to_run.json, launch_script.slurm) without calling sbatch; `sbatch` that script to run it."""
    import dill
    from dill import CONTENTS_FMODE

    ranks = executor.get_incomplete_ranks()
    with executor.logging_dir.open("executor.pik", "wb") as f:
        dill.dump(executor, f, fmode=CONTENTS_FMODE)
    executor.save_executor_as_json()
    with executor.logging_dir.open("ranks_to_run.json", "w") as f:
        json.dump(ranks, f)
    n_jobs = max(1, math.ceil(len(ranks) / executor.tasks_per_job))
    max_array = min(n_jobs, executor.max_array_size) if executor.max_array_size != -1 else n_jobs
    pickled = executor.logging_dir.resolve_paths("executor.pik")
    script = executor.get_launch_file_contents(executor.get_sbatch_args(max_array),
                                               f"srun -l -n {executor.nodes_per_task} launch_pickled_pipeline {pickled}")
    with executor.logging_dir.open("launch_script.slurm", "w") as f:
        f.write(script)
    return Path(executor.logging_dir.resolve_paths("launch_script.slurm"))


def run_executor(executor, *, kind: str, dry_run: bool = False, ray: dict | None = None) -> Any:
    """Run (or, with dry_run and Slurm, only write the sbatch script); returns datatrove's stats or the script path."""
    if kind == "slurm" and dry_run:
        return write_slurm_script(executor)
    if kind == "ray":
        import ray as ray_pkg

        address = (ray or {}).get("address", "local")
        if not ray_pkg.is_initialized():
            # "local" starts a Ray instance on this machine; anything else joins that cluster.
            try:
                ray_pkg.init(address=None if address == "local" else address, include_dashboard=False,
                             log_to_driver=False, ignore_reinit_error=True)
            except Exception as err:  # Ray raises ConnectionError, RuntimeError, TimeoutError... on a failed start
                first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
                raise UserError(f"Ray ({address}) could not be started or joined: {first}") from None
    return executor.run()
