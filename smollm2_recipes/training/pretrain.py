"""`smollm2 pretrain RECIPE.yaml [--key value ...]` (= `accelerate launch scripts/run_pretrain.py RECIPE.yaml`).

One WSD trajectory over the recipe's data stages on transformers' `Trainer`. Flags on top of the Trainer's:
`--resume_from_checkpoint latest`, `--cooldown_from CKPT --decay_steps N [--decay_type 1-sqrt]` (a decay branch
into its own output_dir), `--weight_averaging swa|ema`, `--spike_action rollback`."""

from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from smollm2_recipes.errors import UserError
from smollm2_recipes.runkit import claim_output_dir, write_atomic, write_json_atomic
from smollm2_recipes.runkit.loading import check_model_source
from smollm2_recipes.runkit.lock import check_output_dir
from smollm2_recipes.training.hardware import FP32_NOTE, bf16_is_emulated, train_in_fp32
from smollm2_recipes.training import checkpoints as ckpt
from smollm2_recipes.training.pretrain_config import ModelArguments, PretrainConfig, resolve_batch, resolve_schedule, resolve_steps

RUN_SUMMARY = ckpt.RUN_COMPLETE
SKIP_FILE = "skip_blocks.json"


def main(argv: list[str] | None = None) -> int:
    from smollm2_recipes.recipe_parsing import parse
    from smollm2_recipes.data.stages import DataArguments

    config, model_args, data_args = parse([PretrainConfig, ModelArguments, DataArguments], argv)
    run_pretrain(config, model_args, data_args)
    return 0


# ---- model -------------------------------------------------------------------------------------------------
def load_model(model_args: ModelArguments, tokenizer, seq_len: int):
    """A fresh preset (init with its std, seeded) or a saved model; optionally with a new RoPE base and length."""
    from smollm2_recipes import models

    if model_args.model in models.PRESETS:  # a fresh init: the RoPE base and length are simply its shape
        overrides = {"max_position_embeddings": model_args.max_position_embeddings} if model_args.max_position_embeddings else {}
        if model_args.rope_theta is not None:
            overrides["rope_parameters"] = {"rope_type": "default", "rope_theta": float(model_args.rope_theta)}
        model = models.build_model(model_args.model, seed=model_args.init_seed, bos_token_id=tokenizer.bos_token_id,
                                   eos_token_id=tokenizer.eos_token_id, attn_implementation=model_args.attn_implementation,
                                   **overrides)
    else:
        import torch

        model, _ = models.load_pretrained(model_args.model, dtype=torch.float32)
        if model_args.rope_theta is not None or model_args.max_position_embeddings is not None:
            change_rope(model, model_args.max_position_embeddings or model.config.max_position_embeddings,
                        model_args.rope_theta or models.rope_theta(model.config))
    if seq_len > model.config.max_position_embeddings:
        raise UserError(f"seq_len {seq_len} is longer than the model's max_position_embeddings "
                        f"{model.config.max_position_embeddings}: extend the context first (smollm2 extend-context).")
    return model


def change_rope(model, max_positions: int, theta: float):
    """Context extension: a larger RoPE base and more positions, applied to the live model (the rotary
    embedding caches its inverse frequencies, so it is rebuilt from the new config)."""
    from smollm2_recipes import models

    models.extend_context(model.config, max_positions, theta)
    base = getattr(model, "model", model)
    if hasattr(base, "rotary_emb"):
        device = next(model.parameters()).device
        base.rotary_emb = type(base.rotary_emb)(config=model.config).to(device)
    return model


