"""Every post-training recipe parses with the published settings; handbook-style recipes run unchanged;
the global batch stays 128 whatever the process count."""

import json
from pathlib import Path

import pytest

from smollm2_recipes import cli
from smollm2_recipes import recipe_parsing
from smollm2_recipes.errors import UserError
from smollm2_recipes.post_training import common
from smollm2_recipes.data.source_spec import SourceSpec
from smollm2_recipes.post_training.data import parse_mixture

ROOT = Path(__file__).parent.parent
ASSETS = Path(__file__).parent / "assets"


def _parse(stage, recipe, *argv):
    """(training args, model args, data args) of a post-training recipe."""
    from smollm2_recipes.post_training import dpo, sft

    return recipe_parsing.parse((sft if stage == "sft" else dpo).CONFIG_TYPES, [str(recipe), *argv])[:3]


@pytest.mark.parametrize("size,data,lr", [("135M", "HuggingFaceTB/smol-smoltalk", 1e-3), ("360M", "HuggingFaceTB/smol-smoltalk", 1e-3),
                                          ("1.7B", "HuggingFaceTB/smoltalk", 3e-4)])
def test_published_sft_recipes(size, data, lr):
    args, model, data_args = _parse("sft", ROOT / f"recipes/smollm2/{size}/sft.yaml")
    assert model.model_name_or_path == f"HuggingFaceTB/SmolLM2-{size}" and data_args.dataset_name == data
    assert (data_args.dataset_config == "all") == (size == "1.7B")
    assert (args.learning_rate, args.lr_scheduler_type.value, args.warmup_steps, args.num_train_epochs) == (lr, "cosine", 0.1, 2)
    assert (args.max_length, args.global_batch_size, args.seed, args.bf16) == (8192, 128, 42, True)
    assert args.activation_checkpointing and args.packing and args.packing_strategy == "bfd" and args.assistant_only_loss
    assert data_args.decontaminate == ["humaneval"]  # as published


@pytest.mark.parametrize("size,epochs", [("135M", 2), ("360M", 2), ("1.7B", 3)])
def test_published_dpo_recipes(size, epochs):
    args, model, data_args = _parse("dpo", ROOT / f"recipes/smollm2/{size}/dpo.yaml")
    assert data_args.dataset_name == "HuggingFaceH4/ultrafeedback_binarized"
    assert (data_args.dataset_train_split, data_args.dataset_test_split) == ("train_prefs", "test_prefs")
    assert (args.beta, args.learning_rate, args.num_train_epochs, args.max_length, args.max_prompt_length) == (0.5, 1e-6, epochs, 1024, 512)
    assert args.global_batch_size == 128 and args.precompute_ref_log_probs
    assert model.model_name_or_path == f"outputs/smollm2/{size}/sft"
    assert data_args.decontaminate == ["humaneval"]  # as published


@pytest.mark.parametrize("world,per_device,accum", [(1, 4, 32), (2, 4, 16), (8, 4, 4), (8, 16, 1)])
def test_global_batch_is_kept_across_process_counts(monkeypatch, world, per_device, accum):
    args, _, _ = _parse("sft", ROOT / "recipes/smollm2/1.7B/sft.yaml", "--per_device_train_batch_size", str(per_device))
    monkeypatch.setenv("WORLD_SIZE", str(world))  # as `accelerate launch` sets it (after parsing: no real process group here)
    common.apply_global_batch(args, args.global_batch_size)
    assert args.gradient_accumulation_steps == accum
    assert args.gradient_accumulation_steps * per_device * world == 128


def test_impossible_global_batch_is_refused(monkeypatch):
    args, _, _ = _parse("sft", ROOT / "recipes/smollm2/1.7B/sft.yaml")
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(UserError, match="global_batch_size 128 .* cannot be split over 3 process"):
        common.apply_global_batch(args, args.global_batch_size)


def test_handbook_dpo_recipe_parses_and_maps_its_mixture():
    from transformers.integrations import get_available_reporting_integrations

    # the recipe pushes to the Hub and reports to wandb: parsing refuses both offline / without wandb (test_clear_errors.py)
    services = ["--push_to_hub", "false"] + (["--report_to", "tensorboard"] if "wandb" not in get_available_reporting_integrations() else [])
    args, model, data_args = _parse("dpo", ASSETS / "handbook_smollm2_dpo.yaml", *services)
    assert model.dtype == "bfloat16" and args.warmup_steps == 0.1 and args.max_prompt_length == 512
    sources, seed, test_size = parse_mixture(data_args)
    assert [(s.name, s.config, s.split, s.columns, s.weight) for s in sources] == [
        ("HuggingFaceH4/ultrafeedback_binarized", "default", "train_prefs", ["chosen", "rejected"], 1.0),
        ("HuggingFaceH4/ultrafeedback_binarized", "default", "test_prefs", ["chosen", "rejected"], 1.0)]
    assert (seed, test_size) == (0, 2000)


