"""Every pretraining and context-extension recipe parses with the installed transformers, and its plan is the
published one: tokens per step, steps, WSD decay share, optimiser settings, RoPE of the extension."""

import pytest

from smollm2_recipes.recipe_parsing import parse
from smollm2_recipes.data.stages import DataArguments
from smollm2_recipes.training.pretrain_config import ModelArguments, PretrainConfig, resolve_batch, resolve_schedule, resolve_steps
from smollm2_recipes.training.context_extension import ExtensionStartArguments, PasskeyArguments

# size: (peak lr, tokens per step, steps, decay steps)  -- huggingface/smollm text/pretraining/smollm2/*.yaml
PUBLISHED = {"135M": (3e-3, 64 * 8 * 2048, 2_000_000, 400_000), "360M": (3e-3, 128 * 6 * 2048, 2_600_000, 520_000),
             "1.7B": (5e-4, 256 * 4 * 2048, 5_240_000, 524_000)}


def plan(path, types=(PretrainConfig, ModelArguments, DataArguments)):
    config, model_args, data_args, *rest = parse(list(types), [path, "--output_dir", "/nonexistent/never-written"])
    sequences, _ = resolve_batch(config, data_args.seq_len)
    steps = resolve_steps(config, [s.tokens for s in data_args.stage_specs], sequences * data_args.seq_len)
    return config, model_args, data_args, sequences * data_args.seq_len, steps, resolve_schedule(config, steps)


@pytest.mark.parametrize("size", sorted(PUBLISHED))
def test_full_size_pretrain_recipes_carry_the_published_optimisation(size):
    config, model_args, data_args, tokens_per_step, steps, wsd = plan(f"recipes/smollm2/{size}/pretrain.yaml")
    lr, published_tokens, published_steps, decay = PUBLISHED[size]
    assert model_args.model == size and data_args.seq_len == 2048
    assert (config.learning_rate, config.adam_beta1, config.adam_beta2, config.adam_epsilon) == (lr, 0.9, 0.95, 1e-8)
    assert (config.weight_decay, config.max_grad_norm, config.warmup_steps, config.bf16) == (0.01, 1.0, 2000, True)
    assert tokens_per_step == published_tokens and steps == published_steps
    assert config.lr_scheduler_type == "warmup_stable_decay" and wsd == {"num_decay_steps": decay, "decay_type": "linear"}
    assert config.weight_decay_norms  # nanotron decayed every parameter
    # paper: the 1.7B in four stages, the 135M and 360M in one
    assert len(data_args.stage_specs) == (4 if size == "1.7B" else 1)


def _shares(stage) -> dict[str, float]:
    total = sum(s.weight for s in stage.sources)
    return {s.name: s.weight / total for s in stage.sources}


def test_the_1_7b_decay_stage_math_follows_section_4_5():
    *_, data_args, _, _, _ = plan("recipes/smollm2/1.7B/pretrain.yaml")
    shares = _shares(data_args.stage_specs[-1])
    assert shares["open-web-math"] == pytest.approx(0.0008)  # "0.08% OWM"
    math_share = shares["open-web-math"] + shares["finemath-4plus"] + shares["infiwebmath-3plus"]
    assert math_share == pytest.approx(0.14) and shares["stack-edu"] == pytest.approx(0.24)
    assert shares["cosmopedia-v2"] == pytest.approx(0.04)


@pytest.mark.parametrize("size", ["135M", "360M"])
def test_small_models_read_the_dclm_filtered_by_the_curation_recipe(size):
    import yaml

    *_, data_args, _, _, _ = plan(f"recipes/smollm2/{size}/pretrain.yaml")
    (stage,) = data_args.stage_specs
    curation = yaml.safe_load(open("recipes/curation/dclm_fineweb_edu_filter.yaml"))
    assert curation["input"] == "mlfoundations/dclm-baseline-1.0" and curation["threshold"] == 1  # score 0 removed
    paths = {s.name: s.path for s in stage.sources}
    assert paths["dclm-edu"] == f"{curation['output_dir']}/data.jsonl"
    assert "mlfoundations/dclm-baseline-1.0" not in paths.values()  # no unfiltered DCLM
    assert {"fineweb-edu", "dclm-edu-3plus", "stack-edu", "starcoderdata"} <= set(paths)


@pytest.mark.parametrize("size,theta", [("135M", 100000), ("360M", 100000), ("1.7B", 130000), ("tiny", 100000)])
def test_context_extension_recipes(size, theta):
    config, model_args, data_args, _, steps, wsd = plan(f"recipes/smollm2/{size}/context_extension.yaml",
                                                        (PretrainConfig, ModelArguments, DataArguments, PasskeyArguments,
                                                         ExtensionStartArguments))
    start = parse([PretrainConfig, ModelArguments, DataArguments, PasskeyArguments, ExtensionStartArguments],
                  [f"recipes/smollm2/{size}/context_extension.yaml"])[-1]
    assert model_args.rope_theta == theta
    assert model_args.max_position_embeddings == (1024 if size == "tiny" else 8192) == data_args.seq_len
    stage = data_args.stage_specs[0]
    assert stage.long_document_share == pytest.approx(0.4) and steps > 0
    if size != "tiny":  # paper: from the pretraining run, 75B tokens before its end; Dolma's books
        import yaml

        pretrain = yaml.safe_load(open(f"recipes/smollm2/{size}/pretrain.yaml"))
        assert model_args.model == pretrain["output_dir"] and start.start_tokens_before_end == 75_000_000_000
        books = next(s for s in stage.sources if s.name == "dolma-books")
        assert books.long and all("olmo-data.org/dolma-v1_7/books/" in f for f in books.data_files)
        assert wsd["num_decay_steps"] == steps and config.warmup_steps == 0  # continues the decay to 0


def test_tiny_pretrain_recipe_has_the_same_shape():
    config, model_args, data_args, tokens_per_step, steps, wsd = plan("recipes/smollm2/tiny/pretrain.yaml")
    assert model_args.model == "tiny" and data_args.tokenizer_name == "embedded:smollm2-tokenizer"
    assert [s.name for s in data_args.stage_specs][-1] == "decay" and len(data_args.stage_specs) >= 3
    assert wsd["num_decay_steps"] == round(0.2 * steps) and config.eval_blocks > 0
    assert all(src.path.startswith("embedded:corpus/") for s in data_args.stage_specs for src in s.sources)
