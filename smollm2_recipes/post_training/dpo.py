"""`smollm2 dpo RECIPE.yaml [--key value ...]`: preference optimisation with TRL's DPOTrainer.

The model being trained starts from the SFT model, which is also the reference; with
`precompute_ref_log_probs: true` the reference log-probs are computed once before training, so only
one model is ever in memory. Reward margins and accuracies are logged by TRL (`rewards/margins`,
`rewards/accuracies`) at every logging step."""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import DPOConfig, ModelConfig

from smollm2_recipes.errors import UserError
from smollm2_recipes.offline.arith_accuracy import ArithEvalArguments
from smollm2_recipes.post_training import common
from smollm2_recipes.post_training.data import ChatDataArguments, load_mixture
from smollm2_recipes.runkit.fields import NoSavedSecrets, PostTrainingFields


@dataclass
class SmolDPOConfig(NoSavedSecrets, PostTrainingFields, DPOConfig):
    """TRL's DPOConfig plus the project's keys (and handbook's `max_prompt_length`, which TRL 1 removed);
    hub_token never saved."""

    precompute_ref_log_probs: bool = field(default=True, metadata={"help": "compute the reference log-probs once: one model in memory"})
    max_prompt_length: int | None = field(default=512, metadata={"help": "rows whose prompt has more tokens are dropped (counted in data_report.json)"})
    rpo_alpha: float | None = field(default=None, metadata={"help": "weight of an NLL term on the chosen answer (RPO); adds TRL's 'sft' loss"})


def check_rpo_alpha(args) -> None:
    if args.rpo_alpha is not None and args.rpo_alpha < 0:
        raise UserError(f"rpo_alpha must be >= 0, got {args.rpo_alpha}.")
    if args.rpo_alpha and "sft" in args.loss_type:
        raise UserError("Set either rpo_alpha or an 'sft' entry in loss_type, not both.")


def apply_rpo_alpha(args) -> None:
    """RPO = DPO + alpha * NLL(chosen): TRL 1 expresses it as loss_type [..., 'sft'] with a weight."""
    check_rpo_alpha(args)
    if not args.rpo_alpha:
        return
    types = list(args.loss_type)
    weights = list(args.loss_weights or [1.0] * len(types))
    args.loss_type, args.loss_weights = types + ["sft"], weights + [float(args.rpo_alpha)]


def validate(args, model_args, data_args) -> str:
    """Every check that needs no model loaded, before anything is written; returns the model path. DPO
    starts from SFT's output, so a missing local folder is reported with the stage to run first."""
    common.check_hardware(args, model_args)
    common.apply_global_batch(args, args.global_batch_size)
    check_rpo_alpha(args)
    if getattr(args, "chat_template_path", None):
        common.find_template(args.chat_template_path)
    return common.resolve_model_path(model_args, made_by="sft")


def build_trainer(args, model_args, data_args):
    """Everything up to a ready DPOTrainer: returns (trainer, tokenizer)."""
    from transformers import set_seed
    from trl import DPOTrainer

    model_path = validate(args, model_args, data_args)
    apply_rpo_alpha(args)
    set_seed(args.seed)
    tokenizer = common.chat_tokenizer(model_path, args, data_args)
    if tokenizer.chat_template is None:
        raise UserError(f"'{model_args.model_name_or_path}' has no chat template; set chat_template_path (e.g. chat_templates/smollm2.jinja).")
    model = common.policy_model(model_path, model_args, args)
    train, eval_ds, _ = load_mixture(data_args, "preference", args.seed, tokenizer, max_prompt_length=args.max_prompt_length,
                                     want_eval=args.eval_strategy != "no", policy=(model, tokenizer, args.output_dir),
                                     report_dir=args.output_dir)
    common.eval_split_or_off(args, eval_ds)
    # ref_model=None: the starting (SFT) model is the reference; with precompute_ref_log_probs its
    # log-probs are computed once up front and no second copy is loaded.
    trainer = DPOTrainer(model=model, ref_model=None, args=args, train_dataset=train, eval_dataset=eval_ds,
                         processing_class=tokenizer, peft_config=common.peft_config(model_args))
    return trainer, tokenizer


# What a dpo recipe parses into, in order (the arithmetic check is the offline recipes' TrainerCallback).
CONFIG_TYPES = [SmolDPOConfig, ModelConfig, ChatDataArguments, ArithEvalArguments]


def main(argv: list[str] | None = None) -> int:
    return common.run_stage("dpo", CONFIG_TYPES, validate, build_trainer, argv)
