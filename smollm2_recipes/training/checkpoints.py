"""Atomic checkpoints. The Trainer writes a checkpoint into `output_dir/.staging/checkpoint-N`; only when every
file (model, optimizer, scheduler, RNG, trainer state, data position) is on disk is the folder marked complete
and renamed into place, so a kill at any moment leaves the previous checkpoint loadable. `checkpoint-N`
folders without the marker (copied by hand, or from another tool) are never resumed from."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from smollm2_recipes.errors import UserError
from smollm2_recipes.runkit import write_json_atomic

STAGING = ".staging"
COMPLETE = "checkpoint_complete.json"
RUN_COMPLETE = "run_complete.json"
_CKPT = re.compile(r"^checkpoint-(\d+)$")
# Shape keys that must agree for a checkpoint's weights to fit a model.
SHAPE_KEYS = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "tie_word_embeddings")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def staging_dir(output_dir: str | os.PathLike) -> Path:
    return Path(output_dir) / STAGING


def publish(staged: str | os.PathLike, output_dir: str | os.PathLike, step: int) -> Path:
    """Mark a fully written staged checkpoint complete and move it into place (one rename)."""
    staged, final = Path(staged), Path(output_dir) / f"checkpoint-{step}"
    for f in staged.iterdir():  # flush file contents before the rename makes them visible
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    write_json_atomic(staged / COMPLETE, {"step": step}, sort_keys=True)
    _fsync_dir(staged)
    if final.exists():  # a re-save of the same step (after a rollback): replace it atomically enough
        trash = final.with_name(f".trash-{final.name}")
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(final, trash)
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(staged, final)
    _fsync_dir(final.parent)
    try:
        staged.parent.rmdir()  # the staging folder only exists while a save is under way
    except OSError:
        pass
    return final


def is_complete(path: str | os.PathLike) -> bool:
    return (Path(path) / COMPLETE).is_file()


def complete_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _CKPT.match(p.name)) and is_complete(p)]
    return [p for _, p in sorted(found)]


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    found = complete_checkpoints(output_dir)
    return found[-1] if found else None


def rotate(output_dir: str | os.PathLike, keep: int | None) -> None:
    """Keep the last `keep` complete checkpoints; never touch the newest."""
    if not keep or keep <= 0:
        return
    for old in complete_checkpoints(output_dir)[:-keep]:
        trash = old.with_name(f".trash-{old.name}")
        os.replace(old, trash)  # out of sight first, so a kill mid-delete leaves no half checkpoint in place
        shutil.rmtree(trash, ignore_errors=True)


def clean_partial(output_dir: str | os.PathLike) -> None:
    """Remove what a killed save left behind (staging and trash folders)."""
    root = Path(output_dir)
    if not root.is_dir():
        return
    shutil.rmtree(root / STAGING, ignore_errors=True)
    for p in root.glob(".trash-*"):
        shutil.rmtree(p, ignore_errors=True)


def checkpoint_step(path: str | os.PathLike) -> int:
    state = Path(path) / "trainer_state.json"
    if not state.is_file():
        raise UserError(f"'{path}' is not a training checkpoint (no trainer_state.json).")
    return int(json.loads(state.read_text())["global_step"])


def resolve_resume(value: str | None, output_dir: str | os.PathLike) -> str | None:
    """`latest`/`true` -> the newest complete checkpoint of output_dir; a path must be a complete checkpoint."""
    if value is None or str(value).lower() in ("", "false", "none"):
        return None
    if str(value).lower() in ("latest", "true", "last"):
        found = latest_checkpoint(output_dir)
        if found is None:
            partial = sorted(p.name for p in Path(output_dir).glob("checkpoint-*")) if Path(output_dir).is_dir() else []
            extra = f" (found only incomplete ones: {', '.join(partial)})" if partial else ""
            raise UserError(f"--resume_from_checkpoint {value}: '{output_dir}' holds no complete checkpoint{extra}. "
                            "Start a fresh run in an empty output_dir instead.")
        return str(found)
    path = Path(value)
    if not path.is_dir():
        raise UserError(f"--resume_from_checkpoint '{value}' does not exist; use a checkpoint-N folder or 'latest'.")
    if not is_complete(path):
        found = latest_checkpoint(path)  # a run folder given instead of a checkpoint
        if found is not None:
            return str(found)
        raise UserError(f"'{value}' is not a complete checkpoint (no {COMPLETE}: the save was interrupted or it was "
                        f"not written by smollm2 pretrain). Complete ones in its run: "
                        f"{[p.name for p in complete_checkpoints(path.parent)] or 'none'}.")
    return str(path)


def check_same_shape(checkpoint_config: dict, model_config, where: str) -> None:
    """Refuse a checkpoint whose tensors cannot fit the model the recipe describes."""
    diffs = [f"{k}: checkpoint {checkpoint_config.get(k)} vs model {getattr(model_config, k, None)}"
             for k in SHAPE_KEYS if k in checkpoint_config and checkpoint_config.get(k) != getattr(model_config, k, None)]
    if diffs:
        raise UserError(f"{where} has another shape than the recipe's model ({'; '.join(diffs)}). "
                        "Use the recipe of the run that wrote it, or a matching --model.")


def read_config(path: str | os.PathLike) -> dict:
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        raise UserError(f"'{path}' has no config.json; it is not a model or checkpoint folder.")
    return json.loads(cfg.read_text())
