"""`PretrainTrainer`: transformers' `Trainer` with what pretraining adds and nothing it already does.

- reads a `TrackedStream` (no accelerate re-sharding: the data package already gives each rank its blocks);
- atomic checkpoints that also hold the data position, the token ledger, the spike guard and the averaged
  weights, so a resumed run reads exactly the tokens an uninterrupted one would;
- per-step loss for the spike guard, and logs of tokens/s, MFU, tokens per source and the data position;
- weight decay on every parameter, as nanotron did for SmolLM2 (`weight_decay_norms: false` restores the Trainer's
  exclusion of norms and biases).
Optimiser, WSD schedule, clipping, accumulation, autocast, logging back-ends and progress bars are the Trainer's."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback

from smollm2_recipes.recipe_parsing import save_resolved_config
from smollm2_recipes.runkit import write_json_atomic
from smollm2_recipes.training import checkpoints as ckpt
from smollm2_recipes.training.stream import TokenLedger, TrackedStream, collate_blocks

DATA_STATE = "data_state_rank{rank}.json"


class _StepEnd(TrainerCallback):
    """Runs after the Trainer's own flow callback, so it can veto a save of poisoned weights."""

    def __init__(self, trainer: "PretrainTrainer"):
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        self.trainer._on_step_end(control)
        return control


