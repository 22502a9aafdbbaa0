"""`smollm2 assets`, `smollm2 model-info` and `smollm2 chat`."""

from __future__ import annotations

import json

from smollm2_recipes.runkit.parsing import ArgumentParser


def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="smollm2 assets", description="Materialise every embedded offline asset into $SMOLLM2_CACHE.")
    parser.add_argument("--json", action="store_true", help="print the resolved paths as JSON")
    args = parser.parse_args(argv)
    from pathlib import Path

    from smollm2_recipes.offline.cache import BUILT_THIS_PROCESS, cache_dir
    from smollm2_recipes.offline.embedded import materialise_all

    paths = materialise_all(progress=not args.json)
    if args.json:
        print(json.dumps(paths, indent=2))
    else:
        print(f"cache: {cache_dir()}")
        for name, path in paths.items():
            where = ("built now" if Path(path).name in BUILT_THIS_PROCESS
                     else "cached" if Path(path).is_relative_to(cache_dir()) else "installed package")
            print(f"  {name:34s} {path}  ({where})")
    return 0


def model_info_main(argv: list[str]) -> int:
    from smollm2_recipes.models import PRESETS, model_info

    parser = ArgumentParser(prog="smollm2 model-info", description="Print a model preset's LlamaConfig and exact parameter count.")
    parser.add_argument("preset", help=f"one of: {', '.join(PRESETS)}")
    parser.add_argument("--json", action="store_true", help="print one JSON object with preset, parameters, config")
    args = parser.parse_args(argv)
    info = model_info(args.preset)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    c = info["config"]
    print(f"{args.preset}: {info['description']}")
    print(f"  parameters         {info['parameters']:,}")
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
                "vocab_size", "max_position_embeddings", "rope_parameters", "initializer_range", "tie_word_embeddings"):
        print(f"  {key:18s} {c.get(key)}")
    return 0


def chat(model, tokenizer, prompts: list[str], max_new_tokens: int = 64) -> list[str]:
    """Greedy answers to single-turn prompts, in fp32 (bf16 generation on CPU is slower and changes outputs)."""
    import torch

    answers = []
    for prompt in prompts:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        answers.append(tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return answers


def chat_main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="smollm2 chat", description="Answer prompts greedily with a chat model.")
    parser.add_argument("model", nargs="?", default="embedded:SmolLM2-135M-Instruct", help="Hub id, folder or embedded: name")
    parser.add_argument("--prompt", action="append", help="a user prompt (repeatable)")
    parser.add_argument("--max_new_tokens", type=int, default=64)
    args = parser.parse_args(argv)
    from smollm2_recipes.models import load_pretrained

    model, tokenizer = load_pretrained(args.model, dtype="float32")
    prompts = args.prompt or ["What is the capital of France?"]
    for prompt, answer in zip(prompts, chat(model, tokenizer, prompts, args.max_new_tokens)):
        print(f"user: {prompt}\nassistant: {answer}\n")
    return 0
