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
