"""benchmarks/bench_gpu.py runs its whole code path on this CPU with the tiny preset: our pretraining Trainer and
our SFTTrainer, each next to a bare loop on the same model and batch; Liger is skipped with its reason."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).parent.parent


@pytest.mark.slow
def test_bench_gpu_tiny_on_cpu_prints_ours_bare_ratio_mfu_and_memory(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, str(REPO / "benchmarks/bench_gpu.py"), "--variants", "eager,liger",
                          "--steps", "1", "--warmup", "1", "--out", str(tmp_path / "bench.json")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    last = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"name", "ours", "baseline", "ratio", "goal", "device", "results"} <= set(last)
    assert last["name"] == "bench_gpu" and last["device"] == "cpu"
    assert json.loads((tmp_path / "bench.json").read_text())["results"] == last["results"]
    by_case = {r["case"]: r for r in last["results"]}
    assert set(by_case) == {"pretrain-tiny 2x256 eager", "pretrain-tiny 2x256 liger", "sft-tiny 1x512 eager", "sft-tiny 1x512 liger"}
    for kind in ("pretrain-tiny 2x256", "sft-tiny 1x512"):
        ran = by_case[f"{kind} eager"]
        assert ran["status"] == "ok" and ran["params"] > 0
        for side in ("ours", "bare"):
            assert ran[side]["tokens_per_s"] > 0 and 0 < ran[side]["mfu"] and ran[side]["peak_mem_gib"] > 0
        assert ran["ratio"] == pytest.approx(ran["ours"]["tokens_per_s"] / ran["bare"]["tokens_per_s"], rel=1e-2)
        assert by_case[f"{kind} liger"]["status"].startswith("skipped: no CUDA GPU")
    assert last["ours"] == by_case["pretrain-tiny 2x256 eager"]["ours"]["tokens_per_s"]


def test_bench_gpu_refuses_an_unknown_variant_in_one_line():
    env = {**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    out = subprocess.run([sys.executable, str(REPO / "benchmarks/bench_gpu.py"), "--variants", "eager,fast"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("error: --variants fast unknown")
