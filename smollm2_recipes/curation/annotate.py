"""`smollm2 curate annotate RECIPE.yaml`: an LLM scores documents 0-5 for educational value.

The prompts follow FineWeb-Edu's additive 5-point rubric and FineMath's math variant; the score is read
from the reply ("Educational score: N", or JSON {"score": N}). A reply without a score keeps its row with
`score: null`; the summary counts them. The annotated rows train `smollm2 curate train-classifier`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from smollm2_recipes.errors import UserError
from smollm2_recipes.synth import runner
from smollm2_recipes.synth.structured import Tally, parse_score

FINEWEB_EDU = """Below is an extract from a web page. Evaluate whether the page has a high educational value and could be useful in an educational setting for teaching from primary school to grade school levels using the additive 5-point scoring system described below. Points are accumulated based on the satisfaction of each criterion:

- Add 1 point if the extract provides some basic information relevant to educational topics, even if it includes some irrelevant or non-academic content like advertisements and promotional material.
- Add another point if the extract addresses certain elements pertinent to education but does not align closely with educational standards. It might mix educational content with non-educational material.
- Award a third point if the extract is appropriate for educational use and introduces key concepts relevant to school curricula. It is coherent though it may not be comprehensive.
- Grant a fourth point if the extract is highly relevant and beneficial for educational purposes for a level not higher than grade school, exhibiting a clear and consistent writing style.
- Bestow a fifth point if the extract is outstanding in its educational value, perfectly suited for teaching either at primary school or grade school.

The extract:
{text}

After examining the extract, briefly justify your total score, then conclude with the score using the format: "Educational score: <total points>"."""

FINEMATH = """Below is an extract from a web page. Evaluate whether the page has high value for teaching mathematics, from primary school to early university, using the additive 5-point scoring system described below.

- Add 1 point if the extract contains some mathematical content, even if it is not very useful for studying, or if it contains non-academic content such as advertisements.
- Add another point if the extract touches on mathematical topics, even if it is poorly written or overly complex.
- Award a third point if the extract contains mathematical content with clear explanations, such as a tutorial or a worked problem.
- Grant a fourth point if the extract has step-by-step solutions or explanations suited to students, with a clear and consistent style.
- Bestow a fifth point if the extract is outstanding for teaching mathematics, with detailed reasoning and worked examples.

The extract:
{text}

After examining the extract, briefly justify your total score, then conclude with the score using the format: "Math score: <total points>"."""

PROMPT_STYLES = {"fineweb-edu": FINEWEB_EDU, "finemath": FINEMATH}


@dataclass
class AnnotateArgs(runner.SynthArgs):
    input: str = field(default="recipes/synth/seeds/news.jsonl", metadata={"help": "documents: jsonl/parquet/folder/Hub id or embedded:corpus/NAME"})
    text_column: str = "text"
    prompt_style: str = field(default="fineweb-edu", metadata={"help": f"one of: {', '.join(PROMPT_STYLES)}"})
    max_chars: int = field(default=2000, metadata={"help": "characters of each document shown to the LLM"})
    temperature: float = 0.0
    overwrite: bool = field(default=False, metadata={"help": "replace a finished run (output_dir/summary.json) instead of refusing"})


def main(argv: list[str]) -> int:
    from distilabel.steps.tasks import TextGeneration

    from smollm2_recipes import assets
    from smollm2_recipes import recipe_parsing
    from smollm2_recipes.runkit import claim_output_dir
    from smollm2_recipes.synth.backends import build_llm

    (args,) = recipe_parsing.parse([AnnotateArgs], argv)
    runner.check_common(args)
    if args.prompt_style not in PROMPT_STYLES:
        raise UserError(f"Unknown prompt_style '{args.prompt_style}'. Valid: {', '.join(PROMPT_STYLES)}.")
    if args.max_chars < 1:
        raise UserError(f"max_chars must be >= 1, got {args.max_chars}.")
    docs = runner.read_rows(assets.resolve(args.input), args.text_column, limit=args.num_rows)
    template = PROMPT_STYLES[args.prompt_style]
    prompts = [{"instruction": template.format(text=str(d[args.text_column])[: args.max_chars]), "doc_index": i} for i, d in enumerate(docs)]

    def build():
        llm = build_llm(args.llm, max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                        batch_size=args.batch_size, seed=args.seed, role="annotator")
        TextGeneration(name="annotator", llm=llm, input_batch_size=args.batch_size)

    # validated; an unfinished run resumes from distilabel's cache, a finished one (summary.json) is kept unless --overwrite
    with claim_output_dir(args.output_dir, finished_marker="summary.json", overwrite=args.overwrite):
        recipe_parsing.save_resolved_config(args.output_dir, args)
        rows = runner.run_pipeline("smollm2-annotate", args, build, dataset=prompts)
        tally, out = Tally(), []
        for row in rows:
            score, status = parse_score(row.get("generation"), 0, 5)
            tally[status] += 1
            out.append({args.text_column: docs[row["doc_index"]][args.text_column], "score": score, "annotation": row.get("generation")})
        runner.save_outputs(args, out, {"scores": tally.summary(), "histogram": dict(sorted(Counter(r["score"] for r in out if r["score"] is not None).items())),
                                        "prompt_style": args.prompt_style})
    return 0
