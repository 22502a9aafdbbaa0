"""The bad-input battery (issue 17): every row is a command line a user might type, run through the real CLI
entry point (`smollm2_recipes.cli.main`, in-process: each case stops at validation, so no model trains). Each
must exit non-zero with ONE line on stderr (no traceback) containing the expected fragment, and leave every
file that existed before byte-identical (sha256 of the whole sandbox and of the repository's recipes).

A new command joins by adding rows. `{w}` is the sandbox folder, `{r}` the repository's recipes folder."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from smollm2_recipes import cli

pytestmark = pytest.mark.slow  # ~100 s for 109 cases on the shared 2-core machine (most of it importing torch/TRL once)
REPO = Path(__file__).resolve().parents[1]
P, C, S, D = ("{r}/smollm2/tiny/pretrain.yaml", "{r}/smollm2/tiny/context_extension.yaml", "{r}/smollm2/tiny/sft.yaml",
              "{r}/smollm2/tiny/dpo.yaml")
NEW = ["--output_dir", "{w}/new_run"]  # a folder that does not exist: a refused case must not create it

# (id, argv, expected fragment of the one stderr line[, "repo": run from the checkout instead of the sandbox])
CASES: list[tuple] = [
    # ---- the command table
    ("unknown-command", ["pretrian", P], "unknown command 'pretrian'"),
    # ---- pretrain: recipe files
    ("pretrain-no-recipe", ["pretrain"], "No recipe given"),
    ("pretrain-missing-recipe", ["pretrain", "{w}/missing.yaml"], "does not exist"),
    ("pretrain-recipe-is-dir", ["pretrain", "{w}/recipe_dir"], "is a directory"),
    ("pretrain-bad-yaml", ["pretrain", "{w}/bad.yaml"], "not valid YAML"),
    ("pretrain-list-yaml", ["pretrain", "{w}/list.yaml"], "YAML mapping"),
    ("pretrain-unknown-key", ["pretrain", "{w}/unknown_key.yaml"], "Did you mean 'learning_rate'"),
    ("pretrain-misspelt-flag", ["pretrain", P, "--lerning_rate", "1e-3", *NEW], "Did you mean 'learning_rate'"),
    # ---- pretrain: numbers
    ("pretrain-lr-negative", ["pretrain", P, "--learning_rate", "-1", *NEW], "learning_rate -1.0 is out of range"),
    ("pretrain-lr-zero", ["pretrain", P, "--learning_rate", "0", *NEW], "learning_rate 0.0 is out of range"),
    ("pretrain-lr-not-a-number", ["pretrain", P, "--learning_rate", "abc", *NEW], "invalid float value: 'abc'"),
    ("pretrain-batch-zero", ["pretrain", P, "--per_device_train_batch_size", "0", *NEW], "per_device_train_batch_size 0"),
    ("pretrain-weight-decay-negative", ["pretrain", P, "--weight_decay", "-0.1", *NEW], "weight_decay -0.1"),
    ("pretrain-warmup-negative", ["pretrain", P, "--warmup_steps", "-5", *NEW], "warmup_steps"),
    ("pretrain-beta2-one", ["pretrain", P, "--adam_beta2", "1.0", *NEW], "adam_beta2 1.0 is out of range"),
    ("pretrain-eps-zero", ["pretrain", P, "--adam_epsilon", "0", *NEW], "adam_epsilon 0.0"),
    ("pretrain-seq-len-zero", ["pretrain", P, "--seq_len", "0", *NEW], "seq_len 0"),
    ("pretrain-global-batch-negative", ["pretrain", P, "--global_batch_tokens", "-2048", *NEW], "global_batch_tokens -2048"),
    ("pretrain-lr-nan", ["pretrain", P, "--learning_rate", "nan", *NEW], "give a finite number"),
    ("pretrain-spike-action", ["pretrain", P, "--spike_action", "explode", *NEW], "spike_action 'explode'"),
    ("pretrain-averaging-kind", ["pretrain", P, "--weight_averaging", "median", *NEW], "weight_averaging 'median'"),
    ("pretrain-ema-decay", ["pretrain", P, "--ema_decay", "1.5", *NEW], "ema_decay 1.5"),
    # ---- pretrain: the plan
    ("pretrain-accumulation-contradicts", ["pretrain", P, "--gradient_accumulation_steps", "3", *NEW], "contradicts global_batch_tokens"),
    ("pretrain-batch-does-not-split", ["pretrain", P, "--per_device_train_batch_size", "3", *NEW], "cannot be split"),
    ("pretrain-global-batch-not-seq-multiple", ["pretrain", P, "--global_batch_tokens", "2000", *NEW], "not a multiple of seq_len"),
    ("pretrain-max-steps-disagree", ["pretrain", P, "--max_steps", "7", *NEW], "stage budgets add up to"),
    ("pretrain-decay-too-long", ["pretrain", P, "--lr_scheduler_kwargs", '{"num_decay_steps": 10000}', *NEW], "longer than the run"),
    ("pretrain-cooldown-without-decay", ["pretrain", P, "--cooldown_from", "{w}/unfinished/checkpoint-4", *NEW], "decay_steps"),
    ("pretrain-resume-nothing", ["pretrain", P, "--resume_from_checkpoint", "{w}/nowhere/checkpoint-3", *NEW], "checkpoint"),
    # ---- pretrain: the output folder and the model
    ("pretrain-output-is-file", ["pretrain", P, "--output_dir", "{w}/a_file.txt"], "is an existing file"),
    ("pretrain-output-finished", ["pretrain", P, "--output_dir", "{w}/finished_pretrain"], "already holds a finished run"),
    ("pretrain-output-unfinished", ["pretrain", P, "--output_dir", "{w}/unfinished"], "--resume_from_checkpoint latest"),
    ("pretrain-resume-invalid-override", ["pretrain", P, "--output_dir", "{w}/unfinished", "--resume_from_checkpoint", "latest",
                                          "--learning_rate", "-1"], "learning_rate -1.0"),
    ("pretrain-resume-plan-contradiction", ["pretrain", P, "--output_dir", "{w}/unfinished", "--resume_from_checkpoint", "latest",
                                            "--max_steps", "7"], "stage budgets add up to"),
    ("pretrain-model-missing", ["pretrain", P, "--model", "{w}/nowhere/model", *NEW], "does not exist yet"),
    ("pretrain-model-truncated", ["pretrain", P, "--model", "{w}/truncated_model", *NEW], "model.safetensors is truncated"),
    # ---- extend-context
    ("extend-context-no-pretrain-yet", ["extend-context", C, *NEW], "run that stage first"),
    ("extend-context-lr-negative", ["extend-context", C, "--learning_rate", "-1", *NEW], "learning_rate -1.0"),
    ("extend-context-positions-zero", ["extend-context", C, "--max_position_embeddings", "0", *NEW], "max_position_embeddings 0"),
    ("extend-context-rope-zero", ["extend-context", C, "--rope_theta", "0", *NEW], "rope_theta 0.0"),
    ("extend-context-output-is-file", ["extend-context", C, "--model", "{w}/micro_model", "--max_position_embeddings", "4096", "--output_dir", "{w}/a_file.txt"], "is an existing file"),
    ("extend-context-model-no-config", ["extend-context", C, "--model", "{w}/no_config_model", *NEW], "has no config.json"),
    # ---- sft
    ("sft-no-recipe", ["sft"], "No recipe given"),
    ("sft-recipe-is-dir", ["sft", "{w}/recipe_dir"], "is a directory"),
    ("sft-lr-negative", ["sft", S, "--learning_rate", "-1", *NEW], "learning_rate -1.0"),
    ("sft-lr-zero", ["sft", S, "--learning_rate", "0", *NEW], "learning_rate 0.0"),
    ("sft-arith-before-negative", ["sft", S, "--arith_eval_before_samples", "-3", *NEW], "arith_eval_before_samples must be"),
    ("sft-batch-zero", ["sft", S, "--per_device_train_batch_size", "0", *NEW], "per_device_train_batch_size 0"),
    ("sft-max-length-zero", ["sft", S, "--max_length", "0", *NEW], "max_length 0"),
    ("sft-epochs-not-a-number", ["sft", S, "--num_train_epochs", "three", *NEW], "invalid float value: 'three'"),
    ("sft-epochs-negative", ["sft", S, "--num_train_epochs", "-1", *NEW], "num_train_epochs -1.0"),
    ("sft-output-is-file", ["sft", S, "--output_dir", "{w}/a_file.txt"], "is an existing file"),
    ("sft-output-finished", ["sft", S, "--output_dir", "{w}/finished_sft"], "already holds a finished run"),
    ("sft-model-missing", ["sft", S, "--model_name_or_path", "{w}/nowhere/model", *NEW], "does not exist"),
    ("sft-model-truncated", ["sft", S, "--model_name_or_path", "{w}/truncated_model", *NEW], "model.safetensors is truncated"),
    ("sft-model-no-config", ["sft", S, "--model_name_or_path", "{w}/no_config_model", *NEW], "has no config.json"),
    ("sft-model-is-file", ["sft", S, "--model_name_or_path", "{w}/a_file.txt", *NEW], "is a file"),
    ("sft-accumulation-contradicts", ["sft", S, "--global_batch_size", "8", "--gradient_accumulation_steps", "3", *NEW],
     "contradicts global_batch_size 8"),
    ("sft-global-batch-does-not-split", ["sft", S, "--global_batch_size", "7", "--per_device_train_batch_size", "2", *NEW], "cannot be split"),
    ("sft-global-batch-zero", ["sft", S, "--global_batch_size", "0", *NEW], "global_batch_size 0"),
    ("sft-template-missing", ["sft", S, "--chat_template_path", "nope.jinja", *NEW], "chat_template_path 'nope.jinja'"),
    ("sft-unknown-key", ["sft", S, "--max_seq_lenght", "8", *NEW], "Unknown key 'max_seq_lenght'"),
    ("sft-liger-on-cpu", ["sft", S, "--use_liger_kernel", "true", *NEW], "use_liger_kernel"),
    ("sft-data-broken-line", ["sft", S, "--model_name_or_path", "{w}/micro_model", "--dataset_mixture", '[{"path": "{w}/broken_line.jsonl"}]', *NEW],
     "broken_line.jsonl line 2 is not a JSON object"),
    ("sft-data-empty-file", ["sft", S, "--model_name_or_path", "{w}/micro_model", "--dataset_mixture", '[{"path": "{w}/empty.jsonl"}]', *NEW],
     "holds no rows"),
    ("sft-qlora-on-cpu", ["sft", S, "--load_in_4bit", "true", *NEW], "QLoRA"),
    # ---- dpo
    ("dpo-no-sft-yet", ["dpo", D, *NEW], "output of `smollm2 sft`"),
    ("dpo-lr-negative", ["dpo", D, "--learning_rate", "-1", *NEW], "learning_rate -1.0"),
    ("dpo-beta-zero", ["dpo", D, "--beta", "0", *NEW], "beta 0.0"),
    ("dpo-prompt-length-zero", ["dpo", D, "--max_prompt_length", "0", *NEW], "max_prompt_length 0"),
    ("dpo-rpo-alpha-negative", ["dpo", D, "--model_name_or_path", "{w}/micro_model", "--rpo_alpha", "-1", *NEW], "rpo_alpha must be >= 0"),
    ("dpo-output-is-file", ["dpo", D, "--model_name_or_path", "{w}/micro_model", "--output_dir", "{w}/a_file.txt"], "is an existing file"),
    ("dpo-model-truncated", ["dpo", D, "--model_name_or_path", "{w}/truncated_model", *NEW], "model.safetensors is truncated"),
    # ---- eval, chat
    ("eval-limit-zero", ["eval", "{w}/micro_model", "--tasks", "arith", "--limit", "0", *NEW], "--limit must be a positive"),
    ("eval-batch-zero", ["eval", "{w}/micro_model", "--tasks", "arith", "--batch_size", "0", *NEW], "batch_size 0"),
    ("eval-model-missing", ["eval", "{w}/nowhere/model", "--tasks", "arith", *NEW], "does not exist"),
    ("eval-model-truncated", ["eval", "{w}/truncated_model", "--tasks", "arith", *NEW], "model.safetensors is truncated"),
    ("eval-compare-missing", ["eval", "compare", "{w}/nowhere/a", "{w}/nowhere/b"], "nowhere/a/results.json does not exist"),
    ("eval-compare-model-folder", ["eval", "compare", "{w}/micro_model", "{w}/micro_model"], "written by `smollm2 eval"),
    ("eval-compare-task", ["eval", "compare", "{w}/micro_model", "{w}/micro_model", "--task", "mmlu"], "invalid choice: 'mmlu'"),
    ("chat-model-missing", ["chat", "{w}/nowhere/model", "--prompt", "hi"], "nowhere/model"),
    ("chat-model-truncated", ["chat", "{w}/truncated_model", "--prompt", "hi"], "model.safetensors is truncated"),
    ("chat-max-new-tokens-text", ["chat", "--max_new_tokens", "many"], "invalid int value: 'many'"),
    # ---- average, merge, upload, export
    ("average-one-checkpoint", ["average", "{w}/micro_model", *NEW], "at least two"),
    ("average-missing", ["average", "{w}/nowhere/a", "{w}/nowhere/b", *NEW], "does not exist"),
    ("average-truncated", ["average", "{w}/micro_model", "{w}/truncated_model", *NEW], "model.safetensors is truncated"),
    ("average-no-output", ["average", "{w}/micro_model", "{w}/micro_model"], "--output_dir"),
    ("average-weight-text", ["average", "{w}/micro_model", "{w}/micro_model", "--weights", "a", "b", *NEW], "invalid float value"),
    ("merge-adapter-missing", ["merge", "{w}/nowhere/adapter", "{w}/merged"], "nowhere/adapter"),
    ("merge-no-args", ["merge"], "required"),
    ("upload-folder-missing", ["upload", "{w}/nowhere/model", "--repo-id", "me/model", "--dry-run"], "nowhere/model"),
    ("upload-no-repo-id", ["upload", "{w}/micro_model", "--dry-run"], "--repo-id"),
    ("export-model-truncated", ["export", "gguf", "{w}/truncated_model", "--out", "{w}/model.gguf"], "model.safetensors is truncated"),
    ("export-model-missing", ["export", "gguf", "{w}/nowhere/model", "--out", "{w}/model.gguf"], "nowhere/model"),
    # ---- data, corpus
    ("data-inspect-missing-recipe", ["data", "inspect", "{w}/missing.yaml"], "does not exist"),
    ("data-inspect-recipe-is-dir", ["data", "inspect", "{w}/recipe_dir"], "is a directory"),
    ("data-inspect-tokens-text", ["data", "inspect", P, "--tokens", "lots"], "invalid float value"),
    ("data-tokenize-missing-recipe", ["data", "tokenize", "{w}/missing.yaml", "--output_dir", "{w}/shards"], "does not exist"),
    ("data-tokenize-no-output", ["data", "tokenize", P], "--output_dir"),
    ("corpus-build-unknown", ["corpus", "build", "nonsense"], "nonsense"),
    # ---- synth, curate
    ("synth-magpie-missing-recipe", ["synth", "magpie", "{w}/missing.yaml"], "does not exist"),
    ("synth-magpie-unknown-category", ["synth", "magpie", "{r}/synth/tiny_magpie.yaml", "--categories", "poetry", "--output_dir", "{w}/new_run"],
     "'poetry' is not one of the recipe's categories"),
    ("synth-preferences-missing-recipe", ["synth", "preferences", "{w}/missing.yaml"], "does not exist"),
    ("synth-rewrite-missing-recipe", ["synth", "rewrite", "{w}/missing.yaml"], "does not exist"),
    ("synth-summarize-recipe-is-dir", ["synth", "summarize", "{w}/recipe_dir"], "is a directory"),
    ("synth-constraints-bad-yaml", ["synth", "constraints", "{w}/bad.yaml"], "not valid YAML"),
    ("synth-textbooks-missing-recipe", ["synth", "textbooks", "{w}/missing.yaml"], "does not exist"),
    ("curate-annotate-missing-recipe", ["curate", "annotate", "{w}/missing.yaml"], "does not exist"),
    ("curate-classifier-missing-recipe", ["curate", "train-classifier", "{w}/missing.yaml"], "does not exist"),
    ("curate-filter-recipe-is-dir", ["curate", "filter", "{w}/recipe_dir"], "is a directory"),
    ("curate-decontaminate-list-yaml", ["curate", "decontaminate", "{w}/list.yaml"], "YAML mapping"),
    ("curate-dedup-missing-input", ["curate", "dedup", "--input", "{w}/nowhere.jsonl", "--output_dir", "{w}/new_run"], "does not exist"),
    ("curate-dedup-output-is-file", ["curate", "dedup", "--input", "{w}/docs.jsonl", "--output_dir", "{w}/a_file.txt"], "is an existing file"),
    # ---- assets, model-info, quickstart
    ("assets-unknown-flag", ["assets", "--bogus"], "unrecognized arguments: --bogus"),
    ("model-info-unknown-preset", ["model-info", "999B"], "999B"),
    ("model-info-no-preset", ["model-info"], "preset"),
    ("quickstart-unknown-step", ["quickstart", "--only", "nonsense", "--output_dir", "{w}/qs"], "nonsense", "repo"),
]


def _digests(*roots: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for root in roots for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """The sandbox every case runs in (also the working directory): broken recipes, a file where a folder is
    expected, finished and unfinished runs, a good, a truncated and a config-less model folder."""
    from safetensors.torch import save_file
    import torch

    from smollm2_recipes.models import build_model
    from smollm2_recipes.runkit import load_tokenizer

    w = tmp_path_factory.mktemp("bad_inputs")
    (w / "recipe_dir").mkdir()
    (w / "recipe_dir" / "inside.yaml").write_text("learning_rate: 1.0e-3\n")
    (w / "bad.yaml").write_text("learning_rate: [1,\n")
    (w / "list.yaml").write_text("- 1\n- 2\n")
    (w / "unknown_key.yaml").write_text((REPO / "recipes/smollm2/tiny/pretrain.yaml").read_text() + "\nlerning_rate: 1.0e-3\n")
    (w / "a_file.txt").write_text("not a folder\n")
    (w / "docs.jsonl").write_text('{"text": "one document"}\n')
    (w / "broken_line.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}\n{not json\n')
    (w / "empty.jsonl").write_text("")
    finished = w / "finished_pretrain"
    finished.mkdir()
    for name in ("run_complete.json", "plan.json"):
        (finished / name).write_text(json.dumps({"global_step": 24}))
    (finished / "resolved_config.yaml").write_text("learning_rate: 0.003\n")
    unfinished = w / "unfinished"
    (unfinished / "checkpoint-4").mkdir(parents=True)
    (unfinished / "checkpoint-4" / "checkpoint_complete.json").write_text(json.dumps({"step": 4}))
    (unfinished / "checkpoint-4" / "trainer_state.json").write_text(json.dumps({"global_step": 4}))
    (unfinished / "resolved_config.yaml").write_text("learning_rate: 0.003\n")
    (unfinished / "plan.json").write_text(json.dumps({"max_steps": 24}))
    model = build_model("micro", seed=0)
    model.save_pretrained(w / "micro_model")
    load_tokenizer("embedded:smollm2-tokenizer").save_pretrained(w / "micro_model")
    shutil.copytree(w / "micro_model", w / "truncated_model")
    weights = w / "truncated_model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    (w / "no_config_model").mkdir()
    save_file({"w": torch.zeros(4)}, str(w / "no_config_model" / "model.safetensors"))
    (w / "finished_sft").mkdir()
    (w / "finished_sft" / "model.safetensors").write_bytes(b"weights of a finished run")
    return w


@pytest.mark.parametrize("argv,fragment,cwd", [(c[1], c[2], c[3] if len(c) > 3 else "sandbox") for c in CASES],
                         ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_writes_nothing(world, argv, fragment, cwd, capfd, monkeypatch):
    monkeypatch.chdir(REPO if cwd == "repo" else world)
    argv = [a.replace("{w}", str(world)).replace("{r}", str(REPO / "recipes")) for a in argv]
    before = _digests(world, REPO / "recipes")
    try:
        rc = cli.main(argv)
    except SystemExit as exit_:
        rc = exit_.code
    out, err = capfd.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc not in (0, None), f"exit {rc}; stderr: {err[-2000:]}"
    assert "Traceback" not in err, err[-3000:]
    assert len(lines) == 1, f"{len(lines)} lines on stderr:\n{err[-3000:]}"
    assert fragment in lines[0], lines[0]
    assert _digests(world, REPO / "recipes") == before  # nothing that existed was touched ...
    assert not (world / "new_run").exists() and not (world / "qs").exists()  # ... and a refused run leaves no folder


def test_battery_covers_every_command():
    named = {" ".join(c[1][:2]) if " ".join(c[1][:2]) in cli.COMMANDS else c[1][0] for c in CASES}
    assert set(cli.COMMANDS) <= named, sorted(set(cli.COMMANDS) - named)
    assert len(CASES) >= 60
