"""Recipe data keys and bad input: one clear UserError naming the source and the value, or handled and counted."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_data_helpers import prose, source, tokenizer, write_jsonl

from smollm2_recipes.data import DataArguments, build_stream
from smollm2_recipes.errors import UserError

SEQ = 64


def one_stage(*sources, tokens=SEQ * 10, **kw):
    return DataArguments(seq_len=SEQ, stages=[{"name": "s1", "tokens": tokens, "sources": list(sources)}], **kw)


def first_blocks(args, n=3):
    stream = build_stream(args, tokenizer())
    out = []
    for item in stream:
        out.append(item["input_ids"].numpy())
        if len(out) == n:
            break
    return stream, out


@pytest.fixture()
def good(tmp_path):
    return write_jsonl(tmp_path / "good.jsonl", prose(1, 30))


def test_recipe_data_keys_parse_next_to_training_arguments(tmp_path):
    from transformers import TrainingArguments

    from smollm2_recipes import recipe_parsing

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "output_dir: out\nseq_len: 256\nmixture_seed: 3\nstages:\n"
        "  - name: a\n    tokens: 1_000_000\n    sources:\n"
        "      - {name: web, path: embedded:corpus/web, weight: 60}\n"
        "      - {name: code, path: embedded:corpus/code, weight: 40}\n")
    training, data = recipe_parsing.parse([TrainingArguments, DataArguments], [str(recipe), "--mixture_seed", "5"])
    assert data.seq_len == 256 and data.mixture_seed == 5
    assert data.stage_specs[0].weights() == {"web": 0.6, "code": 0.4}
    assert data.stage_specs[0].tokens == 1_000_000
    saved = recipe_parsing.config_dict(data)
    assert saved["stages"][0]["sources"][0]["path"] == "embedded:corpus/web"


@pytest.mark.parametrize("weights, needle", [
    ((-0.5, 1.0), "source 'a': weight -0.5"),
    ((0.0, 0.0), "stage 's1': the weights of its sources sum to 0"),
    (("lots", 1.0), "source 'a': weight 'lots'"),
    ((float("nan"), 1.0), "source 'a': weight nan"),
])
def test_bad_weights_name_the_source_and_value(good, weights, needle):
    with pytest.raises(UserError, match=needle.replace("(", r"\(")):
        one_stage(source("a", good, weights[0]), source("b", good.replace("good", "good"), weights[1]) | {"name": "b"})


def test_unknown_keys_and_stage_mistakes_are_named(good):
    with pytest.raises(UserError, match="Unknown key 'wieght'.*Did you mean 'weight'"):
        one_stage({"name": "a", "path": good, "wieght": 1})
    with pytest.raises(UserError, match="stage 'x' has no `tokens`"):
        DataArguments(stages=[{"name": "x", "sources": [source("a", good, 1)]}])
    with pytest.raises(UserError, match="less than one block"):
        one_stage(source("a", good, 1), tokens=SEQ - 1)
    with pytest.raises(UserError, match="lists source 'a' twice"):
        one_stage(source("a", good, 1), source("a", good, 1))
    with pytest.raises(UserError, match="long_document_share 0.4 needs at least one source with `long: true`"):
        DataArguments(seq_len=SEQ, stages=[{"name": "e", "tokens": SEQ * 4, "long_document_share": 0.4, "sources": [source("a", good, 1)]}])


def test_unknown_source_is_named(tmp_path):
    with pytest.raises(UserError, match=r"source 'gone': path '\./missing/docs.jsonl' does not exist"):
        first_blocks(one_stage(source("gone", "./missing/docs.jsonl", 1)))
    with pytest.raises(UserError, match="Unknown embedded corpus 'novels'"):
        first_blocks(one_stage(source("n", "embedded:corpus/novels", 1)))


def test_missing_text_column_names_source_column_and_columns(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", prose(1, 5), column="content")
    with pytest.raises(UserError, match="source 'c': dataset .*c.jsonl has no text column 'text' \\(columns: content\\)"):
        first_blocks(one_stage(source("c", path, 1)))
    _, out = first_blocks(one_stage(source("c", path, 1, text_column="content")), n=1)
    assert len(out[0]) == SEQ


def test_empty_source_is_named(tmp_path, good):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(UserError, match="source 'e' .* is empty: it has 0 documents"):
        first_blocks(one_stage(source("g", good, 1), source("e", str(empty), 1)))
    blank = write_jsonl(tmp_path / "blank.jsonl", ["", ""])
    with pytest.raises(UserError, match="source 'b' .* has no usable documents"):
        first_blocks(one_stage(source("b", blank, 1)))


def test_non_utf8_bytes_are_repaired_and_counted(tmp_path):
    path = tmp_path / "bytes.jsonl"
    good_lines = [json.dumps({"text": t}).encode() for t in prose(2, 10)]
    bad = b'{"text": "caf\xe9 au lait \xff\xfe and more words"}'
    path.write_bytes(b"\n".join(good_lines[:5] + [bad] + good_lines[5:]) + b"\n")
    stream, _ = first_blocks(one_stage(source("b", str(path), 1), tokens=SEQ * 12), n=12)
    stats = stream.stats()["b"]
    assert stats["invalid_utf8"] == 1
    text = tokenizer().decode(np.concatenate([b["input_ids"].numpy() for b in build_stream(
        one_stage(source("b", str(path), 1), tokens=SEQ * 12), tokenizer())]))
    assert "caf\ufffd au lait \ufffd\ufffd and more words" in text


def test_document_longer_than_a_block_spans_blocks_and_is_counted(tmp_path):
    long_doc = " ".join(["tokens"] * (SEQ * 5))
    path = write_jsonl(tmp_path / "l.jsonl", [long_doc, "short one", "another short one"])
    stream = build_stream(one_stage(source("l", path, 1), tokens=SEQ * 8), tokenizer())
    out = np.concatenate([b["input_ids"].numpy() for b in stream])
    stats = stream.stats()["l"]
    assert stats["long_documents"] >= 1
    assert len(out) == SEQ * 8
    ids = np.array(tokenizer()(long_doc, add_special_tokens=False)["input_ids"])
    assert len(ids) > SEQ * 4
    # The long document appears whole and contiguous across consecutive blocks: nothing dropped.
    assert any((out[i : i + len(ids)] == ids).all() for i in range(len(out) - len(ids) + 1))


def test_resuming_with_a_different_seed_is_refused(good):
    stream = build_stream(one_stage(source("a", good, 1)), tokenizer())
    next(iter(stream))
    other = build_stream(one_stage(source("a", good, 1), mixture_seed=1), tokenizer())
    with pytest.raises(UserError, match="mixture_seed"):
        other.load_state_dict(stream.state_dict())


def test_hub_sources_go_through_load_dataset_up_to_the_network(tmp_path):
    """A Hub id is handed to datasets.load_dataset; offline, that fails with the source's name."""
    import subprocess
    import sys

    code = ("from smollm2_recipes.data.stages import SourceSpec\n"
            "from smollm2_recipes.data.sources import open_source\n"
            "from smollm2_recipes.errors import UserError\n"
            "s = SourceSpec(name='fineweb-edu', path='HuggingFaceFW/fineweb-edu', config='sample-10BT')\n"
            "assert s.is_hub and s.is_streaming\n"
            "try:\n    open_source(s, tokenizer=None, seed=0)\nexcept UserError as e:\n    print('USERERROR', e)\n")
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin",
           "SMOLLM2_CACHE": __import__("smollm2_recipes.offline.cache", fromlist=["x"]).cache_dir().as_posix()}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "USERERROR source 'fineweb-edu': cannot load dataset 'HuggingFaceFW/fineweb-edu'" in out.stdout, out.stdout + out.stderr


