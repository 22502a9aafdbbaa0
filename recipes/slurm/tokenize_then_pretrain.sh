#!/bin/bash
# A Slurm chain: tokenise a recipe's sources into datatrove shards on one CPU node, then pretrain from those
# shards on GPU nodes, as two jobs where the second starts only if the first succeeded (afterok).
# Usage, from the repository root (on a Slurm login node):
#
#   recipes/slurm/tokenize_then_pretrain.sh recipes/smollm2/pretrain.yaml shards/smollm2 [--key value ...]
#
# Extra arguments go to `smollm2 pretrain`. Settings by environment: CPU_PARTITION, CPUS (tokeniser workers),
# NODES (training nodes), VENV. The tokenize job runs datatrove's local executor on its node; to spread
# tokenisation over many nodes instead, run `smollm2 data tokenize ... --executor slurm` and chain on the job
# ids it prints. A re-submitted chain resumes: finished tokenize tasks are skipped and a finished shard
# folder is reused.
set -euo pipefail

RECIPE=${1:?usage: recipes/slurm/tokenize_then_pretrain.sh RECIPE.yaml SHARDS_DIR [pretrain --key value ...]}
SHARDS=${2:?usage: recipes/slurm/tokenize_then_pretrain.sh RECIPE.yaml SHARDS_DIR [pretrain --key value ...]}
shift 2
CPU_PARTITION=${CPU_PARTITION:-cpu}
CPUS=${CPUS:-32}
NODES=${NODES:-4}
VENV=${VENV:-.venv}

TOKENIZE="$VENV/bin/smollm2 data tokenize $RECIPE --output_dir $SHARDS --executor local --tasks $CPUS --workers $CPUS"
tokenize_job=$(sbatch --parsable --job-name=smollm2-tokenize --partition="$CPU_PARTITION" --nodes=1 \
  --cpus-per-task="$CPUS" --time=24:00:00 --output=%x-%j.out --wrap="$TOKENIZE")
echo "tokenize: job $tokenize_job  ($TOKENIZE)"

pretrain_job=$(sbatch --parsable --dependency=afterok:"$tokenize_job" --kill-on-invalid-dep=yes --nodes="$NODES" \
  recipes/slurm/train.slurm scripts/run_pretrain.py "$RECIPE" --shards_dir "$SHARDS" "$@")
echo "pretrain: job $pretrain_job  (starts after $tokenize_job succeeds; squeue -j $tokenize_job,$pretrain_job)"
