"""recipes/slurm/tokenize_then_pretrain.sh: the pretraining job depends (afterok) on the tokenize job's id.
There is no Slurm here: `sbatch` is a recording stand-in on PATH that answers with a job id, as
`sbatch --parsable` does; the script itself runs for real."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_chain_submits_pretraining_after_tokenisation(tmp_path):
    calls = tmp_path / "calls.txt"
    fake = tmp_path / "bin" / "sbatch"
    fake.parent.mkdir()
    fake.write_text('#!/bin/bash\nn=$(( $(wc -l < "$CALLS" 2>/dev/null || echo 0) + 1 ))\n'
                    'printf "%s\\n" "$*" >> "$CALLS"\necho $((1000 + n))\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}", "CALLS": str(calls), "CPUS": "8", "NODES": "2"}
    done = subprocess.run(["bash", "recipes/slurm/tokenize_then_pretrain.sh", "recipes/smollm2/tiny/pretrain.yaml", "shards/x",
                           "--max_steps", "10"], cwd=REPO, env=env, capture_output=True, text=True, check=True)
    tokenize, pretrain = calls.read_text().splitlines()
    assert "--cpus-per-task=8" in tokenize and "data tokenize recipes/smollm2/tiny/pretrain.yaml --output_dir shards/x" in tokenize
    assert pretrain.startswith("--parsable --dependency=afterok:1001 ")
    assert pretrain.endswith("recipes/slurm/train.slurm scripts/run_pretrain.py recipes/smollm2/tiny/pretrain.yaml --shards_dir shards/x --max_steps 10")
    assert "--nodes=2" in pretrain and "job 1002" in done.stdout
    missing = subprocess.run(["bash", "recipes/slurm/tokenize_then_pretrain.sh"], cwd=REPO, env=env, capture_output=True, text=True)
    assert missing.returncode != 0 and "usage:" in missing.stderr
