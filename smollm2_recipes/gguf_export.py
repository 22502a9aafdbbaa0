"""Export a Llama-architecture model folder (every SmolLM2 size) to GGUF for llama.cpp, f16 or q8_0.

Written with the `gguf` package the way llama.cpp's `convert_hf_to_gguf.py` writes Llama models: the same
metadata keys, tensor names (gguf's own `TensorNameMap`), q/k projections permuted into llama.cpp's rotary
layout, 1-D tensors (norms) kept in f32, and the GPT-2-style BPE vocabulary with merges, token types,
special ids and the chat template (gguf's own `SpecialVocab` reads them from the tokenizer files).
transformers' GGUF loader undoes the permutation on load, which is how the tests read the file back.
"""

from __future__ import annotations

import os
from pathlib import Path

from smollm2_recipes.errors import UserError
from smollm2_recipes.runkit.loading import check_model_source
from smollm2_recipes.runkit.parsing import ArgumentParser

DTYPES = ("f16", "q8_0")
# llama.cpp chooses its pre-tokenizer (how text is split before BPE) by this name; "smollm" is the one
# convert_hf_to_gguf.py assigns to the SmolLM / SmolLM2 tokenizer.
SMOLLM_PRE_TOKENIZER = "smollm"
SMOLLM_FIRST_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _permute(weights, n_head: int, n_head_kv: int | None = None):
    """convert_hf_to_gguf.py's LlamaModel.permute: HF's rotate-half layout -> llama.cpp's interleaved pairs."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def check_exportable(model_dir: str | os.PathLike):
    """(config, tokenizer) of the model, or a UserError saying why this exporter cannot write it (before any work)."""
    from transformers import AutoConfig

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise UserError(f"'{model_dir}' is not a model folder (no config.json).")
    if not (model_dir / "tokenizer.json").is_file():
        raise UserError(f"'{model_dir}' has no tokenizer.json: GGUF files carry the tokenizer, save it with the model.")
    config = AutoConfig.from_pretrained(model_dir)
    architectures = getattr(config, "architectures", None) or []
    if config.model_type != "llama" or (architectures and architectures != ["LlamaForCausalLM"]):
        raise UserError(
            f"'{model_dir}' is a {config.model_type} model ({', '.join(architectures) or 'no architectures'}); "
            "this exporter writes Llama (LlamaForCausalLM) models, which every SmolLM2 size is."
        )
    rope = dict(getattr(config, "rope_parameters", None) or {})
    if rope.get("rope_type", "default") != "default":
        raise UserError(f"'{model_dir}' uses RoPE scaling '{rope['rope_type']}'; this exporter writes plain RoPE (rope_theta only, as SmolLM2's context extension does).")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise UserError(f"'{model_dir}' has attention or MLP biases; SmolLM2 models have none and this exporter does not write them.")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    vocab = tokenizer.get_vocab()
    first = sorted(vocab, key=vocab.get)[: len(SMOLLM_FIRST_TOKENS)]
    if first != SMOLLM_FIRST_TOKENS:
        raise UserError(
            f"The tokenizer in '{model_dir}' is not SmolLM2's (its first tokens are {first}); llama.cpp picks its "
            f"pre-tokenizer by name and this exporter only knows SmolLM2's ('{SMOLLM_PRE_TOKENIZER}')."
        )
    if len(vocab) != config.vocab_size:
        raise UserError(f"The tokenizer in '{model_dir}' has {len(vocab)} tokens but the model's vocab_size is {config.vocab_size}.")
    return config, tokenizer


def _vocab(tokenizer):
    """Tokens and their llama.cpp types, as convert_hf_to_gguf.py's get_vocab_base() builds them."""
    import gguf

    reverse = {i: tok for tok, i in tokenizer.get_vocab().items()}
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(len(reverse)):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif i in added:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def _add_metadata(writer, config, dtype: str, name: str) -> None:
    import gguf

    from smollm2_recipes.models import rope_theta

    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(name)
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(rope_theta(config))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if dtype == "f16" else gguf.LlamaFileType.MOSTLY_Q8_0)
    writer.add_vocab_size(config.vocab_size)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // config.num_attention_heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)


