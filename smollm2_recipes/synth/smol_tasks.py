"""The Smol-* pipelines of SmolTalk: `smollm2 synth rewrite|summarize|constraints RECIPE.yaml`.

Each reads input rows (local jsonl/parquet or a Hub dataset), builds one user prompt per row, generates
the answer with a distilabel `TextGeneration` step, and writes SmolTalk-form `messages` rows.
Smol-constraints appends IFEval-style constraints to each instruction and keeps a row only when the
checker (`synth/ifeval.py`) says the response satisfies every constraint.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from smollm2_recipes.errors import UserError
from smollm2_recipes.synth import ifeval, runner

REWRITE_STYLES = {
    "concise": "Rewrite the following text to be more concise while keeping its meaning. Reply with the rewritten text only.",
    "friendly": "Rewrite the following text to sound friendlier and more approachable. Reply with the rewritten text only.",
    "professional": "Rewrite the following text to sound more professional and formal. Reply with the rewritten text only.",
}
SUMMARY_PROMPTS = {
    "email": "Summarize the following email in one or two sentences, keeping the request and any dates.",
    "news": "Summarize the following news article in two or three sentences.",
    "text": "Summarize the following text in two or three sentences.",
}


@dataclass
class SmolTaskArgs(runner.SynthArgs):
    input: str = field(default="recipes/synth/seeds/emails.jsonl", metadata={"help": "jsonl/parquet/dataset folder or Hub id"})
    text_column: str = field(default="text", metadata={"help": "column holding the text (rewrite, summarize) or instruction (constraints)"})
    system_prompt: Optional[str] = None
    # rewrite
    styles: list[str] = field(default_factory=lambda: list(REWRITE_STYLES), metadata={"help": f"rewrite styles: {', '.join(REWRITE_STYLES)}"})
    # summarize
    kind_column: Optional[str] = field(default="kind", metadata={"help": f"column naming the text kind ({', '.join(SUMMARY_PROMPTS)})"})
    # constraints
    constraints_per_prompt: int = 1
    constraint_ids: Optional[list[str]] = field(default=None, metadata={"help": "restrict to these IFEval ids; default: all"})


def _generate(name: str, args: SmolTaskArgs, prompts: list[dict]) -> list[dict]:
    """One TextGeneration over `prompts` (each with an `instruction`); returns rows with `generation`."""
    from distilabel.steps.tasks import TextGeneration

    from smollm2_recipes.synth.backends import build_llm

    def build():
        llm = build_llm(args.llm, max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                        batch_size=args.batch_size, seed=args.seed, role=name)
        TextGeneration(name=name, llm=llm, system_prompt=args.system_prompt, input_batch_size=args.batch_size)

    return runner.run_pipeline(f"smollm2-{name}", args, build, dataset=prompts)


def _messages(row: dict) -> list[dict] | None:
    answer = (row.get("generation") or "").strip()
    if not answer:
        return None
    msgs = [{"role": "system", "content": row["system_prompt"]}] if row.get("system_prompt") else []
    return msgs + [{"role": "user", "content": row["instruction"]}, {"role": "assistant", "content": answer}]


def _finish(args: SmolTaskArgs, source: str, rows: list[dict], extra_columns: tuple[str, ...] = (), keep=lambda r: True, summary=None) -> int:
    out, empty, rejected = [], 0, 0
    for row in rows:
        messages = _messages(row)
        if messages is None:
            empty += 1
            continue
        if not keep(row):
            rejected += 1
            continue
        out.append({"messages": messages, "source": source, **{c: row.get(c) for c in extra_columns}})
    runner.save_outputs(args, out, {"generated": len(rows), "empty_generations": empty, "rejected_by_checker": rejected, **(summary or {})})
    return 0


def _parse(argv: list[str]) -> SmolTaskArgs:
    (args,) = runner.parse_args([SmolTaskArgs], argv)
    return args


def rewrite_main(argv: list[str]) -> int:
    args = _parse(argv)
    bad = [s for s in args.styles if s not in REWRITE_STYLES]
    if bad or not args.styles:
        raise UserError(f"Unknown rewrite style(s) {bad or '[]'}. Valid: {', '.join(REWRITE_STYLES)}.")
    rows = runner.read_rows(args.input, args.text_column, limit=args.num_rows)
    rng = random.Random(args.seed)
    prompts = []
    for row in rows:
        style = rng.choice(args.styles)
        prompts.append({"instruction": f"{REWRITE_STYLES[style]}\n\n{row[args.text_column]}", "style": style})
    return _finish(args, "smol-rewrite", _generate("rewrite", args, prompts), ("style",),
                   summary={"styles": dict(Counter(p["style"] for p in prompts))})


def summarize_main(argv: list[str]) -> int:
    args = _parse(argv)
    rows = runner.read_rows(args.input, args.text_column, limit=args.num_rows)
    prompts = []
    for row in rows:
        kind = row.get(args.kind_column) if args.kind_column else None
        kind = kind if kind in SUMMARY_PROMPTS else "text"
        prompts.append({"instruction": f"{SUMMARY_PROMPTS[kind]}\n\n{row[args.text_column]}", "kind": kind})
    return _finish(args, "smol-summarize", _generate("summarize", args, prompts), ("kind",))


def constraints_main(argv: list[str]) -> int:
    args = _parse(argv)
    if args.constraints_per_prompt < 1:
        raise UserError(f"constraints_per_prompt must be >= 1, got {args.constraints_per_prompt}.")
    rows = runner.read_rows(args.input, args.text_column, limit=args.num_rows)
    rng = random.Random(args.seed)
    prompts = []
    for row in rows:
        constraints = ifeval.sample_constraints(rng, args.constraints_per_prompt, args.constraint_ids)
        # as JSON text: constraint kwargs differ in shape, which one Arrow column (distilabel's cache) cannot hold
        prompts.append({"instruction": f"{row[args.text_column]} {ifeval.describe(constraints)}", "constraints": json.dumps(constraints)})
    generated = _generate("constraints", args, prompts)
    verdicts = Counter()
    for row in generated:
        row["constraints"] = json.loads(row["constraints"])
        row["constraint_ids"] = [c["id"] for c in row["constraints"]]
        results = ifeval.check_all(row.get("generation"), row["constraints"])
        row["passed"] = all(results)
        for c, ok in zip(row["constraints"], results):
            verdicts[f"{c['id']}:{'pass' if ok else 'fail'}"] += 1
    passed = sum(r["passed"] for r in generated)
    return _finish(args, "smol-constraints", generated, ("constraint_ids",), keep=lambda r: r["passed"],
                   summary={"pass_rate": passed / max(len(generated), 1), "per_constraint": dict(sorted(verdicts.items()))})
