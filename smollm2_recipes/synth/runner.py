"""What every synth pipeline shares: the common recipe keys, running a distilabel pipeline with its cache
under `output_dir`, and writing the result (atomically), its summary, and optionally a Hub push.

Resume: distilabel stores each finished batch under `output_dir/cache/<pipeline name>/<signature>/`; a
re-run of the same recipe with `use_cache: true` reloads those batches and generates only the rest.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from smollm2_recipes.errors import UserError
from smollm2_recipes.runkit import write_atomic


@dataclass
class SynthArgs:
    """Keys every synth recipe accepts."""

    output_dir: str = field(default="outputs/synth", metadata={"help": "everything the run writes lands here"})
    llm: dict = field(default_factory=lambda: {"backend": "transformers", "model": "embedded:SmolLM2-135M-Instruct"},
                      metadata={"help": "the generating LLM: backend, model, ... (see smollm2_recipes/synth/backends.py)"})
    num_rows: int = field(default=20, metadata={"help": "rows to generate (or to read from the input)"})
    batch_size: int = field(default=8, metadata={"help": "rows per distilabel batch (the unit of caching and resume)"})
    max_new_tokens: int = 64
    temperature: float = 0.8
    top_p: float = 1.0
    seed: int = 42
    use_cache: bool = field(default=True, metadata={"help": "resume from distilabel's cache under output_dir/cache"})
    push_to_hub: bool = False
    hub_repo_id: Optional[str] = None
    hub_private: bool = True
    ray: bool = field(default=False, metadata={"help": "run the distilabel pipeline on Ray (Pipeline.ray()): one step replica per actor"})
    ray_address: Optional[str] = field(default=None, metadata={"help": "with --ray: a cluster's host:port; default $RAY_ADDRESS, "
                                                                       "else a Ray instance started on this machine for the run"})


def check_common(args: SynthArgs) -> None:
    from smollm2_recipes.synth.backends import validate_llm

    validate_llm(args.llm, "llm")
    for key in ("num_rows", "batch_size", "max_new_tokens"):
        if getattr(args, key) < 1:
            raise UserError(f"'{key}' must be >= 1, got {getattr(args, key)}.")
    if args.push_to_hub and not args.hub_repo_id:
        raise UserError("push_to_hub: true needs hub_repo_id (e.g. your-name/my-smoltalk).")
    if args.ray:
        from smollm2_recipes.executors import check_ray_address

        check_ray_address(ray_address(args), "--ray")
    elif args.ray_address:
        raise UserError("ray_address is set but ray is not: add --ray to run on that cluster.")


def ray_address(args: SynthArgs) -> str:
    """Where `--ray` runs: the recipe's / flag's address, else $RAY_ADDRESS (set by `ray job submit`), else
    "local" (a Ray instance started for this run; never an unrelated cluster found on the machine)."""
    return args.ray_address or os.environ.get("RAY_ADDRESS") or "local"


def run_pipeline(name: str, args: SynthArgs, build: Callable[[], Any], dataset: list[dict] | None = None) -> list[dict]:
    """Build the distilabel DAG with `build()` inside a Pipeline context and run it; returns the rows of the
    leaf step. `build` returns nothing: steps created inside the context are registered automatically."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from distilabel.pipeline import Pipeline

    from transformers import set_seed

    set_seed(args.seed)  # random, numpy and torch
    cache = Path(args.output_dir) / "cache"
    kwargs = {"use_cache": args.use_cache}
    if dataset is not None:
        if not dataset:
            raise UserError(f"The {name} pipeline got no input rows: check the input path / num_rows.")
        kwargs.update(dataset=dataset, dataset_batch_size=args.batch_size)
    if args.use_cache:
        _drop_incomplete_step_caches(cache / name)
    with Pipeline(name=name, cache_dir=str(cache)) as pipeline:
        build()
    started_ray = False
    if args.ray:
        import ray

        address = ray_address(args)
        started_ray = address == "local" and not ray.is_initialized()
        # distilabel's own `ray_head_node_url` path asks Ray to pip-install the pipeline's requirements on
        # each node; passing the address through ray.init's kwargs joins the cluster as it is.
        init = {"address": address, "include_dashboard": False} if address == "local" else {"address": address}
        pipeline = pipeline.ray(ray_init_kwargs=init)
    try:
        distiset = pipeline.run(**kwargs)
    finally:
        _detach_distilabel_logging()
        if started_ray:
            import ray

            ray.shutdown()  # stops the local instance this run started
    if distiset is None or getattr(pipeline, "_stop_called", False):
        raise UserError(f"The {name} pipeline stopped before finishing; re-run the same command to resume from {cache}.")
    split = next(iter(distiset.values()))
    return split["train"].to_list()


