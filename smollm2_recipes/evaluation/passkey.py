"""Passkey retrieval (needle in a haystack; Mohtashami & Jaggi 2023): a random 5-digit key hidden at a given
depth of a filler text of a given length in tokens; the model must continue "The pass key is" with it.

A sample counts as retrieved when greedy decoding would produce every token of the key, checked in one
teacher-forced forward pass (argmax at each key position equals the key token: the same decision greedy
generation makes, without a generation loop). The mean log-probability of the key is reported too: it moves
before accuracy does on small models."""

from __future__ import annotations

import random

INTRO = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
         "I will quiz you about the important information there.\n")
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
NEEDLE = "The pass key is {key}. Remember it. {key} is the pass key. "
QUESTION = "What is the pass key? The pass key is"


def build_prompt(tokenizer, length: int, depth: float, key: str) -> tuple[list[int], list[int]]:
    """(prompt ids, answer ids): the prompt is `length` tokens long (± one filler sentence) with the needle at
    `depth` (0 = start of the haystack, 1 = end)."""
    enc = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    intro, needle, question, filler = enc(INTRO), enc(NEEDLE.format(key=key)), enc(QUESTION), enc(FILLER)
    budget = max(0, length - len(intro) - len(needle) - len(question))
    haystack = (filler * (budget // max(1, len(filler)) + 1))[:budget]
    # Cut the haystack at a sentence boundary near the requested depth so the needle is a sentence of its own.
    cut = int(round(depth * len(haystack)))
    cut -= cut % max(1, len(filler))
    ids = intro + haystack[:cut] + needle + haystack[cut:] + question
    return ids, enc(" " + key)


def evaluate_passkey(model, tokenizer, lengths, depths, n_per_cell: int = 5, seed: int = 0) -> dict:
    """Accuracy and mean key log-probability for every (depth, length) cell."""
    import torch

    rng = random.Random(seed)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    lengths, depths = [int(x) for x in lengths], [float(d) for d in depths]
    accuracy = [[0.0] * len(lengths) for _ in depths]
    logprob = [[0.0] * len(lengths) for _ in depths]
    cells = []
    try:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(lengths) * len(depths) * n_per_cell, desc="passkey", leave=False)
        for i, depth in enumerate(depths):
            for j, length in enumerate(lengths):
                hits, lp = 0, 0.0
                for _ in range(n_per_cell):
                    key = str(rng.randint(10000, 99999))
                    prompt, answer = build_prompt(tokenizer, length, depth, key)
                    ids = torch.tensor([prompt + answer], device=device)
                    with torch.no_grad():
                        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
                    target = torch.tensor(answer, device=device)
                    hits += int(bool((logits.argmax(-1) == target).all()))
                    lp += float(torch.log_softmax(logits, -1).gather(1, target[:, None]).mean())
                    bar.update(1)
                accuracy[i][j], logprob[i][j] = hits / n_per_cell, lp / n_per_cell
                cells.append({"length": length, "depth": depth, "accuracy": accuracy[i][j], "key_logprob": logprob[i][j]})
        bar.close()
    finally:
        model.train(was_training)
    return {"task": "passkey", "lengths": lengths, "depths": depths, "n_per_cell": n_per_cell, "seed": seed,
            "accuracy": accuracy, "key_logprob": logprob, "cells": cells,
            "mean_accuracy": sum(c["accuracy"] for c in cells) / max(1, len(cells)),
            "max_position_embeddings": getattr(getattr(model, "config", None), "max_position_embeddings", None)}


def format_table(result: dict) -> str:
    """Depths as rows, lengths as columns; accuracy (mean key log-probability)."""
    head = "depth \\ length".ljust(15) + "".join(f"{n:>16}" for n in result["lengths"])
    rows = [head]
    for i, d in enumerate(result["depths"]):
        rows.append(f"{d:<15.2f}" + "".join(f"{result['accuracy'][i][j]:>7.2f} ({result['key_logprob'][i][j]:>6.2f})"
                                             for j in range(len(result["lengths"]))))
    return "\n".join(rows)


def plot_passkey_heatmap(result: dict, path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    from pathlib import Path

    import matplotlib.pyplot as plt

    acc = result["accuracy"]
    fig, ax = plt.subplots(figsize=(1.1 * len(result["lengths"]) + 2.5, 0.6 * len(result["depths"]) + 2))
    im = ax.imshow(acc, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(len(result["lengths"])), [str(n) for n in result["lengths"]])
    ax.set_yticks(range(len(result["depths"])), [f"{d:.0%}" for d in result["depths"]])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("needle depth")
    for i in range(len(result["depths"])):
        for j in range(len(result["lengths"])):
            ax.text(j, i, f"{acc[i][j]:.2f}", ha="center", va="center", fontsize=8)
    trained = result.get("max_position_embeddings")
    if trained and any(n > trained for n in result["lengths"]):
        edge = sum(n <= trained for n in result["lengths"]) - 0.5
        ax.axvline(edge, color="black", lw=1.2, ls="--")
    ax.set_title(f"passkey retrieval accuracy (n={result['n_per_cell']} per cell)", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return str(path)
