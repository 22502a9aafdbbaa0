"""Perplexity and bits per byte on held-out text: documents joined with the end-of-text token (the
pretraining format), cut into blocks of the model's context, scored in fp32. Text comes from a file
(`.txt`: one document; `.jsonl`/`.jsonl.gz`/`.parquet`: a "text" field per row) or a folder of such files
(only its `test.*` files when it has any: the held-out split); the default is the held-out split of the
embedded corpus (`embedded:corpus/web`: test.parquet, documents never trained on)."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

from smollm2_recipes.errors import UserError

DEFAULT_SOURCE = "embedded:corpus/web"
TEXT_SUFFIXES = (".txt", ".md", ".jsonl", ".json", ".jsonl.gz", ".parquet")


def _read_file(path: Path) -> list[str]:
    name = path.name
    if name.endswith(".jsonl") or name.endswith(".jsonl.gz") or name.endswith(".json"):
        opener = gzip.open if name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f if line.strip()]
        if rows and not all(isinstance(r, dict) and isinstance(r.get("text"), str) for r in rows):
            raise UserError(f"'{path}': every JSON line needs a string field 'text'.")
        return [r["text"] for r in rows]
    if name.endswith(".parquet"):
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if "text" not in table.column_names:
            raise UserError(f"'{path}' has no 'text' column (columns: {', '.join(table.column_names)}).")
        return [t for t in table.column("text").to_pylist() if t]
    return [path.read_text(encoding="utf-8")]


def read_documents(source: str) -> list[str]:
    """Documents from a file, a folder of text files, or an `embedded:corpus/NAME`."""
    from smollm2_recipes.assets import resolve

    path = Path(resolve(source))
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(TEXT_SUFFIXES))
        held_out = [p for p in files if p.name.split(".")[0] in ("test", "heldout", "held_out")]
        files = held_out or files  # a corpus with splits (embedded:corpus/*): only its held-out documents
        if not files:
            raise UserError(f"Perplexity source '{source}' ({path}) holds no {', '.join(TEXT_SUFFIXES)} files.")
        docs = [d for f in files for d in _read_file(f)]
    elif path.is_file():
        docs = _read_file(path)
    else:
        raise UserError(f"Perplexity source '{source}' does not exist: give a text/jsonl file, a folder, or embedded:corpus/NAME.")
    docs = [d for d in docs if d.strip()]
    if not docs:
        raise UserError(f"Perplexity source '{source}' has no non-empty documents.")
    return docs


def evaluate_perplexity(model, tokenizer, source: str = DEFAULT_SOURCE, limit: int | None = None,
                        block_size: int | None = None, max_tokens: int = 32768, batch_size: int = 4,
                        documents: list[str] | None = None, progress: bool = True) -> dict:
    """{"perplexity", "nll" (nats/token), "bits_per_byte", "tokens", "documents"} over at most `limit`
    documents and `max_tokens` tokens."""
    import sys

    import torch
    from tqdm.auto import tqdm

    from smollm2_recipes.evaluation.generation import eval_mode

    docs = documents if documents is not None else read_documents(source)
    if limit:
        docs = docs[:limit]
    sep = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    ids: list[int] = []
    n_bytes = 0
    for doc in docs:
        if len(ids) >= max_tokens + 1:
            break
        ids += tokenizer(doc, add_special_tokens=False)["input_ids"] + [sep]
        n_bytes += len(doc.encode("utf-8"))
    if len(ids) > max_tokens + 1:  # count the bytes of the part kept, in proportion
        n_bytes = int(n_bytes * (max_tokens + 1) / len(ids))
        ids = ids[: max_tokens + 1]
    block = block_size or min(1024, getattr(model.config, "max_position_embeddings", 1024) or 1024)
    if len(ids) < 2:
        raise UserError("Perplexity needs at least 2 tokens of text.")
    tokens = torch.tensor(ids)
    # block i scores tokens[s+1 : s+block+1] given tokens[s : s+block] (no overlap); full blocks are batched
    chunks = [tokens[s:s + block + 1] for s in range(0, len(ids) - 1, block)]
    batches = [chunks[i:i + batch_size] for i in range(0, len(chunks), batch_size)]
    total_nll, total_tokens = 0.0, 0
    with eval_mode(model):
        for batch in tqdm(batches, desc="perplexity", disable=not progress, file=sys.stderr):
            groups = [batch] if len({len(c) for c in batch}) == 1 else [[c] for c in batch]  # the short last block
            for group in groups:
                x = torch.stack(group)
                logits = model(x[:, :-1]).logits.float()
                nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten(), reduction="sum")
                total_nll += nll.item()
                total_tokens += x[:, 1:].numel()
    mean = total_nll / total_tokens
    return {
        "perplexity": math.exp(mean),
        "nll": mean,
        "bits_per_byte": total_nll / math.log(2) / max(n_bytes, 1),
        "tokens": total_tokens,
        "documents": len(docs),
    }
