"""`smollm2 upload`: the dry run writes exactly what would be sent (model files, a secret-free resolved recipe,
eval JSON, loss plot, a Hub-valid model card) and the token appears nowhere; a real upload without network
fails with one clear line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from smollm2_recipes import cli
from smollm2_recipes.model_card import collect, infer_stage

FAKE_TOKEN = "hf_FakeTokenForTests0123456789abcdefXYZ"
FLAG_TOKEN = "hf_AnotherFakeTokenGivenByFlag987654321"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A finished SFT run's folder: micro model + the real tokenizer, resolved recipe, eval JSON, loss plot,
    and what must not be uploaded (an intermediate checkpoint, pickled training arguments)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from transformers import AutoTokenizer

    from smollm2_recipes import assets, models

    folder = tmp_path_factory.mktemp("hub") / "sft-micro"
    models.build_model("micro", seed=0).save_pretrained(folder)
    AutoTokenizer.from_pretrained(assets.resolve("embedded:SmolLM2-135M-Instruct")).save_pretrained(folder)
    recipe = {
        "model_name_or_path": "embedded:SmolLM2-135M-Instruct",
        "dataset_mixture": {"datasets": [{"id": "HuggingFaceTB/smol-smoltalk", "weight": 0.9}, {"id": "embedded:corpus/chat", "weight": 0.1}]},
        "learning_rate": 1e-3, "packing": True, "max_length": 512, "seed": 42, "num_train_epochs": 2,
        "hub_model_id": "me/sft-micro", "push_to_hub": False,
        "hub_token": FAKE_TOKEN,  # an old run's config with a token in it: must not travel
    }
    (folder / "resolved_config.yaml").write_text(yaml.safe_dump(recipe))
    (folder / "eval_results.json").write_text(json.dumps({"model": str(folder), "tasks": {"arith": {"accuracy": 0.25}, "ifeval": {"prompt_strict": 0.125}}}))
    plt.plot([0, 1, 2], [10.8, 7.5, 6.9])
    plt.savefig(folder / "training_loss.png")
    (folder / "checkpoint-10").mkdir()
    (folder / "checkpoint-10" / "optimizer.pt").write_bytes(b"optimizer state")
    (folder / "training_args.bin").write_bytes(FAKE_TOKEN.encode())  # pickled TrainingArguments can hold the token
    return folder


def _all_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


def test_dry_run_writes_what_would_be_sent_without_the_token(run_dir, tmp_path, monkeypatch, capsys):
    from huggingface_hub import ModelCard

    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    staging = tmp_path / "preview"
    rc = cli.run("upload", [str(run_dir), "--repo-id", "me/sft-micro", "--dry-run", "--staging-dir", str(staging), "--token", FLAG_TOKEN])
    out, err = capsys.readouterr()
    assert rc == 0, err
    files = sorted(str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_file())
    assert files == ["README.md", "chat_template.jinja", "config.json", "eval_results.json", "generation_config.json",
                     "model.safetensors", "resolved_config.yaml", "tokenizer.json", "tokenizer_config.json", "training_loss.png"]
    assert all(name in out for name in files)  # the listing names every file
    assert (staging / "model.safetensors").read_bytes() == (run_dir / "model.safetensors").read_bytes()
    for token in (FAKE_TOKEN, FLAG_TOKEN):
        assert token.encode() not in _all_bytes(staging)
        assert token not in out + err
    resolved = yaml.safe_load((staging / "resolved_config.yaml").read_text())
    assert "hub_token" not in resolved and resolved["learning_rate"] == 1e-3

    card = ModelCard.load(staging / "README.md")  # parses the metadata as the Hub does
    data = card.data
    assert data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert data.datasets == ["HuggingFaceTB/smol-smoltalk"]
    assert data.license == "apache-2.0" and "sft" in data.tags and data.pipeline_tag == "text-generation"
    assert {(r.dataset_name, r.metric_type, r.metric_value) for r in data.eval_results} == {("arith", "accuracy", 0.25), ("ifeval", "prompt_strict", 0.125)}
    text = card.text
    assert "**sft** stage" in text and "![training loss](training_loss.png)" in text
    assert "| `learning_rate` | `0.001` |" in text and "| arith | accuracy | 0.2500 |" in text
    assert "embedded:corpus/chat" in text and "hub_model_id: me/sft-micro" in text  # the recipe is embedded


def test_second_dry_run_replaces_the_preview(run_dir, tmp_path, capsys):
    staging = tmp_path / "preview"
    for _ in range(2):
        assert cli.run("upload", [str(run_dir), "--repo-id", "me/sft-micro", "--dry-run", "--staging-dir", str(staging), "--stage", "dpo",
                                  "--base-model", "me/sft-base"]) == 0
    card = (staging / "README.md").read_text()
    assert "- dpo" in card and "base_model: me/sft-base" in card
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left


def test_token_inside_the_model_folder_stops_the_upload(run_dir, tmp_path, monkeypatch, capsys):
    leaky = tmp_path / "leaky"
    leaky.mkdir()
    for p in run_dir.iterdir():
        if p.is_file():
            (leaky / p.name).write_bytes(p.read_bytes())
    (leaky / "notes.txt").write_text(f"pushed with {FAKE_TOKEN}\n")
    monkeypatch.setenv("HF_TOKEN", FAKE_TOKEN)
    rc = cli.run("upload", [str(leaky), "--repo-id", "me/leaky", "--dry-run", "--staging-dir", str(tmp_path / "preview")])
    err = capsys.readouterr().err
    assert rc == 2 and "notes.txt" in err and FAKE_TOKEN not in err
    assert not (tmp_path / "preview").exists()


@pytest.mark.parametrize("repo_id, message", [("bad--name/x", "not a valid Hub repository id"), ("no-namespace", "has no namespace"), ("a/b/c", "not a valid")])
def test_invalid_repo_id_fails_before_any_work(run_dir, tmp_path, repo_id, message, capsys):
    rc = cli.run("upload", [str(run_dir), "--repo-id", repo_id, "--dry-run", "--staging-dir", str(tmp_path / "preview")])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and repo_id in err
    assert not (tmp_path / "preview").exists()


def test_not_a_model_folder(tmp_path, capsys):
    assert cli.run("upload", [str(tmp_path), "--repo-id", "me/x", "--dry-run"]) == 2
    assert "no config.json" in capsys.readouterr().err


def _smollm2(args, env_overrides, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HOME=str(tmp_path / "hf-home"), **env_overrides)  # no saved login from this machine
    return subprocess.run([sys.executable, "-m", "smollm2_recipes", *args], capture_output=True, text=True, env=env, cwd=ROOT)


def test_real_upload_without_network_fails_clearly_and_leaves_nothing(run_dir, tmp_path):
    # A closed local port stands in for an unreachable Hub: nothing leaves the machine.
    proc = _smollm2(["upload", str(run_dir), "--repo-id", "me/sft-micro"], {"HF_TOKEN": FAKE_TOKEN, "HF_ENDPOINT": "http://127.0.0.1:9"}, tmp_path)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Could not upload to http://127.0.0.1:9/me/sft-micro" in errors[0]
    assert "Traceback" not in proc.stderr and FAKE_TOKEN not in proc.stdout + proc.stderr
    assert not [p for p in run_dir.parent.iterdir() if p.name.startswith(".hub-upload")]  # temporary staging removed


def test_real_upload_without_a_token_says_how_to_log_in(run_dir, tmp_path):
    proc = _smollm2(["upload", str(run_dir), "--repo-id", "me/sft-micro"], {"HF_ENDPOINT": "http://127.0.0.1:9"}, tmp_path)
    assert proc.returncode == 2 and "No Hub token" in proc.stderr and "hf auth login" in proc.stderr


@pytest.mark.parametrize(
    "config, stage",
    [({"beta": 0.5, "max_prompt_length": 512}, "dpo"), ({"packing": True, "assistant_only_loss": True}, "sft"),
     ({"stage": "context_extension"}, "context_extension"), ({"learning_rate": 3e-3}, "pretrain")],
)
def test_stage_is_read_from_the_resolved_config(config, stage):
    assert infer_stage(config) == stage


def test_local_base_model_stays_out_of_the_metadata(tmp_path):
    (tmp_path / "resolved_config.yaml").write_text(yaml.safe_dump({"model_name_or_path": str(tmp_path), "dataset_name": "HuggingFaceH4/ultrafeedback_binarized", "beta": 0.5}))
    info = collect(tmp_path)
    assert info.base_model is None and info.base_model_local == str(tmp_path)
    assert info.datasets == ["HuggingFaceH4/ultrafeedback_binarized"] and info.stage == "dpo"
