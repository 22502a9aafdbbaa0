"""Run model-written Python in a child process: its own temp folder, a wall-clock timeout, CPU-time,
memory and file-size limits, and an audit hook (sandbox_runner.py) that refuses writes outside the folder,
new processes and network. A program that loops forever, eats memory or tries to write elsewhere ends as
a counted failure; the evaluation goes on."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

RUNNER = Path(__file__).with_name("sandbox_runner.py")


@dataclass
class Outcome:
    passed: bool
    status: str  # "passed", "failed", "timeout"
    detail: str = ""  # last line of stderr: the exception that failed the program


def _limits(timeout: float, memory_mb: int, max_file_mb: int):
    def apply():  # runs in the child between fork and exec
        cpu = int(timeout) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        mem = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
        size = max_file_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    return apply


def run_program(source: str, timeout: float = 5.0, memory_mb: int = 1024, max_file_mb: int = 16) -> Outcome:
    """Run `source`; passed = exit status 0 within `timeout` seconds."""
    with tempfile.TemporaryDirectory(prefix="smollm2-sandbox-") as root:
        program = Path(root) / "program.py"
        program.write_text(source)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": root, "TMPDIR": root, "LANG": "C.UTF-8",
               "OMP_NUM_THREADS": "1"}
        try:
            proc = subprocess.run([sys.executable, "-I", "-B", str(RUNNER), root, str(program)], cwd=root, env=env,
                                  stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                                  preexec_fn=_limits(timeout, memory_mb, max_file_mb), start_new_session=True)
        except subprocess.TimeoutExpired:
            return Outcome(False, "timeout", f"timed out after {timeout:g} s")
        if proc.returncode == 0:
            return Outcome(True, "passed")
        lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        detail = lines[-1] if lines else f"exit status {proc.returncode}"
        if proc.returncode < 0:  # killed by a signal: SIGXCPU (CPU limit) counts as a timeout
            status = "timeout" if -proc.returncode in (24, 9) else "failed"
            return Outcome(False, status, detail or f"signal {-proc.returncode}")
        return Outcome(False, "failed", detail[:300])


def run_programs(sources: list[str], timeout: float = 5.0, workers: int = 2, progress: bool = True, **limits) -> list[Outcome]:
    """`run_program` over many programs, `workers` at a time, results in input order."""
    from tqdm.auto import tqdm

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(run_program, s, timeout, **limits) for s in sources]
        return [f.result() for f in tqdm(futures, desc="executing", disable=not progress, file=sys.stderr)]