def _drop_incomplete_step_caches(pipeline_cache: Path) -> None:
    """distilabel 1.5.3 reuses `steps_data/<step>/batch_*.json` of earlier executions, and takes a step whose
    folder exists as finished, even if the process was killed half-way: the re-run would silently return a
    truncated dataset. A step folder without its last batch is therefore removed (with the stale execution
    state that points at it): finished steps are reused, an unfinished step runs again from its start."""
    import shutil

    stale = []
    for step_dir in sorted((pipeline_cache / "steps_data").glob("*")):
        batches = list(step_dir.glob("batch_*.json"))
        try:
            finished = any(json.loads(b.read_text()).get("last_batch") for b in batches)
        except (OSError, ValueError):
            finished = False  # a batch file cut short by the kill
        if not finished:
            stale.append(step_dir.name.rsplit("_", 1)[0])
            shutil.rmtree(step_dir, ignore_errors=True)
    if stale:
        for executions in pipeline_cache.glob("*/executions"):
            shutil.rmtree(executions, ignore_errors=True)
        print(f"note: the cache of unfinished step(s) {', '.join(stale)} was incomplete (an interrupted run); "
              "they run again, finished steps come from the cache.", file=sys.stderr)


def _detach_distilabel_logging() -> None:
    """distilabel leaves a QueueHandler on the root logger whose queue it closes after the run; later log
    records (sentence-transformers, datasets) would then print 'Logging error' tracebacks."""
    import logging
    from logging.handlers import QueueHandler

    for logger in [logging.getLogger()] + [logging.getLogger(n) for n in list(logging.root.manager.loggerDict)]:
        for handler in list(getattr(logger, "handlers", [])):
            if isinstance(handler, QueueHandler):
                logger.removeHandler(handler)


def write_jsonl(path: Path, rows: Iterable[dict]) -> Path:
    write_atomic(path, "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows))
    return path


def read_rows(path: str, text_column: str | None = None, limit: int | None = None, split: str = "train") -> list[dict]:
    """Rows of an input named like any source (a local jsonl / json / parquet / csv / txt file or folder, a
    `save_to_disk` folder, `embedded:NAME`, or a Hub dataset id, `owner/name#config` naming its configuration),
    read by the loader every stage uses (`data.source_spec.load_source`). `text_column`, if given, must exist."""
    from smollm2_recipes.data.source_spec import SourceSpec, load_source

    hub_id, _, config = str(path).partition("#")
    ds = load_source(SourceSpec(name=str(path), path=hub_id, config=config or None, split=split))
    if text_column is not None and text_column not in ds.column_names:
        raise UserError(f"Input '{path}' has no column '{text_column}'. Columns: {', '.join(ds.column_names)}.")
    if limit is not None:
        ds = ds.select(range(min(limit, len(ds))))
    return ds.to_list()


def save_outputs(args: SynthArgs, rows: list[dict], summary: dict, name: str = "data.jsonl") -> Path:
    """Write rows as `output_dir/data.jsonl` (loads with `datasets.load_dataset("json", ...)`), the summary as
    `output_dir/summary.json` (with the first 3 rows as `examples`), print the summary, and push to the Hub when the recipe asks."""
    out = Path(args.output_dir)
    path = write_jsonl(out / name, rows)
    summary = {"rows_written": len(rows), "output": str(path), **summary, "examples": rows[:3]}
    if args.push_to_hub:
        from datasets import Dataset

        Dataset.from_list(rows).push_to_hub(args.hub_repo_id, private=args.hub_private)
        summary["pushed_to"] = args.hub_repo_id
    write_atomic(out / "summary.json", json.dumps(summary, indent=2, default=str) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "examples"}, indent=2, default=str), file=sys.stderr)
    print(f"wrote {len(rows)} rows to {path}")
    return path


def parse_args(types: list[type], argv: list[str], check: Callable[[Any], Any] | None = None):
    """Parse, validate (the common checks, then the kind's own `check(args)`), and only then save the resolved
    config into the output folder."""
    from smollm2_recipes import recipe_parsing

    parsed = recipe_parsing.parse(types, argv)
    args = parsed[0]
    check_common(args)
    if check is not None:
        check(args)
    recipe_parsing.save_resolved_config(args.output_dir, *parsed)
    return parsed
