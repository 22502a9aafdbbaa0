"""`smollm2 export gguf`: transformers' own GGUF loader reads the file back with the same logits, and the
metadata matches what llama.cpp's converter wrote into the published SmolLM2-135M-Instruct GGUF."""


import pytest
import torch

from smollm2_recipes import cli

# Logit tolerances relative to the largest |logit| of the fp32 model: f16 rounds each weight to 11 bits
# (relative error <= 2^-11 ~ 5e-4); q8_0 stores 32-value blocks as int8 with one f16 scale (<= 1/254 per weight).
F16_TOLERANCE = 2e-3
Q8_0_TOLERANCE = 3e-2
TEXT = "Hello world! 12345 digits, tabs\tand  spaces. <|im_start|>user\nhi<|im_end|>\ndef f(x):\n    return x ** 2"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """The micro preset (2 layers x 64, GQA 4:2, tied embeddings) saved with the real SmolLM2 instruct tokenizer."""
    from transformers import AutoTokenizer

    from smollm2_recipes import assets, models

    folder = tmp_path_factory.mktemp("gguf") / "micro"
    tokenizer = AutoTokenizer.from_pretrained(assets.resolve("embedded:SmolLM2-135M-Instruct"))
    model = models.build_model("micro", seed=0, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def reference_logits(model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    messages = [{"role": "user", "content": TEXT}]
    ids = tokenizer(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), return_tensors="pt").input_ids
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        return ids, model(ids).logits


@pytest.mark.slow
@pytest.mark.parametrize("dtype, tolerance", [("f16", F16_TOLERANCE), ("q8_0", Q8_0_TOLERANCE)])
def test_transformers_reads_the_gguf_back_with_the_same_logits(model_dir, reference_logits, tmp_path, dtype, tolerance, capsys):
    from transformers import AutoModelForCausalLM

    out = tmp_path / f"micro-{dtype}.gguf"
    assert cli.run("export gguf", [str(model_dir), "--out", str(out), "--dtype", dtype]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    ids, expected = reference_logits
    model = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file=out.name, dtype=torch.float32)
    with torch.no_grad():
        got = model(ids).logits
    error = ((got - expected).abs().max() / expected.abs().max()).item()
    assert error <= tolerance, f"{dtype}: max |logit difference| / max |logit| = {error:.2e} > {tolerance}"
    assert error > 0  # the weights really went through f16 / q8_0
    assert (got.argmax(-1) == expected.argmax(-1)).float().mean() >= 0.95


@pytest.fixture(scope="module")
def f16_file(model_dir, tmp_path_factory):
    from smollm2_recipes.gguf_export import export_gguf

    return export_gguf(model_dir, tmp_path_factory.mktemp("gguf-out") / "micro-f16.gguf", "f16")


@pytest.mark.slow
def test_tokenizer_round_trips_through_gguf(model_dir, f16_file):
    from transformers import AutoTokenizer

    original = AutoTokenizer.from_pretrained(model_dir)
    loaded = AutoTokenizer.from_pretrained(f16_file.parent, gguf_file=f16_file.name)
    assert loaded(TEXT).input_ids == original(TEXT).input_ids
    assert loaded.chat_template == original.chat_template
    assert (loaded.bos_token_id, loaded.eos_token_id, loaded.pad_token_id) == (1, 2, 2)


def _fields(reader):
    return {name: field.contents() for name, field in reader.fields.items() if not name.startswith("GGUF.")}


@pytest.mark.slow
def test_metadata_matches_llama_cpps_own_converter(f16_file):
    """The published SmolLM2-135M-Instruct GGUF was written by llama.cpp's convert_hf_to_gguf.py: ours must carry
    the same keys, the same vocabulary, token types, merges, special ids and chat template, and the same
    tensor names per layer."""
    import gguf

    from smollm2_recipes.offline.embedded import gguf_path

    ref_reader, ours_reader = gguf.GGUFReader(gguf_path()), gguf.GGUFReader(f16_file)
    ref, ours = _fields(ref_reader), _fields(ours_reader)
    naming = {"general.name", "general.organization", "general.finetune", "general.basename", "general.size_label", "general.license", "general.languages"}
    assert set(ref) - naming <= set(ours), sorted(set(ref) - naming - set(ours))
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges",
                "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id",
                "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_space_prefix",
                "tokenizer.chat_template", "general.architecture", "llama.vocab_size"):
        assert ours[key] == ref[key], key
    assert ours["general.file_type"] == gguf.LlamaFileType.MOSTLY_F16 and ours["llama.block_count"] == 2
    assert ours["llama.attention.head_count_kv"] == 2 and ours["llama.rope.dimension_count"] == 16

    def names(reader, block):
        return sorted(t.name for t in reader.tensors if t.name.startswith(f"blk.{block}.") or not t.name.startswith("blk."))

    assert names(ours_reader, 0) == names(ref_reader, 0)
    types = {t.name: t.tensor_type.name for t in ours_reader.tensors}
    assert types["blk.0.attn_norm.weight"] == "F32" and types["blk.0.attn_q.weight"] == "F16"


def test_refuses_what_it_cannot_export_before_writing(model_dir, tmp_path, capsys):
    from transformers import AutoTokenizer, GPT2Config

    gpt2 = tmp_path / "gpt2"
    GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=49152).save_pretrained(gpt2)
    AutoTokenizer.from_pretrained(model_dir).save_pretrained(gpt2)
    assert cli.run("export gguf", [str(gpt2), "--out", str(tmp_path / "x.gguf")]) == 2
    assert "gpt2 model" in capsys.readouterr().err and not (tmp_path / "x.gguf").exists()

    existing = tmp_path / "exists.gguf"
    existing.write_bytes(b"keep me")
    assert cli.run("export gguf", [str(model_dir), "--out", str(existing)]) == 2
    assert "already exists" in capsys.readouterr().err and existing.read_bytes() == b"keep me"

    assert cli.run("export gguf", [str(tmp_path), "--out", str(tmp_path / "y.gguf")]) == 2
    assert "no config.json" in capsys.readouterr().err

    # A Llama model with another tokenizer: llama.cpp would split its text with the wrong pre-tokenizer.
    from tokenizers import Tokenizer, models as tokenizer_models
    from transformers import PreTrainedTokenizerFast

    from smollm2_recipes.models import preset_config

    other = tmp_path / "other-tokenizer"
    preset_config("micro", vocab_size=3).save_pretrained(other)
    bpe = Tokenizer(tokenizer_models.BPE(vocab={"a": 0, "b": 1, "ab": 2}, merges=[("a", "b")]))
    PreTrainedTokenizerFast(tokenizer_object=bpe).save_pretrained(other)
    assert cli.run("export gguf", [str(other), "--out", str(tmp_path / "z.gguf")]) == 2
    assert "is not SmolLM2's" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exists.gguf", "gpt2", "other-tokenizer"]  # nothing half-written


def test_q_and_k_permutation_is_the_one_transformers_undoes():
    """Our permutation (convert_hf_to_gguf's) composed with transformers' reverse permutation is the identity."""
    import numpy as np
    from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS

    from smollm2_recipes.gguf_export import _permute

    processor = TENSOR_PROCESSORS["llama"](config={"num_attention_heads": 4, "num_key_value_heads": 2})
    k = np.arange(2 * 16 * 64, dtype=np.float32).reshape(32, 64)
    permuted = _permute(k, 4, 2)
    assert not np.array_equal(permuted, k)
    assert np.array_equal(processor._reverse_permute_weights(permuted, 4, 2), k)
