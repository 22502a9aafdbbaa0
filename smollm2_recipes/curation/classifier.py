"""`smollm2 curate train-classifier [RECIPE.yaml] [--key value ...]`: a quality classifier in the
FineWeb-Edu / FineMath / Stack-Edu way: a sentence encoder with a one-output regression head, trained
with transformers' Trainer on LLM scores (0-5), the encoder frozen by default as FineWeb-Edu did.

Held-out metrics (printed and saved to `output_dir/metrics.json`): MSE, accuracy and macro F1 of the
rounded score, and F1 of the binary decision `score >= threshold` (the filter's decision).
"""

from __future__ import annotations

import json
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

from smollm2_recipes import assets
from smollm2_recipes.errors import UserError
from smollm2_recipes.synth import runner


@dataclass
class ClassifierArgs:
    input: str = field(default="outputs/curation/tiny_annotate/data.jsonl", metadata={"help": "annotated rows (text + score), e.g. annotate's data.jsonl"})
    output_dir: str = "outputs/curation/classifier"
    text_column: str = "text"
    score_column: str = "score"
    encoder: str = field(default="embedded:minilm", metadata={"help": "Hub id / folder of the encoder (FineWeb-Edu: Snowflake/snowflake-arctic-embed-m)"})
    freeze_encoder: bool = True
    max_length: int = 512
    eval_fraction: float = 0.2
    threshold: int = field(default=3, metadata={"help": "binary decision reported as F1 (FineWeb-Edu: 3, FineMath4+: 4)"})
    learning_rate: float = 3e-4
    num_train_epochs: float = 20
    per_device_train_batch_size: int = 16
    max_steps: int = -1
    seed: int = 42
    overwrite: bool = field(default=False, metadata={"help": "replace a finished run (output_dir/metrics.json) instead of refusing"})


def classification_metrics(pred: list[float], gold: list[float], threshold: int) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, f1_score, mean_squared_error

    pred_int = [int(round(min(max(p, 0), 5))) for p in pred]
    gold_int = [int(round(g)) for g in gold]
    return {
        "mse": float(mean_squared_error(gold, pred)),
        "accuracy": float(accuracy_score(gold_int, pred_int)),
        "f1_macro": float(f1_score(gold_int, pred_int, average="macro", zero_division=0)),
        f"f1_binary_ge{threshold}": float(f1_score([g >= threshold for g in gold_int], [p >= threshold for p in pred_int], zero_division=0)),
        "eval_rows": len(gold),
    }


