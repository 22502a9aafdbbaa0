"""Evaluation: `smollm2 eval` (cli.py, runner.py), the paper's benchmarks through lighteval
(lighteval_bridge.py, with the paper's tasks in smollm2_tasks.py), offline tasks (humaneval.py with sandbox.py, perplexity.py,
chat.py; arith.py and passkey.py come from the post-training and pretraining parts), results files and
checkpoint curves (results.py, checkpoints.py). The task registry is tasks.py."""
