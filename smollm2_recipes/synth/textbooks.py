"""`smollm2 synth textbooks RECIPE.yaml`: Cosmopedia-v2-style synthetic textbooks (SmolLM's corpus).

A topic list with categories; for each topic the closest passage of a local seed corpus (embedding search
with a sentence encoder) grounds the prompt; one prompt per (audience, format) in Cosmopedia's wording.
Output: `output_dir/data.jsonl` with a `text` column (plus topic / audience / format), a pretraining
source the data mixtures read like any local jsonl. SmolLM's ablations favoured topic-driven textbooks
with curated seeds for a middle-school audience, so those are the defaults.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from dataclasses import dataclass, field

from smollm2_recipes import assets
from smollm2_recipes.errors import UserError
from smollm2_recipes.synth import runner

AUDIENCES = {
    "middle_school": "middle school students",
    "high_school": "high school students",
    "college": "college students",
    "general": "a general audience",
}
FORMATS = {
    "textbook": "an extensive and detailed course unit suitable for a textbook",
    "blog_post": "an engaging blog post",
    "story": "an educational story",
    "wikihow": "a step-by-step how-to guide",
}
PROMPT = """Here is an extract from a document: "{seed}"

Write {format} about "{topic}" ({category}) targeted at {audience}, related to the extract above. Explain the concepts clearly with examples; do not just list them. Do not mention the extract. Start directly with the content."""

STDLIB_PYDOC = "stdlib:pydoc"  # Python's own reference prose (pydoc_data.topics): a seed corpus on every machine


@dataclass
class TextbookArgs(runner.SynthArgs):
    topics: dict = field(default_factory=lambda: {"science": ["photosynthesis", "the water cycle"], "math": ["fractions"]},
                         metadata={"help": "{category: [topic, ...]}"})
    seed_corpus: str = field(default=STDLIB_PYDOC, metadata={"help": f"jsonl/parquet/folder/Hub id with a text column, embedded:corpus/NAME, or {STDLIB_PYDOC}"})
    text_column: str = "text"
    seed_chars: int = field(default=600, metadata={"help": "characters of the seed passage put into the prompt"})
    max_seed_documents: int = 2000
    encoder: str = "embedded:minilm"
    audiences: list[str] = field(default_factory=lambda: ["middle_school"], metadata={"help": f"of: {', '.join(AUDIENCES)}"})
    formats: list[str] = field(default_factory=lambda: ["textbook"], metadata={"help": f"of: {', '.join(FORMATS)}"})


def _check(args: TextbookArgs) -> list[tuple[str, str]]:
    for key, valid, values in (("audiences", AUDIENCES, args.audiences), ("formats", FORMATS, args.formats)):
        bad = [v for v in values if v not in valid]
        if bad or not values:
            raise UserError(f"Unknown {key} {bad or '[]'}. Valid: {', '.join(valid)}.")
    if not isinstance(args.topics, dict) or not args.topics:
        raise UserError("topics must be a mapping {category: [topic, ...]} with at least one topic.")
    pairs = []
    for category, topics in args.topics.items():
        if not isinstance(topics, list) or not all(isinstance(t, str) and t.strip() for t in topics):
            raise UserError(f"topics['{category}'] must be a list of topic strings, got {topics!r}.")
        pairs += [(str(category), t) for t in topics]
    return pairs


def load_seed_passages(args: TextbookArgs) -> list[str]:
    """Seed passages: documents of the corpus, cut to `seed_chars` on a whitespace boundary."""
    if args.seed_corpus == STDLIB_PYDOC:
        from pydoc_data.topics import topics as pydoc_topics

        docs = [pydoc_topics[k] for k in sorted(pydoc_topics)]
    else:
        source = assets.resolve(args.seed_corpus)
        docs = [r[args.text_column] for r in runner.read_rows(source, args.text_column, limit=args.max_seed_documents)]
    passages = []
    for doc in docs[: args.max_seed_documents]:
        doc = " ".join(str(doc).split())
        if len(doc) < 80:
            continue
        cut = doc[: args.seed_chars]
        passages.append(cut.rsplit(" ", 1)[0] if len(doc) > args.seed_chars else cut)
    if not passages:
        raise UserError(f"Seed corpus '{args.seed_corpus}' has no document of 80+ characters in column '{args.text_column}'.")
    return passages


def retrieve(queries: list[str], passages: list[str], encoder: str) -> list[tuple[int, float]]:
    """Index and cosine similarity of the nearest passage for each query."""
    from smollm2_recipes.synth.dedup import embed, load_encoder

    model = load_encoder(encoder)
    q, p = embed(queries, model, progress=False), embed(passages, model)
    sims = q @ p.T
    best = sims.argmax(axis=1)
    return [(int(i), float(sims[row, i])) for row, i in enumerate(best)]


def build_prompts(args: TextbookArgs, topic_pairs: list[tuple[str, str]], passages: list[str]) -> list[dict]:
    hits = retrieve([f"{topic} ({category})" for category, topic in topic_pairs], passages, args.encoder)
    combos = list(itertools.product(range(len(topic_pairs)), args.audiences, args.formats))
    random.Random(args.seed).shuffle(combos)
    combos = (combos * (args.num_rows // len(combos) + 1))[: args.num_rows]  # cycle when num_rows > combinations
    rows = []
    for t, audience, fmt in combos:
        category, topic = topic_pairs[t]
        seed_index, similarity = hits[t]
        prompt = PROMPT.format(seed=passages[seed_index], format=FORMATS[fmt], topic=topic, category=category, audience=AUDIENCES[audience])
        rows.append({"instruction": prompt, "topic": topic, "category": category, "audience": audience, "format": fmt,
                     "seed_index": seed_index, "seed_similarity": round(similarity, 4)})
    return rows


def main(argv: list[str]) -> int:
    from distilabel.steps.tasks import TextGeneration

    from smollm2_recipes.synth.backends import build_llm

    (args,) = runner.parse_args([TextbookArgs], argv)
    topic_pairs = _check(args)
    prompts = build_prompts(args, topic_pairs, load_seed_passages(args))

    def build():
        llm = build_llm(args.llm, max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                        batch_size=args.batch_size, seed=args.seed, role="textbooks")
        TextGeneration(name="textbooks", llm=llm, input_batch_size=args.batch_size)

    rows = runner.run_pipeline("smollm2-textbooks", args, build, dataset=prompts)
    keep = ("topic", "category", "audience", "format", "seed_index", "seed_similarity")
    out = [{"text": r["generation"].strip(), **{k: r[k] for k in keep}} for r in rows if (r.get("generation") or "").strip()]
    runner.save_outputs(args, out, {"generated": len(rows), "empty_generations": len(rows) - len(out),
                                    "audiences": dict(Counter(r["audience"] for r in out)), "formats": dict(Counter(r["format"] for r in out))})
    return 0
