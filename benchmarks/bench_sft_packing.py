"""SFT packing vs padding on the same chat rows, through the real `smollm2 sft` trainer construction.

Measures the share of real (non-padding) tokens in the batches each collator produces, and trained real
tokens per second over a few optimizer steps of a small model. Goal: >= 95% real tokens when packed.

    .venv/bin/python benchmarks/bench_sft_packing.py [--rows 256] [--steps 4] [--model tiny]

Last line: one JSON object {name, ours (packed real-token share), baseline (padded share), ratio, goal, ...}.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path


def _rows(n: int, seed: int) -> list[dict]:
    """Chat rows of very different lengths (as SmolTalk has): arithmetic problems plus long answers."""
    from smollm2_recipes.offline import arith_problems

    rng = random.Random(seed)
    words = "the of a model data token train small language packing attention answer example length".split()
    rows = arith_problems.sft_rows(n // 2, seed)
    for _ in range(n - len(rows)):
        answer = " ".join(rng.choice(words) for _ in range(rng.choice([8, 30, 120, 400])))
        rows.append({"messages": [{"role": "user", "content": "Tell me something."}, {"role": "assistant", "content": answer}]})
    rng.shuffle(rows)
    return rows


def _build(model_dir: str, data: str, out: str, packing: bool, batch: int, max_length: int):

    from smollm2_recipes import recipe_parsing
    from smollm2_recipes.post_training.sft import CONFIG_TYPES, build_trainer

    argv = ["recipes/smollm2/tiny/sft.yaml", "--model_name_or_path", model_dir, "--output_dir", out,
            "--dataset_mixture", json.dumps([{"path": data}]), "--packing", str(packing).lower(), "--max_length", str(max_length),
            "--per_device_train_batch_size", str(batch if not packing else 1), "--bf16", "false", "--disable_tqdm", "true",
            "--arith_eval_samples", "0", "--learning_rate", "1e-4"]
    args, model_args, data_args, _ = recipe_parsing.parse(CONFIG_TYPES, argv)
    return build_trainer(args, model_args, data_args)[0]


def _measure(trainer, steps: int, max_length: int) -> dict:
    """real_share = real tokens / token slots the batches occupy. A packed row is charged its full
    max_length (the fixed-shape view), so the share is the bins' fill; padded batches are charged
    batch x longest row."""
    import torch

    real = slots = 0
    batches = list(trainer.get_train_dataloader())
    for b in batches:
        if "attention_mask" in b:
            real += int(b["attention_mask"].sum())
            slots += b["input_ids"].numel()
        else:  # packed + padding-free: every position is a real token of some example
            real += b["input_ids"].numel()
            slots += max_length * b["input_ids"].shape[0]
    model = trainer.model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    trained, start = 0, None
    for i, b in enumerate(batches[: steps + 1]):
        if i == 1:
            start = time.perf_counter()  # the first step warms up
        loss = model(**{k: v for k, v in b.items() if k in ("input_ids", "labels", "attention_mask", "position_ids")}).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        if i >= 1:
            trained += int(b["attention_mask"].sum()) if "attention_mask" in b else b["input_ids"].numel()
    elapsed = time.perf_counter() - start
    return {"real_share": real / slots, "batches": len(batches), "real_tokens": real, "real_tokens_per_s": trained / elapsed}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max_length", type=int, default=2048)
    parser.add_argument("--model", default="tiny", help="a model preset (random init, real tokenizer)")
    ns = parser.parse_args(argv)

    from transformers import AutoTokenizer

    from smollm2_recipes.assets import resolve
    from smollm2_recipes.offline.arith_problems import write_jsonl
    from smollm2_recipes.models import build_model

    with tempfile.TemporaryDirectory() as tmp:
        tok = AutoTokenizer.from_pretrained(resolve("embedded:SmolLM2-135M-Instruct"))
        model = build_model(ns.model, seed=0, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        model.save_pretrained(f"{tmp}/model")
        tok.save_pretrained(f"{tmp}/model")
        data = str(write_jsonl(_rows(ns.rows, 0), Path(tmp) / "rows.jsonl"))
        packed = _measure(_build(f"{tmp}/model", data, f"{tmp}/p", True, ns.batch, ns.max_length), ns.steps, ns.max_length)
        padded = _measure(_build(f"{tmp}/model", data, f"{tmp}/q", False, ns.batch, ns.max_length), ns.steps, ns.max_length)
    print(f"packed (bfd, {ns.max_length}): {packed['real_share']:.1%} real tokens, {packed['real_tokens_per_s']:.0f} real tok/s", file=sys.stderr)
    print(f"padded (batch {ns.batch}):   {padded['real_share']:.1%} real tokens, {padded['real_tokens_per_s']:.0f} real tok/s", file=sys.stderr)
    print(json.dumps({
        "name": "sft_packing_real_token_share", "ours": round(packed["real_share"], 4), "baseline": round(padded["real_share"], 4),
        "ratio": round(packed["real_share"] / padded["real_share"], 3), "goal": 0.95, "meets_goal": packed["real_share"] >= 0.95,
        "tokens_per_s_packed": round(packed["real_tokens_per_s"]), "tokens_per_s_padded": round(padded["real_tokens_per_s"]),
        "tokens_per_s_ratio": round(packed["real_tokens_per_s"] / padded["real_tokens_per_s"], 3),
        "real_tokens_packed": packed["real_tokens"], "real_tokens_padded": padded["real_tokens"],
        "rows": ns.rows, "model": ns.model, "max_length": ns.max_length, "batch": ns.batch,
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
