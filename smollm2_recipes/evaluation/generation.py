"""Batched generation in fp32 for evaluation and sampling. Prompts are sorted by length so each left-padded
batch wastes little compute, and rows that are done leave the batch (`generate_retiring`); results come
back in input order."""

from __future__ import annotations

import contextlib
import sys

# Rows leave the batch every this many new tokens. A decode step on a CPU costs a fixed part (reading the
# weights) plus a part per row, so retiring finished rows pays; each retirement is one `generate` call.
RETIRE_EVERY = 8


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


def eos_ids(model, tokenizer, eos_token_id=None) -> list[int]:
    """Every token that ends a generation: `eos_token_id` (else the model's generation config) and the tokenizer's."""
    ids = model.generation_config.eos_token_id if eos_token_id is None else eos_token_id
    ids = [] if ids is None else ([ids] if isinstance(ids, int) else list(ids))
    return sorted(set(ids) | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()))


def generate_retiring(model, tokenizer, batch, max_new_tokens: int, stops: list[str] | None = None,
                      retire_every: int = RETIRE_EVERY, **generate_kwargs) -> list:
    """`model.generate` on a left-padded `batch`, returning each row's new token ids, but `retire_every`
    tokens at a time: rows that ended (an eos token, or one of `stops` in their text) leave the batch
    together with their rows of the KV cache, so the batch stops running at the pace of its longest answer.
    Greedy outputs equal one plain `generate` call's (tests/test_generation.py); sampled ones are as
    reproducible, but the random draws differ. benchmarks/bench_generation.py measures the saving."""
    import torch

    ids, mask = batch["input_ids"], batch["attention_mask"]
    prompt_length, eos = ids.shape[1], set(eos_ids(model, tokenizer, generate_kwargs.get("eos_token_id")))
    rows, new_tokens, cache = list(range(len(ids))), [None] * len(ids), None
    if stops:  # built once: building it reads the whole vocabulary (~0.1 s), too slow for every call
        from transformers import StoppingCriteriaList, StopStringCriteria

        generate_kwargs["stopping_criteria"] = StoppingCriteriaList([StopStringCriteria(tokenizer, stops)])
    while rows:
        budget = max_new_tokens - (ids.shape[1] - prompt_length)
        step = min(retire_every, budget)
        out = model.generate(input_ids=ids, attention_mask=mask, cache=cache, max_new_tokens=step,
                             return_dict_in_generate=True, **generate_kwargs)
        grown = out.sequences.shape[1] - ids.shape[1]
        all_ended = grown < step or grown == budget  # generate stops early only when every row has ended
        keep = []
        for i, row in enumerate(rows):
            made = out.sequences[i, prompt_length:]
            ended = all_ended or bool(eos & set(made[-grown:].tolist()))
            if not ended and stops:
                text = tokenizer.decode(made, skip_special_tokens=True)
                ended = any(s in text for s in stops)
            if ended:
                new_tokens[row] = made
            else:
                keep.append(i)
        if not keep:
            break
        index = torch.tensor(keep, device=ids.device)
        cache = out.cache
        cache.reorder_cache(index)  # the public Cache API beam search uses; here it drops the ended rows
        mask = torch.cat([mask, mask.new_ones(len(mask), grown)], dim=1)[index]
        ids, rows = out.sequences[index], [rows[i] for i in keep]
    return new_tokens


@contextlib.contextmanager
def left_padded(tokenizer):
    """Left padding (generation continues at the right edge) and a pad token (base tokenizers have none; padding
    is masked out anyway) for the duration, then the caller's settings back."""
    side, pad = tokenizer.padding_side, tokenizer.pad_token
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    try:
        yield tokenizer
    finally:
        tokenizer.padding_side, tokenizer.pad_token = side, pad


def generate_sorted(model, tokenizer, texts: list[str], max_new_tokens: int, batch_size: int, copies: int = 1,
                    stops: list[str] | None = None, retire_every: int = RETIRE_EVERY, desc: str | None = None,
                    **generate_kwargs) -> list[list[str]]:
    """`copies` decoded continuations of each text, in input order, generated in left-padded batches of
    `batch_size` texts of similar length (sorted, so little compute goes to padding); `desc` names the
    progress bar (None: no bar)."""
    from tqdm.auto import tqdm

    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    outputs: list[list[str]] = [[] for _ in texts]
    with left_padded(tokenizer), eval_mode(model):
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        for ids in tqdm(batches, desc=desc, disable=desc is None, file=sys.stderr):
            rows = [texts[i] for i in ids for _ in range(copies)]
            batch = tokenizer(rows, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            new = generate_retiring(model, tokenizer, batch, max_new_tokens, stops, retire_every,
                                    pad_token_id=tokenizer.pad_token_id, **generate_kwargs)
            decoded = tokenizer.batch_decode(new, skip_special_tokens=True)
            for k, i in enumerate(ids):
                outputs[i] = decoded[k * copies:(k + 1) * copies]
    return outputs


def complete(model, tokenizer, prompts: list[str], stops: list[str], max_new_tokens: int = 256, batch_size: int = 8,
             desc: str = "generating", progress: bool = True, retire_every: int = RETIRE_EVERY) -> list[str]:
    """Greedy continuations of `prompts`, each cut at its first stop string (`retire_every=max_new_tokens`:
    one plain `generate` call per batch, the baseline of benchmarks/bench_generation.py)."""
    outputs = generate_sorted(model, tokenizer, prompts, max_new_tokens, batch_size, stops=stops, retire_every=retire_every,
                              desc=desc if progress else None, do_sample=False, temperature=None, top_p=None, top_k=None)
    return [truncate_at(out[0], stops) for out in outputs]
