"""Staged token-share mixtures, packing, exact resumption and data-parallel disjointness."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from test_data_helpers import maths, prose, source, tokenizer, write_jsonl

from smollm2_recipes.data import DataArguments, build_eval_blocks, build_stream
from smollm2_recipes.data.mixture import PretrainStream
from smollm2_recipes.data.shards import tokenize_recipe

SEQ = 128


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("sources")
    return {
        "prose": write_jsonl(d / "prose.jsonl", prose(1, 300)),
        "math": write_jsonl(d / "math.jsonl", maths(2, 300)),
        "small": write_jsonl(d / "small.jsonl", prose(3, 12, words=(30, 80), marker="SMALL")),
    }


def two_stages(files, seed=42, **kw):
    return DataArguments(seq_len=SEQ, mixture_seed=seed, stages=[
        {"name": "one", "tokens": SEQ * 40, "sources": [source("prose", files["prose"], 0.7), source("math", files["math"], 0.3)]},
        {"name": "two", "tokens": SEQ * 30, "sources": [source("math", files["math"], 1), source("small", files["small"], 1)]},
    ], **kw)


def blocks(stream):
    return [b["input_ids"].numpy() for b in stream]


def test_token_shares_within_one_point_over_a_million_tokens(files, tmp_path):
    """1M+ tokens from memory-mapped shards (no tokeniser in the loop); every source's share of the
    yielded tokens is within 1 percentage point of its weight, and the small source is re-read."""
    weights = {"prose": 0.55, "math": 0.35, "small": 0.10}
    args = DataArguments(seq_len=512, stages=[{"name": "s", "tokens": 1_048_576, "sources": [
        source(n, files[n], w) for n, w in weights.items()]}])
    tokenize_recipe(args, tmp_path / "shards", tokenizer())
    args.shards_dir = str(tmp_path / "shards")
    stream = build_stream(args, tokenizer())
    seen = Counter()
    for _, name, block in stream.iter_blocks():
        assert len(block) == 512 and block.dtype == np.int64
        seen[name] += len(block)
    total = sum(seen.values())
    assert total >= 1_000_000
    for name, w in weights.items():
        assert abs(seen[name] / total - w) < 0.01, (name, seen[name] / total, w)
    stats = stream.stats()
    assert {n: s["tokens"] for n, s in stats.items()} == dict(seen)
    assert stats["small"]["epochs"] > 2  # ~100k tokens from a ~7k-token source: many reshuffled epochs
    assert stats["prose"]["epochs"] < stats["small"]["epochs"]


def test_same_seed_same_stream_other_seed_differs(files):
    a, b = blocks(build_stream(two_stages(files), tokenizer())), blocks(build_stream(two_stages(files), tokenizer()))
    c = blocks(build_stream(two_stages(files, seed=7), tokenizer()))
    assert len(a) == len(b) == len(c) == 70
    assert all((x == y).all() for x, y in zip(a, b))
    assert sum((x != y).any() for x, y in zip(a, c)) > 35


def test_packing_is_eos_joined_documents_cut_into_full_blocks(files):
    """The blocks of a one-source stream, concatenated, are exactly its documents in the seeded order,
    each followed by EOS: nothing dropped, nothing padded; epochs reshuffle the order."""
    args = DataArguments(seq_len=SEQ, stages=[{"name": "s", "tokens": SEQ * 60, "sources": [source("small", files["small"], 1)]}])
    stream = build_stream(args, tokenizer())
    out = np.concatenate(blocks(stream))
    texts = [json.loads(line)["text"] for line in open(files["small"])]
    source_ = stream._packers["small"].source
    eos = tokenizer().eos_token_id
    expected = []
    for epoch in range(20):
        for i in source_.permutation(epoch):
            expected += tokenizer()(texts[i], add_special_tokens=False)["input_ids"] + [eos]
    assert len(out) == SEQ * 60
    assert out.tolist() == expected[: len(out)]
    assert not (source_.permutation(0) == source_.permutation(1)).all()
    assert stream.stats()["small"]["epochs"] > 2
    assert stream.stats()["small"]["documents"] == int((out == eos).sum()) + (out[-1] != eos)


def test_position_ids_restart_after_each_document(files):
    stream = build_stream(two_stages(files, position_ids_per_document=True), tokenizer())
    eos = tokenizer().eos_token_id
    for item in list(stream)[:10]:
        ids, pos = item["input_ids"].numpy(), item["position_ids"].numpy()
        assert (item["labels"] == item["input_ids"]).all()
        assert pos[0] == 0
        for i in range(1, SEQ):
            assert pos[i] == (0 if ids[i - 1] == eos else pos[i - 1] + 1)


@pytest.mark.parametrize("k", [0, 1, 17, 39, 40, 41, 69])
def test_state_after_k_blocks_gives_the_identical_continuation(files, k):
    full = blocks(build_stream(two_stages(files), tokenizer()))
    first = build_stream(two_stages(files), tokenizer())
    it = iter(first)
    for _ in range(k):
        next(it)
    state = json.loads(json.dumps(first.state_dict()))  # JSON-serialisable, as a checkpoint stores it
    resumed = build_stream(two_stages(files), tokenizer())
    resumed.load_state_dict(state)
    rest = blocks(resumed)
    assert len(rest) == len(full) - k
    assert all((x == y).all() for x, y in zip(rest, full[k:]))


def test_resumption_does_not_reread_from_the_start(files):
    first = build_stream(two_stages(files), tokenizer())
    it = iter(first)
    for _ in range(30):
        next(it)
    state = first.state_dict()
    assert len(json.dumps(state)) < 4000  # the carried tail is a reference, not tokens: cheap to take every block
    docs_before = state["packers"]["prose"]["counters"]["documents"]
    resumed = build_stream(two_stages(files), tokenizer())
    resumed.load_state_dict(state)
    assert resumed.stats()["prose"]["epochs"] == first.stats()["prose"]["epochs"] > 0
    next(iter(resumed))
    # The resumed stream continues the document position (it did not re-take the first documents).
    assert resumed.state_dict()["packers"]["prose"]["source"]["pos"] >= docs_before


def test_streaming_source_through_load_dataset_resumes_exactly(files):
    """`streaming: true` goes through datasets.load_dataset(streaming=True), the Hub code path."""
    def args():
        return DataArguments(seq_len=SEQ, stages=[{"name": "s", "tokens": SEQ * 30, "sources": [
            source("prose", "json", 0.5, data_files=files["prose"], streaming=True, shuffle_buffer=0),
            source("small", "json", 0.5, data_files=files["small"], streaming=True, shuffle_buffer=0)]}])
    full = blocks(build_stream(args(), tokenizer()))
    first = build_stream(args(), tokenizer())
    it = iter(first)
    for _ in range(13):
        next(it)
    resumed = build_stream(args(), tokenizer())
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    rest = blocks(resumed)
    assert len(full) == 30 and len(rest) == 17
    assert all((x == y).all() for x, y in zip(rest, full[13:]))
    assert resumed.stats()["small"]["epochs"] >= 1  # the small stream ran out and started a new epoch


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_read_disjoint_blocks_that_cover_the_stream(files, world):
    full = blocks(build_stream(two_stages(files), tokenizer()))
    per_rank = [blocks(build_stream(two_stages(files), tokenizer(), rank=r, world_size=world)) for r in range(world)]
    assert sum(len(p) for p in per_rank) == len(full)
    for i, block in enumerate(full):
        assert (per_rank[i % world][i // world] == block).all()
    streams = [build_stream(two_stages(files), tokenizer(), rank=r, world_size=world) for r in range(world)]
    assert [len(s) for s in streams] == [len(p) for p in per_rank]


def test_stages_switch_mixture_at_their_boundaries(files):
    stream = build_stream(two_stages(files), tokenizer())
    assert stream.stage_boundaries() == [
        {"name": "one", "start_block": 0, "end_block": 40, "tokens": 40 * SEQ},
        {"name": "two", "start_block": 40, "end_block": 70, "tokens": 30 * SEQ}]
    names = [name for _, name, _ in stream.iter_blocks()]
    assert Counter(names[:40]) == {"prose": 28, "math": 12}
    assert Counter(names[40:]) == {"math": 15, "small": 15}


def test_eval_blocks_come_from_the_held_out_split(tmp_path):
    folder = tmp_path / "corpus"
    write_jsonl(folder / "train.jsonl", prose(5, 50, marker="TRAINDOC"))
    write_jsonl(folder / "test.jsonl", prose(6, 20, marker="HELDOUT"))
    args = DataArguments(seq_len=SEQ, stages=[{"name": "s", "tokens": SEQ * 4, "sources": [source("c", str(folder), 1)]}])
    eval_blocks = build_eval_blocks(args, tokenizer(), n_blocks=5)
    assert len(eval_blocks) == 5 and all(b["input_ids"].shape == (SEQ,) for b in eval_blocks)
    text = tokenizer().decode(np.concatenate([b["input_ids"].numpy() for b in eval_blocks]))
    assert "HELDOUT" in text and "TRAINDOC" not in text
    train_text = tokenizer().decode(np.concatenate(blocks(build_stream(args, tokenizer()))))
    assert "TRAINDOC" in train_text and "HELDOUT" not in train_text


def test_long_document_share_and_minimum_length(files, tmp_path):
    """Context extension: long sources give `long_document_share` of the tokens, from documents of at
    least `min_document_tokens` only; shorter ones are skipped and counted."""
    longs = write_jsonl(tmp_path / "long.jsonl", prose(8, 40, words=(50, 1500)))
    args = DataArguments(seq_len=256, stages=[{"name": "ext", "tokens": 256 * 50, "long_document_share": 0.4,
                                               "min_document_tokens": 1000, "sources": [
        source("long", longs, 1, long=True), source("prose", files["prose"], 4), source("math", files["math"], 1)]}])
    stream = build_stream(args, tokenizer())
    names = Counter(name for _, name, _ in stream.iter_blocks())
    assert names["long"] == 20 and names["prose"] == 24 and names["math"] == 6  # 0.4 / 0.6*4/5 / 0.6*1/5
    stats = stream.stats()
    assert stats["long"]["short_documents"] > 0 and stats["prose"]["short_documents"] == 0
    packer = stream._packers["long"]
    assert packer.min_document_tokens == 1000


def test_stream_is_a_torch_iterable_dataset_for_a_dataloader(files):
    import torch

    stream = build_stream(two_stages(files), tokenizer())
    assert isinstance(stream, PretrainStream) and isinstance(stream, torch.utils.data.IterableDataset)
    batch = next(iter(torch.utils.data.DataLoader(stream, batch_size=4)))
    assert batch["input_ids"].shape == (4, SEQ) and batch["input_ids"].dtype == torch.long


def test_dataloader_workers_split_a_rank_and_keep_its_order(files):
    import torch

    full = blocks(build_stream(two_stages(files), tokenizer(), rank=1, world_size=2))
    loader = torch.utils.data.DataLoader(build_stream(two_stages(files), tokenizer(), rank=1, world_size=2),
                                         batch_size=None, num_workers=2)
    got = [item["input_ids"].numpy() for item in loader]
    assert len(got) == len(full) == 35
    assert all((a == b).all() for a, b in zip(got, full))


def test_stage_schedule_matches_the_greedy_walk_and_repeats_without_drift():
    from smollm2_recipes.data.mixture import StageSchedule, pick_source

    names, weights = ["a", "b", "c"], [0.55, 0.35, 0.10]
    walk, taken = [], {}
    for b in range(500):  # the greedy blend, block by block
        name = pick_source(names, weights, taken, b)
        walk.append((names.index(name), taken.get(name, 0)))
        taken[name] = taken.get(name, 0) + 1
    exact = StageSchedule(names, weights, 500)
    assert [exact.at(b) for b in range(500)] == walk
    # a stage longer than the pattern: the pattern repeats, shares stay within a block of their weight and
    # each source's block indices run 0, 1, 2, ... without gaps
    odd = [1 / 3, 1 / 3 + 1e-4, 1 / 3 - 1e-4]
    long = StageSchedule(names, odd, 1_000_000, max_period=97)
    seen = [0, 0, 0]
    for b in range(5_000):
        s, k = long.at(b)
        assert k == seen[s]
        seen[s] += 1
        for i, w in enumerate(odd):
            assert abs(seen[i] - w * (b + 1)) <= 1 + (b + 1) / 97, (b, i)
    assert list(long.taken(5_000)) == seen


def test_on_the_fly_a_source_read_over_and_over_is_warned_about_once(files, capsys, monkeypatch):
    from smollm2_recipes.data import sources

    stream = build_stream(two_stages(files), tokenizer())
    blocks(stream)
    assert "warning:" not in capsys.readouterr().err  # the default threshold (a thousand passes) is far away
    passes = int(stream.stats()["small"]["epochs"])
    assert passes >= 2
    monkeypatch.setattr(sources, "REPEAT_WARNING", 2)
    blocks(build_stream(two_stages(files), tokenizer()))
    err = capsys.readouterr().err
    assert err.count("warning: source 'small'") == 1 and "starts pass 2 over its documents" in err
