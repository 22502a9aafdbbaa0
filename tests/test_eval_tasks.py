"""Task names, recipes and the lighteval bridge up to the network boundary (the Hub is off in tests)."""

from pathlib import Path

import pytest

from smollm2_recipes.errors import UserError
from smollm2_recipes.evaluation import lighteval_bridge as bridge
from smollm2_recipes.evaluation.tasks import check_available, parse_tasks, valid_names

RECIPES = Path(__file__).resolve().parents[1] / "recipes" / "eval"
PAPER_BASE = {"hellaswag", "arc", "piqa", "mmlu_pro", "commonsenseqa", "triviaqa", "winogrande", "openbookqa", "gsm8k"}
PAPER_INSTRUCT = {"ifeval", "hellaswag", "arc", "piqa", "mmlu_pro", "bbh", "gsm8k"}


def test_task_specs_default_to_the_papers_shots_and_metrics():
    specs = {s.name: s for s in parse_tasks("hellaswag,gsm8k,bbh|0,ifeval||inst_level_loose_acc,humaneval")}
    assert (specs["hellaswag"].shots, specs["hellaswag"].metric) == (0, "acc_norm")
    assert (specs["gsm8k"].shots, specs["gsm8k"].metric) == (5, "qem")
    assert specs["bbh"].shots == 0  # explicit shots win over the paper's 3
    assert (specs["ifeval"].shots, specs["ifeval"].metric) == (0, "inst_level_loose_acc")
    assert specs["humaneval"].offline and not specs["gsm8k"].offline
    assert [s.name for s in parse_tasks(["chat", "perplexity,arith"])] == ["chat", "perplexity", "arith"]


@pytest.mark.parametrize("bad, words", [
    ("hellaswg", ["hellaswg", "Did you mean 'hellaswag'", "humaneval", "passkey"]),
    ("gsm8k|five", ["five", "whole number"]),
    ("humaneval|3", ["humaneval", "0"]),
    ("chat,chat", ["chat", "more than once"]),
    ("gsm8k|5|acc_norm", ["acc_norm", "Valid: qem"]),
    ("bbh|3|acc", ["acc", "Valid: em"]),
    ("", ["No tasks"]),
])
def test_bad_task_names_are_refused_with_the_valid_ones(bad, words):
    with pytest.raises(UserError) as err:
        parse_tasks(bad)
    for word in words:
        assert word in str(err.value)


def test_recipes_name_the_papers_suites():
    from smollm2_recipes.evaluation.eval_command import parse_args

    base = parse_args([str(RECIPES / "smollm2_base.yaml")])
    instruct = parse_args([str(RECIPES / "smollm2_instruct.yaml"), "--limit", "3"])
    base_specs, instruct_specs = parse_tasks(base.tasks), parse_tasks(instruct.tasks)
    assert {s.name for s in base_specs} == PAPER_BASE and {s.name for s in instruct_specs} == PAPER_INSTRUCT
    shots = {s.name: s.shots for s in base_specs + instruct_specs}
    assert shots["gsm8k"] == 5 and shots["bbh"] == 3 and shots["hellaswag"] == 0
    assert {s.metric for s in base_specs if s.name not in ("gsm8k", "triviaqa")} == {"acc_norm"}
    assert {s.name: s.metric for s in instruct_specs}["bbh"] == "em"
    assert base.model == "HuggingFaceTB/SmolLM2-1.7B" and base.use_chat_template is False
    assert (base.dtype, base.max_length) == (instruct.dtype, instruct.max_length) == ("bfloat16", 2048)
    assert instruct.use_chat_template is True and instruct.limit == 3
    # MODEL after the recipe, and `smollm2 eval MODEL --tasks ...` without one
    assert parse_args([str(RECIPES / "smollm2_base.yaml"), "some/model"]).model == "some/model"
    plain = parse_args(["embedded:SmolLM2-135M-Instruct", "--tasks", "chat,arith", "--json"])
    assert plain.json is True and [s.name for s in parse_tasks(plain.tasks)] == ["chat", "arith"]


def test_task_string_resolves_in_lightevals_registry():
    """The task string goes through lighteval's own Registry: every task of the suite resolves to a
    config of smollm2_tasks.py with the right dataset, shot count and metric."""
    specs = [(n, bridge.BENCHMARKS[n].shots) for n in bridge.BENCHMARKS]
    assert bridge.task_string([("hellaswag", 0), ("gsm8k", 5)]) == "smollm2_hellaswag|0,smollm2_gsm8k|5"
    configs = {k: c for k, cs in bridge.task_configs(specs).items() for c in cs}
    repos = {k: c.hf_repo for k, c in configs.items()}
    assert repos["smollm2_hellaswag"] == "Rowan/hellaswag" and repos["smollm2_gsm8k"] == "openai/gsm8k"
    assert {repos["smollm2_arc:easy"], repos["smollm2_arc:challenge"]} == {"allenai/ai2_arc"}
    assert sum(k.startswith("smollm2_bbh:") for k in configs) == 27
    for name, shots in specs:
        bench = bridge.BENCHMARKS[name]
        mine = [c for k, c in configs.items() if k == bench.lighteval or k.startswith(bench.lighteval + ":")]
        assert mine, name
        for config in mine:
            assert config.num_fewshots == shots
            reported = [n for m in config.metrics for n in ([m.metric_name] if isinstance(m.metric_name, str) else m.metric_name)]
            assert set(bench.metrics) <= set(reported), (name, reported)


