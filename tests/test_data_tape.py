"""Invariants of the block-addressable source tapes over datatrove shards (`data.tape`), on shards written by
the real `smollm2 data tokenize`: blocks are the documents in each epoch's order, ranks split the global
sequence exactly, any block can be read directly, stages with other filters continue the source, and the
order is a pure function of the seed."""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter

import numpy as np
import pytest
from test_data_helpers import prose, source, tokenizer, write_jsonl
from test_data_shards import SEQ, data_args, write_recipe

from smollm2_recipes import cli
from smollm2_recipes.data import build_stream
from smollm2_recipes.data.sources import document_order
from smollm2_recipes.data.tape import CyclePrefix, SourceTape

SEED = 11  # write_recipe's mixture_seed


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """test_data_shards' recipe plus a tiny source (many epochs) and a long source read under three filters:
    none (stage two), min_document_tokens 200 (three) and 500 (four). Returns (recipe, shards_dir, texts)."""
    tmp = tmp_path_factory.mktemp("tape")
    recipe = write_recipe(tmp)
    raw = json.loads(recipe.read_text())
    texts = {"prose": [json.loads(line)["text"] for line in open(tmp / "prose" / "train.jsonl")],
             "tiny": prose(4, 5, words=(10, 40), marker="TINY"),
             "long": prose(8, 40, words=(50, 600), marker="LONG")}
    tiny, long = write_jsonl(tmp / "tiny.jsonl", texts["tiny"]), write_jsonl(tmp / "long.jsonl", texts["long"])
    prose_path, math_path = raw["stages"][0]["sources"][0]["path"], raw["stages"][0]["sources"][1]["path"]
    texts["math"] = [json.loads(line)["text"] for line in open(math_path)]
    raw["stages"][1]["sources"] += [source("long", long, 0.2), source("tiny", tiny, 0.2)]
    for stage, minimum, other, path in (("three", 200, "prose", prose_path), ("four", 500, "math", math_path)):
        raw["stages"].append({"name": stage, "tokens": SEQ * 30, "min_document_tokens": minimum, "long_document_share": 0.5,
                              "sources": [source("long", long, 1, long=True), source(other, path, 1), source("tiny", tiny, 1)]})
    recipe.write_text(json.dumps(raw))
    out = tmp / "shards"
    assert cli.run("data tokenize", [str(recipe), "--output_dir", str(out), "--tasks", "2"]) == 0
    return recipe, str(out), texts


def documents(texts: list[str]) -> list[list[int]]:
    """Each document's tokens followed by EOS, computed from the text (not from the shards)."""
    eos = tokenizer().eos_token_id
    return [ids + [eos] for ids in tokenizer()(texts, add_special_tokens=False)["input_ids"]]


def epochs_of(docs: list[list[int]], name: str, first: int, last: int, min_tokens: int = 0, seed: int = SEED) -> list[int]:
    """Epochs [first, last) of a source, documents joined in each epoch's order, empty/short ones skipped."""
    out = []
    for epoch in range(first, last):
        for i in document_order(seed, name, epoch, len(docs)):
            if 0 < len(docs[i]) - 1 and len(docs[i]) - 1 >= min_tokens:
                out += docs[i]
    return out


def packed(docs: list[list[int]], name: str, plan: list[tuple[int, int]]) -> list[list[int]]:
    """A reference packer: per stage (blocks, min_tokens), the source's tokens from where the last stage
    stopped (the unread tail of its last document first), documents filtered by that stage's minimum."""
    epoch, pos, tail, out = 0, 0, [], []
    order = document_order(SEED, name, 0, len(docs))
    for blocks, minimum in plan:
        taken, need = list(tail), blocks * SEQ
        while len(taken) < need:
            doc = docs[order[pos]]
            pos += 1
            if pos == len(docs):
                epoch, pos = epoch + 1, 0
                order = document_order(SEED, name, epoch, len(docs))
            if 0 < len(doc) - 1 and len(doc) - 1 >= minimum:
                taken += doc
        out.append(taken[:need])
        tail = taken[need:]
    return out


def array_bytes(obj) -> int:
    """Bytes of the numpy arrays reachable from `obj` through dicts, lists, tuples and `CyclePrefix`es."""
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, CyclePrefix):
        obj = vars(obj)
    if isinstance(obj, dict):
        obj = list(obj.values())
    return sum(array_bytes(v) for v in obj) if isinstance(obj, (list, tuple)) else 0


