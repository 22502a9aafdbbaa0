"""Held-out loss by position bucket: does a model use positions beyond the length it was trained on?

Windows of `max_length` tokens are cut from held-out long documents (by default the held-out split of
`embedded:corpus/long`, documents never trained on), scored in fp32, and each token's loss is averaged
within buckets of positions: inside the original length, then each doubling beyond it
([0, L), [L, 2L), [2L, 4L), ...). Before a context extension the buckets beyond L sit well above the
first one (RoPE positions the model never saw); after it they fall to or below it, as more context
can only help prediction (the long-context evaluation of e.g. Press et al. 2022, "Train Short, Test
Long", https://arxiv.org/abs/2108.12409)."""

from __future__ import annotations

import sys
from pathlib import Path

from smollm2_recipes.errors import UserError

DEFAULT_SOURCE = "embedded:corpus/long"


def position_buckets(original_length: int, max_length: int) -> list[tuple[int, int]]:
    """[0, L), then each doubling beyond L up to max_length (the last bucket is cut at max_length)."""
    if original_length < 1 or max_length <= original_length:
        raise UserError(f"loss by position needs 0 < original_length < max_length, got {original_length} and {max_length}.")
    buckets, start = [(0, original_length)], original_length
    while start < max_length:
        buckets.append((start, min(2 * start, max_length)))
        start *= 2
    return buckets


def bucket_name(bucket: tuple[int, int]) -> str:
    return f"[{bucket[0]},{bucket[1]})"


def long_windows(tokenizer, max_length: int, source: str = DEFAULT_SOURCE, max_windows: int = 16) -> list[list[int]]:
    """Up to `max_windows` windows of max_length + 1 tokens (inputs and the next-token targets), taken in turn
    from consecutive stretches of each held-out document, so every document contributes."""
    from smollm2_recipes.evaluation.perplexity import read_documents

    per_doc = []
    for doc in read_documents(source):
        ids = tokenizer(doc, add_special_tokens=False)["input_ids"]
        per_doc.append([ids[s:s + max_length + 1] for s in range(0, len(ids) - max_length, max_length + 1)])
    windows = []
    for depth in range(max(map(len, per_doc), default=0)):  # round robin: the first stretch of every document first
        windows += [doc[depth] for doc in per_doc if depth < len(doc)]
    windows = windows[:max_windows]
    if not windows:
        raise UserError(f"loss by position: no document of '{source}' holds {max_length + 1} tokens; "
                        "give a source of longer documents or a smaller max_length.")
    return windows


def evaluate_loss_by_position(model, tokenizer, original_length: int, max_length: int, source: str = DEFAULT_SOURCE,
                              max_windows: int = 16, batch_size: int = 2, progress: bool = True) -> dict:
    """{"original_length", "max_length", "losses": {"[a,b)": mean nll in nats}, "tokens_per_bucket", "windows", "source"}."""
    import torch
    from tqdm.auto import tqdm

    from smollm2_recipes.evaluation.generation import eval_mode

    buckets = position_buckets(original_length, max_length)
    windows = torch.tensor(long_windows(tokenizer, max_length, source, max_windows)).to(model.device)
    nll_sum = torch.zeros(max_length, dtype=torch.float64)
    with eval_mode(model):
        for start in tqdm(range(0, len(windows), batch_size), desc="loss by position", disable=not progress, file=sys.stderr):
            x = windows[start:start + batch_size]
            logits = model(x[:, :-1]).logits.float()
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none")
            nll_sum += nll.sum(0).double().cpu()  # position p predicts token p+1 from the p+1 tokens before it
    per_position = nll_sum / len(windows)
    return {
        "original_length": original_length,
        "max_length": max_length,
        "losses": {bucket_name(b): per_position[b[0]:b[1]].mean().item() for b in buckets},
        "tokens_per_bucket": {bucket_name(b): (b[1] - b[0]) * len(windows) for b in buckets},
        "windows": len(windows),
        "source": source,
    }


def plot_before_after(before: dict, after: dict, path: Path) -> Path:
    """One bar pair per bucket: held-out loss before and after the extension."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(before["losses"])
    xs = range(len(names))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar([x - 0.2 for x in xs], [before["losses"][n] for n in names], width=0.4, label="before extension")
    ax.bar([x + 0.2 for x in xs], [after["losses"].get(n, float("nan")) for n in names], width=0.4, label="after extension")
    ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(list(xs), names)
    ax.set_xlabel(f"token position (original context {before['original_length']})")
    ax.set_ylabel("held-out loss (nats/token)")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    tmp.replace(path)
    return path


def before_and_after(model_before: str, model_after: str, output_dir: str, source: str = DEFAULT_SOURCE,
                     max_windows: int = 16) -> dict:
    """Loss by position of the model before and after a context extension, at the new length; writes
    loss_by_position.json and loss_by_position.png into output_dir."""
    import json
    import os

    import torch
    from transformers import AutoConfig

    from smollm2_recipes.assets import resolve
    from smollm2_recipes.models import load_pretrained

    original, new = (AutoConfig.from_pretrained(resolve(name)).max_position_embeddings for name in (model_before, model_after))
    result = {"original_length": original, "max_length": new, "source": source}
    for label, name in (("before", model_before), ("after", model_after)):  # one model in memory at a time
        model, tokenizer = load_pretrained(name, dtype="float32")
        if torch.cuda.is_available():
            model.to("cuda")
        scored = evaluate_loss_by_position(model, tokenizer, original, new, source, max_windows)
        result[label] = scored["losses"]
        result["windows"], result["tokens_per_bucket"] = scored["windows"], scored["tokens_per_bucket"]
        del model
    inside, beyond = bucket_name((0, original)), [b for b in result["after"] if not b.startswith("[0,")]
    # the quickstart's goal: beyond the original length within 10% of inside it after, well above before
    result["after_beyond_over_inside"] = max(result["after"][b] for b in beyond) / result["after"][inside]
    result["before_beyond_over_inside"] = max(result["before"][b] for b in beyond) / result["before"][inside]
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    plot_before_after({"losses": result["before"], "original_length": original}, {"losses": result["after"]},
                      out / "loss_by_position.png")
    tmp = out / "loss_by_position.json.tmp"
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, out / "loss_by_position.json")
    print("held-out loss by position (before -> after): "
          + ", ".join(f"{b}: {result['before'][b]:.3f} -> {result['after'][b]:.3f}" for b in result["before"]), file=sys.stderr)
    return result
