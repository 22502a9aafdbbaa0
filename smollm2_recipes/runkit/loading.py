"""Loading a tokenizer or a model for any stage: `embedded:` names resolved through `assets.resolve`, and the
ways a folder can be wrong (missing, no config, truncated or corrupt safetensors) reported in one line that
names the folder and the file, before transformers gets a chance to fail with a traceback."""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from smollm2_recipes.errors import UserError


def _looks_like_path(name: str) -> bool:
    """A name that can only be a local path (a Hub id is `name` or `owner/name`, never more)."""
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def _resolve_local(name_or_path, what: str, missing_hint: str = "") -> tuple[str, Path | None]:
    from smollm2_recipes import assets

    if not name_or_path:
        raise UserError(f"No {what} given: name a Hub id, a local folder, or an embedded: asset.")
    resolved = assets.resolve(str(name_or_path))
    path = Path(resolved).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{what} '{name_or_path}' is a file; give the folder that holds it ({path.parent}).")
        return resolved, path
    if _looks_like_path(str(name_or_path)):
        raise UserError(f"{what} folder '{name_or_path}' does not exist{missing_hint}.")
    return resolved, None


def check_model_source(name_or_path, made_by: str | None = None) -> str:
    """Validate a model reference before anything is written and return what `from_pretrained` should load: a
    local folder must exist and be complete. `made_by` names the stage whose output the folder is (e.g.
    "sft" for DPO's default), so a folder not written yet is reported with the stage to run first."""
    hint = f" yet: it is the output of `smollm2 {made_by}`; run that stage first" if made_by else ""
    resolved, folder = _resolve_local(name_or_path, "model", hint)
    if folder is not None:
        check_model_folder(folder)
    return resolved


def check_safetensors(path: Path) -> None:
    """Refuse a safetensors file whose header is unreadable or whose tensors reach past its end (a truncated
    copy or download). The layout is public: an 8-byte little-endian header length, a JSON header whose
    `data_offsets` are relative to the end of the header (https://github.com/huggingface/safetensors)."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if header_len > size - 8:
                raise ValueError(f"header of {header_len} bytes in a {size}-byte file")
            header = json.loads(f.read(header_len))
        end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except (struct.error, ValueError, KeyError, TypeError, IndexError) as err:
        raise UserError(f"model folder '{path.parent}': {path.name} is corrupt ({err}); copy or save it again.") from None
    if 8 + header_len + end > size:
        raise UserError(f"model folder '{path.parent}': {path.name} is truncated ({size} bytes, its header needs "
                        f"{8 + header_len + end}); copy or save it again.")


def check_model_folder(folder: Path) -> None:
    """A model folder has a config.json and complete weights (every safetensors shard the index names)."""
    if not (folder / "config.json").is_file() and not (folder / "adapter_config.json").is_file():
        raise UserError(f"model folder '{folder}' has no config.json: it is not a saved model (a training run that has "
                        "not finished yet, or the wrong folder).")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, AttributeError) as err:
            raise UserError(f"model folder '{folder}': {index.name} is corrupt ({err}).") from None
        for shard in shards:
            if not (folder / shard).is_file():
                raise UserError(f"model folder '{folder}': {shard} (listed in {index.name}) is missing.")
    for weights in sorted(folder.glob("*.safetensors")):
        check_safetensors(weights)


def load_tokenizer(name_or_path):
    """AutoTokenizer for a Hub id, a folder or an `embedded:` name; a missing or corrupt one is a UserError."""
    from transformers import AutoTokenizer

    resolved, folder = _resolve_local(name_or_path, "tokenizer")
    try:
        return AutoTokenizer.from_pretrained(resolved)
    except Exception as err:  # OSError (missing files), ValueError/JSON errors (corrupt files), tokenizers' own
        where = f"folder '{folder}'" if folder else f"'{name_or_path}' (no such local folder; as a Hub id)"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"Cannot load the tokenizer from {where}: {first}") from None


def load_model(name_or_path, **from_pretrained_kwargs):
    """AutoModelForCausalLM for a Hub id, a folder or an `embedded:` name. A local folder is checked first
    (config, every safetensors file complete), so a bad one is named in one line with the file at fault."""
    from transformers import AutoModelForCausalLM

    resolved = check_model_source(name_or_path)
    folder = Path(resolved) if Path(resolved).is_dir() else None
    try:
        return AutoModelForCausalLM.from_pretrained(resolved, **from_pretrained_kwargs)
    except (OSError, ValueError) as err:
        where = f"model folder '{folder}'" if folder else f"model '{name_or_path}' (no such local folder; as a Hub id)"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"Cannot load {where}: {first}") from None
