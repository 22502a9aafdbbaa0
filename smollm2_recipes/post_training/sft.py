"""`smollm2 sft RECIPE.yaml [--key value ...]`: supervised fine-tuning with TRL's SFTTrainer.

Chat rows are trained on the assistant turns only (through a chat template with `{% generation %}`
markers), the end-of-turn token included even when pad = eos; packing is TRL's best-fit decreasing with
per-example position ids, so packed examples never attend to each other."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import ModelConfig, SFTConfig

from smollm2_recipes.errors import UserError
from smollm2_recipes.offline.arith_accuracy import ArithEvalArguments
from smollm2_recipes.package_data import find_chat_template
from smollm2_recipes.post_training import common
from smollm2_recipes.post_training.data import ChatDataArguments, load_mixture
from smollm2_recipes.runkit.fields import NoSavedSecrets, PostTrainingFields

GENERATION_TEMPLATE = "chat_templates/smollm2_generation.jinja"


@dataclass
class SmolSFTConfig(NoSavedSecrets, PostTrainingFields, SFTConfig):
    """TRL's SFTConfig plus the project's keys (hub_token never saved). assistant_only_loss is on by default
    for chat data."""

    assistant_only_loss: bool = field(default=True, metadata={"help": "train only on assistant turns (chat data)"})


def has_generation_markers(template: str | None) -> bool:
    return bool(template) and "generation" in template and "endgeneration" in template


PROBES = [
    [{"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"}],
    [{"role": "system", "content": "s"}, {"role": "user", "content": "u1"}, {"role": "assistant", "content": "a1"}, {"role": "user", "content": "u2"}],
]


def _renders_like_smollm2(tokenizer, template: str) -> bool:
    """True if `template` renders the probe conversations exactly like chat_templates/smollm2.jinja (e.g.
    handbook's inline copy of it, whose escapes differ but whose text is the same)."""
    plain = find_chat_template("chat_templates/smollm2.jinja").read_text()
    try:
        return all(tokenizer.apply_chat_template(c, chat_template=template, tokenize=False, add_generation_prompt=g)
                   == tokenizer.apply_chat_template(c, chat_template=plain, tokenize=False, add_generation_prompt=g)
                   for c in PROBES for g in (False, True))
    except Exception:  # a template that fails on the probes is not the SmolLM2 one
        return False


def _ensure_assistant_mask(args, tokenizer) -> None:
    """assistant_only_loss needs {% generation %} markers; the published SmolLM2 template has none, so
    swap in the marked variant that renders the same text (tested byte for byte)."""
    if not args.assistant_only_loss or has_generation_markers(tokenizer.chat_template):
        return
    if tokenizer.chat_template is None or _renders_like_smollm2(tokenizer, tokenizer.chat_template):
        common.note(f"assistant_only_loss uses {GENERATION_TEMPLATE} (same text as the SmolLM2 template, with generation markers).")
        tokenizer.chat_template = common.find_template(GENERATION_TEMPLATE).read_text()
        return
    raise UserError("assistant_only_loss: true needs a chat template with {% generation %} markers; set chat_template_path "
                    f"(e.g. {GENERATION_TEMPLATE}) or assistant_only_loss: false.")


def validate(args, model_args, data_args) -> str:
    """Every check that needs no model loaded, before anything is written; returns the model path."""
    common.check_hardware(args, model_args)
    common.apply_global_batch(args, args.global_batch_size)
    if getattr(args, "chat_template_path", None):
        common.find_template(args.chat_template_path)
    return common.resolve_model_path(model_args)


def build_trainer(args, model_args, data_args):
    """Everything up to a ready SFTTrainer (also used by tests and the packing benchmark)."""
    from transformers import set_seed
    from trl import SFTTrainer

    model_path = validate(args, model_args, data_args)
    set_seed(args.seed)
    tokenizer = common.chat_tokenizer(model_path, args, data_args)
    train, eval_ds, _ = load_mixture(data_args, "chat", args.seed, want_eval=args.eval_strategy != "no", report_dir=args.output_dir)
    _ensure_assistant_mask(args, tokenizer)
    model = common.policy_model(model_path, model_args, args)
    common.check_packed_attention(model, args)
    common.eval_split_or_off(args, eval_ds)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, eval_dataset=eval_ds, processing_class=tokenizer,
                         peft_config=common.peft_config(model_args))
    return trainer, tokenizer


# What a sft recipe parses into, in order (the arithmetic check is the offline recipes' TrainerCallback).
CONFIG_TYPES = [SmolSFTConfig, ModelConfig, ChatDataArguments, ArithEvalArguments]


def main(argv: list[str] | None = None) -> int:
    return common.run_stage("sft", CONFIG_TYPES, validate, build_trainer, argv)
