"""Synthetic-data pipelines (distilabel) end to end on a tiny random model with the real SmolLM2 tokenizer
and chat template, plus their pure parts (IFEval checker, JSON tag parsing, recipes, backends)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from smollm2_recipes.errors import UserError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def micro_llm(tmp_path_factory) -> Path:
    """A 2-layer random Llama with the instruct tokenizer + chat template: the pipelines run for real, fast."""
    from smollm2_recipes.models import build_model
    from smollm2_recipes.runkit import load_tokenizer

    folder = tmp_path_factory.mktemp("micro_llm")
    model = build_model("micro", seed=0)
    tokenizer = load_tokenizer("embedded:SmolLM2-135M-Instruct")
    model.config.bos_token_id, model.config.eos_token_id, model.config.pad_token_id = 1, 2, 2
    model.generation_config.bos_token_id, model.generation_config.eos_token_id, model.generation_config.pad_token_id = 1, 2, 2
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _recipe(tmp_path: Path, name: str, **keys) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(keys))
    return str(path)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


# ------------------------------------------------------------------------------------------ pure parts


def test_ifeval_checker_accepts_and_rejects():
    from smollm2_recipes.synth import ifeval

    cases = [
        ({"id": "punctuation:no_comma", "kwargs": {}}, "no commas here.", "one, two"),
        ({"id": "change_case:english_lowercase", "kwargs": {}}, "all lower case", "Not lower"),
        ({"id": "length_constraints:number_words", "kwargs": {"relation": "at least", "num_words": 3}}, "one two three", "one two"),
        ({"id": "detectable_format:number_bullet_lists", "kwargs": {"num_bullets": 2}}, "* a\n* b", "* a\n* b\n* c"),
        ({"id": "keywords:existence", "kwargs": {"keywords": ["data", "team"]}}, "The team shares data.", "The team."),
        ({"id": "startend:end_checker", "kwargs": {"end_phrase": "That is all."}}, "Done. That is all.", "That is all. More"),
        ({"id": "detectable_format:json_format", "kwargs": {}}, '```json\n{"a": 1}\n```', "{a: 1}"),
        ({"id": "detectable_format:title", "kwargs": {}}, "<<My title>>\ntext", "My title"),
        ({"id": "length_constraints:number_paragraphs", "kwargs": {"num_paragraphs": 2}}, "one\n***\ntwo", "one\n\ntwo"),
    ]
    for constraint, good, bad in cases:
        assert ifeval.check(good, constraint), (constraint, good)
        assert not ifeval.check(bad, constraint), (constraint, bad)
    assert not ifeval.check("", cases[0][0]) and not ifeval.check(None, cases[0][0])
    import random

    drawn = ifeval.sample_constraints(random.Random(0), 3)
    groups = [ifeval.CONSTRAINTS[c["id"]].group for c in drawn]
    assert len(drawn) == 3 and len(set(groups)) == 3  # never two conflicting rules (same group) together
    assert all(ifeval.describe([c]) for c in drawn)
    with pytest.raises(UserError, match="Unknown constraint 'nope'"):
        ifeval.sample_constraints(random.Random(0), 1, ["nope"])


def test_tag_and_score_parsing_never_crash_and_say_why():
    from smollm2_recipes.synth.magpie import DIFFICULTIES, QUALITIES
    from smollm2_recipes.synth.structured import EMPTY, INVALID_JSON, MISSING, NO_SCORE, OK, Tally, parse_fields, parse_score

    allowed = {"difficulty": DIFFICULTIES, "quality": QUALITIES, "category": ["math", "coding"]}
    good = 'Sure! ```json\n{"difficulty": "Easy", "quality": "good", "category": "math"}\n```'
    assert parse_fields(good, allowed) == ({"difficulty": "easy", "quality": "good", "category": "math"}, OK)
    assert parse_fields("", allowed) == ({"difficulty": None, "quality": None, "category": None}, EMPTY)
    assert parse_fields("I think it is easy", allowed)[1] == INVALID_JSON
    assert parse_fields('{"difficulty": "hard", "quality": "go', allowed)[1] == INVALID_JSON  # cut inside a value
    cut = parse_fields('```json\n{"difficulty": "hard", "quality": "good", "category": "math"', allowed)  # cut before the brace
    assert cut == ({"difficulty": "hard", "quality": "good", "category": "math"}, OK)
    fields, status = parse_fields('{"difficulty": "impossible", "quality": "good"}', allowed)
    assert status == MISSING and fields == {"difficulty": None, "quality": "good", "category": None}
    assert parse_score("The extract is fine. Educational score: 3") == (3, OK)
    assert parse_score('{"score": 9}') == (None, NO_SCORE)  # out of 0-5
    assert parse_score(None) == (None, EMPTY)
    tally = Tally([OK, EMPTY, INVALID_JSON, INVALID_JSON])
    assert tally.summary() == {"total": 4, "parsed": 1, "null": 3, EMPTY: 1, INVALID_JSON: 2}


def test_constrained_tags_always_parse_even_from_a_random_model(micro_llm):
    """The trie constraint lets a model spell only one of the valid JSON objects, then its end of turn: even a
    random model sampled at a high temperature yields 100% parsed tags; unconstrained it yields none."""
    from smollm2_recipes.synth.magpie import DIFFICULTIES, QUALITIES
    from smollm2_recipes.synth.structured import OK, parse_fields
    from smollm2_recipes.synth.transformers_llm import BatchedTransformersLLM, json_completions

    choices = {"difficulty": DIFFICULTIES, "quality": QUALITIES, "category": ["math", "coding", "information-seeking"]}
    prompts = [[{"role": "user", "content": f"Tag query number {i}. Reply with JSON."}] for i in range(4)]
    llm = BatchedTransformersLLM(model=str(micro_llm), torch_dtype="float32", device="cpu", pipeline_batch_size=4, seed=0,
                                 json_choices=choices)
    llm.load()
    out = llm.generate(prompts, num_generations=3, max_new_tokens=2, temperature=1.5, do_sample=True)
    texts = [g for o in out for g in o["generations"]]
    assert len(texts) == 12 and set(texts) <= set(json_completions(choices))
    assert all(parse_fields(t, choices)[1] == OK for t in texts)
    assert all(r == "stop" for o in out for r in o["statistics"]["finish_reasons"])  # ended on its end of turn
    assert len(set(texts)) > 1  # sampled among the valid objects, not a fixed default

    free = BatchedTransformersLLM(model=str(micro_llm), torch_dtype="float32", device="cpu", pipeline_batch_size=4, seed=0)
    free.load()
    out = free.generate(prompts, max_new_tokens=5, temperature=1.0)
    assert all(o["statistics"]["finish_reasons"] == ["length"] and o["statistics"]["output_tokens"] == [5] for o in out)
    assert not any(parse_fields(g, choices)[1] == OK for o in out for g in o["generations"])


def test_finish_reasons_tell_a_finished_reply_from_a_cut_one():
    """The real 135M answers a short question with its own <|im_end|>; capped at 1 token it is cut."""
    from smollm2_recipes import assets
    from smollm2_recipes.synth.transformers_llm import BatchedTransformersLLM

    llm = BatchedTransformersLLM(model=assets.resolve("embedded:SmolLM2-135M-Instruct"), torch_dtype="float32", device="cpu", seed=0)
    llm.load()
    prompt = [[{"role": "user", "content": "What is the capital of France?"}]]
    (done,) = llm.generate(prompt, max_new_tokens=48, do_sample=False)
    assert done["statistics"]["finish_reasons"] == ["stop"] and done["statistics"]["output_tokens"][0] < 48
    assert "Paris" in done["generations"][0] and "<|im_end|>" not in done["generations"][0]
    (cut,) = llm.generate(prompt, max_new_tokens=1, do_sample=False)
    assert cut["statistics"]["finish_reasons"] == ["length"] and cut["statistics"]["output_tokens"] == [1]


def test_a_turn_cut_at_max_new_tokens_is_dropped_with_what_follows():
    from smollm2_recipes.synth.magpie import drop_truncated_turns, turn_finish_reasons

    conv = [{"role": "system", "content": "s"}] + [{"role": r, "content": c} for r, c in
                                                     [("user", "u1"), ("assistant", "a1"), ("user", "u2"), ("assistant", "a2")]]
    assert drop_truncated_turns(conv, ["stop"] * 4) == (conv, 0)
    assert drop_truncated_turns(conv, ["stop", "stop", "stop", "length"]) == (conv[:3], 2)  # whole exchanges only
    assert drop_truncated_turns(conv, ["stop", "stop", "length", "stop"]) == (conv[:3], 2)
    assert drop_truncated_turns(conv, ["stop", "length", "stop", "stop"]) == (None, 4)
    assert drop_truncated_turns(None, ["length"]) == (None, 0)
    # backends without finish reasons: a turn that used every allowed token counts as cut
    assert turn_finish_reasons({"magpie_statistics": {"output_tokens": [3, 8]}}, 8) == ["stop", "length"]
    assert turn_finish_reasons({"magpie_statistics": {"finish_reasons": ["length", "stop"], "output_tokens": [2, 2]}}, 8) == ["length", "stop"]


def test_preference_pairs_never_use_a_cut_response():
    from smollm2_recipes.synth.preferences import pairs

    row = {"instruction": "What is 2 + 2?", "answer": "4", "generation_models": ["m"] * 3,
           "generations": ["2 + 2 = 4. The answer is 4.", "The answer is 5.", "The answer is 4"], "finish_reasons": ["stop", "stop", "length"]}
    out, summary = pairs([row], "arith", seed=0)
    assert [p["chosen"][0]["content"] for p in out] == ["2 + 2 = 4. The answer is 4."] and summary["truncated_dropped"] == 1
    only_cut_right = {**row, "finish_reasons": ["length", "stop", "stop"], "generations": ["The answer is 4.", "The answer is 5.", "It is 6"]}
    out, summary = pairs([only_cut_right], "arith", seed=0)
    assert out == [] and summary["no_contrast"] == 1 and summary["pairs"] == summary["preference_pairs"] == 0


def test_near_duplicates_with_the_offline_encoder():
    from smollm2_recipes.synth.dedup import near_duplicates

    texts = ["How do I reverse a list in Python?", "How can I reverse a Python list?", "What is the capital of France?"]
    assert near_duplicates(texts, threshold=0.8) == [None, 0, None]
    assert near_duplicates(texts, threshold=1.0) == [None, None, None]
    with pytest.raises(UserError, match="dedup_threshold"):
        near_duplicates(texts, threshold=0)


def test_every_synth_recipe_parses_and_real_backends_construct(monkeypatch):
    """A renamed key or backend option fails here, not on a GPU node. Real backends are built (not run)."""
    from smollm2_recipes import recipe_parsing
    from smollm2_recipes.synth import backends
    from smollm2_recipes.synth.magpie import MagpieArgs
    from smollm2_recipes.synth.preferences import PreferenceArgs
    from smollm2_recipes.synth.smol_tasks import SmolTaskArgs
    from smollm2_recipes.synth.textbooks import TextbookArgs

    kinds = {"magpie": MagpieArgs, "preferences": PreferenceArgs, "smol": SmolTaskArgs, "tiny_rewrite": SmolTaskArgs,
             "tiny_summarize": SmolTaskArgs, "tiny_constraints": SmolTaskArgs, "textbooks": TextbookArgs}
    recipes = sorted((REPO / "recipes" / "synth").glob("*.yaml"))
    assert {"tiny_magpie.yaml", "tiny_preferences.yaml", "magpie_ultra.yaml"} <= {p.name for p in recipes}
    monkeypatch.setenv("HF_TOKEN", "hf_dummy")
    built = set()
    for path in recipes:
        cls = next(c for k, c in kinds.items() if k in path.stem)
        (args,) = recipe_parsing.parse([cls], [str(path)])
        for spec in [args.llm] + list(getattr(args, "generators", None) or []) + [getattr(args, "tagger_llm", None), getattr(args, "judge_llm", None)]:
            if spec is None or spec.get("backend") == "transformers":
                continue  # the transformers backend runs for real in the pipeline tests
            llm = backends.build_llm(spec, max_new_tokens=8, temperature=0.7, magpie=cls is MagpieArgs and spec is args.llm)
            assert llm.generation_kwargs["max_new_tokens"] == 8
            built.add(type(llm).__name__)
    assert {"vLLM", "InferenceEndpointsLLM"} <= built
    assert type(backends.build_llm({"backend": "openai", "model": "gpt-4o-mini"}, max_new_tokens=4, temperature=0)).__name__ == "OpenAILLM"
    with pytest.raises(UserError, match="Unknown LLM backend 'tgi'"):
        backends.build_llm({"backend": "tgi", "model": "x"}, max_new_tokens=4, temperature=0)
    with pytest.raises(UserError, match=r"Unknown key 'tensor_parallel'"):
        backends.validate_llm({"backend": "vllm", "model": "x", "tensor_parallel": 2})


# ------------------------------------------------------------------------------------- pipelines


def _magpie_recipe(tmp_path, micro_llm, out, **extra):
    return _recipe(tmp_path, "magpie", output_dir=str(out), llm={"backend": "transformers", "model": str(micro_llm)},
                   num_rows=4, batch_size=2, n_turns=2, max_new_tokens=6, tag_max_new_tokens=6, dedup_threshold=0.99,
                   system_prompts={"math": ["You are a math tutor.", 1], "coding": ["You are a coding assistant.", 1]}, **extra)


@pytest.mark.slow
def test_magpie_tags_every_row_drops_cut_turns_and_resumes(tmp_path, micro_llm):
    from smollm2_recipes import cli

    out = tmp_path / "magpie"
    assert cli.run("synth magpie", [_magpie_recipe(tmp_path, micro_llm, out)]) == 0
    rows, summary = _rows(out / "data.jsonl"), json.loads((out / "summary.json").read_text())
    tagged = _rows(out / "tagged.jsonl")
    assert len(tagged) == summary["generated"] == 4
    # constrained decoding: even a random model's tags all parse
    assert summary["tags_parsed"] == summary["tags"]["parsed"] == summary["tags"]["total"] == 4
    assert all(r["tag_status"] == "ok" and r["difficulty"] in ("very easy", "easy", "medium", "hard", "very hard") for r in tagged)
    # a random model never ends a turn itself: every turn is cut at max_new_tokens, dropped and counted
    assert all(r["turn_finish_reasons"] == ["length"] * 4 and r["messages"] is None for r in tagged)
    assert rows == [] and summary["rows"] == summary["rows_written"] == 0 and summary["examples"] == []
    assert summary["truncated_written"] == 0 and summary["truncated_dropped"] == 16
    assert summary["conversations_dropped_at_a_cut_turn"] == 4

    # Resume: a finished run is served from distilabel's cache (no batch is written again), with the same rows.
    steps_data = next((out / "cache").glob("*/steps_data"))
    batches = {b: b.stat().st_mtime_ns for b in steps_data.glob("*/batch_*.json")}
    first = (out / "tagged.jsonl").read_text()
    assert cli.run("synth magpie", [_magpie_recipe(tmp_path, micro_llm, out)]) == 0
    assert (out / "tagged.jsonl").read_text() == first
    assert {b: b.stat().st_mtime_ns for b in steps_data.glob("*/batch_*.json")} == batches

    # A run killed half-way leaves a step's first batches without its last one: distilabel alone would take
    # that step as finished and return fewer rows. The re-run must redo only that step, reusing the others.
    tagger_batches = list(steps_data.glob("tagger_*/batch_*.json"))
    last = [b for b in tagger_batches if json.loads(b.read_text())["last_batch"]]
    assert len(tagger_batches) == 2 and len(last) == 1
    last[0].unlink()
    magpie_batches = {b: b.stat().st_mtime_ns for b in steps_data.glob("magpie_*/batch_*.json")}
    assert cli.run("synth magpie", [_magpie_recipe(tmp_path, micro_llm, out)]) == 0
    assert json.loads((out / "summary.json").read_text())["generated"] == 4
    assert {b: b.stat().st_mtime_ns for b in steps_data.glob("magpie_*/batch_*.json")} == magpie_batches  # not regenerated
    assert len(list(steps_data.glob("tagger_*/batch_*.json"))) == 2


@pytest.mark.slow
def test_magpie_with_the_135m_writes_only_finished_turns_that_train_with_smollm2_sft(tmp_path, micro_llm):
    """The real 135M ends some short turns itself (8 conversations: one that ends both turns within 192 tokens
    is then all but certain): written rows hold only turns it finished (checked against
    the per-turn finish reasons), and they train with `smollm2 sft` as they are."""
    from smollm2_recipes import cli

    out = tmp_path / "magpie135"
    recipe = _recipe(tmp_path, "magpie135", output_dir=str(out), llm={"backend": "transformers", "model": "embedded:SmolLM2-135M-Instruct",
                                                                       "magpie_pre_query_template": "<|im_start|>user\n"},
                     num_rows=8, batch_size=8, n_turns=1, max_new_tokens=192, dedup=False, seed=42,
                     system_prompts={"math": ["You are a math tutor. Keep every message to one or two sentences.", 1]})
    assert cli.run("synth magpie", [recipe]) == 0
    rows, summary, tagged = _rows(out / "data.jsonl"), json.loads((out / "summary.json").read_text()), _rows(out / "tagged.jsonl")
    assert summary["generated"] == 8 and summary["tags_parsed"] == 8 and len(rows) >= 1
    assert summary["truncated_written"] == 0 and summary["turns_with_unknown_finish"] == 0
    written = [r for r in tagged if r["messages"] is not None]
    assert len(written) == len(rows) and all(r["turn_finish_reasons"] == ["stop", "stop"] for r in written)
    assert summary["truncated_dropped"] == sum(r["turn_finish_reasons"].count("length") for r in tagged)
    assert summary["examples"] == rows[:3]
    for row in rows:
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"] and all(m["content"] for m in row["messages"])

    sft_out = tmp_path / "sft"
    assert cli.run("sft", [_recipe(tmp_path, "sft", model_name_or_path=str(micro_llm), dataset_name=str(out / "data.jsonl"),
                                   output_dir=str(sft_out), max_steps=1, per_device_train_batch_size=1, max_length=512,
                                   packing=False, save_strategy="no", report_to="none", learning_rate=1e-3, seed=0)]) == 0
    assert (sft_out / "model.safetensors").exists() or any(sft_out.rglob("*.safetensors"))


@pytest.mark.slow
def test_preferences_drop_every_response_a_random_model_never_finishes(tmp_path, micro_llm):
    from smollm2_recipes import cli

    out = tmp_path / "prefs"
    recipe = _recipe(tmp_path, "prefs", output_dir=str(out), llm={"backend": "transformers", "model": str(micro_llm)},
                     source="constraints", input=str(REPO / "recipes/synth/seeds/instructions.jsonl"),
                     constraint_ids=["change_case:english_lowercase"],
                     num_rows=4, batch_size=4, num_generations=4, max_new_tokens=3, temperature=1.0, seed=1)
    assert cli.run("synth preferences", [recipe]) == 0
    rows, summary = _rows(out / "data.jsonl"), json.loads((out / "summary.json").read_text())
    assert summary["verifier"] == "constraints" and summary["prompts"] == 4
    # a random model never ends its reply: every response is cut, none is chosen or rejected
    assert rows == [] and summary["pairs"] == summary["preference_pairs"] == 0 and summary["no_score"] == 4
    assert summary["truncated_dropped"] == 16
    assert all(r["finish_reasons"] == ["length"] * 4 for r in _rows(out / "scored.jsonl"))


@pytest.mark.slow
def test_preferences_from_the_135m_are_verified_and_train_with_smollm2_dpo(tmp_path, micro_llm):
    from smollm2_recipes import cli
    from smollm2_recipes.synth import ifeval

    out = tmp_path / "prefs135"
    recipe = _recipe(tmp_path, "prefs135", output_dir=str(out), llm={"backend": "transformers", "model": "embedded:SmolLM2-135M-Instruct"},
                     source="constraints", input=str(REPO / "recipes/synth/seeds/instructions.jsonl"), instruction_suffix="Answer in one sentence.",
                     constraint_ids=["punctuation:no_comma"], num_rows=3, batch_size=3, num_generations=4, max_new_tokens=64, temperature=1.0, seed=0)
    assert cli.run("synth preferences", [recipe]) == 0
    rows, summary = _rows(out / "data.jsonl"), json.loads((out / "summary.json").read_text())
    assert summary["pairs"] == len(rows) >= 1 and summary["pairs"] + summary["no_contrast"] + summary["no_score"] == 3
    assert summary["examples"] == rows[:3]
    scored = {r["instruction"]: r for r in _rows(out / "scored.jsonl")}
    for row in rows:
        assert [m["role"] for m in row["prompt"]] == ["user"] and row["chosen"][0]["role"] == row["rejected"][0]["role"] == "assistant"
        source = scored[row["prompt"][0]["content"]]
        cons = json.loads(source["constraints"])
        assert all(ifeval.check_all(row["chosen"][0]["content"], cons))  # chosen passes the checker,
        assert not all(ifeval.check_all(row["rejected"][0]["content"], cons))  # rejected does not,
        finished = {g.strip() for g, f in zip(source["generations"], source["finish_reasons"]) if f == "stop"}
        assert {row["chosen"][0]["content"], row["rejected"][0]["content"]} <= finished  # and both ended on <|im_end|>

    dpo_out = tmp_path / "dpo"
    assert cli.run("dpo", [_recipe(tmp_path, "dpo", model_name_or_path=str(micro_llm), dataset_name=str(out / "data.jsonl"),
                                   output_dir=str(dpo_out), max_steps=1, per_device_train_batch_size=1, max_length=128,
                                   save_strategy="no", report_to="none", learning_rate=1e-4, beta=0.5, seed=0)]) == 0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_synth_runs_with_pipeline_ray_on_a_local_ray_instance(tmp_path, micro_llm):
    """`--ray --ray_address` joins a Ray instance this test starts on this machine; distilabel's
    Pipeline.ray() runs each step as a Ray actor (their progress bars land in that instance's worker logs)."""
    import os
    import subprocess
    import sys

    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2)
    try:
        address = ray.get_runtime_context().gcs_address
        logs = Path(ray._private.worker.global_worker.node.get_logs_dir_path())
        out = tmp_path / "magpie_ray"
        recipe = _recipe(tmp_path, "magpie_ray", output_dir=str(out), llm={"backend": "transformers", "model": str(micro_llm)},
                         num_rows=2, batch_size=2, n_turns=1, max_new_tokens=4, dedup=False,
                         system_prompts={"math": ["You are a math tutor.", 1]})
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": str(REPO)}
        proc = subprocess.run([sys.executable, "-m", "smollm2_recipes", "synth", "magpie", recipe, "--ray", "--ray_address", address],
                              cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, proc.stderr[-4000:]
        summary = json.loads((out / "summary.json").read_text())
        assert summary["generated"] == 2 and summary["tags_parsed"] == 2
        worker_logs = "".join(p.read_text(errors="replace") for p in logs.glob("worker-*"))
        assert "magpie generations" in worker_logs and "tagger generations" in worker_logs
    finally:
        ray.shutdown()


def test_unreachable_ray_address_is_one_clear_line(tmp_path):
    from smollm2_recipes.synth import magpie

    port = _free_port()
    out = tmp_path / "out"
    recipe = _recipe(tmp_path, "ray_bad", output_dir=str(out))
    with pytest.raises(UserError, match=f"Ray address 127.0.0.1:{port} is unreachable"):
        magpie.main([recipe, "--ray", "--ray_address", f"127.0.0.1:{port}"])
    with pytest.raises(UserError, match="ray_address is set but ray is not"):
        magpie.main([recipe, "--ray_address", f"127.0.0.1:{port}"])
    assert not out.exists()  # nothing written before the check


@pytest.mark.slow
def test_openai_backend_against_transformers_serve_on_loopback(tmp_path):
    """The OpenAI-compatible backend for real: `transformers serve` with the embedded 135M on 127.0.0.1, and
    `smollm2 synth rewrite` talking to it through distilabel's OpenAILLM."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    from smollm2_recipes import assets, cli

    model = assets.resolve("embedded:SmolLM2-135M-Instruct")
    port = _free_port()
    serve = Path(sys.executable).with_name("transformers")
    log = open(tmp_path / "serve.log", "w")
    server = subprocess.Popen([str(serve), "serve", model, "--host", "127.0.0.1", "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.time() + 300
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
                time.sleep(1)
        out = tmp_path / "rewrite"
        recipe = _recipe(tmp_path, "rewrite_openai", output_dir=str(out), input=str(REPO / "recipes/synth/seeds/emails.jsonl"),
                         styles=["concise"], num_rows=2, batch_size=2, max_new_tokens=24, temperature=0.0, seed=0,
                         llm={"backend": "openai", "model": model, "base_url": f"http://127.0.0.1:{port}/v1"})
        assert cli.run("synth rewrite", [recipe]) == 0
        rows, summary = _rows(out / "data.jsonl"), json.loads((out / "summary.json").read_text())
        assert summary["generated"] == 2 and len(rows) == summary["rows_written"] >= 1
        assert all(r["messages"][1]["role"] == "assistant" and r["messages"][1]["content"].strip() for r in rows)
        assert "POST /v1/chat/completions" in (tmp_path / "serve.log").read_text()  # the answers came from the server
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def test_bad_recipes_fail_with_one_clear_message(tmp_path):
    from smollm2_recipes import cli

    cases = [
        ("synth magpie", {"min_quality": "superb"}, "min_quality 'superb'"),
        ("synth magpie", {"llm": {"backend": "tgi", "model": "x"}}, "Unknown LLM backend 'tgi'"),
        ("synth preferences", {"verifier": "arith", "source": "file", "input": "x.jsonl"}, "verifier 'arith' needs source 'arith'"),
        ("synth preferences", {"num_generations": 1}, "at least 2 responses"),
        ("synth rewrite", {"styles": ["pirate"]}, "Unknown rewrite style"),
        ("synth textbooks", {"audiences": ["toddlers"]}, "Unknown audiences"),
        ("synth summarize", {"input": str(tmp_path / "missing.jsonl")}, "does not exist"),
        ("synth magpie", {"push_to_hub": True}, "hub_repo_id"),
    ]
    for command, keys, message in cases:
        recipe = _recipe(tmp_path, "bad", output_dir=str(tmp_path / "out"), **keys)
        with pytest.raises(UserError, match=message):
            cli_target = cli.COMMANDS[command][0]
            module, func = cli_target.split(":")
            getattr(__import__(module, fromlist=[func]), func)([recipe])


@pytest.mark.slow
def test_smol_rewrite_summarize_constraints_write_chat_rows(tmp_path, micro_llm):
    from smollm2_recipes import cli

    llm = {"backend": "transformers", "model": str(micro_llm)}
    seeds = REPO / "recipes/synth/seeds"
    common = dict(llm=llm, num_rows=3, batch_size=3, max_new_tokens=4, seed=0)
    for command, keys, kept_column in [
        ("rewrite", dict(input=str(seeds / "emails.jsonl"), styles=["concise", "friendly"]), "style"),
        ("summarize", dict(input=str(seeds / "news.jsonl")), "kind"),
    ]:
        out = tmp_path / command
        assert cli.run(f"synth {command}", [_recipe(tmp_path, command, output_dir=str(out), **common, **keys)]) == 0
        rows, summary = _rows(out / "data.jsonl"), json.loads((out / "summary.json").read_text())
        assert summary["generated"] == 3 and summary["rows_written"] + summary["empty_generations"] == 3
        for row in rows:
            user, assistant = row["messages"]
            assert user["role"] == "user" and assistant["role"] == "assistant" and assistant["content"]
            assert any(user["content"].endswith(seed["text"]) for seed in _rows(seeds / ("emails.jsonl" if command == "rewrite" else "news.jsonl")))
            assert row[kept_column] in (["concise", "friendly"] if command == "rewrite" else ["news"])

    # constraints: only rows whose response passes the IFEval-style checker survive

    out = tmp_path / "constraints"
    recipe = _recipe(tmp_path, "constraints", output_dir=str(out), input=str(seeds / "instructions.jsonl"), text_column="instruction",
                     constraint_ids=["keywords:forbidden_words", "change_case:english_capital"], **{**common, "num_rows": 4, "batch_size": 4})
    assert cli.run("synth constraints", [recipe]) == 0
    rows, summary = _rows(out / "data.jsonl"), json.loads((out / "summary.json").read_text())
    assert summary["generated"] == 4
    assert summary["rows_written"] == len(rows) == round(summary["pass_rate"] * 4)
    assert summary["rows_written"] + summary["rejected_by_checker"] + summary["empty_generations"] == 4
    for row in rows:
        assert row["constraint_ids"][0] in ("keywords:forbidden_words", "change_case:english_capital")
        assert row["messages"][1]["content"] and row["messages"][0]["content"].endswith(".")


@pytest.mark.slow
def test_textbooks_retrieve_a_seed_per_topic_and_write_pretraining_text(tmp_path, micro_llm):
    from smollm2_recipes import cli
    from smollm2_recipes.synth.textbooks import retrieve

    corpus = [{"text": "Photosynthesis is how green plants use sunlight, water and carbon dioxide to make glucose and oxygen in their leaves."},
              {"text": "A fraction such as three quarters names part of a whole: the denominator counts the equal parts, the numerator how many."},
              {"text": "The French Revolution began in 1789 and ended the absolute monarchy of Louis XVI, reshaping politics in Europe."}]
    seed_file = tmp_path / "corpus.jsonl"
    seed_file.write_text("".join(json.dumps(r) + "\n" for r in corpus))
    assert [i for i, _ in retrieve(["how plants make food (biology)", "adding fractions (math)"], [r["text"] for r in corpus], "embedded:minilm")] == [0, 1]

    out = tmp_path / "textbooks"
    recipe = _recipe(tmp_path, "textbooks", output_dir=str(out), llm={"backend": "transformers", "model": str(micro_llm)},
                     topics={"biology": ["how plants make food"], "math": ["adding fractions"]}, seed_corpus=str(seed_file),
                     audiences=["middle_school", "college"], formats=["textbook"], num_rows=4, batch_size=4, max_new_tokens=6)
    assert cli.run("synth textbooks", [recipe]) == 0
    rows = _rows(out / "data.jsonl")
    assert 1 <= len(rows) <= 4 and all(r["text"] for r in rows)
    assert {(r["topic"], r["audience"]) for r in rows} <= {(t, a) for t in ("how plants make food", "adding fractions") for a in ("middle_school", "college")}
    assert all(r["seed_index"] == (0 if r["topic"] == "how plants make food" else 1) for r in rows)
    from datasets import load_dataset

    assert load_dataset("json", data_files=str(out / "data.jsonl"), split="train").column_names[0] == "text"  # a plain pretraining source