def stream_blocks(recipe, shards_dir, rank=0, world=1, **kw) -> dict[int, tuple[str, np.ndarray]]:
    stream = build_stream(data_args(recipe, shards_dir=shards_dir, **kw), tokenizer(), rank=rank, world_size=world)
    return {g: (name, block) for g, name, block in stream.iter_blocks()}


def test_source_blocks_are_its_documents_in_each_epochs_order(shards):
    recipe, out, texts = shards
    tapes = build_stream(data_args(recipe, shards_dir=out), tokenizer()).tapes
    eos = tokenizer().eos_token_id
    for name, minimum in (("prose", 0), ("tiny", 0), ("long", 0), ("long", 200), ("long", 500)):
        docs = documents(texts[name])
        tape = SourceTape(name, tapes[name].split, SEED, SEQ)
        per_epoch = tape.epoch_tokens(minimum)
        tape.add_segment(-(-4 * per_epoch // SEQ), minimum)  # four epochs and a bit
        got = np.concatenate([tape.block(k) for k in range(tape.segments[0].blocks)])
        assert got.tolist() == epochs_of(docs, name, 0, 5, minimum)[: len(got)], (name, minimum)
        kept = Counter(tuple(d) for d in docs if 0 < len(d) - 1 and len(d) - 1 >= minimum)
        assert 0 < len(kept) and (minimum == 0 or len(kept) < len(docs))
        orders = set()
        for epoch in range(4):  # every kept document exactly once per epoch, in an order of its own
            piece = got[epoch * per_epoch : (epoch + 1) * per_epoch].tolist()
            ends = [i + 1 for i, t in enumerate(piece) if t == eos]
            assert ends[-1] == len(piece)
            assert Counter(tuple(piece[a:b]) for a, b in zip([0] + ends, ends)) == kept, (name, epoch)
            orders.add(tuple(document_order(SEED, name, epoch, len(docs))))
        assert len(orders) == (4 if len(docs) > 100 else len(orders)) > 1  # a 5-document source has 5 rotations


@pytest.mark.parametrize("world", [2, 3, 8])
def test_ranks_read_disjoint_blocks_whose_union_is_the_one_rank_sequence(shards, world):
    recipe, out, _ = shards
    single = stream_blocks(recipe, out)
    assert list(single) == list(range(len(single))) and len(single) == 110
    seen = {}
    for rank in range(world):
        mine = stream_blocks(recipe, out, rank, world)
        assert all(g % world == rank for g in mine) and not set(mine) & set(seen)
        seen.update(mine)
    assert sorted(seen) == list(single)
    for g, (name, block) in single.items():
        assert seen[g][0] == name and (seen[g][1] == block).all(), g


def test_random_access_equals_sequential_reading_at_any_epoch(shards):
    recipe, out, texts = shards
    sequential = {name: [tape.block(k) for k in range(sum(s.blocks for s in tape.segments))]
                  for name, tape in build_stream(data_args(recipe, shards_dir=out), tokenizer()).tapes.items()}
    tapes = build_stream(data_args(recipe, shards_dir=out), tokenizer()).tapes  # fresh: nothing read before
    wanted = [(name, k) for name, blocks in sequential.items() for k in range(len(blocks))]
    random.Random(0).shuffle(wanted)
    for name, k in wanted:
        assert (tapes[name].block(k) == sequential[name][k]).all(), (name, k)
    # a block a billion epochs in is read directly, and reading far epochs keeps no per-epoch arrays
    docs = documents(texts["tiny"])
    tape = SourceTape("tiny", tapes["tiny"].split, SEED, SEQ)
    per_epoch = tape.epoch_tokens(0)
    tape.add_segment(10**15, 0)
    tape.block(0)
    footprint = array_bytes({k: v for k, v in vars(tape).items() if k != "split"})
    for epoch in (10**9, 10**9 + 1, 123_456_789, 7):
        k = epoch * per_epoch // SEQ + 1
        skip = k * SEQ - epoch * per_epoch
        expected = epochs_of(docs, "tiny", epoch, epoch + 2 + SEQ // per_epoch)[skip : skip + SEQ]
        assert tape.block(k).tolist() == expected, epoch
    assert array_bytes({k: v for k, v in vars(tape).items() if k != "split"}) == footprint


def test_stages_with_other_min_document_tokens_continue_where_the_last_left_off(shards):
    recipe, out, texts = shards
    stream = build_stream(data_args(recipe, shards_dir=out), tokenizer())
    bounds = stream.stage_boundaries()
    assert [b["name"] for b in bounds] == ["one", "two", "three", "four"]
    single = {g: (name, block) for g, name, block in stream.iter_blocks()}
    plan = []
    for b, minimum in zip(bounds, (0, 0, 200, 500)):
        blocks = [g for g in range(b["start_block"], b["end_block"]) if single[g][0] == "long"]
        plan.append((len(blocks), minimum))
    assert [n for n, _ in plan][0] == 0 and all(n > 0 for n, _ in plan[1:])
    got = [block.tolist() for name, block in single.values() if name == "long"]
    assert got == [b[i : i + SEQ] for b in packed(documents(texts["long"]), "long", plan) for i in range(0, len(b), SEQ)]
    # the same blocks as the packer that tokenises on the fly (it carries the tail of a document across stages)
    fly = build_stream(data_args(recipe), tokenizer())
    assert [b.tolist() for _, _, b in fly.iter_blocks()] == [b.tolist() for _, b in single.values()]
    for name in ("long", "tiny", "prose"):
        for key in ("documents", "short_documents", "empty_documents", "long_documents", "tokens", "epochs"):
            assert stream.stats()[name][key] == fly.stats()[name][key], (name, key)
    assert stream.stats()["long"]["short_documents"] > 0 and stream.stats()["tiny"]["epochs"] > 5
    # resumed at a stage boundary (and next to it) on rank 1 of 3, the continuation is the same
    for k in (bounds[2]["start_block"] - 1, bounds[2]["start_block"], bounds[3]["start_block"] + 1):
        first = build_stream(data_args(recipe, shards_dir=out), tokenizer(), rank=1, world_size=3)
        it = first.iter_blocks()
        for g, _, _ in it:
            if g + 3 > k:
                break
        resumed = build_stream(data_args(recipe, shards_dir=out), tokenizer(), rank=1, world_size=3)
        resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
        rest = list(resumed.iter_blocks())
        assert rest and [g for g, _, _ in rest] == list(range(rest[0][0], 110, 3)) and rest[0][0] > g
        assert all((block == single[g][1]).all() for g, _, block in rest)


def test_same_seed_same_bytes_other_seed_other_order(shards):
    recipe, out, texts = shards

    def digest(**kw):
        return hashlib.sha256(b"".join(b.tobytes() for _, b in stream_blocks(recipe, out, **kw).values())).hexdigest()

    assert digest() == digest()
    assert digest(mixture_seed=12) != digest()
    tapes = build_stream(data_args(recipe, shards_dir=out), tokenizer()).tapes
    firsts = []
    for seed in (SEED, 12):  # the same documents in the first epoch, in another order
        tape = SourceTape("prose", tapes["prose"].split, seed, SEQ)
        per_epoch = tape.epoch_tokens(0)
        tape.add_segment(-(-per_epoch // SEQ), 0)
        firsts.append(np.concatenate([tape.block(k) for k in range(tape.segments[0].blocks)])[:per_epoch].tolist())
    assert firsts[0] != firsts[1] and Counter(firsts[0]) == Counter(firsts[1]) == Counter(sum(documents(texts["prose"][:-1]), []))


def test_a_source_read_over_and_over_is_warned_about_once(shards, capsys, monkeypatch):
    from smollm2_recipes.data import sources

    recipe, out, _ = shards
    stream = build_stream(data_args(recipe, shards_dir=out), tokenizer())
    assert "warning:" not in capsys.readouterr().err  # the default threshold (thousands of epochs) is not reached
    tiny = stream.tapes["tiny"]
    epochs = sum(seg.blocks for seg in tiny.segments) * SEQ / tiny.epoch_tokens(0)
    monkeypatch.setattr(sources, "REPEAT_WARNING", epochs)  # the tiny source sits exactly at the threshold
    build_stream(data_args(recipe, shards_dir=out), tokenizer(), rank=0, world_size=2)
    err = capsys.readouterr().err
    assert err.count("warning: source 'tiny' holds") == 1 and f"repeats {epochs:,.0f} times" in err
    build_stream(data_args(recipe, shards_dir=out), tokenizer(), rank=1, world_size=2)
    assert "warning:" not in capsys.readouterr().err  # said once per run, by rank 0