GROUPS = {"web": {"fineweb-edu", "dclm", "web"}, "code": {"starcoderdata", "stack-edu", "jupyter", "code"},
          "math": {"open-web-math", "infimm-webmath", "finemath-4plus", "infiwebmath-3plus", "math"}, "other": {"cosmopedia-v2"}}
PAPER = [{"web": 0.90, "code": 0.10}, {"web": 0.75, "code": 0.20, "math": 0.05},
         {"web": 0.70, "code": 0.20, "math": 0.10}, {"web": 0.58, "code": 0.24, "math": 0.14, "other": 0.04}]


def test_the_1_7B_recipe_carries_the_paper_stage_shares_on_hub_sources():
    """The 1.7B's four stages (paper §4); the 135M and 360M are single-stage (tests/test_pretrain_recipes.py)."""
    from pathlib import Path

    from smollm2_recipes.data.stages import data_args_from_recipe

    root = Path(__file__).resolve().parents[1] / "recipes" / "smollm2" / "1.7B"
    args = data_args_from_recipe(root / "pretrain.yaml")
    assert args.seq_len == 2048 and len(args.stage_specs) == 4
    for stage, paper in zip(args.stage_specs, PAPER):
        shares = {g: round(sum(w for n, w in stage.weights().items() if n in names), 6) for g, names in GROUPS.items()}
        assert {g: v for g, v in shares.items() if v} == paper, stage.name
        assert all(s.is_hub and s.is_streaming for s in stage.sources)


@pytest.mark.parametrize("size", ["135M", "360M", "1.7B"])
def test_published_context_extension_recipes_take_long_documents_at_8k(size):
    from pathlib import Path

    from smollm2_recipes.data.stages import data_args_from_recipe

    root = Path(__file__).resolve().parents[1] / "recipes" / "smollm2" / size
    ext = data_args_from_recipe(root / "context_extension.yaml")
    (stage,) = ext.stage_specs
    assert ext.seq_len == 8192 and stage.min_document_tokens == 8192
    assert round(sum(w for n, w in stage.weights().items() if next(s for s in stage.sources if s.name == n).long), 6) == 0.4


def test_tiny_recipe_has_the_four_stage_shape_on_the_embedded_corpus():
    from pathlib import Path

    from smollm2_recipes.data.stages import data_args_from_recipe

    args = data_args_from_recipe(Path(__file__).resolve().parents[1] / "recipes" / "smollm2" / "tiny" / "pretrain.yaml")
    assert len(args.stage_specs) == 4
    assert all(s.path.startswith("embedded:corpus/") for st in args.stage_specs for s in st.sources)
    assert [sorted(st.weights()) for st in args.stage_specs][-1] == ["code", "math", "web"]
