import json
import subprocess
import sys

import pytest

from smollm2_recipes.errors import UserError
from smollm2_recipes.models import PRESETS, count_parameters, extend_context, preset_config, rope_theta

# Exact parameter counts (the released SmolLM2 safetensors) of the published shapes (v1 used the same shapes).
PUBLISHED = {"135M": 134_515_008, "360M": 361_821_120, "1.7B": 1_711_376_384}


@pytest.mark.parametrize("size", PUBLISHED)
def test_parameter_counts_match_the_published_models(size):
    assert count_parameters(preset_config(size)) == PUBLISHED[size]
    assert count_parameters(preset_config(f"smollm-{size}")) == PUBLISHED[size]


@pytest.mark.parametrize(
    "size,hidden,layers,heads,kv,std",
    [("135M", 576, 30, 9, 3, 0.041666), ("360M", 960, 32, 15, 5, 0.03227), ("1.7B", 2048, 24, 32, 32, 0.02)],
)
def test_published_shapes(size, hidden, layers, heads, kv, std):
    c = preset_config(size)
    assert (c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_key_value_heads) == (hidden, layers, heads, kv)
    assert c.initializer_range == std and c.tie_word_embeddings and c.vocab_size == 49152
    assert c.max_position_embeddings == 2048 and rope_theta(c) == 10000.0 and c.rms_norm_eps == 1e-5


def test_fresh_init_uses_the_size_std():
    from smollm2_recipes.models import build_model

    model = build_model("tiny", seed=0)
    std = model.model.layers[0].mlp.up_proj.weight.std().item()
    assert abs(std - PRESETS["tiny"].init_std) / PRESETS["tiny"].init_std < 0.05


def test_unknown_preset_names_the_closest_and_lists_valid():
    with pytest.raises(UserError, match=r"'13M'.*'135M'.*Valid presets"):
        preset_config("13M")


def test_extend_context_raises_theta_and_refuses_to_shrink():
    c = extend_context(preset_config("135M"), 8192, 100000)
    assert c.max_position_embeddings == 8192 and rope_theta(c) == 100000.0
    with pytest.raises(UserError, match="4096.*8192"):
        extend_context(c, 4096, 100000)


def test_model_info_json_through_the_cli():
    out = subprocess.run([sys.executable, "-m", "smollm2_recipes", "model-info", "360M", "--json"], capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)
    assert info["preset"] == "360M" and info["parameters"] == PUBLISHED["360M"]
    assert info["config"]["hidden_size"] == 960


def test_model_info_bad_preset_is_one_clear_line():
    out = subprocess.run([sys.executable, "-m", "smollm2_recipes", "model-info", "7B"], capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.startswith("error: Unknown model preset '7B'") and "Traceback" not in out.stderr


def test_load_pretrained_tells_a_missing_folder_from_a_hub_id(tmp_path):
    from smollm2_recipes.models import load_pretrained

    with pytest.raises(UserError, match="neither a local folder nor a Hub id"):
        load_pretrained(str(tmp_path / "no-such-model"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="not a model folder"):
        load_pretrained(str(tmp_path / "empty"))
    # A Hub id is checked as a Hub id (offline and not cached here), not refused as a missing folder.
    with pytest.raises(UserError, match="'HuggingFaceTB/SmolLM2-1.7B' is not a local folder or file, and as a Hub id"):
        load_pretrained("HuggingFaceTB/SmolLM2-1.7B")
