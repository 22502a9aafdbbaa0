"""`smollm2 curate filter [RECIPE.yaml] --threshold 3 ...`: keep the documents whose quality score passes.

Scores come from a classifier trained by `curate train-classifier` (FineWeb-Edu's rule: keep when
round(clip(score, 0, 5)) >= threshold) or, without a classifier, from an existing `score_column`.
Writes `output_dir/data.jsonl` (kept rows, each with `score` and `int_score`) and `report.json`
(retention overall and per integer score).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from smollm2_recipes import assets
from smollm2_recipes.errors import UserError
from smollm2_recipes.runkit import write_atomic
from smollm2_recipes.synth import runner


@dataclass
class FilterArgs:
    input: str = field(default="recipes/synth/seeds/news.jsonl", metadata={"help": "documents: jsonl/parquet/folder/Hub id or embedded:corpus/NAME"})
    output_dir: str = "outputs/curation/filtered"
    classifier: Optional[str] = field(default=None, metadata={"help": "train-classifier's OUTPUT_DIR/model (or a Hub id, e.g. HuggingFaceFW/fineweb-edu-classifier)"})
    score_column: Optional[str] = field(default=None, metadata={"help": "use this existing score instead of a classifier"})
    threshold: float = 3
    text_column: str = "text"
    batch_size: int = 32
    max_length: int = 512
    num_rows: Optional[int] = None


def main(argv: list[str]) -> int:
    from smollm2_recipes import configs

    (args,) = configs.parse([FilterArgs], argv, recipe_required=False)
    if (args.classifier is None) == (args.score_column is None):
        raise UserError("Give exactly one of --classifier (a trained classifier folder) or --score_column (an existing score).")
    if not 0 <= args.threshold <= 5:
        raise UserError(f"threshold must be in [0, 5], got {args.threshold}.")
    rows = runner.read_rows(assets.resolve(args.input), args.text_column, limit=args.num_rows)
    configs.save_resolved_config(args.output_dir, args)
    if args.classifier:
        from smollm2_recipes.curation.classifier import load_classifier, predict

        model, tokenizer = load_classifier(args.classifier)
        scores = predict(model, tokenizer, [str(r[args.text_column]) for r in rows], args.batch_size, args.max_length)
    else:
        if rows and args.score_column not in rows[0]:
            raise UserError(f"Input '{args.input}' has no column '{args.score_column}'.")
        scores = [r[args.score_column] for r in rows]
    kept, histogram, nulls = [], Counter(), 0
    for row, score in zip(rows, scores):
        if score is None:
            nulls += 1  # an unscored document is not kept: it never passed the threshold
            continue
        int_score = int(round(min(max(float(score), 0.0), 5.0)))
        histogram[int_score] += 1
        if int_score >= args.threshold:
            kept.append({**row, "score": float(score), "int_score": int_score})
    out = Path(args.output_dir)
    runner.write_jsonl(out / "data.jsonl", kept)
    report = {"input_rows": len(rows), "kept_rows": len(kept), "retention": len(kept) / max(len(rows), 1), "threshold": args.threshold,
              "null_scores": nulls, "int_score_histogram": {str(k): histogram[k] for k in sorted(histogram)}}
    write_atomic(out / "report.json", json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2), file=sys.stderr)
    print(f"kept {len(kept)}/{len(rows)} rows ({report['retention']:.1%}) with score >= {args.threshold} -> {out / 'data.jsonl'}")
    return 0
