"""Held-out loss by position bucket (evaluation/loss_by_position.py) on micro models with the real tokenizer
and the held-out split of the embedded long-document corpus."""

import json
import math

import pytest

from smollm2_recipes.errors import UserError
from smollm2_recipes.evaluation import loss_by_position as lbp


def test_buckets_are_the_original_length_then_each_doubling():
    assert lbp.position_buckets(256, 1024) == [(0, 256), (256, 512), (512, 1024)]
    assert lbp.position_buckets(100, 300) == [(0, 100), (100, 200), (200, 300)]
    with pytest.raises(UserError, match="original_length < max_length, got 512 and 256"):
        lbp.position_buckets(512, 256)


def _saved_micro(tmp_path_factory, tokenizer_path, positions):
    from transformers import AutoTokenizer

    from smollm2_recipes.models import build_model

    out = tmp_path_factory.mktemp(f"micro{positions}")
    build_model("micro", seed=0, max_position_embeddings=positions, bos_token_id=0, eos_token_id=0).save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_path).save_pretrained(out)
    return str(out)


def test_bucket_losses_average_to_the_models_own_loss_on_the_same_windows(tmp_path_factory, base_tokenizer_path):
    import torch

    from smollm2_recipes.models import load_pretrained

    model, tokenizer = load_pretrained(_saved_micro(tmp_path_factory, base_tokenizer_path, 64), dtype="float32")
    result = lbp.evaluate_loss_by_position(model, tokenizer, 64, 256, max_windows=4, progress=False)
    assert list(result["losses"]) == ["[0,64)", "[64,128)", "[128,256)"]
    assert result["windows"] == 4 and result["tokens_per_bucket"] == {"[0,64)": 256, "[64,128)": 256, "[128,256)": 512}
    windows = torch.tensor(lbp.long_windows(tokenizer, 256, max_windows=4))
    assert windows.shape == (4, 257)
    with torch.no_grad():  # transformers' own shifted loss over whole windows = the size-weighted bucket mean
        reference = model(windows[:, :-1], labels=windows[:, :-1]).loss.item()
        last = torch.nn.functional.cross_entropy(model(windows[:, :-1]).logits[:, -1].float(), windows[:, -1]).item()
    weighted = sum(result["losses"][k] * n for k, n in result["tokens_per_bucket"].items()) / 1024
    # labels=inputs scores 255 positions per window; ours scores 256 (the last predicts the window's extra token)
    assert weighted * 1024 == pytest.approx(reference * 4 * 255 + last * 4, rel=1e-4)
    assert all(math.isfinite(v) and v > 0 for v in result["losses"].values())


def test_windows_need_documents_longer_than_the_length(base_tokenizer_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_tokenizer_path)
    with pytest.raises(UserError, match="no document of 'embedded:corpus/long' holds 1000001 tokens"):
        lbp.long_windows(tokenizer, 1_000_000)


def test_before_and_after_writes_the_table_and_the_plot(tmp_path_factory, tmp_path, base_tokenizer_path):
    short, extended = (_saved_micro(tmp_path_factory, base_tokenizer_path, n) for n in (64, 256))
    result = lbp.before_and_after(short, extended, str(tmp_path), max_windows=2)
    saved = json.loads((tmp_path / "loss_by_position.json").read_text())
    assert saved == result and saved["original_length"] == 64 and saved["max_length"] == 256
    assert list(saved["before"]) == list(saved["after"]) == ["[0,64)", "[64,128)", "[128,256)"]
    # the two micro models share their seed and weights (positions live only in RoPE): same losses
    assert saved["before"] == pytest.approx(saved["after"])
    assert (tmp_path / "loss_by_position.png").stat().st_size > 5_000
    assert not list(tmp_path.glob("*.tmp*"))
