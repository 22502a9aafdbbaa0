"""nanotron's init and weight decay (the SmolLM2 trainer): o_proj / down_proj drawn with std/sqrt(2 * layers),
every other weight with the preset std, norms at 1; weight decay on every parameter unless the recipe asks for the
Trainer's exclusion of norms (`weight_decay_norms: false`)."""

import math

import pytest
import torch

from smollm2_recipes.models import PRESETS, build_model, init_stds, preset_config

# nanotron's residual output projections, std / sqrt(2 * num_layers).
NANOTRON_RESIDUAL_STD = {"135M": 0.00538, "360M": 0.00403, "1.7B": 0.00289}


@pytest.mark.parametrize("size", NANOTRON_RESIDUAL_STD)
def test_residual_output_std_of_the_full_size_presets(size):
    stds = init_stds(preset_config(size))
    assert round(stds["residual_output"], 5) == NANOTRON_RESIDUAL_STD[size]
    assert stds["linear"] == stds["embedding"] == PRESETS[size].init_std


def _measured(model) -> dict[str, list[float]]:
    kinds: dict[str, list[float]] = {"embedding": [], "linear": [], "residual_output": [], "norm": []}
    for name, param in model.named_parameters():
        if name.endswith("embed_tokens.weight"):
            kinds["embedding"].append(param.std().item())
        elif "norm" in name:
            kinds["norm"].append(param.min().item())
            kinds["norm"].append(param.max().item())
        elif name.endswith(("o_proj.weight", "down_proj.weight")):
            kinds["residual_output"].append(param.std().item())
        else:
            kinds["linear"].append(param.std().item())
    return kinds


@pytest.mark.parametrize("size", NANOTRON_RESIDUAL_STD)
def test_each_layer_type_is_drawn_with_its_std_at_the_preset_width(size):
    # The preset's real widths with 2 layers (fast); the residual std then follows those 2 layers.
    model = build_model(size, seed=0, num_hidden_layers=2)
    expected = init_stds(model.config)
    assert math.isclose(expected["residual_output"], PRESETS[size].init_std / 2.0)
    measured = _measured(model)
    for kind in ("embedding", "linear", "residual_output"):
        assert measured[kind], kind
        for std in measured[kind]:
            assert abs(std - expected[kind]) / expected[kind] < 0.03, (kind, std, expected[kind])
    assert set(measured["norm"]) == {1.0}
    # tied lm_head: the embedding itself, drawn once
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def _optimizer_groups(tmp_path, **config):
    from smollm2_recipes.training.pretrain_config import PretrainConfig
    from smollm2_recipes.training.stream import TrackedStream
    from smollm2_recipes.training.trainer import PretrainTrainer

    model = build_model("micro", seed=0)
    args = PretrainConfig(output_dir=str(tmp_path), use_cpu=True, report_to="none", max_steps=1, **config)
    trainer = PretrainTrainer(model=model, args=args, stream=TrackedStream([]))
    trainer.create_optimizer()
    names = {id(p): n for n, p in model.named_parameters()}
    return {g["weight_decay"]: {names[id(p)] for p in g["params"]} for g in trainer.optimizer.param_groups if g["params"]}, model


def test_weight_decay_covers_every_parameter_by_default(tmp_path):
    groups, model = _optimizer_groups(tmp_path)
    assert set(groups) == {0.01}
    assert groups[0.01] == {n for n, _ in model.named_parameters()}
    assert any("norm" in n for n in groups[0.01])


def test_weight_decay_norms_false_is_the_trainers_exclusion(tmp_path):
    groups, model = _optimizer_groups(tmp_path, weight_decay_norms=False, weight_decay=0.1)
    norms = {n for n, _ in model.named_parameters() if "norm" in n}
    assert norms and groups[0.0] == norms
    assert groups[0.1] == {n for n, _ in model.named_parameters()} - norms