def test_hub_sources_are_loaded_up_to_the_network_boundary(monkeypatch):
    """Offline, the real Hub path is taken and fails with one clear line naming the dataset."""
    from smollm2_recipes.data.source_spec import load_source

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    spec = SourceSpec(name="uf", path="HuggingFaceH4/ultrafeedback_binarized", config="default", split="train_prefs")
    with pytest.raises(UserError, match="source 'uf': cannot load dataset 'HuggingFaceH4/ultrafeedback_binarized' config 'default'"):
        load_source(spec)


@pytest.mark.slow
def test_handbook_sft_recipe_runs_unchanged(micro_model_dir, tmp_path, capsys):
    out = tmp_path / "hb"
    rc = cli.run("sft", [str(ASSETS / "handbook_smollm2_sft.yaml"), "--model_name_or_path", micro_model_dir, "--output_dir", str(out),
                         "--max_steps", "1", "--max_train_samples", "8", "--bf16", "false", "--per_device_train_batch_size", "2",
                         "--gradient_accumulation_steps", "1", "--max_length", "256", "--per_device_eval_batch_size", "50"])
    err = capsys.readouterr().err
    assert rc == 0, err
    for old in ("torch_dtype", "warmup_ratio", "overwrite_output_dir", "max_seq_length"):
        assert f"recipe key '{old}'" in err  # mapped or dropped with a note, not an error
    assert "generation markers" in err  # handbook's inline template, swapped for the marked twin
    assert (out / "model.safetensors").is_file()
    assert any("eval_loss" in e for e in json.loads((out / "log_history.json").read_text()))  # its test split was used


def _services():
    from transformers.integrations import get_available_reporting_integrations

    # both push to the Hub and report to wandb: parsing refuses those offline / without wandb (test_clear_errors.py)
    return ["--push_to_hub", "false"] + (["--report_to", "tensorboard"] if "wandb" not in get_available_reporting_integrations() else [])


def test_handbook_nov2024_sft_recipe_parses_into_the_one_schema(capsys):
    args, model, data_args = _parse("sft", ASSETS / "handbook_nov2024_smollm2_sft.yaml", *_services())
    err = capsys.readouterr().err
    for key in ("dataset_mixer", "dataset_configs", "dataset_splits", "tokenizer_name_or_path", "evaluation_strategy",
                "max_seq_length", "use_flash_attention_2", "torch_dtype", "warmup_ratio"):
        assert err.count(f"recipe key '{key}") == 1, key  # one line each, printed once
    assert model.attn_implementation == "flash_attention_2" and model.dtype == "bfloat16"
    assert data_args.tokenizer_name == "HuggingFaceTB/SmolLM2-1.7B-Instruct"
    assert (args.eval_strategy.value, args.max_length, args.warmup_steps, args.learning_rate) == ("epoch", 8192, 0.1, 3e-4)
    sources, seed, test_size = parse_mixture(data_args)
    assert [(s.name, s.path, s.config, s.split, s.weight) for s in sources] == [
        ("HuggingFaceTB/smoltalk", "HuggingFaceTB/smoltalk", "all", "train", 1.0)]
    assert all(isinstance(s, SourceSpec) for s in sources) and (seed, test_size) == (None, None)
    from smollm2_recipes.post_training.data import ChatMixture

    assert ChatMixture.from_args(data_args).eval_split == "test"  # handbook evaluated on each dataset's test split, whole


def test_handbook_nov2024_dpo_recipe_parses_into_the_one_schema(capsys):
    args, model, data_args = _parse("dpo", ASSETS / "handbook_nov2024_smollm2_dpo.yaml", *_services())
    assert "recipe key 'dataset_mixer'" in capsys.readouterr().err
    assert (args.beta, args.max_length, args.max_prompt_length, args.learning_rate) == (0.5, 1024, 512, 1e-6)
    sources, _, _ = parse_mixture(data_args)
    assert [(s.path, s.config, s.split, s.weight) for s in sources] == [("HuggingFaceH4/ultrafeedback_binarized", None, "train_prefs", 1.0)]
    assert data_args.dataset_test_split == "test_prefs"


def test_legacy_values_and_bad_handbook_keys(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model_name_or_path: m\noutput_dir: o\ndataset_mixer: {a/b: 0.5, c/d: 1.0}\ndataset_configs: [x, y]\n"
                      "dataset_splits: [train_sft, test_sft]\npacking_strategy: ffd\n")
    args, _, data_args = _parse("sft", recipe)
    assert args.packing_strategy == "bfd" and "packing_strategy: ffd is read as packing_strategy: bfd" in capsys.readouterr().err
    sources, _, _ = parse_mixture(data_args)
    assert [(s.path, s.config, s.split, s.weight) for s in sources] == [("a/b", "x", "train_sft", 0.5), ("c/d", "y", "train_sft", 1.0)]
    recipe.write_text("model_name_or_path: m\noutput_dir: o\ndataset_mixer: {a/b: 1}\ndataset_configs: [x, y]\n")
    with pytest.raises(UserError, match="dataset_configs has 2 entries for the 1 datasets"):
        _parse("sft", recipe)
    recipe.write_text("model_name_or_path: m\noutput_dir: o\ndataset_mixer: {a/b: 1}\ndataset_splits: [validation]\n")
    with pytest.raises(UserError, match="dataset_splits \\['validation'\\] must name one split containing 'train'"):
        _parse("sft", recipe)
