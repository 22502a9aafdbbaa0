"""`smollm2 curate filter [RECIPE.yaml] --threshold 3 ... [--executor local|slurm|ray --tasks N]`: keep the
documents whose quality score passes, as a datatrove pipeline (reader -> QualityScoreFilter -> writer).

Scores come from a classifier trained by `curate train-classifier` (FineWeb-Edu's rule: keep when
round(clip(score, 0, 5)) >= threshold), scored in batches on a GPU when there is one, or, without a
classifier, from an existing `score_column`. Every row leaves with `score` and `int_score`: kept rows in
`output_dir/data.jsonl`, the others in `removed.jsonl`; `report.json` has `kept`, `removed`, the
histogram of `int_score` and the classifier's docs/s.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from datatrove.pipeline.filters.base_filter import BaseFilter

from smollm2_recipes.curation import pipeline
from smollm2_recipes.errors import UserError


@dataclass
class FilterArgs(pipeline.CurationRunArgs):
    input: str = field(default="recipes/synth/seeds/news.jsonl", metadata={"help": "documents: jsonl/parquet file or folder, Hub id, or embedded:corpus/NAME"})
    output_dir: str = "outputs/curation/filtered"
    classifier: Optional[str] = field(default=None, metadata={"help": "train-classifier's OUTPUT_DIR/model (or a Hub id, e.g. HuggingFaceFW/fineweb-edu-classifier)"})
    score_column: Optional[str] = field(default=None, metadata={"help": "use this existing score instead of a classifier"})
    threshold: float = 3
    text_column: str = "text"
    batch_size: int = field(default=32, metadata={"help": "documents scored per forward pass"})
    max_length: int = 512
    num_rows: Optional[int] = field(default=None, metadata={"help": "read at most this many rows per task"})


class QualityScoreFilter(BaseFilter):
    """Scores documents in batches of `batch_size` with a sequence-regression classifier (or reads an existing
    score from the row), stores `score` / `int_score` in the metadata, keeps int_score >= threshold. The model
    is loaded once per task, on CUDA when available. A row without a score is removed ("no_score")."""

    name = "quality score"

    def __init__(self, threshold: float, classifier: str | None = None, score_column: str | None = None,
                 batch_size: int = 32, max_length: int = 512, exclusion_writer=None):
        super().__init__(exclusion_writer=exclusion_writer, batch_size=batch_size)
        self.threshold, self.classifier, self.score_column, self.max_length = threshold, classifier, score_column, max_length
        self._model = None

    def _scores(self, batch) -> list:
        if self.score_column is not None:
            return [doc.metadata[pipeline.ROW].get(self.score_column) for doc in batch]
        import torch

        from smollm2_recipes.curation.classifier import load_classifier, predict

        if self._model is None:
            model, tokenizer = load_classifier(self.classifier)
            device = "cuda" if torch.cuda.is_available() else "cpu"
            self.stat_update(f"device_{device}")  # reported next to docs/s
            self._model = (model.to(device), tokenizer)
        model, tokenizer = self._model
        return predict(model, tokenizer, [doc.text for doc in batch], batch_size=len(batch), max_length=self.max_length, progress=False)

    def filter(self, doc):
        return self.filter_batch([doc])[0]

    def filter_batch(self, batch):
        results = []
        for doc, score in zip(batch, self._scores(batch)):
            if score is None:
                results.append((False, "no_score"))
                continue
            doc.metadata["score"] = float(score)
            doc.metadata["int_score"] = int_score = int(round(min(max(float(score), 0.0), 5.0)))
            results.append(True if int_score >= self.threshold else (False, "below_threshold"))
        return results


def validate(args: FilterArgs) -> None:
    """Every check that can fail, before anything is written."""
    if (args.classifier is None) == (args.score_column is None):
        raise UserError("Give exactly one of --classifier (a trained classifier folder) or --score_column (an existing score).")
    if not 0 <= args.threshold <= 5:
        raise UserError(f"threshold must be in [0, 5], got {args.threshold}.")
    for key in ("batch_size", "max_length"):
        if getattr(args, key) < 1:
            raise UserError(f"{key} must be >= 1, got {getattr(args, key)}.")
    if args.num_rows is not None and args.num_rows < 1:
        raise UserError(f"num_rows must be >= 1 (or unset for all rows), got {args.num_rows}.")
    pipeline.build_reader(args.input, args.text_column)
    pipeline.check_text_column(args.input, args.text_column)
    if args.score_column is not None:
        pipeline.check_text_column(args.input, args.score_column)
    if args.classifier is not None:
        from smollm2_recipes.curation.classifier import load_classifier

        load_classifier(args.classifier)  # a missing or broken classifier fails here, naming the folder


def main(argv: list[str]) -> int:
    args, placement = pipeline.parse([FilterArgs], argv)
    validate(args)
    out = Path(args.output_dir)
    step = QualityScoreFilter(args.threshold, args.classifier, args.score_column, args.batch_size, args.max_length,
                              exclusion_writer=pipeline.removed_writer(out))
    extra = {"threshold": args.threshold, "scored_by": args.classifier or f"column {args.score_column}"}
    stages = [
        pipeline.Stage("filter", [pipeline.build_reader(args.input, args.text_column, args.num_rows, hub_options=args.input_options), step, pipeline.kept_writer(out)],
                       placement.tasks),
        pipeline.Stage("report", [pipeline.MergeAndReport(str(out), extra, args.merge_output, histogram_key="int_score",
                                                          throughput=("filter", str(step)) if args.classifier else None)], 1),
    ]
    pipeline.run(out, args, placement, stages)
    report_path = out / pipeline.FINISHED_MARKER
    if report_path.exists():
        import json

        report = json.loads(report_path.read_text())
        rate = f", {report['docs_per_s']} docs/s scoring" if report.get("docs_per_s") else ""
        print(f"kept {report['kept']}/{report['documents']} rows ({report['retention']:.1%}) with score >= {args.threshold}{rate} -> {report['data']}")
    elif not placement.dry_run:
        print(f"{report_path} not written yet: the run continues on {placement.executor}.", file=sys.stderr)
    return 0
