"""`smollm2 eval` end to end on tiny models: --json stdout, results files, perplexity, a folder of
checkpoints with its curves, bad model folders, and the tasks other parts of the project provide."""

import json
import math
import shutil
from pathlib import Path

import pytest

from smollm2_recipes.cli import run

TEXT = ("The river flows past the old mill. Children play by the water while the miller counts his sacks of flour. "
        "In the evening the wheel stops and the village is quiet.\n")


@pytest.fixture()
def text_file(tmp_path):
    path = tmp_path / "heldout.txt"
    path.write_text(TEXT * 3)
    return str(path)


def test_json_prints_exactly_the_results_object(micro_model_dir, text_file, tmp_path, capsys):
    out = tmp_path / "eval"
    rc = run("eval", [micro_model_dir, "--tasks", "chat,perplexity", "--limit", "2", "--perplexity_file", text_file,
                      "--output_dir", str(out), "--json"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)  # the whole stdout is one JSON object
    assert set(printed) == {"model", "tasks"} and list(printed["tasks"]) == ["chat", "perplexity"]
    assert printed == json.loads((out / "results.json").read_text())
    assert printed["tasks"]["chat"]["prompts"] == 2
    answers = json.loads((out / "details" / "chat.json").read_text())["answers"]
    assert len(answers) == 2 and answers[0]["answer"][:20] in (out / "results.md").read_text()
    ppl = printed["tasks"]["perplexity"]
    assert ppl["perplexity"] == pytest.approx(math.exp(ppl["nll"]))


def test_perplexity_matches_the_models_own_loss(micro_model_dir):
    import torch

    from smollm2_recipes.evaluation.perplexity import evaluate_perplexity
    from smollm2_recipes.models import load_pretrained

    model, tokenizer = load_pretrained(micro_model_dir, dtype="float32")
    result = evaluate_perplexity(model, tokenizer, documents=[TEXT], progress=False)
    ids = tokenizer(TEXT, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    with torch.no_grad():
        loss = model(torch.tensor([ids]), labels=torch.tensor([ids])).loss.item()
    assert result["tokens"] == len(ids) - 1
    assert result["nll"] == pytest.approx(loss, rel=1e-4)
    assert result["bits_per_byte"] == pytest.approx(loss * (len(ids) - 1) / math.log(2) / len(TEXT.encode()), rel=1e-4)
    # blocks shorter than the text score every token once
    blocked = evaluate_perplexity(model, tokenizer, documents=[TEXT], block_size=8, batch_size=3, progress=False)
    assert blocked["tokens"] == len(ids) - 1 and blocked["nll"] > 0


def test_checkpoint_folder_gives_curves_against_tokens(micro_model_dir, text_file, tmp_path, capsys):
    from smollm2_recipes.evaluation.checkpoint_sweep import training_position

    runs = tmp_path / "run"
    for step in (20, 10):
        shutil.copytree(micro_model_dir, runs / f"checkpoint-{step}")
        (runs / f"checkpoint-{step}" / "trainer_state.json").write_text(json.dumps({"global_step": step, "num_input_tokens_seen": step * 1000}))
    out = tmp_path / "eval"
    assert run("eval", [str(runs), "--tasks", "perplexity", "--perplexity_file", text_file, "--output_dir", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [(c["step"], c["tokens"]) for c in result["checkpoints"]] == [(10, 10000), (20, 20000)]
    assert result["tasks"] == result["checkpoints"][-1]["tasks"]
    assert (out / "curves" / "perplexity_perplexity.png").stat().st_size > 1000
    assert (out / "curves" / "perplexity_bits_per_byte.png").is_file()
    assert (out / "checkpoint-10" / "results.json").is_file()
    # a training output folder (final model + checkpoints) is one model, unless --each_checkpoint
    for file in Path(micro_model_dir).iterdir():
        shutil.copy(file, runs)
    assert run("eval", [str(runs), "--tasks", "perplexity", "--perplexity_file", text_file, "--output_dir", str(tmp_path / "final"), "--json"]) == 0
    assert "checkpoints" not in json.loads(capsys.readouterr().out)
    assert run("eval", [str(runs), "--tasks", "perplexity", "--perplexity_file", text_file, "--each_checkpoint",
                        "--output_dir", str(tmp_path / "each"), "--json"]) == 0
    assert [c["step"] for c in json.loads(capsys.readouterr().out)["checkpoints"]] == [10, 20]
    assert run("eval", [micro_model_dir, "--tasks", "perplexity", "--each_checkpoint", "--output_dir", str(tmp_path / "none")]) == 2
    assert "holds no checkpoint-*/ folders" in capsys.readouterr().err and not (tmp_path / "none").exists()
    # no trainer state: the step comes from the folder name and tokens are unknown
    (runs / "checkpoint-10" / "trainer_state.json").unlink()
    assert training_position(runs / "checkpoint-10") == {"step": 10, "tokens": None}


def test_model_folder_without_tokenizer_is_refused(micro_model_dir, tmp_path, capsys):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(f"{micro_model_dir}/config.json", bare)
    assert run("eval", [str(bare), "--tasks", "chat", "--output_dir", str(tmp_path / "o")]) == 2
    assert "no tokenizer" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert run("eval", [str(tmp_path / "missing"), "--tasks", "chat"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_arith_task(micro_model_dir, tmp_path, capsys):
    assert run("eval", [micro_model_dir, "--tasks", "arith", "--limit", "2", "--output_dir", str(tmp_path), "--json"]) == 0
    arith = json.loads(capsys.readouterr().out)["tasks"]["arith"]
    assert arith["n"] == 2 and 0 <= arith["accuracy"] <= 1


def test_passkey_task(micro_model_dir, tmp_path, capsys):
    assert run("eval", [micro_model_dir, "--tasks", "passkey", "--passkey_lengths", "64", "128", "--passkey_depths", "0", "1",
                        "--passkey_n", "1", "--output_dir", str(tmp_path), "--json"]) == 0
    passkey = json.loads(capsys.readouterr().out)["tasks"]["passkey"]
    assert 0 <= passkey["mean_accuracy"] <= 1
    assert (tmp_path / "passkey_heatmap.png").is_file()
