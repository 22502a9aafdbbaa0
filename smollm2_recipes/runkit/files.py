"""Atomic writes: a temporary file in the target's own folder, flushed to disk, then `os.replace`d over the
target (a rename within one filesystem is atomic on POSIX), so a reader or a crash sees the old file or
the new one, never half of either."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path


def cache_dir() -> Path:
    """The project's cache: `$SMOLLM2_CACHE`, default ~/.cache/smollm2_recipes (embedded assets, repaired data copies)."""
    return Path(os.environ.get("SMOLLM2_CACHE") or Path.home() / ".cache" / "smollm2_recipes")


def write_atomic(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write `data` to `path` atomically (creating the parent folder) and return the path."""
    if not isinstance(data, (str, bytes, bytearray, memoryview)):
        raise TypeError(f"write_atomic writes str or bytes, not {type(data).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 lets the umask decide the final mode, as a plain open() would.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, obj, *, indent: int = 2, sort_keys: bool = False) -> Path:
    """`obj` as JSON (values JSON cannot hold are written with str()), atomically."""
    return write_atomic(path, json.dumps(obj, indent=indent, sort_keys=sort_keys, default=str) + "\n")
