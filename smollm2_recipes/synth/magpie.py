"""`smollm2 synth magpie RECIPE.yaml`: MagPie-Ultra-style conversations in SmolTalk form.

distilabel DAG:  MagpieGenerator (weighted category system prompts, n_turns, temperature)
                 >> KeepStatistics (each turn's finish reason: "stop" or "length")
                 >> TextGeneration "tagger" (difficulty / quality / category as one JSON object, decoded
                    under a constraint that allows only the valid objects: structured output)
then in Python:  validate conversations → drop every turn cut at max_new_tokens (and what follows it)
                 → parse tags (nulls counted) → embedding near-dup removal → filter by tags →
                 `output_dir/data.jsonl` with a `messages` column (+ `tagged.jsonl` with every generated
                 row, its finish reasons and its tags, so nothing vanishes silently).
summary.json: `rows`, `tags_parsed` (of `tags.total`), `truncated_written` (0), `truncated_dropped`, `examples`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from smollm2_recipes.errors import UserError
from smollm2_recipes.synth import runner
from smollm2_recipes.synth.structured import OK, Tally, parse_fields

DIFFICULTIES = ["very easy", "easy", "medium", "hard", "very hard"]
QUALITIES = ["very poor", "poor", "average", "good", "excellent"]

TAG_TEMPLATE = """Classify the user query below. Reply with only a JSON object with the keys "difficulty" (one of: {{ difficulties }}), "quality" (one of: {{ qualities }}) and "category" (one of: {{ categories }}).

# User query
{{ instruction }}

# JSON"""


@dataclass
class MagpieArgs(runner.SynthArgs):
    n_turns: int = field(default=3, metadata={"help": "user/assistant exchanges per conversation (MagPie-Ultra: 3)"})
    system_prompts: Optional[dict] = field(default=None, metadata={"help": "{category: [system prompt, weight]}; default: MagPie-Ultra's 11"})
    include_system_prompt: bool = False
    tagger_llm: Optional[dict] = field(default=None, metadata={"help": "LLM for the tags; default: the generating llm"})
    tag_max_new_tokens: int = 48
    dedup: bool = True
    dedup_encoder: str = "embedded:minilm"
    dedup_threshold: float = 0.9
    min_quality: Optional[str] = field(default=None, metadata={"help": f"drop rows tagged below this: {', '.join(QUALITIES)}"})
    difficulties: Optional[list[str]] = field(default=None, metadata={"help": "keep only these difficulties"})
    categories: Optional[list[str]] = field(default=None, metadata={"help": "keep only these tagged categories"})
    keep_untagged: bool = field(default=True, metadata={"help": "keep rows whose tag is null when filtering by that tag"})
    reward_model: Optional[str] = field(default=None, metadata={"help": "score conversations with a reward model (e.g. RLHFlow/ArmoRM-Llama3-8B-v0.1)"})


def _check(args: MagpieArgs) -> None:
    if args.n_turns < 1:
        raise UserError(f"n_turns must be >= 1, got {args.n_turns}.")
    if args.min_quality is not None and args.min_quality not in QUALITIES:
        raise UserError(f"min_quality '{args.min_quality}' is not valid. Valid: {', '.join(QUALITIES)}.")
    for d in args.difficulties or []:
        if d not in DIFFICULTIES:
            raise UserError(f"difficulty '{d}' is not valid. Valid: {', '.join(DIFFICULTIES)}.")
    from smollm2_recipes.synth.categories import system_prompts

    prompts = system_prompts(args.system_prompts)
    for category in args.categories or []:  # a filter on a category the tagger cannot give would keep nothing
        if category not in prompts:
            raise UserError(f"categories: '{category}' is not one of the recipe's categories; valid: {', '.join(prompts)}.")