# ---- plan: a value computed from the parsed config, which it never changes -----------------------------------
@dataclass(frozen=True)
class RunPlan:
    """Everything a run's shape follows from, decided before anything is loaded or written."""

    resume: str | None              # checkpoint to resume from (a cooldown branch starts from its source)
    finished: bool                  # resuming a run that already finished: nothing to do
    sequences_per_step: int         # over all devices
    gradient_accumulation_steps: int
    tokens_per_step: int
    max_steps: int
    lr_scheduler_kwargs: dict
    cooldown_from: str | None
    bf16: bool
    eval_on_start: bool

    def training_args(self, config: PretrainConfig) -> PretrainConfig:
        """The arguments the Trainer runs with: a copy of the config with the planned values."""
        args = copy.copy(config)
        args.gradient_accumulation_steps = self.gradient_accumulation_steps
        args.max_steps = self.max_steps
        args.lr_scheduler_kwargs = dict(self.lr_scheduler_kwargs)
        args.ignore_data_skip = True  # the stream restores its own position; never re-read skipped batches
        args.bf16 = self.bf16
        if not self.bf16 and args.mixed_precision == "bf16":
            train_in_fp32(args)
        args.eval_on_start = self.eval_on_start
        return args


def _check_output_dir(config: PretrainConfig, resuming: bool) -> bool:
    """True if the run already finished (and we were asked to resume it). Never writes."""
    out = Path(config.output_dir)
    if out.exists() and not out.is_dir():
        check_output_dir(out, finished_marker=RUN_SUMMARY)  # a file in the way: the run kit's one message
    if (out / RUN_SUMMARY).is_file():
        if resuming:
            return True
        raise UserError(f"output_dir '{out}' already holds a finished run ({RUN_SUMMARY}); choose another output_dir "
                        "(nothing was overwritten).")
    if not resuming and ckpt.complete_checkpoints(out):
        raise UserError(f"output_dir '{out}' holds checkpoints of an unfinished run: continue it with "
                        "--resume_from_checkpoint latest, or choose another output_dir (nothing was overwritten).")
    return False


def _cooldown_plan(config: PretrainConfig) -> tuple[str, int]:
    """(checkpoint, end step) of a cooldown branch, after checking it starts in the stable phase."""
    source = ckpt.resolve_resume(config.cooldown_from, Path(config.cooldown_from).parent)
    if config.decay_steps is None or config.decay_steps <= 0:
        raise UserError("--cooldown_from needs --decay_steps N (N > 0): the length of the decay branch.")
    if Path(config.output_dir).resolve() in (Path(source).resolve().parent, Path(source).resolve()):
        raise UserError(f"a cooldown branch needs its own output_dir; '{config.output_dir}' is the main run's folder.")
    step = ckpt.checkpoint_step(source)
    warmup = config.get_warmup_steps(step + config.decay_steps)
    if step < warmup:
        raise UserError(f"checkpoint '{source}' is at step {step}, inside the warmup ({warmup} steps): branch a cooldown "
                        "from a stable-phase checkpoint.")
    main_cfg = Path(source) / "resolved_config.yaml"
    if main_cfg.is_file():
        main = yaml.safe_load(main_cfg.read_text()) or {}
        kwargs = main.get("lr_scheduler_kwargs") or {}
        if main.get("max_steps", 0) > 0 and kwargs.get("num_decay_steps") is not None:
            stable_end = main["max_steps"] - int(kwargs["num_decay_steps"])
            if step > stable_end:
                raise UserError(f"checkpoint '{source}' (step {step}) is already in the main run's decay, which starts at "
                                f"step {stable_end}: branch from a stable-phase checkpoint (step <= {stable_end}).")
    return source, step + config.decay_steps


