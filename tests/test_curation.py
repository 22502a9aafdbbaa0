"""Curation: LLM annotation (nulls counted), the encoder + regression-head classifier, threshold filtering
with a retention report, and n-gram decontamination against the embedded HumanEval."""

from __future__ import annotations

import argparse
import gzip
import json
import random
from pathlib import Path

import pytest
import yaml

from smollm2_recipes.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_decontaminate_removes_a_humaneval_solution_and_reports_it(tmp_path):
    from smollm2_recipes import assets, cli

    problems = [json.loads(line) for line in gzip.open(assets.resolve("embedded:humaneval"), "rt")]
    docs = [{"text": "A recipe for bread: mix flour, water, salt and yeast, then let it rise overnight before baking."},
            {"text": "Found this online:\n" + problems[7]["prompt"] + problems[7]["canonical_solution"]},
            {"text": "def add(a, b):\n    return a + b\n"},  # generic code shares no 13-gram with the benchmark
            {"text": "Short."}]
    out = tmp_path / "clean"
    assert cli.run("curate decontaminate", ["--input", str(_write_jsonl(tmp_path / "docs.jsonl", docs)), "--output_dir", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["documents"] == 4 and report["removed"] == 1 and report["kept"] == 3
    assert report["removed_by_reason"] == {"overlap:embedded:humaneval": 1}
    removed = _rows(out / "removed.jsonl")
    assert removed[0]["doc_id"].endswith("/1") and removed[0]["benchmark"] == "embedded:humaneval" and removed[0]["benchmark_item"] == 7
    assert removed[0]["text"] == docs[1]["text"] and len(removed[0]["ngram"].split()) == 13
    assert [r["text"] for r in _rows(out / "data.jsonl")] == [docs[0]["text"], docs[2]["text"], docs[3]["text"]]
    # a chat dataset is checked on its messages, against a local benchmark file too
    bench = _write_jsonl(tmp_path / "bench.jsonl", [{"question": "Natalia sold clips to 48 of her friends in April and then she sold half as many clips in May"}])
    chats = [{"messages": [{"role": "user", "content": "natalia sold clips to 48 of her friends in april, and then she sold half as many clips in may. how many?"}]},
             {"messages": [{"role": "user", "content": "hello there"}]}]
    out2 = tmp_path / "chat"
    assert cli.run("curate decontaminate", ["--input", str(_write_jsonl(tmp_path / "chats.jsonl", chats)), "--text_column", "messages",
                                            "--benchmarks", str(bench), "--output_dir", str(out2)]) == 0
    assert json.loads((out2 / "report.json").read_text())["removed"] == 1
    assert _rows(out2 / "data.jsonl") == [chats[1]]  # a kept chat row leaves as it came
    with pytest.raises(UserError, match="no column 'body'"):
        from smollm2_recipes.curation.decontaminate import main

        main(["--input", str(tmp_path / "docs.jsonl"), "--text_column", "body", "--output_dir", str(tmp_path / "x")])


def _scored_docs(n: int) -> list[dict]:
    """Reference prose (educational) against advertising spam, scored 4-5 and 0-1 as an annotator would."""
    from pydoc_data.topics import topics

    rng = random.Random(0)
    edu = [" ".join(topics[k].split())[:300] for k in sorted(topics)[: n // 2]]
    ads = [f"BUY NOW!!! {rng.choice(['Shoes', 'Phones', 'Watches'])} {rng.randint(10, 90)}% off. Click here for free "
           f"{rng.choice(['gifts', 'coupons'])}. Limited offer, subscribe today and win a {rng.choice(['car', 'cruise'])}!" for _ in range(n // 2)]
    rows = [{"text": t, "score": rng.choice([4, 5])} for t in edu] + [{"text": t, "score": rng.choice([0, 1])} for t in ads]
    rows.append({"text": "an unscored row, as annotate writes when the LLM gave no score", "score": None})
    rng.shuffle(rows)
    return rows


@pytest.mark.slow
def test_train_classifier_then_filter_keeps_the_educational_documents(tmp_path):
    from smollm2_recipes import cli

    data = _write_jsonl(tmp_path / "scored.jsonl", _scored_docs(32))
    cls_out = tmp_path / "classifier"
    recipe = tmp_path / "cls.yaml"
    recipe.write_text(yaml.safe_dump({"input": str(data), "output_dir": str(cls_out), "num_train_epochs": 6, "learning_rate": 1e-2,
                                      "per_device_train_batch_size": 8, "max_length": 48, "eval_fraction": 0.25, "seed": 0}))
    assert cli.run("curate train-classifier", [str(recipe)]) == 0
    metrics = json.loads((cls_out / "metrics.json").read_text())
    assert metrics["eval_rows"] == 8 and metrics["train_rows"] == 24 and metrics["null_scores_skipped"] == 1
    assert metrics["f1_binary_ge3"] >= 0.8  # spam vs reference prose is easy: the head must learn it
    assert 0 <= metrics["accuracy"] <= 1 and metrics["mse"] >= 0

    out = tmp_path / "filtered"
    docs = [{"text": r["text"]} for r in _scored_docs(32) if r["score"] is not None]
    assert cli.run("curate filter", ["--input", str(_write_jsonl(tmp_path / "docs.jsonl", docs)), "--classifier", str(cls_out / "model"),
                                     "--threshold", "3", "--output_dir", str(out)]) == 0
    report, kept = json.loads((out / "report.json").read_text()), _rows(out / "data.jsonl")
    assert report["documents"] == 32 and report["kept"] == len(kept) and report["removed"] == 32 - len(kept)
    assert report["retention"] == pytest.approx(len(kept) / 32)
    assert all(r["int_score"] >= 3 for r in kept)
    spam_kept = sum("BUY NOW" in r["text"] for r in kept)
    assert len(kept) >= 12 and spam_kept <= 2

    # an existing score column works without a classifier; unscored rows are counted, never kept
    out2 = tmp_path / "by_column"
    assert cli.run("curate filter", ["--input", str(data), "--score_column", "score", "--threshold", "4", "--output_dir", str(out2)]) == 0
    report2 = json.loads((out2 / "report.json").read_text())
    assert report2["removed_by_reason"]["no_score"] == 1 and report2["kept"] == sum(1 for r in _scored_docs(32) if (r["score"] or 0) >= 4)


@pytest.mark.slow
def test_annotate_keeps_unscored_rows_with_null_and_counts_them(tmp_path):
    """The embedded-size model is too slow for a test: a 2-layer random model with the real tokenizer
    never writes "Educational score: N", which is exactly the bad-reply path."""
    from smollm2_recipes import cli
    from smollm2_recipes.models import build_model
    from smollm2_recipes.runkit import load_tokenizer

    model_dir = tmp_path / "micro"
    model = build_model("micro", seed=0)
    model.config.eos_token_id = model.generation_config.eos_token_id = 2
    model.generation_config.pad_token_id = 2
    model.save_pretrained(model_dir)
    load_tokenizer("embedded:SmolLM2-135M-Instruct").save_pretrained(model_dir)
    out = tmp_path / "annotated"
    recipe = tmp_path / "annotate.yaml"
    recipe.write_text(yaml.safe_dump({"output_dir": str(out), "llm": {"backend": "transformers", "model": str(model_dir)},
                                      "input": str(REPO / "recipes/synth/seeds/news.jsonl"), "num_rows": 3, "batch_size": 3,
                                      "max_new_tokens": 4, "temperature": 0.7}))
    assert cli.run("curate annotate", [str(recipe)]) == 0
    rows, summary = _rows(out / "data.jsonl"), json.loads((out / "summary.json").read_text())
    assert len(rows) == 3 and all("text" in r and "score" in r for r in rows)
    nulls = sum(r["score"] is None for r in rows)
    assert summary["scores"]["total"] == 3 and summary["scores"]["null"] == nulls
    with pytest.raises(UserError, match="Unknown prompt_style 'stackedu'"):
        from smollm2_recipes.curation.annotate import main

        recipe.write_text(yaml.safe_dump({"output_dir": str(out), "prompt_style": "stackedu"}))
        main([str(recipe)])


def test_curation_recipes_parse():
    from smollm2_recipes import recipe_parsing
    from smollm2_recipes.curation.annotate import AnnotateArgs
    from smollm2_recipes.curation.classifier import ClassifierArgs
    from smollm2_recipes.curation.decontaminate import DecontaminateArgs
    from smollm2_recipes.curation.dedup import DedupArgs
    from smollm2_recipes.curation.filter import FilterArgs

    kinds = {"annotate": AnnotateArgs, "classifier": ClassifierArgs, "filter": FilterArgs, "decontaminate": DecontaminateArgs, "dedup": DedupArgs}
    recipes = sorted((REPO / "recipes" / "curation").glob("*.yaml"))
    assert len(recipes) >= 8
    for path in recipes:
        cls = next(c for k, c in kinds.items() if k in path.stem)
        (args,) = recipe_parsing.parse([cls], [str(path)])
        assert args.output_dir
        if getattr(args, "executor", None):  # the full-size recipes run on Slurm by changing only --executor
            from smollm2_recipes import executors

            slurm, _ = executors.settings_from_args(argparse.Namespace(), args.executor)
            assert executors.check_executor("slurm", tasks=8, workers=None, slurm=slurm, dry_run=True)[0].partition
