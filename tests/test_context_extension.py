"""Context extension (RoPE theta and length raised on a saved model, trained on a long-document mixture, saved)
and the passkey evaluation's table and heatmap, on a `micro` model with the real tokenizer."""

import json
from pathlib import Path

import pytest
import yaml

from smollm2_recipes.cli import run as cli_run


@pytest.fixture(scope="module")
def short_model(tmp_path_factory, base_tokenizer_path):
    """A micro model trained for nothing, saved with a 64-position context (what extension starts from)."""
    from transformers import AutoTokenizer

    from smollm2_recipes.models import build_model

    out = tmp_path_factory.mktemp("short")
    tok = AutoTokenizer.from_pretrained(base_tokenizer_path)
    build_model("micro", seed=0, max_position_embeddings=64, bos_token_id=0, eos_token_id=0).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def recipe(tmp_path: Path, model: Path, **overrides) -> Path:
    data = {
        "model": str(model), "rope_theta": 100000, "max_position_embeddings": 256,
        "tokenizer_name": "embedded:smollm2-tokenizer", "seq_len": 128,
        "stages": [{"name": "long-context", "tokens": 4 * 512, "long_document_share": 0.4, "min_document_tokens": 8192,
                    "sources": [{"name": "long", "path": "embedded:corpus/long", "long": True, "weight": 1.0},
                                {"name": "web", "path": "embedded:corpus/web", "weight": 1.0}]}],
        "global_batch_tokens": 512, "per_device_train_batch_size": 2, "learning_rate": 1e-3, "warmup_steps": 1,
        "lr_scheduler_kwargs": {"num_decay_steps": 1}, "save_steps": 100, "logging_steps": 1, "report_to": "none",
        "disable_tqdm": True, "mfu_peak_tflops": 1.0,
        "passkey_lengths": [64, 128, 256], "passkey_depths": [0.0, 1.0], "passkey_samples": 1,
    }
    data.update(overrides)
    path = tmp_path / "context_extension.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_extend_context_trains_saves_and_writes_the_passkey_heatmap(short_model, tmp_path, capsys):
    out = tmp_path / "extended"
    assert cli_run("extend-context", [str(recipe(tmp_path, short_model)), "--output_dir", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["max_position_embeddings"] == 256 and config["rope_parameters"]["rope_theta"] == 100000
    summary = json.loads((out / "run_complete.json").read_text())
    assert summary["global_step"] == 4 and summary["tokens_seen"] == 4 * 512
    result = json.loads((out / "passkey.json").read_text())
    assert result["lengths"] == [64, 128, 256] and result["depths"] == [0.0, 1.0]
    assert len(result["cells"]) == 6 and all(0.0 <= c["accuracy"] <= 1.0 and c["key_logprob"] < 0 for c in result["cells"])
    assert (out / "passkey_heatmap.png").stat().st_size > 5_000
    by_position = json.loads((out / "loss_by_position.json").read_text())  # before (64 positions) and after, at 256
    assert by_position["original_length"] == 64 and list(by_position["after"]) == ["[0,64)", "[64,128)", "[128,256)"]
    printed = capsys.readouterr().out
    assert "depth \\ length" in printed and "256" in printed
    # the long source fed the stream (~40% of the tokens)
    logged = [json.loads(line) for line in (out / "log_history.jsonl").read_text().splitlines()]
    last = [h for h in logged if "tokens_long" in h][-1]
    assert 0.25 < last["tokens_long"] / (last["tokens_long"] + last["tokens_web"]) < 0.55


def test_context_cannot_shrink_and_nothing_is_written(short_model, tmp_path, capsys):
    out = tmp_path / "shrunk"
    assert cli_run("extend-context", [str(recipe(tmp_path, short_model, max_position_embeddings=32, seq_len=32)),
                                      "--output_dir", str(out)]) == 2
    assert "below the model's current 64" in capsys.readouterr().err
    assert not out.exists()


def test_passkey_prompt_has_the_requested_length_and_depth(base_tokenizer_path):
    from transformers import AutoTokenizer

    from smollm2_recipes.evaluation.passkey import build_prompt

    tok = AutoTokenizer.from_pretrained(base_tokenizer_path)
    for depth in (0.0, 0.5, 1.0):
        ids, answer = build_prompt(tok, 512, depth, "71432")
        assert abs(len(ids) - 512) <= 3
        text = tok.decode(ids)
        position = text.index("The pass key is 71432") / len(text)
        assert abs(position - depth) < 0.15
        assert tok.decode(answer) == " 71432"


# ---- where the extension starts (paper: the stage-4 checkpoint before the final 75B tokens) ----------------------
@pytest.fixture(scope="module")
def pretrain_run(tmp_path_factory):
    """A real 6-step micro pretraining run (128 tokens per step) with checkpoints at steps 2, 4 and 6."""
    root = tmp_path_factory.mktemp("pretrain")
    data = {
        "model": "micro", "init_seed": 0, "tokenizer_name": "embedded:smollm2-tokenizer", "seq_len": 32,
        "stages": [{"name": "s1", "tokens": 6 * 128, "sources": [{"name": "web", "path": "embedded:corpus/web", "weight": 1.0}]}],
        "global_batch_tokens": 128, "per_device_train_batch_size": 4, "learning_rate": 1e-3, "warmup_steps": 1,
        "lr_scheduler_kwargs": {"num_decay_steps": 2}, "save_steps": 2, "save_total_limit": 10, "logging_steps": 1,
        "report_to": "none", "disable_tqdm": True, "mfu_peak_tflops": 1.0, "output_dir": str(root / "run"),
    }
    (root / "pretrain.yaml").write_text(yaml.safe_dump(data))
    assert cli_run("pretrain", [str(root / "pretrain.yaml")]) == 0
    return root / "run"


@pytest.mark.parametrize("tokens_before_end,step", [(0, 6), (256, 4), (300, 2), (512, 2), (640, 0)])
def test_start_checkpoint_is_the_last_one_at_least_that_many_tokens_before_the_end(pretrain_run, tokens_before_end, step):
    from smollm2_recipes.errors import UserError
    from smollm2_recipes.training.context_extension import resolve_start_checkpoint

    if step == 0:  # 640 tokens = 5 steps before the end: step 1, before the first checkpoint
        with pytest.raises(UserError, match=r"no complete checkpoint at or before step 1 .*holds steps \[2, 4, 6\]"):
            resolve_start_checkpoint(str(pretrain_run), tokens_before_end)
        return
    path, chosen = resolve_start_checkpoint(str(pretrain_run), tokens_before_end)
    assert Path(path) == pretrain_run / f"checkpoint-{step}"
    assert chosen["step"] == step and chosen["end_step"] == 6 and chosen["tokens_per_step"] == 128
    assert chosen["tokens_before_end"] == (6 - step) * 128 >= tokens_before_end


def test_extension_runs_from_the_resolved_checkpoint(pretrain_run, tmp_path, capsys):
    out = tmp_path / "extended"
    path = recipe(tmp_path, pretrain_run, start_tokens_before_end=256, max_position_embeddings=4096, seq_len=64,
                  passkey_samples=0)
    assert cli_run("extend-context", [str(path), "--output_dir", str(out)]) == 0
    assert "starts from " + str(pretrain_run / "checkpoint-4") in capsys.readouterr().err
    saved = yaml.safe_load((out / "resolved_config.yaml").read_text())
    assert saved["model"] == str(pretrain_run / "checkpoint-4")
    config = json.loads((out / "config.json").read_text())
    assert config["max_position_embeddings"] == 4096 and config["rope_parameters"]["rope_theta"] == 100000


def test_start_needs_a_pretraining_output_folder(short_model, tmp_path, capsys):
    out = tmp_path / "never"
    assert cli_run("extend-context", [str(recipe(tmp_path, short_model, start_tokens_before_end=75_000_000_000)),
                                      "--output_dir", str(out)]) == 2
    assert "smollm2 pretrain output folder with plan.json" in capsys.readouterr().err
    assert not out.exists()


def test_an_already_extended_model_is_refused(tmp_path, capsys, base_tokenizer_path):
    from smollm2_recipes.models import build_model

    released = tmp_path / "released-like"  # shaped like HuggingFaceTB/SmolLM2-135M: 8192 positions, theta 100000
    build_model("micro", seed=0, max_position_embeddings=8192,
                rope_parameters={"rope_type": "default", "rope_theta": 100000.0}).save_pretrained(released)
    out = tmp_path / "never"
    assert cli_run("extend-context", [str(recipe(tmp_path, released, max_position_embeddings=8192)), "--output_dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert "already context-extended (max_position_embeddings 8192, rope_theta 100000" in err
    assert not out.exists()


def test_a_hub_id_is_checked_through_its_config_json(tmp_path):
    """A Hub model's config.json comes through huggingface_hub: from the local Hub cache here (offline), where a
    released-like config is refused; an id with nothing cached is one clear line."""
    import os
    import subprocess
    import sys

    cache = tmp_path / "hub"
    snapshot = cache / "models--HuggingFaceTB--SmolLM2-1.7B" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text(json.dumps({"max_position_embeddings": 8192, "rope_theta": 130000.0}))
    (cache / "models--HuggingFaceTB--SmolLM2-1.7B" / "refs").mkdir()
    (cache / "models--HuggingFaceTB--SmolLM2-1.7B" / "refs" / "main").write_text("0" * 40)
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    code = ("import sys; from smollm2_recipes.errors import UserError\n"
            "from smollm2_recipes.training.context_extension import check_not_extended, read_model_config\n"
            "for model in sys.argv[1:]:\n"
            "    try: check_not_extended(model, read_model_config(model)); print('accepted', model)\n"
            "    except UserError as err: print(err)\n")
    out = subprocess.run([sys.executable, "-c", code, "HuggingFaceTB/SmolLM2-1.7B", "HuggingFaceTB/not-cached"],
                         capture_output=True, text=True, env=env, check=True).stdout.splitlines()
    assert out[0].startswith("'HuggingFaceTB/SmolLM2-1.7B' is already context-extended (max_position_embeddings 8192, rope_theta 130000")
    assert out[1].startswith("'HuggingFaceTB/not-cached' is not a local folder or file, and as a Hub id it is not in the local cache")


def test_the_released_smollm2_is_refused_by_its_config(instruct_model_path):
    """The embedded SmolLM2-135M-Instruct is the released model: 8192 positions, RoPE theta 100000."""
    from smollm2_recipes.errors import UserError
    from smollm2_recipes.training.context_extension import check_not_extended, read_model_config

    with pytest.raises(UserError, match=r"already context-extended \(max_position_embeddings 8192, rope_theta 100000"):
        check_not_extended("embedded:SmolLM2-135M-Instruct", read_model_config("embedded:SmolLM2-135M-Instruct"))