def plan_run(config: PretrainConfig, model_args: ModelArguments, data_args, has_eval: bool) -> RunPlan:
    """Validate the run and decide its shape: global batch -> accumulation, stage budgets -> steps, WSD within
    the run, the resume point. Reads only (the output folder, a cooldown source); writes nothing."""
    from smollm2_recipes import models
    if config.output_dir is None:
        raise UserError("output_dir is required.")
    resume = ckpt.resolve_resume(config.resume_from_checkpoint, config.output_dir)
    finished = _check_output_dir(config, resume is not None)
    if model_args.model not in models.PRESETS:  # continuing a saved model: it must be there, and whole
        check_model_source(model_args.model, made_by="pretrain")
    seq_len = data_args.seq_len
    sequences_per_step, accumulation = resolve_batch(config, seq_len)
    tokens_per_step = sequences_per_step * seq_len
    stage_tokens = [s.tokens for s in getattr(data_args, "stage_specs", [])]
    branch_source, branch_end = _cooldown_plan(config) if config.cooldown_from else (None, None)
    max_steps = resolve_steps(config, stage_tokens, tokens_per_step, branch_end)
    schedule = resolve_schedule(config, max_steps)
    if config.dataloader_num_workers:
        print("note: dataloader_num_workers is ignored: the stream runs in the main process so its position is exact.", file=sys.stderr)
    bf16 = bool(config.bf16) and not bf16_is_emulated(config.bf16, config.use_cpu)  # said once the run is claimed
    if resume is None and branch_source is not None:
        resume = branch_source  # a branch starts from the main run's state, optimiser and data position included
    return RunPlan(resume=resume, finished=finished, sequences_per_step=sequences_per_step,
                   gradient_accumulation_steps=accumulation, tokens_per_step=tokens_per_step, max_steps=max_steps,
                   lr_scheduler_kwargs=schedule, cooldown_from=branch_source, bf16=bf16,
                   eval_on_start=has_eval and resume is None)


def _with_replacement_blocks(data_args, n_skipped: int):
    """Blocks skipped after a spike are replaced by as many new ones at the end of the last stage, so the run
    still has data for every step of its schedule (stage boundaries before the end do not move)."""
    import dataclasses

    if not n_skipped or not getattr(data_args, "stage_specs", None):
        return data_args
    extended = copy.copy(data_args)
    last = data_args.stage_specs[-1]
    extended.stage_specs = [*data_args.stage_specs[:-1], dataclasses.replace(last, tokens=last.tokens + n_skipped * data_args.seq_len)]
    return extended


def _read_skip(output_dir: str) -> set[int]:
    path = Path(output_dir) / SKIP_FILE
    return set(json.loads(path.read_text())) if path.is_file() else set()


# ---- build: tokenizer, model, data, what the run reports ----------------------------------------------------
@dataclass
class RunParts:
    args: PretrainConfig
    tokenizer: object
    model: object
    make_stream: Callable
    probe: object                   # the first training stream (also tells the stage boundaries)
    eval_sets: dict | None
    stage_ends: list
    flops_per_token: float
    peak_flops: float
    n_params: int


def build_run(plan: RunPlan, config: PretrainConfig, model_args: ModelArguments, data_args,
              stream_factory: Callable | None = None, eval_sets: dict | None = None) -> RunParts:
    import torch

    from smollm2_recipes.runkit import load_tokenizer
    from smollm2_recipes.training.hardware import flops_per_token, measured_peak_flops
    from smollm2_recipes.training.stream import TrackedStream
    from smollm2_recipes.training.trainer import stage_end_steps

    args = plan.training_args(config)
    seq_len = data_args.seq_len
    tokenizer = load_tokenizer(data_args.tokenizer_name)
    model = load_model(model_args, tokenizer, seq_len)
    if plan.resume is not None:
        ckpt.check_same_shape(ckpt.read_config(plan.resume), model.config, f"checkpoint '{plan.resume}'")

    def make_stream(skip: set[int]) -> TrackedStream:
        stage_args = _with_replacement_blocks(data_args, len(skip))
        if stream_factory is not None:
            inner = stream_factory(stage_args)
        else:
            from smollm2_recipes.data.mixture import build_stream

            inner = build_stream(stage_args, tokenizer, rank=args.process_index, world_size=args.world_size, split="train")
        return TrackedStream(inner, rank=args.process_index, world_size=args.world_size, skip_blocks=skip,
                             snapshot_every=args.per_device_train_batch_size * args.gradient_accumulation_steps)

    if eval_sets is None and config.eval_blocks > 0:
        from smollm2_recipes.data.mixture import build_eval_blocks

        eval_sets = {s.name: build_eval_blocks(data_args, tokenizer, config.eval_blocks, stage=s.name) for s in data_args.stage_specs}
    if not eval_sets:
        args.eval_on_start = False

    # What a run reports: stage boundaries (steps), MFU against this device's measured peak.
    probe = make_stream(set())
    boundaries = probe.stage_boundaries()
    ends = stage_end_steps(boundaries, plan.sequences_per_step) if boundaries else []
    stage_ends = [(b["name"], min(e, plan.max_steps)) for b, e in zip(boundaries, ends)]
    n_params = sum(p.numel() for p in model.parameters())
    fpt = flops_per_token(model.config, seq_len, n_params)
    device = str(args.device)
    peak = (config.mfu_peak_tflops * 1e12) if config.mfu_peak_tflops else measured_peak_flops(
        "cuda" if device.startswith("cuda") else "cpu", torch.bfloat16 if plan.bf16 else torch.float32)
    return RunParts(args=args, tokenizer=tokenizer, model=model, make_stream=make_stream, probe=probe, eval_sets=eval_sets,
                    stage_ends=stage_ends, flops_per_token=fpt, peak_flops=peak, n_params=n_params)