def to_messages(row: dict) -> list[dict] | None:
    """SmolTalk `messages` from a MagpieGenerator row (n_turns == 1 gives instruction/response), or None
    when a turn is missing or empty or the conversation does not end with the assistant."""
    conv = row.get("conversation")
    if conv is None and "instruction" in row:
        conv = [{"role": "user", "content": row.get("instruction")}, {"role": "assistant", "content": row.get("response")}]
    if not conv:
        return None
    turns = [m for m in conv if m["role"] != "system"]
    if not turns or turns[-1]["role"] != "assistant" or any(not (m.get("content") or "").strip() for m in conv):
        return None
    if [m["role"] for m in turns] != ["user", "assistant"] * (len(turns) // 2):
        return None
    return [{"role": m["role"], "content": m["content"].strip()} for m in conv]


def turn_finish_reasons(row: dict, max_new_tokens: int) -> list[str | None]:
    """Why each generated turn (user, assistant, user, ...) ended: "stop" (the model's own end of turn) or
    "length" (cut at max_new_tokens). From the LLM's `finish_reasons` statistics where the backend gives them,
    else from its output token count (a turn that used every allowed token counts as cut); None if unknown."""
    stats = row.get("magpie_statistics") or (row.get("distilabel_metadata") or {}).get("statistics_magpie") or {}
    if stats.get("finish_reasons"):
        return list(stats["finish_reasons"])
    return [None if n is None else ("length" if n >= max_new_tokens else "stop") for n in stats.get("output_tokens") or []]


def drop_truncated_turns(messages: list[dict] | None, reasons: list[str | None]) -> tuple[list[dict] | None, int]:
    """The conversation up to its last complete user/assistant exchange before the first turn cut at
    max_new_tokens (None if no exchange is left), and how many generated turns were dropped with the cut one."""
    if messages is None:
        return None, 0
    system = [m for m in messages if m["role"] == "system"]
    turns = [m for m in messages if m["role"] != "system"]
    cut = next((i for i, r in enumerate(reasons[:len(turns)]) if r == "length"), None)
    if cut is None:
        return messages, 0
    keep = cut - cut % 2  # whole exchanges only: a user turn without its answer is no SFT row
    return (system + turns[:keep] if keep else None), len(turns) - keep


def _n_turns(messages: list[dict]) -> int:
    return sum(m["role"] != "system" for m in messages)


def _first_user(messages: list[dict] | None, row: dict) -> str:
    for m in messages or row.get("conversation") or []:
        if m["role"] == "user":
            return m.get("content") or ""
    return row.get("instruction") or ""


def build_dag(args: MagpieArgs, prompts: dict):
    from distilabel.steps.tasks import MagpieGenerator, TextGeneration

    from smollm2_recipes.synth.backends import build_llm

    llm = build_llm(args.llm, max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                    magpie=True, batch_size=args.batch_size, seed=args.seed, role="magpie")
    generator = MagpieGenerator(name="magpie", llm=llm, n_turns=args.n_turns, num_rows=args.num_rows, batch_size=args.batch_size,
                                system_prompt=prompts, include_system_prompt=args.include_system_prompt)
    tag_choices = {"difficulty": DIFFICULTIES, "quality": QUALITIES, "category": list(prompts)}
    tagger_llm = build_llm(args.tagger_llm or args.llm, max_new_tokens=args.tag_max_new_tokens, temperature=0.0,
                           batch_size=args.batch_size, seed=args.seed, role="tagger", json_choices=tag_choices)
    template = (TAG_TEMPLATE.replace("{{ difficulties }}", ", ".join(DIFFICULTIES)).replace("{{ qualities }}", ", ".join(QUALITIES))
                .replace("{{ categories }}", ", ".join(prompts)))
    if args.n_turns > 1:  # MagpieGenerator writes `conversation`; with one turn, `instruction` + `response`
        template = template.replace("{{ instruction }}",
                                    "{% for m in conversation if m.role == 'user' %}{% if loop.first %}{{ m.content }}{% endif %}{% endfor %}")
    tagger = TextGeneration(name="tagger", llm=tagger_llm, template=template, columns=["conversation" if args.n_turns > 1 else "instruction"],
                            output_mappings={"generation": "tags_raw", "model_name": "tagger_model"}, input_batch_size=args.batch_size)
    from smollm2_recipes.synth.steps import KeepStatistics

    keep = KeepStatistics(name="keep_statistics", source_step="magpie", column="magpie_statistics", input_batch_size=args.batch_size)
    step = generator >> keep >> tagger
    if args.reward_model:
        from distilabel.steps import RewardModelScore

        step >> RewardModelScore(name="reward", model=args.reward_model, trust_remote_code=True, input_batch_size=args.batch_size)


def postprocess(args: MagpieArgs, rows: list[dict], categories: list[str]) -> tuple[list[dict], list[dict], dict]:
    tally, incomplete, cut_turns, cut_convs, dropped_convs = Tally(), 0, 0, 0, 0
    tagged = []
    for row in rows:
        messages = to_messages(row)
        incomplete += messages is None
        full = messages
        reasons = turn_finish_reasons(row, args.max_new_tokens)
        messages, dropped_turns = drop_truncated_turns(messages, reasons)
        cut_turns += dropped_turns
        cut_convs += dropped_turns > 0
        dropped_convs += full is not None and messages is None
        tags, status = parse_fields(row.get("tags_raw"), {"difficulty": DIFFICULTIES, "quality": QUALITIES, "category": categories})
        tally[status] += 1
        tagged.append({"messages": messages, "system_prompt_key": row.get("system_prompt_key"), **tags,
                       "tag_status": status, "reward": row.get("reward"), "tags_raw": row.get("tags_raw"),
                       "turn_finish_reasons": reasons, "turns_dropped": dropped_turns, "generated_messages": full})
    usable = [r for r in tagged if r["messages"] is not None]

    duplicates = 0
    if args.dedup and usable:
        from smollm2_recipes.synth.dedup import near_duplicates

        dup_of = near_duplicates([_first_user(r["messages"], r) for r in usable], args.dedup_threshold, args.dedup_encoder)
        duplicates = sum(d is not None for d in dup_of)
        usable = [r for r, d in zip(usable, dup_of) if d is None]

    def passes(r: dict) -> bool:
        checks = []
        if args.min_quality:
            checks.append(("quality", lambda q: QUALITIES.index(q) >= QUALITIES.index(args.min_quality)))
        if args.difficulties:
            checks.append(("difficulty", lambda d: d in args.difficulties))
        if args.categories:
            checks.append(("category", lambda c: c in args.categories))
        return all(args.keep_untagged if r[key] is None else ok(r[key]) for key, ok in checks)

    kept = [r for r in usable if passes(r)]
    source = "magpie-ultra"
    out = [{"messages": r["messages"], "source": source, "category": r["system_prompt_key"], "difficulty": r["difficulty"],
            "quality": r["quality"], "tagged_category": r["category"]} for r in kept]
    summary = {
        "generated": len(rows),
        "rows": len(out),
        "tags_parsed": tally[OK],
        # checked on what is written, not assumed: a kept turn the backend reported as cut
        "truncated_written": sum("length" in r["turn_finish_reasons"][:_n_turns(r["messages"])] for r in kept),
        "turns_with_unknown_finish": sum(None in r["turn_finish_reasons"][:_n_turns(r["messages"])] or
                                         len(r["turn_finish_reasons"]) < _n_turns(r["messages"]) for r in kept),
        "truncated_dropped": sum(r["turn_finish_reasons"].count("length") for r in tagged)
                             - sum(r["turn_finish_reasons"][:_n_turns(r["messages"])].count("length") for r in kept),
        "turns_dropped_from_a_cut_turn_on": cut_turns,
        "conversations_shortened_at_a_cut_turn": cut_convs - dropped_convs,
        "conversations_dropped_at_a_cut_turn": dropped_convs,
        "incomplete_or_empty_conversations": incomplete,
        "near_duplicates_removed": duplicates,
        "filtered_by_tags": len(usable) - len(kept),
        "tags": tally.summary(),
        "categories": dict(Counter(r["category"] for r in out)),
    }
    return out, tagged, summary


def main(argv: list[str]) -> int:
    from smollm2_recipes.synth.categories import system_prompts

    (args,) = runner.parse_args([MagpieArgs], argv, check=_check)
    prompts = system_prompts(args.system_prompts)
    rows = runner.run_pipeline("smollm2-magpie", args, lambda: build_dag(args, prompts))
    out, tagged, summary = postprocess(args, rows, list(prompts))
    from pathlib import Path

    runner.write_jsonl(Path(args.output_dir) / "tagged.jsonl", tagged)
    runner.save_outputs(args, out, summary)
    return 0