def load_classifier(path: str):
    """(model, tokenizer) of a classifier folder or Hub id. A folder that is not there is named as such (not
    reported by the Hub client as a malformed repo id)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = assets.resolve(path)
    local = Path(path).expanduser()
    looks_local = local.exists() or str(path).startswith((".", "/", "~")) or str(path).count("/") != 1
    if looks_local and not local.is_dir():
        raise UserError(f"Classifier folder '{path}' does not exist: train one with `smollm2 curate train-classifier` "
                        "(it writes OUTPUT_DIR/model) or give a Hub id such as HuggingFaceFW/fineweb-edu-classifier.")
    if looks_local and not (local / "config.json").is_file():
        raise UserError(f"Classifier folder '{path}' has no config.json: point --classifier at train-classifier's OUTPUT_DIR/model.")
    try:
        return AutoModelForSequenceClassification.from_pretrained(str(local) if looks_local else path), \
            AutoTokenizer.from_pretrained(str(local) if looks_local else path)
    except (OSError, ValueError) as err:
        raise UserError(f"Cannot load classifier '{path}': {str(err).splitlines()[0]}") from err


def predict(model, tokenizer, texts: list[str], batch_size: int = 32, max_length: int = 512, progress: bool = True) -> list[float]:
    import torch
    from tqdm.auto import tqdm

    model.eval()
    scores = []
    for i in tqdm(range(0, len(texts), batch_size), desc="scoring", disable=not progress, unit="batch"):
        batch = tokenizer(texts[i : i + batch_size], truncation=True, max_length=max_length, padding=True, return_tensors="pt")
        with torch.no_grad():
            scores += model(**batch).logits.squeeze(-1).float().tolist()
    return scores


def main(argv: list[str]) -> int:
    from smollm2_recipes import recipe_parsing

    (args,) = recipe_parsing.parse([ClassifierArgs], argv, recipe_required=False)
    if not 0 < args.eval_fraction < 1:
        raise UserError(f"eval_fraction must be in (0, 1), got {args.eval_fraction}.")
    for key in ("learning_rate", "num_train_epochs", "per_device_train_batch_size", "max_length"):
        if getattr(args, key) <= 0:
            raise UserError(f"{key} must be > 0, got {getattr(args, key)}.")
    if not 0 <= args.threshold <= 5:
        raise UserError(f"threshold must be in [0, 5], got {args.threshold}.")
    rows = runner.read_rows(assets.resolve(args.input), args.text_column)
    if args.score_column not in (rows[0] if rows else {}):
        raise UserError(f"Input '{args.input}' has no column '{args.score_column}'.")
    scored = [r for r in rows if r[args.score_column] is not None]
    if len(scored) < 4:
        raise UserError(f"Input '{args.input}' has {len(scored)} rows with a non-null '{args.score_column}'; at least 4 are needed.")

    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer, TrainingArguments, set_seed

    from smollm2_recipes.runkit import claim_output_dir, write_json_atomic

    set_seed(args.seed)  # before the head is created: its initial weights are part of the run
    encoder = assets.resolve(args.encoder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(encoder)
        model = AutoModelForSequenceClassification.from_pretrained(encoder, num_labels=1, problem_type="regression")
    except (OSError, ValueError) as err:
        raise UserError(f"Cannot load encoder '{args.encoder}': {str(err).splitlines()[0]}") from err
    out = Path(args.output_dir)
    # everything above only read; from here on the run writes, and a finished run (metrics.json) is not replaced
    with claim_output_dir(out, finished_marker="metrics.json", overwrite=args.overwrite):
        recipe_parsing.save_resolved_config(out, args)
        random.Random(args.seed).shuffle(scored)
        n_eval = max(1, int(len(scored) * args.eval_fraction))
        if args.freeze_encoder:
            base = getattr(model, model.base_model_prefix)
            for p in base.parameters():
                p.requires_grad = False

        head = getattr(model, "classifier", None) or getattr(model, "score", None)
        if isinstance(head, torch.nn.Linear) and head.bias is not None:  # start at the mean score: only the slope is left to learn
            with torch.no_grad():
                head.bias.fill_(sum(float(r[args.score_column]) for r in scored[n_eval:]) / max(len(scored) - n_eval, 1))

        def encode(batch):
            enc = tokenizer(batch[args.text_column], truncation=True, max_length=args.max_length)
            enc["labels"] = [float(s) for s in batch[args.score_column]]
            return enc

        cols = [args.text_column, args.score_column]
        ds = Dataset.from_list([{c: r[c] for c in cols} for r in scored])
        ds = ds.map(encode, batched=True, remove_columns=cols)
        train = ds.select(range(n_eval, len(ds)))  # the first n_eval rows are held out (scored below)
        targs = TrainingArguments(output_dir=str(out / "checkpoints"), learning_rate=args.learning_rate, num_train_epochs=args.num_train_epochs,
                                  max_steps=args.max_steps, per_device_train_batch_size=args.per_device_train_batch_size, seed=args.seed,
                                  save_strategy="no", report_to=[], logging_steps=10, use_cpu=not torch.cuda.is_available())
        trainer = Trainer(model=model, args=targs, train_dataset=train, processing_class=tokenizer)
        trainer.train()
        texts = [scored[i][args.text_column] for i in range(n_eval)]
        pred = predict(model, tokenizer, texts, max_length=args.max_length, progress=False)
        metrics = classification_metrics(pred, [float(scored[i][args.score_column]) for i in range(n_eval)], args.threshold)
        metrics.update(train_rows=len(train), null_scores_skipped=len(rows) - len(scored))
        trainer.save_model(str(out / "model"))  # model + tokenizer: `curate filter --classifier OUTPUT_DIR/model`
        write_json_atomic(out / "metrics.json", metrics)  # last: marks the run finished
        print(json.dumps(metrics, indent=2), file=sys.stderr)
        print(f"held-out accuracy {metrics['accuracy']:.3f}  macro F1 {metrics['f1_macro']:.3f}  "
              f"F1(score>={args.threshold}) {metrics[f'f1_binary_ge{args.threshold}']:.3f}  -> {out / 'model'}")
        return 0
