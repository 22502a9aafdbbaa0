"""The dataset mixture for SFT (chat rows) and DPO (preference rows), and the row checks in front of it.

A mixture is a list of sources; each source is a Hub id (`id` with `config`, `split`), a local file or
folder (`path`: .jsonl/.json/.parquet/.csv or a `save_to_disk` folder), an `embedded:` asset, or a
generated set (`arith:sft`, `arith:preferences`, `arith:onpolicy`). `columns` keeps (list) or renames
(mapping old: new) columns; `weight` takes that share of the source's rows (handbook semantics:
weight <= 1 subsamples, > 1 repeats). alignment-handbook's forms are accepted unchanged:
`dataset_mixture: {datasets: [...], seed, test_split_size}`, the older `{hub_id: weight}` mapping, and
`dataset_name` / `dataset_config` / `dataset_train_split`.

Every row is checked before any trainer sees it: unknown roles, empty content, conversations that do
not end with the assistant, chosen == rejected, missing values and over-long prompts are dropped with
a counted reason (printed and written to `data_report.json`), never a crash deep inside a collator.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smollm2_recipes.errors import UserError
from smollm2_recipes.runkit.validation import reject_unknown_keys

ROLES = {"system", "user", "assistant"}
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
GENERATED = ("arith:sft", "arith:preferences", "arith:onpolicy")
SOURCE_KEYS = {"id", "path", "config", "split", "columns", "weight", "num_samples", "seed", "data_files",
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


@dataclass
class Source:
    name: str  # Hub id, path, embedded: name or arith:*
    config: str | None = None
    split: str = "train"
    columns: list[str] | dict[str, str] | None = None
    weight: float = 1.0
    num_samples: int | None = None
    seed: int = 0
    data_files: Any = None
    options: dict = field(default_factory=dict)  # arith:onpolicy sampling options


def _source(spec: Any, where: str) -> Source:
    if isinstance(spec, str):
        return Source(spec)
    if not isinstance(spec, dict):
        raise UserError(f"{where}: a mixture source must be a mapping like {{id: HuggingFaceTB/smoltalk, split: train}}, got {spec!r}.")
    reject_unknown_keys(spec, SOURCE_KEYS, f"{where} (a source)")
    name = spec.get("id") or spec.get("path")
    if not name:
        raise UserError(f"{where}: a source needs `id` (Hub id) or `path` (file, folder, embedded:, arith:*), got {spec!r}.")
    weight = spec.get("weight", 1.0)
    if not isinstance(weight, (int, float)) or weight <= 0:
        raise UserError(f"{where}: weight of '{name}' must be a number > 0, got {weight!r}.")
    return Source(name=str(name), config=spec.get("config"), split=spec.get("split") or "train", columns=spec.get("columns"),
                  weight=float(weight), num_samples=spec.get("num_samples"), seed=int(spec.get("seed", 0)), data_files=spec.get("data_files"),
                  options={k: spec[k] for k in ("samples_per_prompt", "temperature", "reference_fallback", "max_new_tokens") if k in spec})


def parse_mixture(args: ChatDataArguments) -> tuple[list[Source], int | None, float | int | None]:
    """(sources, mixture seed, test_split_size) from any accepted form."""
    mix = args.dataset_mixture
    if mix is None:
        if not args.dataset_name:
            raise UserError("No data: set `dataset_mixture` (a list of sources) or `dataset_name` in the recipe.")
        return [Source(args.dataset_name, config=args.dataset_config, split=args.dataset_train_split)], None, None
    if isinstance(mix, str):
        try:
            mix = json.loads(mix)  # from the command line
        except json.JSONDecodeError:
            mix = [mix]
    seed, test_size = None, None
    if isinstance(mix, dict) and "datasets" in mix:  # handbook >= 0.4
        reject_unknown_keys(mix, {"datasets", "seed", "test_split_size"}, "dataset_mixture")
        seed, test_size = mix.get("seed"), mix.get("test_split_size")
        mix = mix["datasets"]
    elif isinstance(mix, dict):  # handbook < 0.4: {hub_id: weight}
        mix = [{"id": k, "weight": v, "config": args.dataset_config, "split": args.dataset_train_split} for k, v in mix.items()]
    if not isinstance(mix, list) or not mix:
        raise UserError(f"dataset_mixture must be a non-empty list of sources, got {args.dataset_mixture!r}.")
    return [_source(s, f"dataset_mixture[{i}]") for i, s in enumerate(mix)], seed, test_size


# ---------------------------------------------------------------------------------------------- loading
def _load_local(path: str, src: Source):
    import datasets

    p = Path(path)
    if p.is_dir():
        if (p / "dataset_info.json").is_file() or (p / "dataset_dict.json").is_file():
            ds = datasets.load_from_disk(str(p))
            return ds[src.split] if isinstance(ds, datasets.DatasetDict) else ds
        return datasets.load_dataset(str(p), src.config, split=src.split)
    suffixes = "".join(p.suffixes[-2:]) if p.suffix == ".gz" else p.suffix
    builder = {".jsonl": "json", ".json": "json", ".jsonl.gz": "json", ".json.gz": "json", ".parquet": "parquet", ".csv": "csv"}.get(suffixes)
    if builder is None:
        raise UserError(f"Dataset file '{path}' has an unsupported type; use .jsonl, .json, .parquet or .csv (or a save_to_disk folder).")
    return datasets.load_dataset(builder, data_files=str(p), split="train")


def _generated(src: Source, kind: str, policy=None):
    import datasets

    from smollm2_recipes.offline import arith_problems

    n = src.num_samples or (1000 if src.split == "train" else 100)  # an eval split stays small by default
    if src.name == "arith:sft":
        if src.split != "train":  # an eval split: held-out problems, never in the training rows
            return datasets.Dataset.from_list([{"messages": p.messages()} for p in arith_problems.heldout(n, src.seed)])
        return datasets.Dataset.from_list(arith_problems.sft_rows(n, src.seed))
    if src.name == "arith:preferences":
        return datasets.Dataset.from_list(arith_problems.preference_rows(n, src.seed))
    if policy is None:
        raise UserError("arith:onpolicy pairs are sampled from the model being trained; use it as a DPO source.")
    from smollm2_recipes.offline.onpolicy_pairs import onpolicy_pairs

    model, tokenizer, out_dir = policy
    return datasets.Dataset.from_list(onpolicy_pairs(model, tokenizer, n, seed=src.seed, out_dir=out_dir, **src.options))


def load_source(src: Source, kind: str, policy=None):
    """One source as a `datasets.Dataset` with its columns selected/renamed."""
    import datasets

    from smollm2_recipes.assets import resolve

    if src.name in GENERATED:
        ds = _generated(src, kind, policy)
    elif src.name.startswith("arith:"):
        raise UserError(f"Unknown generated source '{src.name}'. Valid: {', '.join(GENERATED)}.")
    else:
        path = resolve(src.name)
        if os.path.exists(path):
            ds = _load_local(path, src)
        elif src.name.startswith((".", "/")) or src.name.endswith((".jsonl", ".json", ".parquet", ".csv")):
            raise UserError(f"Dataset path '{src.name}' does not exist.")
        else:
            try:
                ds = datasets.load_dataset(path, src.config, split=src.split, data_files=src.data_files)
            except Exception as err:  # network, unknown id, unknown split: one line, with the id
                raise UserError(f"Could not load Hub dataset '{path}' (config={src.config!r}, split={src.split!r}): {str(err).splitlines()[0]}") from err
    if src.columns:
        wanted = list(src.columns) if isinstance(src.columns, (list, tuple)) else list(src.columns)
        missing = [c for c in wanted if c not in ds.column_names]
        if missing:
            raise UserError(f"Source '{src.name}' has no column(s) {missing}; its columns are {ds.column_names}.")
        ds = ds.select_columns(wanted)
        if isinstance(src.columns, dict):
            ds = ds.rename_columns({k: v for k, v in src.columns.items() if k != v})
    return ds


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


def load_mixture(args: ChatDataArguments, kind: str, seed: int, tokenizer=None, max_prompt_length: int | None = None,
                 want_eval: bool = False, policy=None, report_dir: str | None = None):
    """(train, eval or None, report) for kind "chat" or "preference"."""
    import datasets

    sources, mix_seed, test_size = parse_mixture(args)
    seed = seed if mix_seed is None else int(mix_seed)
    parts, report = [], {"sources": [], "dropped": Counter(), "kept": 0}
    for src in sources:
        ds = load_source(src, kind, policy)
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
    eval_ds = None
    if test_size:
        split = train.train_test_split(test_size=test_size, seed=seed)
        train, eval_ds = split["train"], split["test"]
    elif want_eval and args.dataset_test_split and args.dataset_mixture is None:
        test_src = Source(args.dataset_name, config=args.dataset_config, split=args.dataset_test_split)
        eval_ds, dropped = clean_rows(load_source(test_src, kind), kind, tokenizer, max_prompt_length)
        report["dropped"].update(dropped)
    if args.max_train_samples:
        train = train.select(range(min(args.max_train_samples, len(train))))
    report["kept"] = len(train)
    report["dropped"] = dict(report["dropped"])
    if report["dropped"]:
        total = sum(report["dropped"].values())
        print(f"note: dropped {total} bad {kind} row(s): " + ", ".join(f"{r} x{c}" for r, c in report["dropped"].items()), file=sys.stderr)
    if report_dir:
        Path(report_dir).mkdir(parents=True, exist_ok=True)
        (Path(report_dir) / "data_report.json").write_text(json.dumps(report, indent=1))
    return train, eval_ds, report
