import pytest
import yaml

from smollm2_recipes.recipe_parsing import parse, save_resolved_config
from smollm2_recipes.errors import UserError


def _recipe(tmp_path, **keys):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump({"output_dir": str(tmp_path / "out"), **keys}))
    return str(path)


def test_yaml_then_command_line_override(tmp_path):
    from transformers import TrainingArguments

    (args,) = parse([TrainingArguments], [_recipe(tmp_path, learning_rate=3e-4, seed=7), "--learning_rate", "1e-3"])
    assert args.learning_rate == 1e-3 and args.seed == 7


def test_misspelt_yaml_key_names_the_closest(tmp_path):
    from transformers import TrainingArguments

    with pytest.raises(UserError, match=r"Unknown key 'lerning_rate' in recipe .*Did you mean 'learning_rate'\?"):
        parse([TrainingArguments], [_recipe(tmp_path, lerning_rate=1e-3)])


def test_misspelt_flag_names_the_closest(tmp_path):
    from transformers import TrainingArguments

    with pytest.raises(UserError, match=r"Unknown key 'per_device_train_batchsize' in the command line.*'per_device_train_batch_size'"):
        parse([TrainingArguments], [_recipe(tmp_path), "--per_device_train_batchsize", "4"])


def test_legacy_keys_are_mapped_with_a_note(tmp_path, capsys):
    from trl import ModelConfig, SFTConfig

    sft, model = parse([SFTConfig, ModelConfig], [_recipe(tmp_path, warmup_ratio=0.1, torch_dtype="bfloat16", max_seq_length=512, overwrite_output_dir=True)])
    assert sft.warmup_steps == 0.1 and model.dtype == "bfloat16" and sft.max_length == 512
    err = capsys.readouterr().err
    assert "'warmup_ratio' is read as 'warmup_steps'" in err and "'overwrite_output_dir' is ignored" in err


def test_missing_recipe_and_bad_yaml(tmp_path):
    from transformers import TrainingArguments

    with pytest.raises(UserError, match="does not exist"):
        parse([TrainingArguments], [str(tmp_path / "nope.yaml")])
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        parse([TrainingArguments], [str(bad)])


def test_resolved_config_round_trips_without_secrets(tmp_path):
    from transformers import TrainingArguments

    (args,) = parse([TrainingArguments], [_recipe(tmp_path, learning_rate=5e-4, lr_scheduler_type="warmup_stable_decay", hub_token="hf_secret123")])
    path = save_resolved_config(tmp_path / "out", args)
    text = path.read_text()
    assert "hf_secret123" not in text
    saved = yaml.safe_load(text)
    assert saved["learning_rate"] == 5e-4 and saved["lr_scheduler_type"] == "warmup_stable_decay"
    (again,) = parse([TrainingArguments], [str(path)])  # a saved config is itself a valid recipe
    assert again.learning_rate == args.learning_rate and again.lr_scheduler_type == args.lr_scheduler_type


def test_bf16_on_a_cpu_without_bf16_units_trains_in_fp32():
    """bf16 autocast on a CPU without AMX / AVX512-BF16 runs matmuls in a generic kernel many times slower than
    fp32: a stage's TrainingArguments (here SFT's, as post-training's run_stage applies it) then train in fp32,
    the Trainer's `mixed_precision` included (the stage then prints a note)."""
    import torch

    from smollm2_recipes import recipe_parsing
    from smollm2_recipes.post_training import sft
    from smollm2_recipes.training.hardware import cpu_has_bf16_units, fp32_without_bf16_units

    if torch.cuda.is_available():
        pytest.skip("a GPU run keeps bf16")
    args = recipe_parsing.parse(sft.CONFIG_TYPES, ["recipes/smollm2/tiny/sft.yaml", "--bf16", "true", "--output_dir", "unused"])[0]
    assert args.bf16 and args.mixed_precision == "bf16"  # parsing itself changes nothing
    switched = fp32_without_bf16_units(args)
    if cpu_has_bf16_units():
        assert not switched and args.bf16 and args.mixed_precision == "bf16"
    else:
        assert switched and not args.bf16 and args.mixed_precision == "no"
