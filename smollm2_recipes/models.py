"""SmolLM2 / SmolLM model shapes as named `LlamaConfig` presets, fresh initialisation as nanotron did it,
parameter counting, and the RoPE / context-length change of context extension."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from smollm2_recipes.errors import UserError

VOCAB_SIZE = 49152


@dataclass(frozen=True)
class Shape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    init_std: float
    description: str


# Published shapes (the released models' config.json, huggingface.co/HuggingFaceTB/SmolLM2-*). SmolLM (v1) used the same three shapes and context 2048.
_SMOLLM2 = {
    "135M": Shape(576, 1536, 30, 9, 3, 0.041666, "SmolLM2-135M"),
    "360M": Shape(960, 2560, 32, 15, 5, 0.03227, "SmolLM2-360M"),
    "1.7B": Shape(2048, 8192, 24, 32, 32, 0.02, "SmolLM2-1.7B"),
}
PRESETS: dict[str, Shape] = {
    **_SMOLLM2,
    **{f"smollm-{k}": Shape(**{**v.__dict__, "description": v.description.replace("SmolLM2", "SmolLM")}) for k, v in _SMOLLM2.items()},
    # CPU presets: the real 49152-token vocabulary, so they train on the real tokenizer's ids.
    "tiny": Shape(128, 384, 4, 4, 2, 0.02, "4 layers x 128 wide, for CPU recipes"),
    "micro": Shape(64, 192, 2, 4, 2, 0.02, "2 layers x 64 wide, for unit tests"),
}


def preset_config(name: str, **overrides):
    """A `LlamaConfig` for a preset; keyword overrides (e.g. `max_position_embeddings`) win."""
    from transformers import LlamaConfig

    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise UserError(f"Unknown model preset '{name}'.{hint} Valid presets: {', '.join(PRESETS)}.")
    s = PRESETS[name]
    kwargs = dict(
        vocab_size=VOCAB_SIZE,
        hidden_size=s.hidden,
        intermediate_size=s.intermediate,
        num_hidden_layers=s.layers,
        num_attention_heads=s.heads,
        num_key_value_heads=s.kv_heads,
        head_dim=s.hidden // s.heads,
        hidden_act="silu",
        rms_norm_eps=1e-5,
        initializer_range=s.init_std,
        tie_word_embeddings=True,
        attention_bias=False,
        mlp_bias=False,
        max_position_embeddings=2048,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=None,
    )
    kwargs.update(overrides)
    return LlamaConfig(**kwargs)


def count_parameters(config) -> int:
    """Exact parameter count (tied embeddings counted once) without allocating weights."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return sum(p.numel() for p in model.parameters())  # parameters() yields a tied tensor once


# nanotron (the SmolLM2 trainer), src/nanotron/scaling/parametrization.py, StandardParametrizator: the row-parallel
# linears -- attention's o_proj and the MLP's down_proj, whose outputs are added to the residual stream -- are
# drawn with std / sqrt(2 * num_layers); embeddings and every other linear with std; RMSNorm weights are 1.
RESIDUAL_OUTPUT_PROJECTIONS = ("o_proj", "down_proj")


def init_stds(config) -> dict[str, float]:
    """The std nanotron draws each kind of weight with, for a `LlamaConfig` (norms are set to 1, not drawn)."""
    std = float(config.initializer_range)
    return {"embedding": std, "linear": std, "residual_output": std / (2 * config.num_hidden_layers) ** 0.5}


def apply_nanotron_init(model) -> None:
    """Re-draw every weight of a fresh Llama as nanotron's StandardParametrizator does (see above)."""
    import torch
    from torch import nn

    stds = init_stds(model.config)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, nn.Embedding):
                module.weight.normal_(0.0, stds["embedding"])
            elif isinstance(module, nn.Linear):
                if name == "lm_head" and model.config.tie_word_embeddings:
                    continue  # the same tensor as the embedding, drawn there
                key = "residual_output" if name.rsplit(".", 1)[-1] in RESIDUAL_OUTPUT_PROJECTIONS else "linear"
                module.weight.normal_(0.0, stds[key])
                if module.bias is not None:
                    module.bias.zero_()
            elif "RMSNorm" in type(module).__name__:
                module.weight.fill_(1.0)


def build_model(name: str, seed: int | None = None, **overrides):
    """A freshly initialised model of a preset, drawn as nanotron did for SmolLM2 (`apply_nanotron_init`)."""
    import torch
    from transformers import AutoModelForCausalLM

    if seed is not None:
        torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(preset_config(name, **overrides))
    apply_nanotron_init(model)
    return model


def rope_theta(config) -> float:
    params = getattr(config, "rope_parameters", None) or {}
    return float(params.get("rope_theta", getattr(config, "rope_theta", 10000.0)))


def extend_context(config, max_position_embeddings: int, theta: float):
    """Context extension (SmolLM2: 2k → 8k, theta 10k → 100k/130k): a larger RoPE base and more positions.
    Refuses to shrink, which would silently truncate what the model was trained on."""
    if max_position_embeddings < config.max_position_embeddings:
        raise UserError(
            f"max_position_embeddings {max_position_embeddings} is below the model's current "
            f"{config.max_position_embeddings}: context extension can only grow the context."
        )
    config.max_position_embeddings = max_position_embeddings
    params = dict(getattr(config, "rope_parameters", None) or {"rope_type": "default"})
    params["rope_theta"] = float(theta)
    config.rope_parameters = params
    return config


def model_info(name: str) -> dict:
    config = preset_config(name)
    return {"preset": name, "description": PRESETS[name].description, "parameters": count_parameters(config), "config": config.to_dict()}


def load_pretrained(name_or_path: str, dtype=None):
    """(model, tokenizer) from a Hub id, a local folder or an `embedded:` name, with a clear error for a
    folder that is not a model."""
    import os

    from smollm2_recipes.assets import resolve
    from smollm2_recipes.runkit import load_model, load_tokenizer

    path = resolve(name_or_path)
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "config.json")):
            raise UserError(f"'{path}' is not a model folder (no config.json).")
        if not any(os.path.isfile(os.path.join(path, f)) for f in ("tokenizer.json", "tokenizer_config.json")):
            raise UserError(f"'{path}' has no tokenizer (tokenizer.json / tokenizer_config.json); save the tokenizer with the model.")
    elif str(path).startswith((".", "/", "~")) or str(path).count("/") != 1:
        # not a local folder, and not shaped like a Hub id (owner/name) either
        raise UserError(f"Model '{name_or_path}' is neither a local folder nor a Hub id (owner/name).")
    tokenizer = load_tokenizer(path)
    model = load_model(path, dtype=dtype or "auto")  # the run kit names a truncated weights file
    return model, tokenizer