def test_loading_script_dataset_is_named_with_the_way_out(tmp_path):
    """datasets >= 4 runs no loading script: a copy (or pinned revision) that is one is refused by name."""
    script = tmp_path / "ybisk" / "piqa" / "piqa.py"
    script.parent.mkdir(parents=True)
    script.write_text("import datasets\n")
    with pytest.raises(UserError, match="ybisk/piqa.*loading-script dataset.*refs/convert/parquet"):
        bridge.check_datasets([("piqa", 0)], offline=True, datasets_dir=str(tmp_path))


def test_ifeval_without_its_checker_is_refused_before_anything_runs():
    """lighteval's IFEval checks need langdetect, and offline nltk's punkt data: either missing is named."""
    import importlib.util

    try:
        import nltk

        nltk.data.find("tokenizers/punkt_tab")
        have_punkt = True
    except LookupError:
        have_punkt = False
    if importlib.util.find_spec("langdetect") and have_punkt:
        pytest.skip("langdetect and nltk punkt are both installed here")
    with pytest.raises(UserError, match="ifeval.*(langdetect|punkt)"):
        bridge.check_datasets([("ifeval", 0)], offline=True)


def test_unreachable_dataset_is_named_before_any_model_loads(tmp_path, micro_model_dir, capsys):
    with pytest.raises(UserError) as err:
        bridge.check_datasets([("hellaswag", 0)], offline=True)
    message = str(err.value)
    assert "Rowan/hellaswag" in message and "smollm2_hellaswag" in message and "HF_HUB_OFFLINE=1" in message
    from smollm2_recipes.cli import run

    out = tmp_path / "out"
    assert run("eval", [micro_model_dir, "--tasks", "chat,piqa", "--output_dir", str(out)]) == 2
    assert "ybisk/piqa" in capsys.readouterr().err
    assert not out.exists()  # refused before anything ran or was written


@pytest.mark.parametrize("flag, value, words", [("--dtype", "bf16", ["bf16", "bfloat16, float16, float32"]),
                                                ("--max_length", "0", ["max_length", "0"])])
