"""What SFT and DPO share: the global batch, the model + tokenizer + chat template, hardware checks
(Liger, QLoRA, packed attention), the arithmetic evaluation hook, and the final model folder. A stage runs
in the run kit's order: validate everything, then claim the output folder (lock), then write."""

from __future__ import annotations

import inspect
import os
import shutil
import sys
from pathlib import Path

from smollm2_recipes.errors import UserError
from smollm2_recipes.package_data import find_chat_template
from smollm2_recipes.runkit import claim_output_dir, load_model, load_tokenizer, write_json_atomic
from smollm2_recipes.training.hardware import FP32_NOTE, fp32_without_bf16_units
from smollm2_recipes.runkit.batch import accumulation_for
from smollm2_recipes.runkit.loading import check_model_source
from smollm2_recipes.runkit.lock import check_output_dir

# Attention backends that honour per-example position ids in a packed (padding-free) row: transformers 5
# builds a block-diagonal mask from the position ids for eager/sdpa/flex, and flash attention reads the
# sequence boundaries (cu_seq_lens). Anything else would let an example attend to its neighbours.
PACKED_ATTENTION_BACKENDS = {"eager", "sdpa", "flex_attention", "flash_attention_2", "flash_attention_3", "flash_attention_4"}


def note(msg: str) -> None:
    print(f"note: {msg}", file=sys.stderr)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def apply_global_batch(args, global_batch_size: int | None) -> None:
    """Keep the published global batch whatever the process count: derive gradient_accumulation_steps
    from it (the run kit's one policy: a contradicting value is refused, as in pretraining)."""
    if not global_batch_size:
        return
    args.gradient_accumulation_steps = accumulation_for(global_batch_size, args.per_device_train_batch_size, world_size(),
                                                        args.gradient_accumulation_steps, f"global_batch_size {global_batch_size}")


def has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


def check_hardware(args, model_args) -> None:
    if getattr(args, "use_liger_kernel", False):
        if not has_gpu():
            raise UserError("use_liger_kernel: true needs a CUDA GPU (Liger's Triton kernels do not run on a CPU); set use_liger_kernel: false.")
        import importlib.util

        if importlib.util.find_spec("liger_kernel") is None:
            raise UserError("use_liger_kernel: true needs the liger-kernel package: .venv/bin/pip install liger-kernel")
    if getattr(model_args, "load_in_4bit", False) or getattr(model_args, "load_in_8bit", False):
        if not has_gpu():
            raise UserError("QLoRA (load_in_4bit / load_in_8bit) needs a CUDA GPU: bitsandbytes quantised layers do not train on a CPU. "
                            "Use plain LoRA (use_peft: true) on a CPU.")
        if not getattr(model_args, "use_peft", False):
            raise UserError("load_in_4bit / load_in_8bit trains only adapters: set use_peft: true (QLoRA).")


def find_template(path: str) -> Path:
    """A chat template file, relative to the working directory or, failing that, among the shipped ones."""
    return find_chat_template(path)


def chat_tokenizer(model_path: str, args, data_args):
    """The tokenizer (the model's, or `tokenizer_name`) with the recipe's chat template (a file path, or
    handbook's inline string)."""
    tokenizer = load_tokenizer(getattr(data_args, "tokenizer_name", None) or model_path)
    template_path = getattr(args, "chat_template_path", None)
    if template_path:
        tokenizer.chat_template = find_template(template_path).read_text()
        args.chat_template_path = None  # applied here; TRL would otherwise re-apply it and resize embeddings
    elif data_args.chat_template:
        tokenizer.chat_template = data_args.chat_template
    if getattr(args, "eos_token", None) and args.eos_token not in tokenizer.get_vocab():
        raise UserError(f"eos_token '{args.eos_token}' is not in the tokenizer's vocabulary.")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = getattr(args, "eos_token", None) or tokenizer.eos_token
    return tokenizer


def policy_model(model_path: str, model_args, args):
    """The policy model. On a CPU the weights stay fp32 and `bf16: true` means autocast (pure bf16
    weights would lose AdamW updates); on a GPU `dtype` from the recipe is used as is."""
    import torch
    from accelerate import PartialState
    from trl.trainer.utils import get_quantization_config

    dtype = model_args.dtype
    if not has_gpu() and dtype not in (None, "auto", "float32"):
        note(f"dtype {dtype} -> float32 on a CPU (bf16: {getattr(args, 'bf16', False)} gives bf16 autocast).")
        dtype = "float32"
    kwargs = {
        "revision": model_args.model_revision,
        "trust_remote_code": getattr(args, "trust_remote_code", False),
        "attn_implementation": model_args.attn_implementation,
        "dtype": dtype if dtype in (None, "auto") else getattr(torch, dtype),
    }
    quantization = get_quantization_config(model_args)
    if quantization is not None:
        kwargs.update(quantization_config=quantization, device_map={"": PartialState().local_process_index})
    if model_args.attn_implementation and "flash" in model_args.attn_implementation and not has_gpu():
        note(f"attn_implementation {model_args.attn_implementation} needs a GPU; using sdpa on the CPU.")
        kwargs["attn_implementation"] = "sdpa"
    return load_model(model_path, **kwargs)


