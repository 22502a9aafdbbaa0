"""Pre-tokenised uint16 shards (`smollm2 data tokenize`) and `smollm2 data inspect`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_data_helpers import maths, prose, source, tokenizer, write_jsonl

from smollm2_recipes import cli
from smollm2_recipes.data import build_stream
from smollm2_recipes.data import sources as sources_module
from smollm2_recipes.data.shards import open_shards, tokenize_recipe

SEQ = 128


@pytest.fixture()
def recipe(tmp_path):
    folder = tmp_path / "prose"
    write_jsonl(folder / "train.jsonl", prose(1, 150) + [""])  # one empty document: kept, skipped, counted
    write_jsonl(folder / "test.jsonl", prose(2, 10))
    math = write_jsonl(tmp_path / "math.jsonl", maths(3, 200))
    path = tmp_path / "recipe.yaml"
    path.write_text(json.dumps({  # JSON is YAML
        "seq_len": SEQ, "mixture_seed": 11, "output_dir": "ignored-by-data-commands", "learning_rate": 0.1,
        "stages": [
            {"name": "one", "tokens": SEQ * 30, "sources": [source("prose", str(folder), 0.8), source("math", math, 0.2)]},
            {"name": "two", "tokens": SEQ * 20, "sources": [source("prose", str(folder), 0.5), source("math", math, 0.5)]},
        ]}))
    return path


def data_args(recipe, **kw):
    from smollm2_recipes.data.config import data_args_from_recipe

    return data_args_from_recipe(recipe, **kw)


def test_tokenize_writes_uint16_shards_that_train_identically(recipe, tmp_path, capsys):
    out = tmp_path / "shards"
    assert cli.run("data tokenize", [str(recipe), "--output_dir", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(summary) == {"prose/train", "prose/test", "math/train"}  # math.jsonl has no held-out split
    assert summary["prose/train"]["documents"] == 151 and summary["prose/train"]["dtype"] == "uint16"
    tokens, offsets = open_shards(out / "prose" / "train")
    assert isinstance(tokens, np.memmap) and tokens.dtype == np.uint16 and len(offsets) == 152
    first = json.loads(open(recipe.parent / "prose" / "train.jsonl").readline())["text"]
    assert tokens[offsets[0] : offsets[1]].tolist() == tokenizer()(first, add_special_tokens=False)["input_ids"]
    on_the_fly_stream = build_stream(data_args(recipe), tokenizer())
    on_the_fly = [b["input_ids"] for b in on_the_fly_stream]
    from_shards_stream = build_stream(data_args(recipe, shards_dir=str(out)), tokenizer())
    from_shards = [b["input_ids"] for b in from_shards_stream]
    assert len(on_the_fly) == len(from_shards) == 50
    assert all((a == b).all() for a, b in zip(on_the_fly, from_shards))
    for name in ("prose", "math"):  # the same documents taken, the same empty ones skipped
        for key in ("documents", "empty_documents", "tokens", "epochs"):
            assert from_shards_stream.stats()[name][key] == on_the_fly_stream.stats()[name][key]
    # resumption works the same from shards
    s = build_stream(data_args(recipe, shards_dir=str(out)), tokenizer(), rank=1, world_size=2)
    it = iter(s)
    for _ in range(7):
        next(it)
    resumed = build_stream(data_args(recipe, shards_dir=str(out)), tokenizer(), rank=1, world_size=2)
    resumed.load_state_dict(json.loads(json.dumps(s.state_dict())))
    assert all((a["input_ids"] == b).all() for a, b in zip(resumed, on_the_fly[15::2]))


def test_killed_tokenize_resumes_to_identical_shards(recipe, tmp_path, monkeypatch):
    args = data_args(recipe)
    reference = tmp_path / "reference"
    tokenize_recipe(args, reference, tokenizer(), chunk_documents=16, progress=False)

    calls = {"n": 0}
    real_call = sources_module.Tokenize.__call__

    def dies_on_fifth_call(self, texts):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt  # a kill mid-run: chunks 1-4 committed, the 5th never written
        return real_call(self, texts)

    monkeypatch.setattr(sources_module.Tokenize, "__call__", dies_on_fifth_call)
    out = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        tokenize_recipe(args, out, tokenizer(), chunk_documents=16, progress=False)
    progress = json.loads((out / "prose" / "train" / "progress.json").read_text())
    assert progress["documents"] == 64 and not (out / "prose" / "train" / "index.json").exists()
    with open(out / "prose" / "train" / "tokens.bin", "ab") as f:
        f.write(b"\x01\x02\x03")  # a half-written chunk left behind by the kill
    monkeypatch.setattr(sources_module.Tokenize, "__call__", real_call)
    tokenize_recipe(args, out, tokenizer(), chunk_documents=16, progress=False)
    for split in ("prose/train", "prose/test", "math/train"):
        for name in ("tokens.bin", "ends.bin"):
            assert (out / split / name).read_bytes() == (reference / split / name).read_bytes(), (split, name)


def test_inspect_json_reports_shares_epochs_padding_and_speed(recipe, capsys):
    assert cli.run("data inspect", [str(recipe), "--json", "--tokens", str(SEQ * 25)]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [s["name"] for s in report["stages"]] == ["one", "two"]
    one = report["stages"][0]
    assert set(one) >= {"name", "sources", "padding_tokens", "tokens_per_second"}
    assert one["padding_tokens"] == 0 and one["tokens_per_second"] > 0
    by_name = {s["name"]: s for s in one["sources"]}
    for s in one["sources"]:
        assert set(s) >= {"name", "weight", "observed_share", "tokens", "documents", "epochs"}
    assert by_name["prose"]["weight"] == 0.8 and by_name["prose"]["observed_share"] == 0.8
    assert by_name["prose"]["tokens"] + by_name["math"]["tokens"] == SEQ * 25
    assert by_name["math"]["documents"] > 0 and 0 < by_name["math"]["epochs"] < 1
    assert report["stages"][1]["sources"][0]["tokens"] == SEQ * 20 // 2  # capped at the stage's own budget

    assert cli.run("data inspect", [str(recipe), "--stage", "two", "--tokens", "2000"]) == 0
    text = capsys.readouterr().out
    assert "stage two" in text and "stage one" not in text and "observed" in text


def test_data_commands_report_bad_input_as_one_line(recipe, tmp_path, capsys):
    assert cli.run("data inspect", [str(recipe), "--stage", "three"]) == 2
    assert "error: Unknown stage 'three'. Stages: one, two." in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(recipe.read_text().replace('"weight": 0.8', '"weight": -1'))
    assert cli.run("data tokenize", [str(bad), "--output_dir", str(tmp_path / "x")]) == 2
    assert "error: source 'prose': weight -1.0 is invalid" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
