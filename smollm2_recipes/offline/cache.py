"""The offline world's cache: folders under `$SMOLLM2_CACHE` (default ~/.cache/smollm2_recipes), each built
in a temporary folder, checked against its manifest (size and sha256 of every file) and renamed into place
under a file lock, so two processes that start at once build it once, and a partial or corrupt entry is
detected and rebuilt."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from smollm2_recipes.runkit.files import cache_dir

MANIFEST = "MANIFEST.json"


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_manifest(folder: Path) -> None:
    files = {p.name: {"size": p.stat().st_size, "sha256": _digest(p)} for p in sorted(folder.iterdir()) if p.is_file()}
    (folder / MANIFEST).write_text(json.dumps({"files": files}, indent=1))


def is_valid(folder: Path, deep: bool = False) -> bool:
    """A cache entry is valid when its manifest lists every file with the right size (and hash, if deep)."""
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
        for name, meta in files.items():
            path = folder / name
            if path.stat().st_size != meta["size"] or (deep and _digest(path) != meta["sha256"]):
                return False
        return bool(files)
    except (OSError, ValueError, KeyError, TypeError):
        return False


@contextlib.contextmanager
def _locked(name: str):
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


BUILT_THIS_PROCESS: list[str] = []  # cache entries this process built (the rest were reused)


def cached(name: str, build: Callable[[Path], None]) -> Path:
    """Return the cache folder `name`, building it with `build(tmp_folder)` first if missing or corrupt."""
    final = cache_dir() / name
    if is_valid(final):
        return final
    with _locked(name):
        if is_valid(final):  # another process built it while we waited for the lock
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=cache_dir()))
        try:
            build(tmp)
            _write_manifest(tmp)
            if final.exists():  # partial or corrupt: move aside, then swap in the new one
                stale = final.with_name(f".{name}.stale-{os.getpid()}")
                os.rename(final, stale)
                shutil.rmtree(stale, ignore_errors=True)
            os.rename(tmp, final)
            BUILT_THIS_PROCESS.append(name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final
