"""`smollm2 merge ADAPTER_DIR OUTPUT_DIR [--base MODEL]`: fold a LoRA/QLoRA adapter into its base model
and write a plain model folder (no peft needed to load it), with the adapter's tokenizer and chat
template. The base is re-loaded unquantised, so a QLoRA adapter merges into full-precision weights."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from smollm2_recipes.errors import UserError
from smollm2_recipes.runkit.parsing import ArgumentParser


def merge(adapter_dir: str, output_dir: str, base: str | None = None, dtype: str = "float32") -> Path:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from smollm2_recipes.assets import resolve

    adapter = Path(adapter_dir)
    config_file = adapter / "adapter_config.json"
    if not config_file.is_file():
        raise UserError(f"'{adapter_dir}' is not a LoRA adapter folder (no adapter_config.json); a run with use_peft: true writes one.")
    out = Path(output_dir)
    if (out / "model.safetensors").exists():
        raise UserError(f"'{output_dir}' already holds a model; choose another output folder (nothing is overwritten).")
    base = base or json.loads(config_file.read_text()).get("base_model_name_or_path")
    if not base:
        raise UserError("The adapter does not name its base model; pass --base MODEL.")
    try:
        model = AutoModelForCausalLM.from_pretrained(resolve(base), dtype=getattr(torch, dtype))
    except OSError as err:
        raise UserError(f"Could not load base model '{base}': {str(err).splitlines()[0]}") from err
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(str(adapter) if (adapter / "tokenizer_config.json").exists() else resolve(base))
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    out.mkdir(parents=True, exist_ok=True)
    for item in tmp.iterdir():
        os.replace(item, out / item.name)
    tmp.rmdir()
    return out


def merge_main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="smollm2 merge", description="Merge a LoRA adapter into a plain model folder.")
    parser.add_argument("adapter_dir", help="folder written by a use_peft: true run (adapter_config.json)")
    parser.add_argument("output_dir", help="where the merged model goes")
    parser.add_argument("--base", default=None, help="base model (default: the one the adapter names)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ns = parser.parse_args(argv)
    out = merge(ns.adapter_dir, ns.output_dir, ns.base, ns.dtype)
    print(f"merged model written to {out}")
    return 0