def write_run_record(plan: RunPlan, parts: RunParts, model_args, data_args) -> None:
    """The run's record, written once the folder is claimed: resolved config (with the planned values) and plan."""
    from smollm2_recipes.recipe_parsing import save_resolved_config

    out = Path(parts.args.output_dir)
    ckpt.clean_partial(out)
    save_resolved_config(out, parts.args, model_args, data_args)
    write_json_atomic(out / "plan.json", {
        "max_steps": plan.max_steps, "sequences_per_step": plan.sequences_per_step, "tokens_per_step": plan.tokens_per_step,
        "gradient_accumulation_steps": plan.gradient_accumulation_steps, "world_size": parts.args.world_size,
        "lr_scheduler_kwargs": plan.lr_scheduler_kwargs, "stage_ends": parts.stage_ends,
        "cooldown_from": plan.cooldown_from, "parameters": parts.n_params, "flops_per_token": parts.flops_per_token,
        "peak_flops": parts.peak_flops, "bf16": plan.bf16}, sort_keys=True)


# ---- train: the Trainer, with the spike guard's rollback loop ------------------------------------------------
def train_run(plan: RunPlan, parts: RunParts, model_args, data_args) -> dict:
    from smollm2_recipes.training.spike_guard import SpikeGuard
    from smollm2_recipes.training.trainer import PretrainTrainer

    args, model, probe, resume = parts.args, parts.model, parts.probe, plan.resume
    out = Path(args.output_dir)
    rollbacks = 0
    while True:
        skip = _read_skip(args.output_dir)
        stream = probe if (probe is not None and not skip and resume is None) else parts.make_stream(skip)
        probe = None
        guard = SpikeGuard(args.spike_factor, args.spike_window, args.spike_warmup, args.spike_action,
                           args.output_dir if args.should_save else "")
        averager = None
        if args.weight_averaging != "none":
            from smollm2_recipes.training.averaging import Averager

            averager = Averager(model, args.weight_averaging, args.averaging_every, args.averaging_start, args.ema_decay)
        trainer = PretrainTrainer(model=model, args=args, processing_class=parts.tokenizer, eval_dataset=parts.eval_sets or None,
                                  stream=stream, spike_guard=guard, averager=averager,
                                  stage_end_steps=[e for _, e in parts.stage_ends], flops_per_token=parts.flops_per_token,
                                  peak_flops=parts.peak_flops, resolved_configs=(args, model_args, data_args))
        if resume is not None:
            trainer.restore_data_state(resume)
        result = trainer.train(resume_from_checkpoint=resume)
        if guard.pending is None:
            break
        # Rollback: back to the last complete checkpoint, the offending blocks on the skip list.
        rollbacks += 1
        spike = guard.pending
        if rollbacks > args.max_rollbacks:
            raise UserError(f"{rollbacks - 1} rollbacks did not get past loss spikes (last at step {spike['step']}); "
                            f"see {out / 'spikes.jsonl'}. Lower the learning rate or raise spike_factor.")
        if args.should_save:
            write_json_atomic(out / SKIP_FILE, sorted(skip | set(spike["blocks"])), sort_keys=True)
        trainer.accelerator.wait_for_everyone()
        resume = str(ckpt.latest_checkpoint(out) or plan.cooldown_from or "") or None
        print(f"spike at step {spike['step']} (loss {spike['loss']:.3f} > {args.spike_factor} x {spike['running_mean']:.3f}, "
              f"blocks {spike['blocks'][:8]}): rolling back to {resume or 'the start'}", file=sys.stderr)
        if resume is None:
            model = load_model(model_args, parts.tokenizer, data_args.seq_len)  # no checkpoint yet: the same seeded init

    return _finish(trainer, result, args, parts.stage_ends, averager, parts.tokenizer, rollbacks)


