"""Evaluation: `smollm2 eval` (eval_command.py, runner.py), the paper's benchmarks through lighteval
(lighteval_bridge.py, with the paper's tasks in smollm2_tasks.py), offline tasks (humaneval.py with sandbox.py,
perplexity.py, chat.py, passkey.py; arith from smollm2_recipes.offline), results files and checkpoint curves
(results.py, checkpoint_sweep.py), and paired comparisons of two models on the same problems (compare.py, over
paired_bootstrap.py). The task registry is tasks.py."""
