"""Curation as datatrove pipelines: MinHash dedup of planted near-duplicates, the classifier filter scoring in
batches, restart after a lost task, and the write discipline (validate first, never replace a finished run)."""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

import pytest
import yaml

from smollm2_recipes import cli
from smollm2_recipes.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _report(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


def _prose(n: int, words: int = 120) -> list[str]:
    """n distinct documents of real English reference prose."""
    from pydoc_data.topics import topics

    texts = [" ".join(topics[k].split()[:words]) for k in sorted(topics) if len(topics[k].split()) >= words]
    return texts[:n]


def _near_duplicate(text: str, rng: random.Random, edits: int = 2) -> str:
    """A copy with a few words replaced, one inserted and one deleted: what a mirror or a template page does.
    On 300 words that leaves a 5-shingle Jaccard similarity near 0.87, caught with probability ~0.996."""
    words = text.split()
    for i in rng.sample(range(len(words)), edits):
        words[i] = rng.choice(["lorem", "ipsum", "dolor", "amet"])
    words.insert(rng.randrange(len(words)), "indeed")
    del words[rng.randrange(len(words))]
    return " ".join(words)


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_dedup_removes_planted_near_duplicates_and_keeps_distinct_documents(tmp_path):
    rng = random.Random(0)
    originals = _prose(30, words=300)
    rows = [{"text": t, "doc": f"orig-{i}"} for i, t in enumerate(originals)]
    planted = [{"text": _near_duplicate(originals[i], rng), "doc": f"dup-of-{i}"} for i in range(0, 30, 3)]  # 10 planted copies
    rows += planted
    rng.shuffle(rows)
    out = tmp_path / "dedup"
    assert cli.run("curate dedup", ["--input", str(_write_jsonl(tmp_path / "docs.jsonl", rows)), "--output_dir", str(out)]) == 0
    report, kept, removed = _report(out), _rows(out / "data.jsonl"), _rows(out / "removed.jsonl")
    assert report["documents"] == 40 and report["kept"] == len(kept) and report["removed"] == len(removed)
    # each planted pair is one cluster: exactly one of the two leaves, whichever came first in the input stays
    assert report["removed"] == 10 and report["kept"] == 30
    kept_origin = sorted(int(r["doc"].rsplit("-", 1)[1]) for r in kept)
    assert kept_origin == list(range(30)), "every original text survives once (itself or its copy)"
    assert [r["text"] for r in kept] == [r["text"] for r in rows if r in kept], "kept rows keep their input order"
    assert all(set(r) == {"text", "doc"} for r in kept)  # rows leave as they came
    assert json.loads(json.dumps(yaml.safe_load((out / "resolved_config.yaml").read_text())))["num_buckets"] == 14


def test_dedup_resumes_only_a_lost_task_and_matches_an_uninterrupted_run(tmp_path):
    rng = random.Random(1)
    originals = _prose(24, words=300)
    docs = tmp_path / "docs"
    docs.mkdir()
    for part in range(2):  # two input files -> two tasks
        rows = [{"text": t} for t in originals[part * 12:(part + 1) * 12]]
        rows += [{"text": _near_duplicate(rows[i]["text"], rng)} for i in (0, 5)]
        _write_jsonl(docs / f"part{part}.jsonl", rows)
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    for out in (full, resumed):
        assert cli.run("curate dedup", ["--input", str(docs), "--output_dir", str(out), "--tasks", "2", "--workers", "1"]) == 0
    assert _report(full)["removed"] == 4 and _report(full)["kept"] == 24
    # as if task 1 of the last MinHash stage had died: its completion, its output and the final report are gone
    (resumed / "logs" / "filter" / "completions" / "00001").unlink()
    for lost in ("parts/kept/00001.jsonl", "parts/removed/00001.jsonl", "report.json", "data.jsonl", "removed.jsonl"):
        (resumed / lost).unlink()
    (resumed / "logs" / "report" / "completions" / "00000").unlink()
    untouched = (resumed / "parts" / "kept" / "00000.jsonl").stat().st_mtime_ns
    assert cli.run("curate dedup", ["--input", str(docs), "--output_dir", str(resumed), "--tasks", "2", "--workers", "1"]) == 0
    assert (resumed / "parts" / "kept" / "00000.jsonl").stat().st_mtime_ns == untouched, "a finished task is not run again"
    for name in ("data.jsonl", "removed.jsonl"):
        assert (resumed / name).read_bytes() == (full / name).read_bytes()
    # resuming with other settings would mix two runs: refused before anything is written
    (resumed / "report.json").unlink()
    before = _digests(resumed)
    with pytest.raises(UserError, match=r"unfinished run with other settings \(ngram\)"):
        from smollm2_recipes.curation.dedup import main

        main(["--input", str(docs), "--output_dir", str(resumed), "--tasks", "2", "--ngram", "3"])
    assert _digests(resumed) == before


@pytest.mark.slow  # ~30 s on a busy 2-core machine, most of it importing and loading transformers
def test_filter_scores_in_batches_with_a_classifier_and_reports_docs_per_s(tmp_path, base_tokenizer_path):
    """A tiny randomly initialised BERT regressor stands in for the trained classifier: the pipeline, not
    the quality of the scores, is under test (train-classifier's own test checks the scores)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from smollm2_recipes import assets

    torch.manual_seed(0)
    folder = tmp_path / "classifier"
    tokenizer = AutoTokenizer.from_pretrained(assets.resolve("embedded:minilm"))
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=1, problem_type="regression")
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.bias.fill_(2.5)  # scores around the threshold: both kept and removed rows exist
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    texts = _prose(20, words=40)
    out = tmp_path / "filtered"
    assert cli.run("curate filter", ["--input", str(_write_jsonl(tmp_path / "docs.jsonl", [{"text": t, "n": i} for i, t in enumerate(texts)])),
                                     "--classifier", str(folder), "--threshold", "3", "--batch_size", "8", "--max_length", "64",
                                     "--output_dir", str(out)]) == 0
    report, kept, removed = _report(out), _rows(out / "data.jsonl"), _rows(out / "removed.jsonl")
    assert report["kept"] + report["removed"] == 20 and report["kept"] == len(kept) and report["removed"] == len(removed)
    assert all(r["int_score"] >= 3 for r in kept) and all(r["int_score"] < 3 and r["filter_reason"] == "below_threshold" for r in removed)
    # the scores written are the model's own, scored in batches of 8 inside the pipeline step
    model.eval()
    enc = tokenizer([r["text"] for r in kept + removed], truncation=True, max_length=64, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(**enc).logits.squeeze(-1).tolist()
    assert [r["score"] for r in kept + removed] == pytest.approx(expected, abs=1e-4)
    assert sum(report["int_score_histogram"].values()) == 20
    assert report["scored_docs"] == 20 and report["docs_per_s"] > 0 and report["scoring_devices"] == ["cpu"]
    stats = json.loads(next((out / "logs" / "filter" / "stats").glob("*.json")).read_text())
    batches = next(s for s in stats if s["name"].endswith("quality score"))["stats"]["batches"]
    assert (batches["total"] if isinstance(batches, dict) else batches) == 3  # 8 + 8 + 4


def test_filter_by_score_column_counts_unscored_rows_as_removed(tmp_path):
    rows = [{"text": f"document {i}", "score": s} for i, s in enumerate([4.6, 2.2, None, 3.5, 0.4])]
    out = tmp_path / "by_column"
    assert cli.run("curate filter", ["--input", str(_write_jsonl(tmp_path / "scored.jsonl", rows)), "--score_column", "score",
                                     "--threshold", "4", "--output_dir", str(out)]) == 0
    report = _report(out)
    assert [r["text"] for r in _rows(out / "data.jsonl")] == ["document 0", "document 3"]  # 3.5 rounds to 4
    assert report["kept"] == 2 and report["removed"] == 3
    assert report["removed_by_reason"] == {"below_threshold": 2, "no_score": 1}
    assert "docs_per_s" not in report  # nothing was scored by a model


def _finished_runs(tmp_path) -> dict[str, tuple[list[str], Path]]:
    """A finished output folder for each datatrove curation command, with the arguments that made it."""
    docs = _write_jsonl(tmp_path / "docs.jsonl", [{"text": t, "score": 4} for t in _prose(6, words=30)])
    runs = {
        "curate filter": ["--input", str(docs), "--score_column", "score"],
        "curate decontaminate": ["--input", str(docs)],
        "curate dedup": ["--input", str(docs)],
    }
    made = {}
    for command, args in runs.items():
        out = tmp_path / command.split()[1]
        assert cli.run(command, args + ["--output_dir", str(out)]) == 0
        made[command] = (args + ["--output_dir", str(out)], out)
    return made


BAD_ARGUMENTS = [  # (command, extra arguments, what the one line must say)
    ("curate filter", ["--threshold", "7"], r"threshold must be in \[0, 5\], got 7"),
    ("curate filter", ["--batch_size", "0"], "batch_size 0 is out of range: it must be >= 1"),
    ("curate filter", ["--text_column", "body"], "has no column 'body'"),
    ("curate filter", ["--score_column", "stars"], "has no column 'stars'"),
    ("curate decontaminate", ["--ngram", "0"], "ngram must be >= 1, got 0"),
    ("curate decontaminate", ["--benchmarks", "missing_bench.jsonl"], "'missing_bench.jsonl' does not exist"),
    ("curate dedup", ["--num_buckets", "0"], "num_buckets must be >= 1, got 0"),
    ("curate dedup", ["--hash_bits", "16"], "hash_bits must be 32 or 64, got 16"),
    ("curate dedup", ["--input", "nowhere/at/all.jsonl"], "Input 'nowhere/at/all.jsonl' does not exist"),
    ("curate dedup", ["--executor", "kubernetes"], "--executor 'kubernetes' is unknown; valid: local, slurm, ray"),
    ("curate filter", ["--executor", "slurm"], "needs a partition"),
    ("curate decontaminate", ["--tasks", "0"], "--tasks 0 must be an integer >= 1"),
]


def test_bad_arguments_and_plain_reruns_leave_a_finished_run_untouched(tmp_path, capsys):
    made = _finished_runs(tmp_path)
    before = {command: _digests(out) for command, (_, out) in made.items()}
    for command, extra, message in BAD_ARGUMENTS:
        args, out = made[command]
        capsys.readouterr()
        assert cli.run(command, args + extra) == 2, (command, extra)
        err = capsys.readouterr().err.strip().splitlines()
        assert err and err[-1].startswith("error: ") and re.search(message, err[-1]), (command, extra, err[-1:])
        assert _digests(out) == before[command], f"{command} {extra} touched {out}"
    for command, (args, out) in made.items():  # the same command again: refused, nothing replaced
        assert cli.run(command, args) == 2
        assert "holds a finished run" in capsys.readouterr().err
        assert _digests(out) == before[command]
    # asked for explicitly, a finished run is replaced, and the new report is consistent
    args, out = made["curate filter"]
    assert cli.run("curate filter", args + ["--threshold", "5", "--overwrite", "true"]) == 0
    assert _report(out)["kept"] == 0 and _report(out)["removed"] == 6 and not (out / "data.jsonl").read_text()


def test_missing_classifier_folder_is_named(tmp_path, capsys):
    docs = _write_jsonl(tmp_path / "docs.jsonl", [{"text": "a document"}])
    missing = tmp_path / "outputs" / "curation" / "tiny_classifier" / "model"
    out = tmp_path / "never"
    assert cli.run("curate filter", ["--input", str(docs), "--classifier", str(missing), "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"Classifier folder '{missing}' does not exist" in err[0] and "Repo id" not in err[0]
    assert not out.exists()
    (tmp_path / "empty").mkdir()
    assert cli.run("curate filter", ["--input", str(docs), "--classifier", str(tmp_path / "empty"), "--output_dir", str(out)]) == 2
    assert "has no config.json" in capsys.readouterr().err and not out.exists()


@pytest.mark.parametrize("command", ["curate filter", "curate decontaminate", "curate dedup"])
def test_an_output_dir_that_is_a_file_is_refused_and_left_alone(tmp_path, capsys, command):
    docs = _write_jsonl(tmp_path / "docs.jsonl", [{"text": "one document", "score": 3}])
    target = tmp_path / "results.txt"
    target.write_text("precious\n")
    extra = ["--score_column", "score"] if command == "curate filter" else []
    assert cli.run(command, ["--input", str(docs), "--output_dir", str(target), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and str(target) in err[-1]
    assert target.read_text() == "precious\n" and sorted(p.name for p in tmp_path.iterdir()) == ["docs.jsonl", "results.txt"]


def test_slurm_dry_run_writes_one_sbatch_script_per_stage(tmp_path, capsys):
    docs = _write_jsonl(tmp_path / "docs.jsonl", [{"text": t} for t in _prose(4, words=30)])
    out = tmp_path / "on_slurm"
    assert cli.run("curate dedup", ["--input", str(docs), "--output_dir", str(out), "--executor", "slurm",
                                    "--slurm_partition", "hopper-cpu", "--tasks", "4", "--dry_run"]) == 0
    printed = capsys.readouterr().out
    scripts = [out / "logs" / stage / "launch_script.slurm" for stage in ("signatures", "buckets", "cluster", "filter", "report")]
    assert all(str(s) in printed and s.is_file() for s in scripts)
    assert "#SBATCH --partition=hopper-cpu" in scripts[0].read_text() and "--array=0-3" in scripts[0].read_text()
    assert "--array=0-13" in scripts[1].read_text()  # one task per MinHash bucket
    assert not (out / "report.json").exists()


@pytest.mark.parametrize("command, marker, args, bad, message", [
    ("curate annotate", "summary.json", [str(REPO / "recipes/curation/tiny_annotate.yaml"), "--num_rows", "2"],
     ["--prompt_style", "stackedu"], "Unknown prompt_style 'stackedu'"),
    ("curate train-classifier", "metrics.json", ["--max_length", "32"], ["--eval_fraction", "1.5"], r"eval_fraction must be in \(0, 1\)"),
])
def test_annotate_and_train_classifier_refuse_a_finished_folder(tmp_path, capsys, command, marker, args, bad, message):
    """The LLM and training runs are slow; their finished folder is laid out by hand (marker, data, config)."""
    docs = _write_jsonl(tmp_path / "scored.jsonl", [{"text": t, "score": i % 6} for i, t in enumerate(_prose(8, words=20))])
    out = tmp_path / "finished"
    out.mkdir()
    for name, text in ((marker, "{}\n"), ("data.jsonl", "{}\n"), ("resolved_config.yaml", "seed: 42\n")):
        (out / name).write_text(text)
    before = _digests(out)
    common = [*args, "--input", str(docs), "--output_dir", str(out)]
    assert cli.run(command, common + bad) == 2
    assert re.search(message, capsys.readouterr().err) and _digests(out) == before
    assert cli.run(command, common) == 2
    assert "holds a finished run" in capsys.readouterr().err and _digests(out) == before


@pytest.mark.slow
def test_decontaminate_on_a_local_ray_instance_matches_the_local_executor(tmp_path):
    """--executor ray with no address starts a Ray instance on this machine; the tasks run as Ray tasks and
    write the same result as the local executor (decontaminate: two stages, so Ray's per-stage start-up stays short)."""
    import gzip

    import ray

    from smollm2_recipes import assets

    problem = json.loads(gzip.open(assets.resolve("embedded:humaneval"), "rt").readline())
    docs = tmp_path / "docs"
    docs.mkdir()
    for part, texts in enumerate([_prose(3, words=40), _prose(5, words=40)[3:] + [problem["prompt"] + problem["canonical_solution"]]]):
        _write_jsonl(docs / f"part{part}.jsonl", [{"text": t} for t in texts])
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    try:
        assert cli.run("curate decontaminate", ["--input", str(docs), "--output_dir", str(local)]) == 0
        assert cli.run("curate decontaminate", ["--input", str(docs), "--output_dir", str(on_ray), "--executor", "ray"]) == 0
        assert ray.is_initialized()
    finally:
        ray.shutdown()
    assert _report(on_ray)["removed"] == 1 and _report(on_ray)["kept"] == 5
    for name in ("data.jsonl", "removed.jsonl"):
        assert (on_ray / name).read_bytes() == (local / name).read_bytes()
    assert json.loads((on_ray / "logs" / "decontaminate" / "executor.json").read_text())["tasks"] == 2  # one task per input file
