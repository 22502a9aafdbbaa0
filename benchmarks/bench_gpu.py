"""Training throughput through OUR path next to a bare PyTorch loop on the same model and batch.

ours     = the Trainer the project builds: `smollm2 pretrain`'s `PretrainTrainer` (the recipe's PretrainConfig,
           a `TrackedStream`, the spike guard) and `smollm2 sft`'s TRL `SFTTrainer` (`post_training.sft.build_trainer`
           on a saved preset model and packed chat rows);
baseline = a bare loop (autocast, backward, clip, fused AdamW) on the same model and the same batch.
Each case prints tokens/s, MFU and peak memory of both and their ratio, with and without Liger kernels and
torch.compile (Liger is skipped with the reason where it is not installed or there is no CUDA GPU).

On a GPU: pretraining of the 135M / 360M / 1.7B presets at 2048, SFT of the 135M at 8k. On a CPU: the `tiny`
preset (the same code path, small shapes; MFU against this CPU's measured matmul peak, peak memory = the
process's resident high-water mark). The last line is one JSON object.

    python benchmarks/bench_gpu.py                              # GPU: everything; CPU: tiny, eager + compile
    python benchmarks/bench_gpu.py --only pretrain-1.7B --variants eager,compile
Liger kernels: pip install -e ".[gpu]" (liger-kernel).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import random
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Dense bf16 peak of the GPU (vendor datasheets), for MFU. Unknown GPUs need --peak-tflops.
PEAK_BF16_TFLOPS = {"H100 SXM": 989.4, "H100 80GB HBM3": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H200": 989.4,
                    "GH200": 989.4, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "B200": 2250.0}
VARIANTS = {"eager": (False, False), "liger": (True, False), "compile": (False, True), "liger+compile": (True, True)}
# (kind, preset, seq, micro-batch): micro-batches sized for an 80 GB GPU.
GPU_CASES = [("pretrain", "135M", 2048, 16), ("pretrain", "360M", 2048, 8), ("pretrain", "1.7B", 2048, 4), ("sft", "135M", 8192, 1)]
CPU_CASES = [("pretrain", "tiny", 256, 2), ("sft", "tiny", 512, 1)]


@dataclass
class Case:
    kind: str
    preset: str
    seq: int
    batch: int
    variant: str

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.preset} {self.batch}x{self.seq} {self.variant}"


class Device:
    """Where the benchmark runs: synchronisation, peak memory and the MFU denominator."""

    def __init__(self, peak_override: float | None):
        import torch

        from smollm2_recipes.training.hardware import measured_peak_flops

        self.cuda = torch.cuda.is_available()
        self.name = torch.cuda.get_device_name(0) if self.cuda else "cpu"
        if peak_override:
            self.peak = peak_override * 1e12
        elif self.cuda:
            table = next((v for k, v in PEAK_BF16_TFLOPS.items() if all(w in self.name for w in k.split())), None)
            self.peak = table * 1e12 if table else None
        else:
            self.peak = measured_peak_flops("cpu", torch.float32)

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def reset(self) -> None:
        import gc

        import torch

        gc.collect()
        torch._dynamo.reset()
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()

    def peak_mem_gib(self) -> float:
        if self.cuda:
            import torch

            return round(torch.cuda.max_memory_allocated() / 2**30, 3)
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)  # KiB -> GiB, process high-water


def liger_skip_reason(device: Device) -> str | None:
    if not device.cuda:
        return "no CUDA GPU (Liger's kernels are Triton, GPU only)"
    if importlib.util.find_spec("liger_kernel") is None:
        return "liger-kernel not installed (pip install -e '.[gpu]')"
    return None


# ---- the bare loop ----------------------------------------------------------------------------------------------
def bare_loop(model, batch: dict, liger: bool, compile_: bool, steps: int, warmup: int, device: Device, bf16: bool) -> float:
    """Seconds per step of the plainest loop that trains `model` on `batch` (same optimiser settings as ours)."""
    import torch

    if liger:
        from liger_kernel.transformers import apply_liger_kernel_to_llama

        apply_liger_kernel_to_llama(rope=True, rms_norm=True, swiglu=True, fused_linear_cross_entropy=True, cross_entropy=False, model=model)
    model.train()
    forward = torch.compile(model) if compile_ else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.01, fused=device.cuda)
    dev = "cuda" if device.cuda else "cpu"
    batch = {k: v.to(dev) for k, v in batch.items()}

    def step():
        with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
            loss = forward(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):  # includes compilation
        step()
    device.sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    device.sync()
    return (time.perf_counter() - start) / steps


# ---- our trainers -------------------------------------------------------------------------------------------------
def step_clock(warmup: int, steps: int, device: Device):
    """A callback that times optimiser steps warmup+1 .. warmup+steps inside the Trainer's own loop."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def __init__(self):
            self.marks: dict[int, tuple[float, int]] = {}

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (warmup, warmup + steps):
                device.sync()
                self.marks[state.global_step] = (time.perf_counter(), state.num_input_tokens_seen)

    return StepClock()


