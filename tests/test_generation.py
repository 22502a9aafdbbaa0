"""Generation with retiring rows (evaluation/generation.py) on the real SmolLM2-135M-Instruct: rows that end
leave the batch, and greedy outputs stay those of one plain `generate` call. These also fail if
transformers moves the API it rests on (`generate(cache=...)`, `out.cache`, `Cache.reorder_cache`)."""

import pytest

PROMPTS = ["Reply with the single word yes.", "Write a long story about a dragon who learns to bake bread.",
           "What is 2 + 2?", "List ten animals, one per line."]


@pytest.fixture(scope="module")
def instruct(instruct_model_path):
    import torch

    from smollm2_recipes.models import load_pretrained

    torch.manual_seed(0)
    return load_pretrained(instruct_model_path, dtype="float32")


def _batch(tokenizer, prompts):
    tokenizer.padding_side = "left"
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
             for p in prompts]
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)


GREEDY = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}


def test_rows_that_end_leave_the_batch_and_greedy_outputs_do_not_change(instruct):
    import torch

    from smollm2_recipes.evaluation.generation import generate_retiring

    model, tokenizer = instruct
    batch = _batch(tokenizer, PROMPTS)
    kwargs = dict(GREEDY, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    with torch.no_grad():
        plain = model.generate(**batch, max_new_tokens=40, **kwargs)[:, batch["input_ids"].shape[1]:]
    rows_per_call = []
    generate = model.generate

    def counting(*args, **kw):  # the real generate; only the rows it is given are recorded
        rows_per_call.append(len(kw["input_ids"]))
        return generate(*args, **kw)

    model.generate = counting
    try:
        with torch.no_grad():
            retiring = generate_retiring(model, tokenizer, batch, 40, retire_every=4, **kwargs)
    finally:
        del model.generate
    expected = tokenizer.batch_decode(plain, skip_special_tokens=True)
    assert tokenizer.batch_decode(retiring, skip_special_tokens=True) == expected
    assert rows_per_call[0] == len(PROMPTS) and min(rows_per_call) < len(PROMPTS), rows_per_call
    assert all(len(r) <= 40 for r in retiring)


def test_a_stop_string_ends_a_row_and_sampling_is_reproducible(instruct):
    import torch

    from smollm2_recipes.evaluation.generation import generate_retiring, truncate_at

    model, tokenizer = instruct
    batch = _batch(tokenizer, PROMPTS[1:])
    stops = ["\n"]
    kwargs = dict(GREEDY, pad_token_id=tokenizer.pad_token_id)
    with torch.no_grad():
        plain = model.generate(**batch, max_new_tokens=32, stop_strings=stops, tokenizer=tokenizer, **kwargs)
        retiring = generate_retiring(model, tokenizer, batch, 32, stops, retire_every=4, **kwargs)
    cut = [truncate_at(t, stops) for t in tokenizer.batch_decode(retiring, skip_special_tokens=True)]
    assert cut == [truncate_at(t, stops) for t in tokenizer.batch_decode(plain[:, batch["input_ids"].shape[1]:],
                                                                         skip_special_tokens=True)]
    sampled = []
    for _ in range(2):
        torch.manual_seed(3)
        with torch.no_grad():
            new = generate_retiring(model, tokenizer, batch, 16, retire_every=4, do_sample=True, temperature=1.0,
                                    top_k=0, top_p=1.0, pad_token_id=tokenizer.pad_token_id)
        sampled.append(tokenizer.batch_decode(new, skip_special_tokens=True))
    assert sampled[0] == sampled[1]
