"""Batched greedy completion of raw text prompts in fp32, with stop strings. Prompts are sorted by length so
each left-padded batch wastes little compute; results come back in input order."""

from __future__ import annotations

import contextlib
import sys


@contextlib.contextmanager
def eval_mode(model):
    """fp32 + eval + no_grad for the duration (bf16 generation on CPU is slower and changes outputs), then
    back to what the caller had: a trainer may call this mid-run."""
    import torch

    dtype, training = model.dtype, model.training
    model.eval()
    if dtype != torch.float32:
        model.float()
    try:
        with torch.no_grad():
            yield model
    finally:
        if dtype != torch.float32:
            model.to(dtype)
        model.train(training)


def truncate_at(text: str, stops: list[str]) -> str:
    """`text` up to the earliest stop string."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut]


def complete(model, tokenizer, prompts: list[str], stops: list[str], max_new_tokens: int = 256, batch_size: int = 8,
             desc: str = "generating", progress: bool = True) -> list[str]:
    """Greedy continuations of `prompts`, each cut at its first stop string."""
    from tqdm.auto import tqdm

    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    outputs: list[str] = [""] * len(prompts)
    side, pad = tokenizer.padding_side, tokenizer.pad_token
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:  # base tokenizers have none; padding is masked out anyway
        tokenizer.pad_token = tokenizer.eos_token
    try:
        with eval_mode(model):
            batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
            for batch_ids in tqdm(batches, desc=desc, disable=not progress, file=sys.stderr):
                batch = tokenizer([prompts[i] for i in batch_ids], return_tensors="pt", padding=True,
                                  add_special_tokens=False).to(model.device)
                out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, temperature=None,
                                     top_p=None, top_k=None, pad_token_id=tokenizer.pad_token_id, stop_strings=stops or None,
                                     tokenizer=tokenizer)
                texts = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
                for i, text in zip(batch_ids, texts):
                    outputs[i] = truncate_at(text, stops)
    finally:
        tokenizer.padding_side, tokenizer.pad_token = side, pad
    return outputs
