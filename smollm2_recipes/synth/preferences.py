"""`smollm2 synth preferences RECIPE.yaml`: chosen/rejected pairs in TRL's conversational preference form.

Several responses per prompt (`num_generations` from each of the `generators`, one or more LLMs), then
one of two ways to rank them:
- a verifier, where the task is checkable: `arith` (the exact answer of a generated arithmetic problem,
  `smollm2_recipes.offline.arith_problems.check_answer`) or `constraints` (the IFEval-style checker); chosen = a
  response that passes, rejected = one that fails;
- an LLM judge with UltraFeedback's rubric (distilabel's `UltraFeedback` task, aspect overall-rating);
  chosen = highest rating, rejected = lowest.
A prompt whose responses all pass / all fail, or that the judge left unscored or tied, yields no pair and
is counted in the summary. Rows: {"prompt": [user], "chosen": [assistant], "rejected": [assistant], ...}.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from smollm2_recipes.errors import UserError
from smollm2_recipes.synth import ifeval, runner

SOURCES = ("arith", "constraints", "file")
VERIFIERS = ("auto", "arith", "constraints", "judge")


@dataclass
class PreferenceArgs(runner.SynthArgs):
    source: str = field(default="arith", metadata={"help": f"prompts from: {', '.join(SOURCES)}"})
    input: Optional[str] = field(default=None, metadata={"help": "for source file (or constraints): jsonl/parquet/folder/Hub id"})
    prompt_column: str = "instruction"
    generators: Optional[list[dict]] = field(default=None, metadata={"help": "LLMs that answer; default: [llm]"})
    num_generations: int = field(default=4, metadata={"help": "responses per prompt from each generator"})
    verifier: str = field(default="auto", metadata={"help": f"{', '.join(VERIFIERS)}; auto = arith/constraints for those sources, else judge"})
    judge_llm: Optional[dict] = field(default=None, metadata={"help": "LLM judge (UltraFeedback rubric); default: llm"})
    judge_max_new_tokens: int = 256
    constraints_per_prompt: int = 1
    constraint_ids: Optional[list[str]] = field(default=None, metadata={"help": "restrict source constraints to these IFEval ids"})
    instruction_suffix: Optional[str] = field(default=None, metadata={"help": "appended to each file/constraints prompt, before "
                                                                              "its constraint (e.g. 'Answer in one or two sentences.')"})
    arith_answer_format: bool = field(default=True, metadata={"help": "ask arith answers to end with 'The answer is N.'"})


def _check(args: PreferenceArgs) -> str:
    if args.source not in SOURCES:
        raise UserError(f"Unknown source '{args.source}'. Valid: {', '.join(SOURCES)}.")
    if args.verifier not in VERIFIERS:
        raise UserError(f"Unknown verifier '{args.verifier}'. Valid: {', '.join(VERIFIERS)}.")
    if args.source == "file" and not args.input:
        raise UserError("source: file needs input (a jsonl/parquet path, dataset folder or Hub id).")
    verifier = args.verifier if args.verifier != "auto" else {"arith": "arith", "constraints": "constraints"}.get(args.source, "judge")
    if verifier in ("arith", "constraints") and args.source != verifier:
        raise UserError(f"verifier '{verifier}' needs source '{verifier}' (it knows the answers / constraints), got source '{args.source}'.")
    if args.num_generations < 1 or args.num_generations * len(args.generators or [1]) < 2:
        raise UserError("A preference pair needs at least 2 responses per prompt: raise num_generations or add generators.")
    return verifier


def build_prompts(args: PreferenceArgs) -> list[dict]:
    """Rows with `instruction` (the user prompt) and what the verifier needs (`answer` / `constraints`)."""
    rng = random.Random(args.seed)
    if args.source == "arith":
        from smollm2_recipes.offline import arith_problems

        suffix = " Think step by step and end with 'The answer is N.'" if args.arith_answer_format else ""
        return [{"instruction": p.question + suffix, "answer": p.answer} for p in arith_problems.train_problems(args.num_rows, args.seed)]
    rows = runner.read_rows(args.input or "recipes/synth/seeds/instructions.jsonl", args.prompt_column, limit=args.num_rows)
    suffix = f" {args.instruction_suffix.strip()}" if args.instruction_suffix else ""
    if args.source == "constraints":
        out = []
        for row in rows:
            cons = ifeval.sample_constraints(rng, args.constraints_per_prompt, args.constraint_ids)
            out.append({"instruction": f"{row[args.prompt_column]}{suffix} {ifeval.describe(cons)}", "constraints": json.dumps(cons)})
        return out
    return [{"instruction": row[args.prompt_column] + suffix} for row in rows]


def _generation_dag(args: PreferenceArgs, prompts: list[dict]):
    from distilabel.steps import GroupColumns, LoadDataFromDicts
    from distilabel.steps.tasks import TextGeneration

    from smollm2_recipes.synth.backends import build_llm

    load = LoadDataFromDicts(name="prompts", data=prompts, batch_size=args.batch_size)
    branches = []
    for i, spec in enumerate(args.generators or [args.llm]):
        llm = build_llm(spec, max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                        batch_size=args.batch_size, seed=args.seed, role=f"generator_{i}")
        branches.append(TextGeneration(name=f"generator_{i}", llm=llm, num_generations=args.num_generations, group_generations=True,
                                       input_batch_size=args.batch_size))
    group = GroupColumns(name="group", columns=["generation", "model_name"], output_columns=["generations_by_model", "models"])
    load >> branches >> group


def _judge_dag(args: PreferenceArgs):
    from distilabel.steps.tasks import UltraFeedback

    from smollm2_recipes.synth.backends import build_llm

    llm = build_llm(args.judge_llm or args.llm, max_new_tokens=args.judge_max_new_tokens, temperature=0.0, batch_size=args.batch_size, seed=args.seed, role="judge")
    UltraFeedback(name="judge", llm=llm, aspect="overall-rating", input_batch_size=args.batch_size)


def _flatten(rows: list[dict], max_new_tokens: int) -> list[dict]:
    for row in rows:
        gens, models = [], []
        for per_model, name in zip(row["generations_by_model"], row["models"]):
            per_model = per_model if isinstance(per_model, list) else [per_model]
            gens += [g for g in per_model]
            models += [name[0] if isinstance(name, list) else name] * len(per_model)
        row["generations"], row["generation_models"] = gens, models
        reasons = _finish_reasons(row.get("distilabel_metadata"), max_new_tokens)
        row["finish_reasons"] = reasons if len(reasons) == len(gens) else [None] * len(gens)
    return rows


def _finish_reasons(metadata, max_new_tokens: int) -> list:
    """The generators' `finish_reasons` statistics ("stop" / "length"), in the order of the generations:
    distilabel keeps one metadata dict per generation (group_generations), merged in the branches' order.
    A backend that reports only token counts: a generation that used all max_new_tokens counts as cut."""
    out = []
    for item in metadata if isinstance(metadata, list) else [metadata or {}]:
        for key in sorted(k for k in (item or {}) if k.startswith("statistics_generator_")):
            stats = item[key]
            for stat in stats if isinstance(stats, list) else [stats]:
                stat = stat or {}
                reasons = stat.get("finish_reasons")
                if reasons is None and stat.get("output_tokens") is not None:
                    counts = stat["output_tokens"] if isinstance(stat["output_tokens"], list) else [stat["output_tokens"]]
                    reasons = [None if n is None else ("length" if n >= max_new_tokens else "stop") for n in counts]
                out += reasons if isinstance(reasons, list) else [reasons]
    return out


def _scores(row: dict, verifier: str) -> list[float | None]:
    """One score per generation; None for an empty one or one cut at max_new_tokens (never chosen or rejected)."""
    cut = [r == "length" for r in row.get("finish_reasons") or [False] * len(row["generations"])]
    return [None if c else s for s, c in zip(_raw_scores(row, verifier), cut)]


def _raw_scores(row: dict, verifier: str) -> list[float | None]:
    gens = row["generations"]
    if verifier == "arith":
        from smollm2_recipes.offline import arith_problems

        return [None if not g else float(arith_problems.check_answer(g, int(row["answer"]))) for g in gens]
    if verifier == "constraints":
        cons = json.loads(row["constraints"])
        return [None if not g else float(all(ifeval.check_all(g, cons))) for g in gens]
    ratings = row.get("ratings") or [None] * len(gens)
    return [None if (r is None or not g) else float(r) for g, r in zip(gens, ratings)]


def pairs(rows: list[dict], verifier: str, seed: int) -> tuple[list[dict], dict]:
    """chosen = best-scored response, rejected = worst; counts the prompts that gave no pair and why."""
    rng = random.Random(seed)
    out, counts = [], {"no_score": 0, "no_contrast": 0, "null_scores": 0, "empty_generations": 0, "truncated_dropped": 0}
    for row in rows:
        scores = _scores(row, verifier)
        counts["empty_generations"] += sum(not g for g in row["generations"])
        counts["truncated_dropped"] += sum(r == "length" for r in row.get("finish_reasons") or [])
        counts["null_scores"] += sum(s is None for s in scores)
        scored = [(s, i) for i, s in enumerate(scores) if s is not None]
        if len(scored) < 2:
            counts["no_score"] += 1
            continue
        best, worst = max(s for s, _ in scored), min(s for s, _ in scored)
        if best == worst:
            counts["no_contrast"] += 1  # all pass, all fail, or a tie: nothing to prefer
            continue
        c = rng.choice([i for s, i in scored if s == best])
        r = rng.choice([i for s, i in scored if s == worst])
        out.append({
            "prompt": [{"role": "user", "content": row["instruction"]}],
            "chosen": [{"role": "assistant", "content": row["generations"][c].strip()}],
            "rejected": [{"role": "assistant", "content": row["generations"][r].strip()}],
            "score_chosen": best, "score_rejected": worst,
            "chosen_model": row["generation_models"][c], "rejected_model": row["generation_models"][r],
        })
    return out, {"prompts": len(rows), "pairs": len(out), "preference_pairs": len(out), "verifier": verifier, **counts}


def main(argv: list[str]) -> int:
    (args,) = runner.parse_args([PreferenceArgs], argv)
    verifier = _check(args)
    for i, spec in enumerate(args.generators or []):
        from smollm2_recipes.synth.backends import validate_llm

        validate_llm(spec, f"generators[{i}]")
    prompts = build_prompts(args)
    rows = _flatten(runner.run_pipeline("smollm2-preferences", args, lambda: _generation_dag(args, prompts)), args.max_new_tokens)
    if verifier == "judge":
        for row in rows:  # distilabel's cache keys batches on content; keep only what the judge needs
            row.pop("distilabel_metadata", None)
        rows = runner.run_pipeline("smollm2-preferences-judge", args, lambda: _judge_dag(args), dataset=rows)
    out, summary = pairs(rows, verifier, args.seed)
    runner.write_jsonl(Path(args.output_dir) / "scored.jsonl",
                       [{k: r.get(k) for k in ("instruction", "generations", "generation_models", "finish_reasons", "ratings", "answer", "constraints")}
                        for r in rows])
    runner.save_outputs(args, out, summary)
    return 0
