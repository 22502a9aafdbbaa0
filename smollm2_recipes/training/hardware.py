"""What the device can do: whether the CPU has bf16 matrix units (AMX), its measured matmul peak for MFU,
and the model FLOPs per token."""

from __future__ import annotations

import functools
import time

import torch


def cpu_has_bf16_units() -> bool:
    """AMX or AVX512-BF16 make bf16 autocast pay off on a CPU; without them bf16 is emulated and slower."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:  # not Linux: ask oneDNN
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


@functools.lru_cache(maxsize=None)
def measured_peak_flops(device: str = "cpu", dtype: torch.dtype = torch.float32, seconds: float = 0.5) -> float:
    """Best FLOP/s of square matmuls on this device and dtype over about `seconds` (the MFU denominator)."""
    n = 2048 if device == "cpu" else 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    a @ b
    sync()
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        a @ b
        sync()
        best = max(best, 2 * n**3 / (time.perf_counter() - t))
    return best


def flops_per_token(model_config, seq_len: int, num_parameters: int) -> float:
    """Training FLOPs per token: 6N for the weights (the tied LM head is a matmul, so it counts) plus the
    attention scores, 12 x layers x width x sequence (PaLM appendix B)."""
    return 6 * num_parameters + 12 * model_config.num_hidden_layers * model_config.hidden_size * seq_len


def bf16_is_emulated(bf16: bool, use_cpu: bool) -> bool:
    """bf16 autocast pays off on a CPU only with bf16 matrix units (AMX, AVX512-BF16); elsewhere torch runs bf16
    matmuls in a generic kernel many times slower than fp32."""
    return bool(bf16 and use_cpu) and not cpu_has_bf16_units()


def train_in_fp32(args) -> None:
    args.bf16 = False
    args.mixed_precision = "no"  # TrainingArguments derived it from bf16 when it was built; the Trainer reads this


def fp32_without_bf16_units(args) -> bool:
    """Train a stage in fp32 where its bf16 would be emulated. Returns whether it switched; the caller says so once
    the run is built (a refused run prints only its error)."""
    if not bf16_is_emulated(getattr(args, "bf16", False), getattr(args, "use_cpu", False)):
        return False
    train_in_fp32(args)
    return True


FP32_NOTE = "note: this CPU has no bf16 matrix units (AMX / AVX512-BF16); training in fp32 instead of bf16 autocast."
