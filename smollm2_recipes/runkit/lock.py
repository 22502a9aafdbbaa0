"""The output folder of a run: refused when it is a file or holds a finished run, and held with a lock file
(`<output_dir>/.smollm2.lock`: PID, host, process start time) while the run writes into it, so a second run
on the same folder stops with one line naming the holder instead of replacing its checkpoints.

A lock left by a killed run is recognised (same host, PID no longer running, or a PID reused by another
process) and taken over with a note. The check-and-take happens under `flock` on the folder itself, so two
runs starting at the same instant cannot both take it. In a multi-process launch only the main process
(RANK 0) holds the lock; the other ranks write under it."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
from pathlib import Path
from typing import Iterator

from smollm2_recipes.errors import UserError
from smollm2_recipes.runkit.files import write_json_atomic

LOCK_FILE = ".smollm2.lock"


def _start_ticks(pid: int) -> int | None:
    """The process start time in clock ticks since boot (field 22 of /proc/PID/stat), None if unknown:
    tells a live holder apart from a new process that reused a dead holder's PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def _is_running(pid: int, start_ticks: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    now = _start_ticks(pid)
    return start_ticks is None or now is None or now == start_ticks


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0) == 0


@contextlib.contextmanager
def _folder_flock(folder: Path) -> Iterator[None]:
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the flock


def _read_lock(path: Path) -> dict | None:
    try:
        holder = json.loads(path.read_text())
        return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable: treated as a lock of unknown origin


def check_output_dir(path: str | os.PathLike, *, finished_marker: str, overwrite: bool = False,
                     resume: bool = False) -> Path:
    """The refusals of `claim_output_dir`, without taking anything: a file in the way, a finished run."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UserError(f"output_dir '{out}' is an existing file, not a folder; choose a folder path (nothing was written).")
    if (out / finished_marker).exists():
        if resume:
            raise UserError(f"output_dir '{out}' holds a finished run ({finished_marker}); there is nothing to resume "
                            "(nothing was written).")
        if not overwrite:
            raise UserError(f"output_dir '{out}' already holds a finished run ({finished_marker}); choose another "
                            "output_dir, or ask to overwrite it (nothing was written).")
    return out


def _take(out: Path) -> dict:
    lock = out / LOCK_FILE
    me = {"pid": os.getpid(), "host": socket.gethostname(), "start_ticks": _start_ticks(os.getpid()),
          "argv": sys.argv[:8]}
    with _folder_flock(out):
        holder = _read_lock(lock)
        if holder is not None:
            pid, host = holder.get("pid"), holder.get("host")
            if holder and host == me["host"] and pid != me["pid"] and not _is_running(pid, holder.get("start_ticks")):
                print(f"note: taking over the stale lock {lock} of PID {pid} on {host} (that process is no longer "
                      "running).", file=sys.stderr)
            elif holder and pid == me["pid"] and host == me["host"]:
                raise UserError(f"output_dir '{out}' is already claimed by this process (PID {pid}); claim it once per run.")
            else:
                who = f"PID {pid} on host {host}" if holder else "an unknown process (unreadable lock file)"
                raise UserError(f"output_dir '{out}' is in use by {who} (lock {lock}); wait for that run to end, or choose "
                                "another output_dir. If it is dead on another host, delete the lock file.")
        write_json_atomic(lock, me)
    return me


def _release(out: Path, me: dict) -> None:
    lock = out / LOCK_FILE
    with _folder_flock(out):
        holder = _read_lock(lock)
        if holder and holder.get("pid") == me["pid"] and holder.get("host") == me["host"]:
            lock.unlink()


@contextlib.contextmanager
def claim_output_dir(path: str | os.PathLike, *, finished_marker: str, overwrite: bool = False,
                     resume: bool = False) -> Iterator[Path]:
    """Hold `path` as this run's output folder for the `with` block. Call it after all validation, before
    the first write. Refuses a file in the way, a folder whose `finished_marker` exists (unless
    `overwrite`; never when `resume`, as a finished run has nothing to resume), and a folder locked by a
    running process. With `overwrite`, the old marker is removed once the lock is held, so a crash midway
    never leaves a folder that claims to be finished. Released on exit, also on an exception; a folder this
    claim created and nothing was written into is removed again."""
    out = check_output_dir(path, finished_marker=finished_marker, overwrite=overwrite, resume=resume)
    if not _is_main_process():
        yield out
        return
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    me = _take(out)
    try:
        check_output_dir(out, finished_marker=finished_marker, overwrite=overwrite, resume=resume)  # finished meanwhile?
        if overwrite:
            (out / finished_marker).unlink(missing_ok=True)
        yield out
    finally:
        _release(out, me)
        if created and not any(out.iterdir()):  # refused or failed before its first write: leave no trace
            out.rmdir()
