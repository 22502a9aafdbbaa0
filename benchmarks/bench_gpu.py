"""GPU training throughput: tokens/s, MFU and peak memory for SmolLM2 pretraining (135M / 360M / 1.7B at
sequence 2048) and SFT (packed sequences of 2k and 8k tokens, gradient checkpointing), each with and without
Liger kernels and torch.compile. Baseline = the same case in eager PyTorch without Liger, in the same run.

Goals on one H100: 1.7B pretraining >= 50% MFU; 135M >= 350k tokens/s; Liger SFT at 8k <= 0.6x the peak
memory without it. Without a CUDA GPU it says so and exits 0; the last line is always one JSON object.

    python benchmarks/bench_gpu.py                 # everything (~20-30 min on an H100: compiles dominate)
    python benchmarks/bench_gpu.py --quick         # goal cases only
    python benchmarks/bench_gpu.py --only 135M     # cases whose name contains 135M
Liger kernels: pip install -e ".[gpu]" (liger-kernel).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Dense bf16 peak of the GPU (vendor datasheets), for MFU. Unknown GPUs need --peak-tflops.
PEAK_BF16_TFLOPS = {"H100 SXM": 989.4, "H100 80GB HBM3": 989.4, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H200": 989.4,
                    "GH200": 989.4, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "B200": 2250.0}
GOALS = [
    {"name": "pretrain 1.7B MFU (best variant vs eager)", "goal": "1.7B pretraining >= 0.50 MFU on one H100", "metric": "mfu", "case": "pretrain-1.7B", "target": 0.50, "higher": True},
    {"name": "pretrain 135M tokens/s (best variant vs eager)", "goal": "135M pretraining >= 350,000 tokens/s on one H100", "metric": "tokens_per_s", "case": "pretrain-135M", "target": 350_000, "higher": True},
    {"name": "SFT 8k peak memory, Liger vs without", "goal": "Liger SFT at 8k <= 0.6x the peak memory without it", "metric": "peak_mem_gib", "case": "sft-8k", "target": 0.6, "higher": False},
]


@dataclass
class Case:
    kind: str  # pretrain | sft
    preset: str
    seq: int
    batch: int
    liger: bool
    compile: bool
    grad_ckpt: bool = False
    result: dict = field(default_factory=dict)

    @property
    def group(self) -> str:
        return f"pretrain-{self.preset}" if self.kind == "pretrain" else f"sft-{self.seq // 1024}k"

    @property
    def name(self) -> str:
        variant = "+".join(v for v, on in (("liger", self.liger), ("compile", self.compile)) if on) or "eager"
        return f"{self.group} ({self.preset}, {self.batch}x{self.seq}) {variant}"


def cases(sft_model: str, quick: bool) -> list[Case]:
    variants = [(False, False), (True, False), (False, True), (True, True)]
    out = []
    # Micro-batches sized for an 80 GB GPU (pretraining: the published per-GPU batches where they fit).
    for preset, batch in (("135M", 16), ("360M", 8), ("1.7B", 4)):
        for liger, comp in variants:
            if quick and preset == "360M":
                continue
            out.append(Case("pretrain", preset, 2048, batch, liger, comp))
    for seq, batch in ((2048, 4), (8192, 1)):  # 8k tokens per micro-step either way
        for liger, comp in variants:
            if quick and (seq == 2048 or comp):
                continue
            out.append(Case("sft", sft_model, seq, batch, liger, comp, grad_ckpt=True))
    return out


def flops_per_token(n_params: int, config, seq: int) -> float:
    """6N for the weights (tied embeddings counted once: they are the LM head's matmul) plus attention's
    12 * layers * width * sequence (PaLM appendix B; the convention nanoGPT / nanochat MFU uses)."""
    return 6 * n_params + 12 * config.num_hidden_layers * config.hidden_size * seq


def peak_tflops(name: str, override: float | None) -> float | None:
    if override:
        return override
    for key, value in PEAK_BF16_TFLOPS.items():
        if all(word in name for word in key.split()):
            return value
    return None


def run_case(case: Case, steps: int, warmup: int, peak: float | None, seed: int) -> dict:
    import torch

    from smollm2_recipes.models import build_model

    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    with torch.device("cuda"):  # initialise on the GPU: the 1.7B model in fp32 is 7 GB of host memory otherwise
        model = build_model(case.preset, seed=seed)
    n_params = sum(p.numel() for p in model.parameters())
    if case.liger:
        from liger_kernel.transformers import apply_liger_kernel_to_llama

        apply_liger_kernel_to_llama(rope=True, rms_norm=True, swiglu=True, fused_linear_cross_entropy=True, cross_entropy=False, model=model)
    if case.grad_ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    forward = torch.compile(model) if case.compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.01, fused=True)
    gen = torch.Generator(device="cuda").manual_seed(seed)
    batch = torch.randint(0, model.config.vocab_size, (case.batch, case.seq), device="cuda", generator=gen)

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):  # fp32 master weights, bf16 compute (Trainer's bf16=True)
            loss = forward(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    for _ in range(warmup):  # includes compilation and autotuning
        step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / steps
    tokens = case.batch * case.seq
    tok_s = tokens / seconds
    result = {
        "status": "ok", "params": n_params, "tokens_per_step": tokens, "step_s": round(seconds, 4), "tokens_per_s": round(tok_s),
        "mfu": round(tok_s * flops_per_token(n_params, model.config, case.seq) / (peak * 1e12), 4) if peak else None,
        "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2), "final_loss": round(loss.item(), 4),
    }
    del model, forward, optimizer
    return result


def summarise_goals(all_cases: list[Case]) -> list[dict]:
    out = []
    for goal in GOALS:
        group = [c for c in all_cases if c.group == goal["case"] and c.result.get("status") == "ok"]
        entry = {"name": goal["name"], "goal": goal["goal"], "ours": None, "baseline": None, "ratio": None, "met": None}
        if goal["metric"] == "peak_mem_gib":
            liger = [c for c in group if c.liger and not c.compile]
            plain = [c for c in group if not c.liger and not c.compile]
            if liger and plain:
                entry["ours"], entry["baseline"] = liger[0].result["peak_mem_gib"], plain[0].result["peak_mem_gib"]
                entry["ratio"] = round(entry["ours"] / entry["baseline"], 3)
                entry["met"] = entry["ratio"] <= goal["target"]
        else:
            plain = [c for c in group if not c.liger and not c.compile]
            values = [c.result[goal["metric"]] for c in group if c.result.get(goal["metric"]) is not None]
            if values and plain and plain[0].result.get(goal["metric"]):
                entry["ours"], entry["baseline"] = max(values), plain[0].result[goal["metric"]]
                entry["ratio"] = round(entry["ours"] / entry["baseline"], 3)
                entry["met"] = entry["ours"] >= goal["target"]
        out.append(entry)
    return out


def final_line(goals: list[dict], **extra) -> str:
    head = goals[0]
    return json.dumps({"name": "bench_gpu", "ours": head["ours"], "baseline": head["baseline"], "ratio": head["ratio"],
                       "goal": head["goal"], **extra, "goals": goals})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="only the cases the goals need")
    parser.add_argument("--only", help="run only cases whose name contains this text")
    parser.add_argument("--sft-model", default="135M", help="model preset for the SFT cases (default 135M)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per case")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (compilation happens here)")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak, if it is not in the built-in table")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="also write all results to this JSON file")
    args = parser.parse_args(argv)
    today = dt.date.today().isoformat()

    import torch

    if not torch.cuda.is_available():
        print(f"bench_gpu: no CUDA GPU on this machine (torch {torch.__version__}); nothing measured. "
              "Run it on an H100/H200 and record the figures in benchmarks/RESULTS.md.")
        goals = [{"name": g["name"], "goal": g["goal"], "ours": None, "baseline": None, "ratio": None, "met": None} for g in GOALS]
        print(final_line(goals, skipped=True, reason="no CUDA GPU", date=today))
        return 0

    import importlib.util

    from tqdm.auto import tqdm

    device = torch.cuda.get_device_name(0)
    peak = peak_tflops(device, args.peak_tflops)
    if peak is None:
        print(f"note: unknown GPU '{device}': MFU is not computed; pass --peak-tflops", file=sys.stderr)
    has_liger = importlib.util.find_spec("liger_kernel") is not None
    todo = [c for c in cases(args.sft_model, args.quick) if not args.only or args.only in c.name]
    for case in tqdm(todo, desc="bench_gpu"):
        if case.liger and not has_liger:
            case.result = {"status": "skipped: liger-kernel not installed (pip install -e '.[gpu]')"}
            continue
        try:
            case.result = run_case(case, args.steps, args.warmup, peak, args.seed)
        except torch.cuda.OutOfMemoryError:
            case.result = {"status": "oom"}
        torch._dynamo.reset()
        torch.cuda.empty_cache()
        r = case.result
        tqdm.write(f"{case.name:<50} {r.get('status'):<8} {r.get('tokens_per_s', ''):>10} tok/s  MFU {r.get('mfu', '')}  peak {r.get('peak_mem_gib', '')} GiB")
    goals = summarise_goals(todo)
    print(f"\n{device}, torch {torch.__version__}, peak {peak} TFLOPS bf16, {today}")
    print(f"{'case':<50} {'tok/s':>10} {'MFU':>7} {'peak GiB':>9}")
    for c in todo:
        r = c.result
        print(f"{c.name:<50} {r.get('tokens_per_s', r.get('status')):>10} {r.get('mfu') or '':>7} {r.get('peak_mem_gib', ''):>9}")
    for g in goals:
        print(f"goal: {g['goal']}: ours {g['ours']} baseline {g['baseline']} ratio {g['ratio']} met {g['met']}")
    results = [{"name": c.name, **asdict(c)} for c in todo]
    if args.out:
        Path(args.out).write_text(json.dumps({"device": device, "date": today, "torch": torch.__version__, "results": results, "goals": goals}, indent=1))
    print(final_line(goals, device=device, date=today))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
