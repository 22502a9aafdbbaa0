"""The quickstart cannot rot: every command of every step (FAST and full) is a real `smollm2` command whose
recipe and flags parse, and the step machinery reuses finished work and writes the report."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from smollm2_recipes.cli import COMMANDS, _match
from smollm2_recipes.offline.quickstart import build_steps

REPO = Path(__file__).parent.parent


def _parse_types(name, argv):
    from test_recipes import _types  # the same dataclasses the recipe test uses for each stage

    if name in ("pretrain", "extend-context", "sft", "dpo"):
        return _types(REPO / "recipes" / "smollm2" / "tiny" / ({"extend-context": "context_extension"}.get(name, name) + ".yaml"))
    return None


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "full"])
def test_every_step_command_exists_and_parses(tmp_path, fast, monkeypatch):
    from smollm2_recipes.recipe_parsing import parse
    from smollm2_recipes.evaluation.eval_command import parse_args as parse_eval

    monkeypatch.chdir(REPO)
    steps = build_steps(tmp_path, fast)
    assert [s.name for s in steps] == ["assets", "chat", "corpus", "pretrain", "cooldown", "context", "synth", "sft", "dpo", "evaluate"]
    for step in steps:
        for argv in step.commands:
            argv = [a.replace("{out}", str(tmp_path / step.name)) for a in argv]
            name, rest = _match(argv)
            assert name in COMMANDS, argv
            if name == "eval":
                assert parse_eval(rest).tasks
            types = _parse_types(name, rest)
            if types:
                assert parse(types, rest)


def test_both_modes_shrink_pretraining_in_whole_steps_and_fast_shrinks_further(tmp_path, monkeypatch):
    import dataclasses

    import yaml

    from smollm2_recipes.offline.quickstart import FAST_SIZES, FULL_SIZES

    monkeypatch.chdir(REPO)
    tiny = yaml.safe_load((REPO / "recipes" / "smollm2" / "tiny" / "pretrain.yaml").read_text())
    for mode, fast in (("full", False), ("fast", True)):
        recipe = yaml.safe_load(Path(build_steps(tmp_path / mode, fast)[3].commands[0][1]).read_text())
        step = recipe["global_batch_tokens"]
        assert all(s["tokens"] % step == 0 for s in recipe["stages"])
        assert sum(s["tokens"] for s in recipe["stages"]) < sum(s["tokens"] for s in tiny["stages"])
        assert [s["name"] for s in recipe["stages"]] == [s["name"] for s in tiny["stages"]]  # skips no stage
        # three checkpoints, the last at the end: the sweep holds the finished run
        assert sum(s["tokens"] for s in recipe["stages"]) // step == 3 * recipe["save_steps"]
    fast, full = dataclasses.astuple(FAST_SIZES), dataclasses.astuple(FULL_SIZES)
    assert all(g is None or f <= g for f, g in zip(fast, full)) and fast != full  # None: the command's default


@pytest.mark.slow
@pytest.mark.e2e
def test_fast_quickstart_runs_every_step_reports_it_and_reuses_it(tmp_path):
    """`make quickstart FAST=1` itself (through the real entry point, every step a real subprocess), then a
    second run that reuses all of it. Several minutes: the one test that runs the pipeline end to end."""
    out = tmp_path / "qs"
    cmd = [sys.executable, "-m", "smollm2_recipes", "quickstart", "--fast", "--output_dir", str(out)]
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    report = (out / "REPORT.md").read_text()
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in report.splitlines() if line.startswith("|")]
    table = {figure: value for _, _, figure, value in rows[2:]}  # after the header and |---| rows
    assert table["answer"] == "The capital of France is Paris."
    stage_losses = [v for k, v in table.items() if k.startswith("stage ") and "held-out loss" in k]
    assert len(stage_losses) == 4
    first_start, first_end = (float(x) for x in stage_losses[0].split(" (")[0].split(" → "))
    assert first_end < first_start - 1.0  # the tiny model learns during stage 1
    perplexities = [float(v) for k, v in table.items() if k.endswith("held-out perplexity")]
    assert len(perplexities) == 4 and all(1 < p < 60_000 for p in perplexities)  # below uniform (49,152)
    assert table["passkey accuracy by length (tokens: accuracy)"].startswith("256: ")
    assert "7M-parameter" in table["passkey: why no retrieval is expected here"]
    assert [k for k in table if k.startswith("held-out loss at positions")] == [
        f"held-out loss at positions {b} (before → after)" for b in ("[0,256)", "[256,512)", "[512,1024)")]
    assert [k for k in table if k.startswith("arith accuracy")] == ["arith accuracy before sft", "arith accuracy after sft",
                                                                    "arith accuracy after dpo"]
    assert "[" in table["DPO gain on the same 40 problems, paired bootstrap 95% interval"]
    assert table["HumanEval"].startswith("left out in FAST mode")
    for plot in ["pretrain/run/training_curves.png", "context/run/passkey_heatmap.png", "context/run/loss_by_position.png",
                 "cooldown/eval-checkpoints/curves/perplexity_perplexity.png"]:
        assert f"]({plot})" in report and (out / plot).stat().st_size > 5000, plot
    assert "Full size: `accelerate launch --config_file recipes/accelerate_configs/ddp.yaml scripts/run_sft.py" in report
    assert first.stdout.count("reusing") == 0 and report in first.stdout

    figures = json.loads((out / "report.json").read_text())  # the interface for checking (issue 16)
    assert figures["mode"] == "fast" and isinstance(figures["total_seconds"], float)
    assert set(figures["steps"]) == {s.name for s in build_steps(out, True)}
    assert all(isinstance(s["seconds"], float) and s["seconds"] >= 0 for s in figures["steps"].values())
    magpie = figures["synth"]["magpie"]
    assert set(magpie) == {"tags_parsed", "rows", "truncated_written"} and isinstance(magpie["rows"], int)
    assert isinstance(figures["synth"]["preference_pairs"], int)
    by_position = figures["context"]["loss_by_position"]
    assert by_position["original_length"] == 256 and list(by_position["before"]) == list(by_position["after"])
    assert all(isinstance(v, float) for side in ("before", "after") for v in by_position[side].values())
    dpo = figures["dpo"]
    assert dpo["n"] == 40 and 0 <= dpo["after_sft"] <= 1 and 0 <= dpo["after_dpo"] <= 1
    lo, hi = dpo["gain_ci95"]
    assert lo <= dpo["after_dpo"] - dpo["after_sft"] <= hi
    assert figures["evaluate"]["humaneval"] == {} and "FAST" in figures["evaluate"]["humaneval_note"]

    second = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert second.returncode == 0 and second.stdout.count("reusing") == 10
    pretrain_seconds = figures["steps"]["pretrain"]["seconds"]
    assert f"| pretrain | reused ({pretrain_seconds:.0f} s) |" in (out / "REPORT.md").read_text()
    again = json.loads((out / "report.json").read_text())  # the reusing run keeps the timings measured when steps ran
    assert again["steps"]["pretrain"] == {**figures["steps"]["pretrain"], "reused": True}
    assert again["total_seconds"] >= sum(s["seconds"] for s in figures["steps"].values())

    bad = subprocess.run(cmd + ["--only", "pretrian"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "Unknown step(s) ['pretrian']" in bad.stderr


def test_a_step_that_reruns_reruns_everything_after_it(tmp_path):
    out = tmp_path / "qs"
    cmd = [sys.executable, "-m", "smollm2_recipes", "quickstart", "--output_dir", str(out), "--only", "assets", "chat"]
    assert subprocess.run(cmd, capture_output=True, text=True, cwd=REPO).returncode == 0
    (out / "assets" / ".done").unlink()  # as if the assets step had been interrupted
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert again.returncode == 0 and "reusing" not in again.stdout  # chat re-ran because assets did
    assert "SmolLM2-135M-Instruct  (cached)" in again.stdout  # the asset cache itself was reused, and says so
    assert "| chat | " in (out / "REPORT.md").read_text() and "| chat | reused |" not in (out / "REPORT.md").read_text()


def test_full_mode_scores_all_164_humaneval_problems_and_500_arith_problems(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    steps = {s.name: s for s in build_steps(tmp_path, False)}
    assert len(steps["evaluate"].commands) == 2 and all("--limit" not in argv for argv in steps["evaluate"].commands)
    for name in ("sft", "dpo"):
        argv = steps[name].commands[0]
        assert argv[argv.index("--arith_eval_samples") + 1] == "500"
        assert argv[argv.index("--arith_eval_seed") + 1] == "1"  # not the seed-0 problems the DPO settings were chosen on
    fast = {s.name: s for s in build_steps(tmp_path / "fast", True)}
    assert fast["evaluate"].commands == [] and fast["evaluate"].summarise(tmp_path)[0][1].startswith("left out in FAST mode")


def test_dpo_gain_pairs_the_same_problems_from_the_two_runs_files(tmp_path):
    from smollm2_recipes.offline.quickstart import dpo_gain

    for stage, outcomes in (("sft", [0, 1, 0, 0] * 50), ("dpo", [1, 1, 0, 1] * 50)):
        (tmp_path / stage / "run").mkdir(parents=True)
        (tmp_path / stage / "run" / "arith_eval.json").write_text(json.dumps(
            {f"after_{stage}": {"seed": 0, "n": 200, "correct_per_problem": outcomes}}))
    gain = dpo_gain(tmp_path)
    assert gain["n"] == 200 and gain["first"] == 0.25 and gain["second"] == 0.75 and gain["gain"] == 0.5
    assert 0.4 < gain["ci"][0] < 0.5 < gain["ci"][1] < 0.6
    (tmp_path / "dpo" / "run" / "arith_eval.json").write_text(json.dumps({"after_dpo": {"seed": 1, "correct_per_problem": [1]}}))
    assert dpo_gain(tmp_path) is None  # different problems: no paired figure


def test_an_interval_reaching_0_says_how_many_problems_the_gain_needs(tmp_path):
    from smollm2_recipes.evaluation.paired_bootstrap import problems_to_resolve
    from smollm2_recipes.offline.quickstart import _dpo_rows, dpo_gain

    def write(sft, dpo):
        for stage, outcomes in (("sft", sft), ("dpo", dpo)):
            (tmp_path / stage / "run").mkdir(parents=True, exist_ok=True)
            (tmp_path / stage / "run" / "arith_eval.json").write_text(
                json.dumps({f"after_{stage}": {"seed": 0, "n": 500, "correct": sum(outcomes), "accuracy": sum(outcomes) / 500,
                                                "correct_per_problem": outcomes}}))

    write([0] * 500, [0] * 500)
    assert dict(_dpo_rows(tmp_path / "dpo", fast=True))["DPO gain: why the interval reaches 0"].startswith("no problem changed")
    write([0] * 500, [1] * 9 + [0] * 491)  # 9 problems up, none down: beyond noise, nothing to explain
    assert dpo_gain(tmp_path)["ci"][0] > 0 and "why the interval" not in str(_dpo_rows(tmp_path / "dpo", fast=False))
    write([0] * 15 + [1] * 9 + [0] * 476, [1] * 15 + [0] * 485)  # 15 up, 9 down: +1.2 points, as much churn as gain
    gain = dpo_gain(tmp_path)
    assert (gain["up"], gain["down"]) == (15, 9) and gain["ci"][0] <= 0
    rows = dict(_dpo_rows(tmp_path / "dpo", fast=False))
    need = problems_to_resolve(gain["gain"], 24 / 500)
    assert need > 500 and f"~{need:,} problems" in rows["DPO gain: why the interval reaches 0"]
    assert "15 problems went from wrong to right and 9 from right to wrong" in rows["DPO gain: why the interval reaches 0"]
