"""The `chat` task: the model answers a handful of fixed prompts greedily (fp32), and the answers are shown.
Not a benchmark: a look at what a checkpoint says, next to its numbers."""

from __future__ import annotations

import sys

PROMPTS = [
    "What is the capital of France?",
    "Write a haiku about the sea.",
    "Explain in two sentences why the sky is blue.",
    "Write a Python function that returns the factorial of n.",
    "Give me three tips for learning a new language.",
]


def evaluate_chat(model, tokenizer, prompts: list[str] | None = None, limit: int | None = None,
                  max_new_tokens: int = 96) -> dict:
    """{"prompts", "mean_words", "empty", "answers": [{prompt, answer}]}; a tokenizer without a chat
    template (a base model) gets the raw prompt followed by a newline."""
    from smollm2_recipes.assets_cli import chat
    from smollm2_recipes.evaluation.generation import complete, eval_mode

    prompts = list(prompts or PROMPTS)
    if limit:
        prompts = prompts[:limit]
    if getattr(tokenizer, "chat_template", None):
        with eval_mode(model):
            answers = chat(model, tokenizer, prompts, max_new_tokens)
    else:
        answers = [a.strip() for a in complete(model, tokenizer, [p + "\n" for p in prompts], [], max_new_tokens,
                                               batch_size=1, desc="chat")]
    for prompt, answer in zip(prompts, answers):  # shown as they are: stderr keeps --json's stdout clean
        print(f"user: {prompt}\nassistant: {answer}\n", file=sys.stderr)
    words = [len(a.split()) for a in answers]
    return {
        "prompts": len(prompts),
        "mean_words": sum(words) / len(words) if words else 0.0,
        "empty": sum(w == 0 for w in words),
        "answers": [{"prompt": p, "answer": a} for p, a in zip(prompts, answers)],
    }
