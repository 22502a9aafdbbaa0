"""A distilabel TransformersLLM that batches prompts, says whether each generation ended on the model's own
end of turn, and can constrain a reply to one of a closed set of JSON objects. Lives at module level so
distilabel can pickle it into its step processes.

Each generation's statistics carry `finish_reasons`: "stop" (an EOS / <|im_end|> was produced) or "length"
(cut at max_new_tokens), the same words as the OpenAI API's `finish_reason`.
"""

from __future__ import annotations

import itertools
import json
from typing import Any, Optional

from distilabel.models.llms import TransformersLLM
from pydantic import Field, PrivateAttr

from smollm2_recipes.evaluation.generation import eos_ids, generate_retiring

STOP, LENGTH = "stop", "length"


def json_completions(choices: dict[str, list[str]]) -> list[str]:
    """Every JSON object with the keys of `choices` in order and one allowed value each, as `json.dumps` writes it."""
    keys = list(choices)
    return [json.dumps(dict(zip(keys, values))) for values in itertools.product(*(choices[k] for k in keys))]


def json_schema(choices: dict[str, list[str]]) -> dict:
    """The JSON schema of the same closed set (for backends whose structured output takes a schema)."""
    return {"type": "object", "properties": {k: {"type": "string", "enum": list(v)} for k, v in choices.items()},
            "required": list(choices), "additionalProperties": False}


class TrieConstraint:
    """A transformers logits processor that lets a generation spell only one of `sequences` (token ids), then
    an end-of-turn token. A trie over the tokenised valid completions makes the constraint exact: whatever
    the model prefers, the reply parses (Willard & Louf 2023, https://arxiv.org/abs/2307.09702, do the same
    with a finite-state machine over a regex / JSON schema)."""

    def __init__(self, sequences: list[list[int]], eos_ids: list[int]):
        self.root: dict = {}
        for seq in sequences:
            node = self.root
            for t in seq:
                node = node.setdefault(t, {})
            node[None] = True  # a complete object: only the end of turn may follow
        self.eos_ids = list(eos_ids)
        self.start: int | None = None
        self.longest = max(len(s) for s in sequences) + 1

    def allowed(self, generated: list[int]) -> list[int]:
        node = self.root
        for t in generated:
            if t not in node:  # past the end of turn (finished rows keep being padded): anything is fine
                return self.eos_ids
            node = node[t]
        return [t for t in node if t is not None] + (self.eos_ids if None in node else [])

    def __call__(self, input_ids, scores):
        import torch

        if self.start is None:  # the first call sees the (left-padded) prompts only; later `generate` calls see them too
            self.start = input_ids.shape[1]
        mask = torch.full_like(scores, float("-inf"))
        for b, row in enumerate(input_ids[:, self.start:].tolist()):
            mask[b, self.allowed(row)] = 0.0
        return scores + mask


class BatchedTransformersLLM(TransformersLLM):
    """distilabel's TransformersLLM feeds the HF pipeline one prompt at a time and cannot tell a finished
    reply from one cut at max_new_tokens; this one batches the prompts of a distilabel batch (several times
    faster on a CPU), reads the end of turn from the generated token ids, and with `json_choices` spells
    only valid JSON."""

    pipeline_batch_size: int = Field(default=8)
    progress_desc: str = Field(default="generations")
    seed: int = Field(default=42)
    # distilabel forks its step processes; if the parent already ran torch (an embedding search, a training
    # step in the same Python), a forked child deadlocks in its first multi-threaded op. One intra-op thread
    # per step is safe, and on a CPU the steps of a pipeline run side by side anyway.
    torch_threads: int = Field(default=1)
    json_choices: Optional[dict[str, list[str]]] = Field(default=None)
    _progress: Any = PrivateAttr(default=None)
    _json_sequences: Any = PrivateAttr(default=None)

    def load(self) -> None:
        import torch
        from transformers import set_seed

        torch.set_num_threads(self.torch_threads)
        set_seed(self.seed)  # sampling in the step process is reproducible for a given recipe
        super().load()
        tokenizer = self._pipeline.tokenizer
        tokenizer.padding_side = "left"  # decoder-only batches are padded on the left
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        if self.json_choices:
            self._json_sequences = [tokenizer.encode(s, add_special_tokens=False) for s in json_completions(self.json_choices)]

    # The same explicit signature as TransformersLLM.generate: distilabel reads it to find runtime parameters.
    def generate(self, inputs: list, num_generations: int = 1, max_new_tokens: int = 128, temperature: float = 0.1,
                 repetition_penalty: float = 1.1, top_p: float = 1.0, top_k: int = 0, do_sample: bool = True) -> list:
        import torch
        from tqdm.auto import tqdm

        if self._progress is None:  # one bar per step process: generations done so far and their rate
            self._progress = tqdm(desc=self.progress_desc, unit="gen", dynamic_ncols=True)
        tokenizer, model = self._pipeline.tokenizer, self._pipeline.model
        eos = eos_ids(model, tokenizer)
        prompts = [self.prepare_input(input=i) for i in inputs]
        results = []
        for start in range(0, len(prompts), self.pipeline_batch_size):
            chunk = prompts[start:start + self.pipeline_batch_size]
            rows = [p for p in chunk for _ in range(num_generations)]
            enc = tokenizer(rows, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            kwargs: dict[str, Any] = dict(do_sample=do_sample, repetition_penalty=repetition_penalty,
                                          pad_token_id=tokenizer.pad_token_id, eos_token_id=eos)
            if do_sample:
                kwargs.update(temperature=temperature, top_p=top_p, top_k=top_k or None)
            limit = max_new_tokens
            if self._json_sequences:
                constraint = TrieConstraint(self._json_sequences, eos)
                kwargs.update(logits_processor=[constraint])
                limit = constraint.longest
            with torch.no_grad():  # a reply that ends leaves the batch: the batch does not wait for its longest
                new = [t.tolist() for t in generate_retiring(model, tokenizer, enc, limit, **kwargs)]
            for i in range(len(chunk)):
                texts, n_out, reasons = [], [], []
                for ids in new[i * num_generations:(i + 1) * num_generations]:
                    end = next((k for k, t in enumerate(ids) if t in eos), None)
                    texts.append(tokenizer.decode(ids if end is None else ids[:end], skip_special_tokens=True))
                    n_out.append(len(ids) if end is None else end + 1)
                    reasons.append(LENGTH if end is None else STOP)
                n_in = int(enc["attention_mask"][i * num_generations].sum())
                results.append({"generations": texts,
                                "statistics": {"input_tokens": [n_in] * num_generations, "output_tokens": n_out, "finish_reasons": reasons}})
            self._progress.update(len(chunk) * num_generations)
        return results
