"""`smollm2 synth magpie RECIPE.yaml`: MagPie-Ultra-style conversations in SmolTalk form.

distilabel DAG:  MagpieGenerator (weighted category system prompts, n_turns, temperature)
                 >> TextGeneration "tagger" (difficulty / quality / category as one JSON object)
then in Python:  validate conversations → parse tags (nulls counted) → embedding near-dup removal
                 → filter by tags → `output_dir/data.jsonl` with a `messages` column (+ `tagged.jsonl`
                 with every generated row and its tags, so nothing vanishes silently).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from smollm2_recipes.errors import UserError
from smollm2_recipes.synth import runner
from smollm2_recipes.synth.structured import Tally, parse_fields

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
    tagger_llm = build_llm(args.tagger_llm or args.llm, max_new_tokens=args.tag_max_new_tokens, temperature=0.0,
                           batch_size=args.batch_size, seed=args.seed, role="tagger")
    template = (TAG_TEMPLATE.replace("{{ difficulties }}", ", ".join(DIFFICULTIES)).replace("{{ qualities }}", ", ".join(QUALITIES))
                .replace("{{ categories }}", ", ".join(prompts)))
    if args.n_turns > 1:  # MagpieGenerator writes `conversation`; with one turn, `instruction` + `response`
        template = template.replace("{{ instruction }}",
                                    "{% for m in conversation if m.role == 'user' %}{% if loop.first %}{{ m.content }}{% endif %}{% endfor %}")
    tagger = TextGeneration(name="tagger", llm=tagger_llm, template=template, columns=["conversation" if args.n_turns > 1 else "instruction"],
                            output_mappings={"generation": "tags_raw", "model_name": "tagger_model"}, input_batch_size=args.batch_size)
    step = generator >> tagger
    if args.reward_model:
        from distilabel.steps import RewardModelScore

        step >> RewardModelScore(name="reward", model=args.reward_model, trust_remote_code=True, input_batch_size=args.batch_size)


def postprocess(args: MagpieArgs, rows: list[dict], categories: list[str]) -> tuple[list[dict], list[dict], dict]:
    tally, incomplete = Tally(), 0
    tagged = []
    for row in rows:
        messages = to_messages(row)
        incomplete += messages is None
        tags, status = parse_fields(row.get("tags_raw"), {"difficulty": DIFFICULTIES, "quality": QUALITIES, "category": categories})
        tally[status] += 1
        tagged.append({"messages": messages, "system_prompt_key": row.get("system_prompt_key"), **tags,
                       "tag_status": status, "reward": row.get("reward"), "tags_raw": row.get("tags_raw")})
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
        "incomplete_or_empty_conversations": incomplete,
        "near_duplicates_removed": duplicates,
        "filtered_by_tags": len(usable) - len(kept),
        "tags": tally.summary(),
        "categories": dict(Counter(r["category"] for r in out)),
    }
    return out, tagged, summary


def main(argv: list[str]) -> int:
    from smollm2_recipes.synth.categories import system_prompts

    (args,) = runner.parse_args([MagpieArgs], argv)
    _check(args)
    prompts = system_prompts(args.system_prompts)
    rows = runner.run_pipeline("smollm2-magpie", args, lambda: build_dag(args, prompts))
    out, tagged, summary = postprocess(args, rows, list(prompts))
    from pathlib import Path

    runner.write_jsonl(Path(args.output_dir) / "tagged.jsonl", tagged)
    runner.save_outputs(args, out, summary)
    return 0