def pretrain_trainer(case: Case, tmp: str, steps: int, warmup: int, device: Device, seed: int):
    """`PretrainTrainer` as `smollm2 pretrain` builds it from the preset's recipe; the stream repeats one batch."""
    import torch
    from transformers import AutoTokenizer

    from smollm2_recipes.assets import resolve
    from smollm2_recipes.recipe_parsing import parse
    from smollm2_recipes.data.stages import DataArguments
    from smollm2_recipes.models import build_model
    from smollm2_recipes.training.pretrain_config import ModelArguments, PretrainConfig
    from smollm2_recipes.training.hardware import flops_per_token
    from smollm2_recipes.training.spike_guard import SpikeGuard
    from smollm2_recipes.training.stream import TrackedStream
    from smollm2_recipes.training.trainer import PretrainTrainer

    liger, compile_ = VARIANTS[case.variant]
    config, model_args, data_args = parse([PretrainConfig, ModelArguments, DataArguments], [
        str(REPO / f"recipes/smollm2/{case.preset}/pretrain.yaml"), "--output_dir", f"{tmp}/pretrain",
        "--max_steps", str(warmup + steps), "--per_device_train_batch_size", str(case.batch),
        "--gradient_accumulation_steps", "1", "--global_batch_tokens", "0", "--seq_len", str(case.seq),
        "--warmup_steps", "1", "--lr_scheduler_kwargs", json.dumps({"num_decay_steps": 1}), "--save_strategy", "no",
        "--logging_steps", str(warmup + steps), "--report_to", "none", "--disable_tqdm", "true", "--eval_blocks", "0",
        "--eval_strategy", "no", "--bf16", str(device.cuda).lower(), "--torch_compile", str(compile_).lower(),
        "--use_liger_kernel", str(liger).lower(), "--seed", str(seed)])
    tokenizer = AutoTokenizer.from_pretrained(resolve("embedded:smollm2-tokenizer"))
    with torch.device("cuda" if device.cuda else "cpu"):
        model = build_model(case.preset, seed=seed, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                            attn_implementation=model_args.attn_implementation)
    ids = torch.randint(0, model.config.vocab_size, (case.batch, case.seq), generator=torch.Generator().manual_seed(seed))
    blocks = [{"input_ids": row, "labels": row.clone()} for row in ids] * (warmup + steps)
    guard = SpikeGuard(config.spike_factor, config.spike_window, config.spike_warmup, config.spike_action, "")
    n_params = sum(p.numel() for p in model.parameters())
    trainer = PretrainTrainer(model=model, args=config, processing_class=tokenizer, stream=TrackedStream(blocks),
                              spike_guard=guard, flops_per_token=flops_per_token(model.config, case.seq, n_params),
                              peak_flops=device.peak or 0.0)
    return trainer, {"input_ids": ids, "labels": ids.clone()}