def run_pretrain(config: PretrainConfig, model_args: ModelArguments, data_args, stream_factory: Callable | None = None,
                 eval_sets: dict | None = None) -> dict:
    """Plan (validate; nothing written) -> claim the output folder -> build -> write the record -> train.
    Returns the run summary (also written to output_dir/run_complete.json).

    `stream_factory(data_args)` builds the underlying training stream (default: the data package's `build_stream`
    for this rank); `eval_sets` maps a name to held-out blocks (default: `eval_blocks` blocks of every stage)."""
    plan = plan_run(config, model_args, data_args, has_eval=bool(eval_sets) or config.eval_blocks > 0)
    if plan.finished:
        summary = json.loads((Path(config.output_dir) / RUN_SUMMARY).read_text())
        print(f"{config.output_dir} already finished at step {summary.get('global_step')}; nothing to do.", file=sys.stderr)
        return summary
    with claim_output_dir(config.output_dir, finished_marker=RUN_SUMMARY, resume=plan.resume is not None):
        parts = build_run(plan, config, model_args, data_args, stream_factory, eval_sets)
        if config.bf16 and not plan.bf16:
            print(FP32_NOTE, file=sys.stderr)
        if parts.args.should_save:
            write_run_record(plan, parts, model_args, data_args)
        return train_run(plan, parts, model_args, data_args)


def _finish(trainer, result, config, stage_ends, averager, tokenizer, rollbacks: int) -> dict:
    from smollm2_recipes.training.plots import plot_training

    out = Path(config.output_dir)
    trainer.save_model(str(out))
    history = trainer.state.log_history
    losses = [(h["step"], h["loss"]) for h in history if "loss" in h]
    summary = {
        "global_step": trainer.state.global_step,
        "final_loss": losses[-1][1] if losses else None,
        "final_loss_step": losses[-1][0] if losses else None,
        "train_loss_this_session": result.training_loss,
        "tokens_seen": trainer.ledger.tokens * trainer.accelerator.num_processes,
        "token_digest": trainer.ledger.digest,
        "rollbacks": rollbacks,
        "stage_ends": stage_ends,
        "eval": {k: v for h in history for k, v in h.items() if k.startswith("eval_") and k.endswith("_loss")},
    }
    if trainer.args.should_save:
        if averager is not None:
            path = averager.save_model_folder(out, tokenizer)
            summary["averaged_model"] = str(path) if path else None
        try:
            summary["plot"] = str(plot_training(history, stage_ends, out / "training_curves.png", title=str(out)))
        except Exception as err:  # a plot must never cost a finished run
            print(f"note: could not draw the training curves: {err}", file=sys.stderr)
        write_atomic(out / "log_history.jsonl", "".join(json.dumps(h) + "\n" for h in history))
        write_json_atomic(out / RUN_SUMMARY, summary, sort_keys=True)  # written last: marks the run finished
    return summary