def _add_tokenizer(writer, model_dir: Path, tokenizer) -> None:
    import gguf

    tokens, types = _vocab(tokenizer)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(SMOLLM_PRE_TOKENIZER)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_add_space_prefix(False)  # byte-level BPE: no sentencepiece-style leading space
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=len(tokens))
    if not special.merges:
        raise UserError(f"The tokenizer in '{model_dir}' has no BPE merges; llama.cpp needs them.")
    special.add_to_gguf(writer, quiet=True)
    if "bos" not in special.add_special_token:  # SmolLM2 never prepends BOS; say so, or llama.cpp guesses
        writer.add_add_bos_token(False)
    if special.chat_template is None and tokenizer.chat_template:  # a template kept in chat_template.jinja
        writer.add_chat_template(tokenizer.chat_template)


def _tensors(model, config, dtype: str):
    """(gguf name, numpy array, quantisation type) for every tensor, as llama.cpp names and lays them out."""
    import gguf
    import numpy as np

    name_map = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    tied = getattr(config, "tie_word_embeddings", False)
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue  # llama.cpp reads the output projection from token_embd when output.weight is absent
        name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UserError(f"Tensor '{hf_name}' has no llama.cpp name; is this a plain Llama model?")
        data = tensor.detach().float().numpy()
        if hf_name.endswith("q_proj.weight"):
            data = _permute(data, config.num_attention_heads, config.num_attention_heads)
        elif hf_name.endswith("k_proj.weight"):
            data = _permute(data, config.num_attention_heads, config.num_key_value_heads)
        if data.ndim == 1:
            yield name, data.astype(np.float32), gguf.GGMLQuantizationType.F32
        elif dtype == "q8_0" and data.shape[-1] % gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0] == 0:
            yield name, gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0), gguf.GGMLQuantizationType.Q8_0
        else:  # f16, or a row length q8_0's 32-value blocks do not divide (convert_hf_to_gguf falls back the same way)
            yield name, data.astype(np.float16), gguf.GGMLQuantizationType.F16


def export_gguf(model_dir: str | os.PathLike, out: str | os.PathLike, dtype: str = "f16", overwrite: bool = False) -> Path:
    """Write `out` (atomically: a temporary name, then a rename) and return its path."""
    import gguf
    import torch
    from tqdm.auto import tqdm
    from transformers import AutoModelForCausalLM

    model_dir, out = Path(model_dir), Path(out)
    if dtype not in DTYPES:
        raise UserError(f"--dtype '{dtype}' is not supported; choose one of {', '.join(DTYPES)}.")
    if out.exists() and not overwrite:
        raise UserError(f"'{out}' already exists; choose another --out or pass --overwrite.")
    if out.suffix != ".gguf":
        raise UserError(f"--out '{out}' should end in .gguf (llama.cpp and transformers look for that suffix).")
    config, tokenizer = check_exportable(model_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    try:
        writer = gguf.GGUFWriter(tmp, arch=gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.LLAMA])
        _add_metadata(writer, config, dtype, name=model_dir.resolve().name)
        _add_tokenizer(writer, model_dir, tokenizer)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
        tensors = list(model.state_dict())
        for name, data, qtype in tqdm(_tensors(model, config, dtype), total=len(tensors), desc=f"GGUF {dtype}", leave=False):
            writer.add_tensor(name, data, raw_dtype=qtype)
        del model
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file(progress=False)
        writer.close()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def export_gguf_main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="smollm2 export gguf", description="Export a Llama model folder to a GGUF file for llama.cpp.")
    parser.add_argument("model_dir", help="a model folder (config.json, safetensors, tokenizer.json)")
    parser.add_argument("--out", required=True, help="the .gguf file to write")
    parser.add_argument("--dtype", default="f16", choices=DTYPES, help="f16 (default) or q8_0 (8-bit blocks; 1-D tensors stay f32)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args(argv)
    check_model_source(args.model_dir)
    path = export_gguf(args.model_dir, args.out, args.dtype, args.overwrite)
    print(f"wrote {path} ({path.stat().st_size / 2**20:.1f} MiB, {args.dtype})")
    return 0
