"""The `smollm2` command: one subcommand per stage. Each entry names a `module:function` that takes the
remaining argv, so `smollm2 sft RECIPE.yaml` and `accelerate launch scripts/run_sft.py RECIPE.yaml` run
the same function. Modules are imported only when their command runs (torch is slow to import)."""

from __future__ import annotations

import importlib
import os
import select
import signal
import sys

from smollm2_recipes.errors import UserError
from smollm2_recipes.package_data import find_recipe

# name -> (target, one-line help). Multi-word names are command groups ("data inspect").
COMMANDS: dict[str, tuple[str, str]] = {
    "assets": ("smollm2_recipes.assets_cli:main", "materialise the embedded offline assets (model, tokenizer, HumanEval)"),
    "model-info": ("smollm2_recipes.assets_cli:model_info_main", "print a model preset's config and parameter count"),
    "chat": ("smollm2_recipes.assets_cli:chat_main", "answer one prompt with a chat model (default: the embedded instruct model)"),
    "corpus build": ("smollm2_recipes.offline.corpus:main", "build the embedded corpus (web, code, math, long)"),
    "data inspect": ("smollm2_recipes.data.inspect:main", "observed token shares, epochs and throughput of a recipe's mixture"),
    "data tokenize": ("smollm2_recipes.data.shards:main", "pre-tokenise a recipe's sources into datatrove shards (local, Slurm or Ray)"),
    "pretrain": ("smollm2_recipes.training.pretrain:main", "multi-stage pretraining with WSD (transformers Trainer)"),
    "extend-context": ("smollm2_recipes.training.context_extension:main", "context extension: raise RoPE theta and length, train"),
    "average": ("smollm2_recipes.training.averaging:main", "average checkpoints into a normal model folder"),
    "sft": ("smollm2_recipes.post_training.sft:main", "supervised fine-tuning with TRL's SFTTrainer"),
    "dpo": ("smollm2_recipes.post_training.dpo:main", "preference optimisation with TRL's DPOTrainer"),
    "merge": ("smollm2_recipes.post_training.peft_utils:merge_main", "merge a LoRA adapter into a plain model"),
    "eval": ("smollm2_recipes.evaluation.eval_command:main", "evaluate a model or a folder of checkpoints"),
    "eval compare": ("smollm2_recipes.evaluation.compare:main", "is one model's gain over another on the same problems beyond noise (paired bootstrap)"),
    "synth magpie": ("smollm2_recipes.synth.magpie:main", "MagPie-Ultra style conversations (distilabel)"),
    "synth preferences": ("smollm2_recipes.synth.preferences:main", "chosen/rejected pairs judged by an LLM or a verifier"),
    "synth rewrite": ("smollm2_recipes.synth.smol_tasks:rewrite_main", "Smol-rewrite"),
    "synth summarize": ("smollm2_recipes.synth.smol_tasks:summarize_main", "Smol-summarize"),
    "synth constraints": ("smollm2_recipes.synth.smol_tasks:constraints_main", "Smol-constraints (IFEval-style, verified)"),
    "synth textbooks": ("smollm2_recipes.synth.textbooks:main", "Cosmopedia-style synthetic textbooks"),
    "curate annotate": ("smollm2_recipes.curation.annotate:main", "an LLM scores documents 0-5 for educational value"),
    "curate train-classifier": ("smollm2_recipes.curation.classifier:main", "train an encoder + regression head on the scores"),
    "curate filter": ("smollm2_recipes.curation.filter:main", "keep documents whose classifier score passes a threshold"),
    "curate decontaminate": ("smollm2_recipes.curation.decontaminate:main", "remove n-gram overlaps with benchmark sets"),
    "curate dedup": ("smollm2_recipes.curation.dedup:main", "MinHash near-duplicate removal (datatrove)"),
    "upload": ("smollm2_recipes.hub:upload_main", "write a model card and upload a folder to the Hub"),
    "export gguf": ("smollm2_recipes.gguf_export:export_gguf_main", "export a model folder to GGUF"),
    "quickstart": ("smollm2_recipes.offline.quickstart:main", "the whole SmolLM2 pipeline in miniature, offline"),
}


def _usage(prefix: str = "") -> str:
    rows = [(name, help_) for name, (_, help_) in COMMANDS.items() if name.startswith(prefix)]
    width = max(len(n) for n, _ in rows)
    lines = [f"usage: smollm2 {prefix or '<command>'} ...", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, help_ in rows]
    lines += ["", "Run `smollm2 <command> --help` for a command's options."]
    return "\n".join(lines)


def _match(argv: list[str]) -> tuple[str | None, list[str]]:
    for words in (2, 1):
        name = " ".join(argv[:words])
        if len(argv) >= words and name in COMMANDS:
            return name, argv[words:]
    return None, argv


def _stdout_closed() -> bool:
    """True when stdout is a pipe whose reader has gone (`smollm2 ... | head -1`): poll reports an error."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):
        return False


def _quiet_closed_pipe() -> int:
    """The reader of our stdout left: point stdout at /dev/null so the interpreter's final flush does not
    print a second traceback (https://docs.python.org/3/library/signal.html#note-on-sigpipe), and exit
    with the status a shell gives a process ended by SIGPIPE."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    return 128 + signal.SIGPIPE


def _with_shipped_recipe(argv: list[str]) -> list[str]:
    """A recipe named as shipped (`recipes/smollm2/tiny/sft.yaml`) runs from any working directory."""
    if argv and argv[0].endswith((".yaml", ".yml")) and not os.path.exists(argv[0]):
        return [str(find_recipe(argv[0]))] + argv[1:]
    return argv


def run(name: str, argv: list[str] | None = None) -> int:
    """Run one command by name; user errors become one line on stderr and exit status 2."""
    target, _ = COMMANDS[name]
    module, func = target.split(":")
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        result = getattr(importlib.import_module(module), func)(_with_shipped_recipe(argv))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        if _stdout_closed():
            return _quiet_closed_pipe()
        raise
    return int(result or 0)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        if _stdout_closed():
            return _quiet_closed_pipe()
        raise


def _main(argv: list[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = _match(argv)
    if name is None:
        groups = {n.split()[0] for n in COMMANDS if " " in n}
        if argv[0] in groups:
            print(_usage(argv[0] + " "), file=sys.stderr if argv[1:] else sys.stdout)
            return 2
        import difflib

        close = difflib.get_close_matches(" ".join(argv[:2]), COMMANDS, n=1) or difflib.get_close_matches(argv[0], COMMANDS, n=1)
        hint = f" Did you mean 'smollm2 {close[0]}'?" if close else ""
        print(f"error: unknown command '{argv[0]}'.{hint} Run `smollm2 --help` for the list.", file=sys.stderr)
        return 2
    return run(name, rest)


if __name__ == "__main__":
    raise SystemExit(main())