def _chat_rows(n: int, words_per_row: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    vocab = "the of a model data token train small language packing attention answer example length".split()
    return [{"messages": [{"role": "user", "content": "Tell me something."},
                          {"role": "assistant", "content": " ".join(rng.choice(vocab) for _ in range(words_per_row))}]}
            for _ in range(n)]


def sft_trainer(case: Case, tmp: str, steps: int, warmup: int, device: Device, seed: int):
    """TRL's SFTTrainer as `smollm2 sft` builds it (`build_trainer`), on a saved preset model and packed chat rows."""
    import torch
    from transformers import AutoTokenizer

    from smollm2_recipes.assets import resolve
    from smollm2_recipes.recipe_parsing import parse
    from smollm2_recipes.offline.arith_problems import write_jsonl
    from smollm2_recipes.models import build_model
    from smollm2_recipes.post_training.sft import CONFIG_TYPES, build_trainer

    liger, compile_ = VARIANTS[case.variant]
    model_dir = Path(tmp) / f"model-{case.preset}"
    if not model_dir.is_dir():
        tokenizer = AutoTokenizer.from_pretrained(resolve("embedded:SmolLM2-135M-Instruct"))
        build_model(case.preset, seed=seed, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                    pad_token_id=tokenizer.pad_token_id).save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
    bins = (warmup + steps) * case.batch
    data = write_jsonl(_chat_rows(6 * bins, case.seq // 8, seed), Path(tmp) / f"chat-{case.seq}.jsonl")  # ~4 rows per bin
    args, model_args, data_args, _ = parse(CONFIG_TYPES, [
        str(REPO / "recipes/smollm2/tiny/sft.yaml"), "--model_name_or_path", str(model_dir), "--output_dir", f"{tmp}/sft",
        "--dataset_mixture", json.dumps([{"path": str(data)}]), "--max_length", str(case.seq),
        "--per_device_train_batch_size", str(case.batch), "--gradient_accumulation_steps", "1",
        "--max_steps", str(warmup + steps), "--logging_steps", str(warmup + steps), "--arith_eval_samples", "0",
        "--bf16", str(device.cuda).lower(), "--activation_checkpointing", str(device.cuda).lower(),
        "--torch_compile", str(compile_).lower(), "--use_liger_kernel", str(liger).lower(),
        "--include_num_input_tokens_seen", "true", "--disable_tqdm", "true", "--seed", str(seed)])
    trainer, _ = build_trainer(args, model_args, data_args)
    first = next(iter(trainer.get_train_dataloader()))
    keep = ("input_ids", "labels", "position_ids", "attention_mask")
    return trainer, {k: v.detach().cpu() for k, v in first.items() if k in keep and isinstance(v, torch.Tensor)}


def run_case(case: Case, steps: int, warmup: int, device: Device, seed: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    from smollm2_recipes.training.hardware import flops_per_token

    build = pretrain_trainer if case.kind == "pretrain" else sft_trainer
    with tempfile.TemporaryDirectory() as tmp:
        device.reset()
        trainer, batch = build(case, tmp, steps, warmup, device, seed)
        clock = step_clock(warmup, steps, device)
        trainer.add_callback(clock)
        trainer.train()
        (t0, seen0), (t1, seen1) = clock.marks[warmup], clock.marks[warmup + steps]
        model_config = trainer.model.config
        n_params = sum(p.numel() for p in trainer.model.parameters())
        ours_tokens = (seen1 - seen0) if case.kind == "sft" else steps * case.batch * case.seq
        ours = {"tokens_per_s": ours_tokens / (t1 - t0), "peak_mem_gib": device.peak_mem_gib()}
        del trainer, clock
        device.reset()
        # the same model (fresh: same preset and seed) and the same batch in a bare loop
        liger, compile_ = VARIANTS[case.variant]
        if case.kind == "pretrain":
            from smollm2_recipes.models import build_model

            with torch.device("cuda" if device.cuda else "cpu"):
                model = build_model(case.preset, seed=seed, attn_implementation="sdpa")
        else:
            model = AutoModelForCausalLM.from_pretrained(Path(tmp) / f"model-{case.preset}", dtype=torch.float32,
                                                         attn_implementation="sdpa").to("cuda" if device.cuda else "cpu")
            if device.cuda:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        seconds = bare_loop(model, batch, liger, compile_, steps, warmup, device, bf16=device.cuda)
        bare = {"tokens_per_s": batch["input_ids"].numel() / seconds, "peak_mem_gib": device.peak_mem_gib()}
        del model
    fpt = flops_per_token(model_config, case.seq, n_params)
    for r in (ours, bare):
        r["mfu"] = round(r["tokens_per_s"] * fpt / device.peak, 4) if device.peak else None
        r["tokens_per_s"] = round(r["tokens_per_s"], 1)
    return {"status": "ok", "params": n_params, "ours": ours, "bare": bare,
            "ratio": round(ours["tokens_per_s"] / bare["tokens_per_s"], 3)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="run only cases whose name contains this text (e.g. pretrain-1.7B, sft)")
    parser.add_argument("--variants", default=None, help=f"comma-separated subset of {','.join(VARIANTS)} "
                        "(default: all on a GPU, eager,compile on a CPU)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per case (default 10 on a GPU, 3 on a CPU)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation happens here)")
    parser.add_argument("--peak-tflops", type=float, help="the device's dense peak, if not in the built-in table")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write all results to this JSON file")
    args = parser.parse_args(argv)

    import torch

    from smollm2_recipes.errors import UserError

    variants = (args.variants or ("eager,liger,compile,liger+compile" if torch.cuda.is_available() else "eager,compile")).split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise UserError(f"--variants {','.join(unknown)} unknown: use a comma-separated subset of {', '.join(VARIANTS)}.")
    device = Device(args.peak_tflops)
    steps = args.steps or (10 if device.cuda else 3)
    todo = [Case(kind, preset, seq, batch, v) for kind, preset, seq, batch in (GPU_CASES if device.cuda else CPU_CASES)
            for v in variants]
    todo = [c for c in todo if not args.only or args.only in c.name]
    skip_liger = liger_skip_reason(device)
    results = []
    from tqdm.auto import tqdm

    for case in tqdm(todo, desc="bench_gpu"):
        if VARIANTS[case.variant][0] and skip_liger:
            result = {"status": f"skipped: {skip_liger}"}
        else:
            try:
                result = run_case(case, steps, args.warmup, device, args.seed)
            except torch.cuda.OutOfMemoryError:
                result = {"status": "oom"}
        results.append({"case": case.name, **result})
        if result["status"] == "ok":
            tqdm.write(f"{case.name:<36} ours {result['ours']['tokens_per_s']:>10} tok/s MFU {result['ours']['mfu']} "
                       f"peak {result['ours']['peak_mem_gib']} GiB | bare {result['bare']['tokens_per_s']:>10} tok/s "
                       f"MFU {result['bare']['mfu']} peak {result['bare']['peak_mem_gib']} GiB | ratio {result['ratio']}")
        else:
            tqdm.write(f"{case.name:<36} {result['status']}")
    today = dt.date.today().isoformat()
    ok = [r for r in results if r["status"] == "ok"]
    head = ok[0] if ok else None
    summary = {"name": "bench_gpu", "ours": head["ours"]["tokens_per_s"] if head else None,
               "baseline": head["bare"]["tokens_per_s"] if head else None, "ratio": head["ratio"] if head else None,
               "goal": "our trainers within 0.9x of a bare loop's tokens/s on the same model and batch",
               "case": head["case"] if head else None, "device": device.name, "torch": torch.__version__, "date": today,
               "peak_tflops": round(device.peak / 1e12, 2) if device.peak else None, "results": results}
    if args.out:
        Path(args.out).write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    from smollm2_recipes.errors import UserError

    try:
        raise SystemExit(main())
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2)