class PretrainTrainer(Trainer):
    def __init__(self, *args, stream: TrackedStream, spike_guard=None, averager=None, stage_end_steps=(),
                 flops_per_token: float = 0.0, peak_flops: float = 0.0, resolved_configs=(), **kwargs):
        super().__init__(*args, data_collator=collate_blocks, **kwargs)
        self.stream = stream
        self.ledger = TokenLedger()
        self.spike_guard = spike_guard
        self.averager = averager
        self.stage_end_steps = sorted(set(stage_end_steps))
        self.flops_per_token, self.peak_flops = flops_per_token, peak_flops
        self.resolved_configs = resolved_configs
        self.blocks_trained = 0
        self._step_loss = 0.0
        self._step_blocks: list[int] = []
        self._staging = False
        self._extra_logs: dict = {}
        self._last_log = (time.perf_counter(), 0)
        self.add_callback(_StepEnd(self))

    # ---- data ------------------------------------------------------------------------------------------
    def get_train_dataloader(self):
        # Plain DataLoader, main process: the stream is already this rank's shard, and its position must be
        # known exactly at every step (workers would hide it).
        return torch.utils.data.DataLoader(self.stream, batch_size=self.args.per_device_train_batch_size,
                                           collate_fn=collate_blocks, num_workers=0,
                                           pin_memory=self.args.dataloader_pin_memory and torch.cuda.is_available())

    def restore_data_state(self, checkpoint: str) -> None:
        path = Path(checkpoint) / DATA_STATE.format(rank=self.args.process_index)
        if not path.is_file():
            raise ckpt.UserError(f"checkpoint '{checkpoint}' has no {path.name}: it was not written by smollm2 pretrain "
                                 f"(or with another number of processes), so the data position cannot be restored.")
        state = json.loads(path.read_text())
        self.stream.load_state(state["stream"])
        self.blocks_trained = state["stream"]["delivered"]
        self.ledger = TokenLedger(**state["ledger"])
        # tokens/s and MFU count from here: the restored tokens were not trained in this process
        self._last_log = (time.perf_counter(), self.ledger.tokens * self.accelerator.num_processes)
        if self.spike_guard is not None:
            self.spike_guard.losses.extend(state.get("spike_guard", {}).get("losses", []))
        if self.averager is not None:
            self.averager.load(checkpoint)

    # ---- optimiser ---------------------------------------------------------------------------------------
    def get_decay_parameter_names(self, model) -> list[str]:
        # nanotron's `weight_decay_exclude_named_params` defaults to an empty list (src/nanotron/config/config.py),
        # so SmolLM2 decayed its RMSNorm weights too; the Trainer's own rule skips norms and biases.
        if self.args.weight_decay_norms:
            return [name for name, param in model.named_parameters() if param.requires_grad]
        return super().get_decay_parameter_names(model)

    # ---- one step --------------------------------------------------------------------------------------
    def training_step(self, model, inputs, num_items_in_batch=None):
        blocks = inputs.pop("block_index", None)
        if blocks is not None:
            self._step_blocks.extend(int(b) for b in blocks)
        self.ledger.update(inputs["input_ids"])
        self.blocks_trained += inputs["input_ids"].shape[0]
        loss = super().training_step(model, inputs, num_items_in_batch)
        self._step_loss = self._step_loss + loss.detach()  # a tensor: no device sync per micro-batch
        return loss

    def _on_step_end(self, control) -> None:
        loss, blocks = float(self._step_loss), self._step_blocks
        self._step_loss, self._step_blocks = 0.0, []
        if self.averager is not None:
            self.averager.maybe_update(self.model, self.state.global_step)
        step = self.state.global_step
        if step in self.stage_end_steps and self.eval_dataset:
            control.should_evaluate = True  # held-out loss at every stage boundary
        if self.spike_guard is None or not self.spike_guard.enabled:
            return
        if self.accelerator.num_processes > 1:  # every rank must take the same decision
            loss = self.accelerator.reduce(torch.tensor(loss, device=self.args.device), "mean").item()
            blocks = [b for part in self.accelerator.gather_for_metrics([blocks], use_gather_object=True) for b in part]
        record = self.spike_guard.check(step, loss, blocks, self.ledger.tokens * self.accelerator.num_processes)
        if record is not None:
            self._extra_logs.update({"spike_loss": loss, "spike_first_block": float(min(blocks) if blocks else -1)})
            control.should_log = True
            if record["action"] == "rollback":
                control.should_training_stop = True
                control.should_save = False  # never checkpoint the weights the bad batch produced
                control.should_evaluate = False

    # ---- logging -----------------------------------------------------------------------------------------
    def log(self, logs: dict, start_time: float | None = None) -> None:
        if "loss" in logs:
            now, tokens = time.perf_counter(), self.ledger.tokens * self.accelerator.num_processes
            then, tokens_then = self._last_log
            if now > then and tokens > tokens_then:
                tps = (tokens - tokens_then) / (now - then)
                logs["tokens_per_second"] = tps
                if self.peak_flops:
                    logs["mfu"] = tps / self.accelerator.num_processes * self.flops_per_token / self.peak_flops
            self._last_log = (now, tokens)
            logs.update(self._extra_logs)
            self._extra_logs = {}
            logs["tokens_seen"] = tokens
            logs["data_position_blocks"] = self.blocks_trained * self.accelerator.num_processes
            for name, stats in (self.stream.stats() or {}).items():
                value = stats.get("tokens") if isinstance(stats, dict) else stats
                if isinstance(value, (int, float)):
                    logs[f"tokens_{name}"] = value
        super().log(logs, start_time)

    # ---- atomic checkpoints ------------------------------------------------------------------------------
    def _get_output_dir(self, trial) -> str:
        run_dir = super()._get_output_dir(trial)
        return str(ckpt.staging_dir(run_dir)) if self._staging else run_dir

    def _save_checkpoint(self, model, trial) -> None:
        run_dir, step = self.args.output_dir, self.state.global_step
        staged = ckpt.staging_dir(run_dir) / f"checkpoint-{step}"
        if self.args.should_save:
            shutil.rmtree(staged, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        self._staging = True
        try:
            super()._save_checkpoint(model, trial)  # model, optimizer, scheduler, RNG, trainer state
        finally:
            self._staging = False
        staged.mkdir(parents=True, exist_ok=True)
        state = {"stream": self.stream.state_at(self.blocks_trained), "ledger": self.ledger.state_dict(),
                 "spike_guard": self.spike_guard.state_dict() if self.spike_guard else {}}
        write_json_atomic(staged / DATA_STATE.format(rank=self.args.process_index), state, sort_keys=True)
        if self.args.should_save:
            if self.resolved_configs:
                save_resolved_config(staged, *self.resolved_configs)
            if self.averager is not None:
                self.averager.save(staged)
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            ckpt.publish(staged, run_dir, step)
            ckpt.rotate(run_dir, self.args.save_total_limit)
        self.accelerator.wait_for_everyone()

    def _issue_warnings_after_load(self, load_result) -> None:
        # Tied weights (lm_head = embed_tokens) are saved once; transformers' Trainer only recognises that
        # through _keys_to_ignore_on_save and would warn that lm_head.weight is missing on every resume.
        tied = set(getattr(self.model, "_tied_weights_keys", None) or ()) if self.model.config.tie_word_embeddings else set()
        missing = [key for key in load_result.missing_keys if key not in tied]
        if tied & set(load_result.missing_keys):
            self.model.tie_weights()
        super()._issue_warnings_after_load(load_result._replace(missing_keys=missing))


def stage_end_steps(boundaries: list[dict], sequences_per_step: int) -> list[int]:
    return [math.ceil(b["end_block"] / sequences_per_step) for b in boundaries]