def test_bad_dtype_or_window_is_refused_before_anything_is_written(micro_model_dir, tmp_path, capsys, flag, value, words):
    from smollm2_recipes.cli import run

    out = tmp_path / "out"
    assert run("eval", [micro_model_dir, "--tasks", "chat", flag, value, "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words) and not out.exists()


def test_collect_maps_lighteval_results_to_our_tasks():
    results = {  # the shape of lighteval's final dict ("task|shots" written "task:shots")
        "smollm2_arc:easy:0": {"acc_norm": 0.6, "acc_norm_stderr": 0.01},
        "smollm2_arc:challenge|0": {"acc_norm": 0.4, "acc_norm_stderr": 0.02},
        "smollm2_arc:_average|0": {"acc_norm": 0.5, "acc_norm_stderr": 0.02},
        "smollm2_gsm8k:5": {"qem": 0.25, "qem_stderr": 0.03},
        "all": {"acc_norm": 0.5},
    }
    got = bridge.collect(results, [("arc", 0), ("gsm8k", 5), ("piqa", 0)])
    assert got["arc"] == pytest.approx({"acc_norm": 0.5, "subtasks": 2})
    assert got["gsm8k"] == {"qem": 0.25, "qem_stderr": 0.03}
    assert "piqa" not in got


def test_missing_provider_module_is_a_clear_error(monkeypatch):
    from smollm2_recipes.evaluation import tasks

    monkeypatch.setitem(tasks.PROVIDERS, "arith", "smollm2_recipes.evaluation.no_such_module")
    with pytest.raises(UserError, match="arith.*no_such_module"):
        check_available(parse_tasks("arith"))
    assert "arith" in valid_names() and "passkey" in valid_names()


def _local_copy(root, repo, splits, rows):
    """A local copy of a Hub dataset in the Hub's layout: parquet per config and split, configs in the README.
    `splits` maps each config to its split names."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = root / repo
    readme = ["---", "configs:"]
    for subset, names in splits.items():
        (folder / subset).mkdir(parents=True)
        readme += [f"- config_name: {subset}", "  data_files:"]
        for split in names:
            pq.write_table(pa.Table.from_pylist(rows), folder / subset / f"{split}.parquet")
            readme += [f"  - split: {split}", f"    path: {subset}/{split}.parquet"]
    (folder / "README.md").write_text("\n".join(readme + ["---", ""]))


def _local_arc(root):
    rows = [
        {"question": "What do plants need to make food?", "choices": {"text": ["sunlight", "sand", "plastic"], "label": ["A", "B", "C"]}, "answerKey": "A"},
        {"question": "Which is a liquid at room temperature?", "choices": {"text": ["iron", "water", "wood"], "label": ["A", "B", "C"]}, "answerKey": "B"},
        {"question": "What melts ice?", "choices": {"text": ["heat", "cold", "dark"], "label": ["1", "2", "3"]}, "answerKey": "1"},
    ]
    _local_copy(root, "allenai/ai2_arc", {s: ("train", "test") for s in ("ARC-Easy", "ARC-Challenge")}, rows)


def test_lighteval_pipeline_runs_on_a_local_dataset_copy(micro_model_dir, tmp_path, capsys):
    """The real lighteval Pipeline, offline, on a local copy of ARC: the path a reachable Hub takes."""
    import json

    from smollm2_recipes.cli import run

    _local_arc(tmp_path / "datasets")
    out = tmp_path / "eval"
    model_files = sorted(p.name for p in Path(micro_model_dir).iterdir())
    rc = run("eval", [micro_model_dir, "--tasks", "arc", "--datasets_dir", str(tmp_path / "datasets"), "--limit", "2",
                      "--output_dir", str(out), "--json"])
    assert rc == 0
    arc = json.loads(capsys.readouterr().out)["tasks"]["arc"]
    (saved,) = (out / "lighteval" / "results").rglob("results_*.json")
    theirs = json.loads(saved.read_text())["results"]
    per_subset = [theirs[f"smollm2_arc:{s}|0"]["acc_norm"] for s in ("easy", "challenge")]
    assert arc["subtasks"] == 2 and arc["acc_norm"] == pytest.approx(sum(per_subset) / 2)
    # lighteval's prediction cache went to the run's folder, not into the model folder
    assert sorted(p.name for p in Path(micro_model_dir).iterdir()) == model_files
    assert list((out / "lighteval" / "model").rglob("LOGPROBS.parquet"))
    import pyarrow.parquet as pq

    (details,) = (out / "lighteval" / "details").rglob("details_smollm2_arc:easy*.parquet")
    docs = sorted((row["doc"] for row in pq.read_table(details).to_pylist()), key=lambda d: d["query"])
    # the paper's ARC prompt: "Question: ...\nAnswer:" scored against " choice", gold from answerKey
    assert [(d["query"], d["choices"], d["gold_index"]) for d in docs] == [
        ("Question: What do plants need to make food?\nAnswer:", [" sunlight", " sand", " plastic"], 0),
        ("Question: Which is a liquid at room temperature?\nAnswer:", [" iron", " water", " wood"], 1)]


def test_generative_task_runs_on_a_local_dataset_copy(micro_model_dir, tmp_path, capsys):
    """TriviaQA (generative, quasi-exact match, stop sequences, 20 new tokens at most) through the real
    Pipeline on a local copy: lighteval renders the paper's prompt and scores the model's answers."""
    import json

    import pyarrow.parquet as pq

    from smollm2_recipes.cli import run

    rows = [{"question": "Which planet is known as the Red Planet?", "question_id": "q1",
             "answer": {"aliases": ["Mars", "Planet Mars"], "value": "Mars"}},
            {"question": "What is the capital of France?", "question_id": "q2",
             "answer": {"aliases": ["Paris"], "value": "Paris"}}]
    _local_copy(tmp_path / "datasets", "mandarjoshi/trivia_qa", {"rc.nocontext": ("train", "validation")}, rows)
    out = tmp_path / "eval"
    rc = run("eval", [micro_model_dir, "--tasks", "triviaqa", "--datasets_dir", str(tmp_path / "datasets"), "--limit", "2",
                      "--use_chat_template", "false", "--output_dir", str(out), "--json"])
    assert rc == 0
    trivia = json.loads(capsys.readouterr().out)["tasks"]["triviaqa"]
    (details,) = (out / "lighteval" / "details").rglob("details_smollm2_trivia_qa*.parquet")
    table = pq.read_table(details).to_pylist()
    assert len(table) == 2
    scores = [row["metric"]["qem"] for row in table]
    assert trivia["qem"] == pytest.approx(sum(scores) / 2) and set(scores) <= {0, 1}
    prompts = sorted(row["doc"]["query"] for row in table)
    assert prompts == ["Question: What is the capital of France?\nAnswer:", "Question: Which planet is known as the Red Planet?\nAnswer:"]
    for row in table:
        generated = row["model_response"]["output_tokens"][0]
        assert 0 < len(generated) <= 20  # generation_size 20
        assert "Question:" not in row["model_response"]["text"][0]  # stopped at the stop sequence