def check_packed_attention(model, args) -> None:
    """Packing must not let one example attend to another: refuse backends/models that would."""
    if not getattr(args, "packing", False):
        return
    if args.packing_strategy == "wrapped":
        raise UserError("packing_strategy 'wrapped' cuts examples mid-way and lets attention cross them; "
                        "use packing_strategy: bfd (best-fit decreasing, per-example position ids).")
    backend = model.config._attn_implementation
    if backend not in PACKED_ATTENTION_BACKENDS:
        raise UserError(f"attn_implementation '{backend}' cannot keep packed examples apart (attention would cross them); "
                        f"use one of {sorted(PACKED_ATTENTION_BACKENDS)} or set packing: false.")
    base = getattr(model, "model", model)
    if "flash" not in backend:
        source = inspect.getsource(type(base).forward) if hasattr(type(base), "forward") else ""
        if "create_causal_mask" not in source and "create_sliding_window_causal_mask" not in source:
            raise UserError(f"{type(model).__name__} builds its own attention mask and ignores per-example position ids; "
                            "packing would let examples attend to each other. Set packing: false or use flash_attention_2.")


def peft_config(model_args):
    from trl.trainer.utils import get_peft_config

    if not model_args.use_peft:
        return None
    return get_peft_config(model_args)


def resolve_model_path(model_args, made_by: str | None = None) -> str:
    """The model to start from, checked (a local folder exists and is complete); `made_by` names the stage
    whose output it is, for the message when it does not exist yet."""
    if not model_args.model_name_or_path:
        raise UserError("model_name_or_path is required (a Hub id, a folder, or embedded:SmolLM2-135M-Instruct).")
    return check_model_source(model_args.model_name_or_path, made_by)


FINISHED_MARKERS = ("model.safetensors", "adapter_model.safetensors")  # what save_final moves in last


def refuse_finished_output(output_dir: str) -> str:
    """Refuse a file in the way or a finished stage in output_dir; returns the marker to claim the folder with."""
    for marker in FINISHED_MARKERS:
        check_output_dir(output_dir, finished_marker=marker)
    return FINISHED_MARKERS[0]


def eval_split_or_off(args, eval_ds) -> None:
    if args.eval_strategy != "no" and eval_ds is None:
        note("no eval split in the data (set dataset_test_split or test_split_size); evaluation is off.")
        args.eval_strategy = "no"


def run_stage(stage: str, config_types: list, validate, build_trainer, argv: list[str] | None) -> int:
    """The whole of `smollm2 sft` / `smollm2 dpo`: parse (numbers checked), `validate(args, model_args,
    data_args)` (the stage's checks, nothing written), claim the output folder (refusing a finished one or
    one another run holds), then build the trainer, save the resolved config, train and save the model.
    Argument groups after the first three may add a TrainerCallback (their `callback(stage, output_dir)`)."""
    from smollm2_recipes import recipe_parsing

    args, model_args, data_args, *extra = recipe_parsing.parse(config_types, argv)
    marker = refuse_finished_output(args.output_dir)
    validate(args, model_args, data_args)
    with claim_output_dir(args.output_dir, finished_marker=marker, resume=bool(args.resume_from_checkpoint)):
        in_fp32 = fp32_without_bf16_units(args)
        trainer, tokenizer = build_trainer(args, model_args, data_args)
        if in_fp32:
            note(FP32_NOTE.removeprefix("note: "))
        for group in extra:
            callback = group.callback(stage, args.output_dir)
            if callback is not None:
                trainer.add_callback(callback)
        recipe_parsing.save_resolved_config(args.output_dir, args, model_args, data_args, *extra)
        trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
        save_final(trainer, tokenizer, args.output_dir)
    print(f"{stage.upper()} model written to {args.output_dir}")
    return 0


def inference_template(template: str | None) -> str | None:
    """The training template without its {% generation %} markers: the same text, readable by tools
    (llama.cpp, vLLM) that do not know the markers."""
    import re

    return None if template is None else re.sub(r"\{%-?\s*(end)?generation\s*-?%\}", "", template)


def save_final(trainer, tokenizer, output_dir: str) -> None:
    """Write the model folder so it loads with AutoModelForCausalLM/AutoTokenizer, carries the
    (inference) chat template and stops generation at the chat template's end-of-turn token.
    Written into a temporary folder and moved in, so a crash never leaves a half-written model."""
    model = trainer.model
    tmp = Path(output_dir) / ".final.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tokenizer.chat_template = inference_template(tokenizer.chat_template)
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in tokenizer.get_vocab() else tokenizer.eos_token_id
    unwrapped = trainer.accelerator.unwrap_model(model)
    gen = getattr(unwrapped, "generation_config", None)
    if gen is not None:
        gen.eos_token_id = end_of_turn
        gen.pad_token_id = tokenizer.pad_token_id
    if trainer.accelerator.is_main_process:
        write_json_atomic(Path(output_dir) / "log_history.json", trainer.state.log_history, indent=1)
        trainer.save_model(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        for item in tmp.iterdir():
            os.replace(item, Path(output_dir) / item.name)
        tmp.rmdir()
    trainer.accelerator.wait_for_everyone()
