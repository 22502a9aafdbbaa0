"""Run the quickstart's `smollm2` commands, each in a process of its own, with its output (progress bars
included) on the terminal and in the step's log.

On Linux each command's process is forked from a parent that has already imported torch, transformers and
TRL. A fresh interpreter spends ~5 s of a 2-core CPU importing them, and the quickstart runs ~18 commands, so
forking saves over a minute. Elsewhere (macOS, Windows) each command is a fresh `python -m smollm2_recipes`.
The parent only imports torch and runs none of its ops (the quickstart reads the steps' JSON results), so
no torch thread pool exists yet to be lost in the fork."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

# what every step's command imports first (TRL's trainers pull in transformers' Trainer and accelerate)
PRELOAD = ("torch", "transformers", "datasets", "trl.trainer.sft_trainer", "trl.trainer.dpo_trainer",
           "smollm2_recipes.cli")
_FORK = sys.platform == "linux" and hasattr(os, "fork")
_preloaded = False


def warm_up() -> None:
    """Import what the commands share, once, before the first command is forked from this process (a no-op
    where commands are not forked, or once done)."""
    global _preloaded
    if not _FORK or _preloaded:
        return
    started = time.time()
    for name in PRELOAD:
        importlib.import_module(name)
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: F401  (lazy modules: load them now)
    _preloaded = True
    print(f"  ({time.time() - started:.0f} s: torch, transformers and TRL imported once; each command is forked "
          "from this process)", flush=True)


def run_command(argv: list[str], log_path: Path) -> tuple[int, str]:
    """Run `smollm2 ARGV`; returns (exit status, output)."""
    warm_up()
    read_fd, write_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    if _FORK:
        pid = os.fork()
        if pid == 0:  # the child: the command's process
            os.close(read_fd)
            _run_in_child(argv, write_fd)
        proc = None
    else:
        proc = subprocess.Popen([sys.executable, "-m", "smollm2_recipes", *argv], stdout=write_fd, stderr=write_fd)
    os.close(write_fd)
    chunks = []
    with open(log_path, "ab") as log, os.fdopen(read_fd, "rb") as output:
        while chunk := output.read1(4096):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
            log.write(chunk)
            chunks.append(chunk)
    status = proc.wait() if proc else os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return status, b"".join(chunks).decode(errors="replace")


def _run_in_child(argv: list[str], write_fd: int) -> None:
    """Point stdout and stderr at the pipe, run the command as `python -m smollm2_recipes` would, and exit
    with its status without returning into the parent's code."""
    os.dup2(write_fd, 1)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    # the parent's sys.stdout / sys.stderr may not be fds 1 and 2 (a test's capture, a notebook): write to the pipe
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    status = 1
    try:
        from smollm2_recipes import cli

        sys.argv = ["smollm2", *argv]  # parsers that read sys.argv see the command's own arguments
        status = cli.main(argv)
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if isinstance(exit_.code, str):
            print(exit_.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001  a crash prints its traceback, as it would in a fresh process
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status if isinstance(status, int) else 1)
