"""What every curation command shares: reading its input as datatrove documents, writing kept and removed
rows, running its stages with the chosen executor, and merging the per-task parts into one result.

Layout of an output folder (`DIR`):
    DIR/resolved_config.yaml       the run's settings (written once everything is validated)
    DIR/parts/kept/NNNNN.jsonl     rows kept by task NNNNN       (datatrove JsonlWriter)
    DIR/parts/removed/NNNNN.jsonl  rows removed, with the reason (the filter's exclusion writer)
    DIR/logs/<stage>/              datatrove's logs, stats and completions: a re-run skips finished tasks
    DIR/data.jsonl, DIR/removed.jsonl, DIR/report.json   written by the last stage, `report.json` last:
                                   its presence marks the run finished.

A row leaves as it came in (every column), plus what the steps add (`score`, `int_score`, `benchmark`, ...).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from datatrove.data import DocumentsPipeline
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.readers import HuggingFaceDatasetReader, JsonlReader, ParquetReader
from datatrove.pipeline.writers import JsonlWriter

from smollm2_recipes import assets, executors
from smollm2_recipes import recipe_parsing
from smollm2_recipes.errors import UserError
from smollm2_recipes.runkit.parsing import ArgumentParser

FINISHED_MARKER = "report.json"
ROW = "row"  # metadata key holding the input row, written back unchanged
JSONL_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".jsonl.zst")


@dataclass
class CurationRunArgs:
    """Keys every curation pipeline accepts besides its own. Where it runs is chosen on the command line
    (`--executor local|slurm|ray --tasks N --workers N --dry_run`, see smollm2_recipes/executors.py);
    the recipe's `executor:` block holds the cluster settings (`{slurm: {partition: ...}, ray: {...}}`)."""

    executor: dict = field(default_factory=dict, metadata={"help": "cluster settings: {slurm: {partition, time, ...}, ray: {address, ...}}"})
    input_options: dict = field(default_factory=dict, metadata={"help": "extra datasets.load_dataset options for a Hub input, e.g. {data_dir: python}"})
    overwrite: bool = field(default=False, metadata={"help": "replace a finished run in output_dir (refused otherwise)"})
    merge_output: bool = field(default=True, metadata={"help": "merge the per-task parts into output_dir/data.jsonl "
                                                                "(at full scale keep false: parts/kept/ is the dataset)"})


def as_text(value) -> str:
    """A document's text; a chat row's `messages` counts as the concatenation of its contents."""
    if isinstance(value, list):
        return "\n".join(str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in value)
    return "" if value is None else str(value)


def _row_to_document(self, data: dict, path: str, id_in_file: int | str) -> dict:
    """Reader adapter: the text to judge comes from `text_key` (a chat column is flattened), the whole row is
    kept in the metadata so that it is written back as it came."""
    return {"text": as_text(data.get(self.text_key)), "id": f"{path}/{id_in_file}", "metadata": {ROW: data}}


def _probe_row(self, data: dict, path: str, id_in_file: int | str) -> dict:
    """Reader adapter for checking an input's columns: every row counts, whatever its text column holds."""
    return {"text": "probe", "id": f"{path}/{id_in_file}", "metadata": {ROW: data}}


def _document_to_row(self, document) -> dict:
    """Writer adapter: the input row, then what the pipeline steps added to the metadata."""
    added = {k: v for k, v in document.metadata.items() if k not in (ROW, "file_path")}
    return {**document.metadata[ROW], **added}


def _removed_row(self, document) -> dict:
    return {**_document_to_row(self, document), "doc_id": document.id}


def _local_files(path: Path) -> tuple[str, list[str]]:
    """(kind, files relative to `path`) for a folder of jsonl or parquet files."""
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    jsonl = [str(p.relative_to(path)) for p in files if p.name.endswith(JSONL_SUFFIXES)]
    parquet = [str(p.relative_to(path)) for p in files if p.suffix == ".parquet"]
    if jsonl and parquet:
        raise UserError(f"Input folder '{path}' mixes jsonl and parquet files: point --input at one kind.")
    if not (jsonl or parquet):
        raise UserError(f"Input folder '{path}' has no .jsonl/.json(.gz) or .parquet files.")
    return ("parquet", parquet) if parquet else ("jsonl", jsonl)


def build_reader(input: str, text_column: str, limit: Optional[int] = None, split: str = "train", adapter=_row_to_document,
                 hub_options: dict | None = None) -> PipelineStep:
    """A datatrove reader for a local jsonl/parquet file or folder, `embedded:corpus/NAME` (its train split) or a
    Hub dataset id (`id` or `id#config`, streamed). Raises UserError for an input that cannot exist."""
    kwargs = dict(text_key=text_column, adapter=adapter, limit=-1 if limit is None else limit)
    local = Path(assets.resolve(input))
    if str(input).startswith(assets.PREFIX + "corpus/"):
        return ParquetReader(str(local), glob_pattern=f"{split}.parquet", add_file_path=False, **kwargs)
    if local.is_file():
        if local.name.endswith(JSONL_SUFFIXES):
            return JsonlReader(str(local.parent), glob_pattern=local.name, recursive=False, add_file_path=False, **kwargs)
        if local.suffix == ".parquet":
            return ParquetReader(str(local.parent), glob_pattern=local.name, recursive=False, add_file_path=False, **kwargs)
        raise UserError(f"Cannot read '{input}': use a .jsonl, .json(.gz) or .parquet file, a folder of them, or a Hub id.")
    if local.is_dir():
        kind, files = _local_files(local)
        reader = ParquetReader if kind == "parquet" else JsonlReader
        pattern = "*.parquet" if kind == "parquet" else "*.json*"
        return reader(str(local), glob_pattern=f"**/{pattern}" if any("/" in f for f in files) else pattern, add_file_path=False, **kwargs)
    if str(input).startswith((".", "/", "~")) or str(input).count("/") != 1:
        raise UserError(f"Input '{input}' does not exist (expected a jsonl/parquet file or folder, embedded:corpus/NAME, "
                        "or a Hub dataset id such as HuggingFaceFW/fineweb-edu).")
    hub_id, _, config = str(input).partition("#")
    options = {"split": split, **({"name": config} if config else {}), **(hub_options or {})}
    return HuggingFaceDatasetReader(hub_id, dataset_options=options,
                                    streaming=True, doc_progress=True, **kwargs)


def default_tasks(input: str) -> int:
    """One task per file of a local folder (datatrove shards tasks by file), else 1."""
    local = Path(assets.resolve(input)) if not str(input).startswith(assets.PREFIX + "corpus/") else None
    if local is not None and local.is_dir():
        try:
            return max(1, len(_local_files(local)[1]))
        except UserError:
            return 1  # the reader's own check names the problem
    return 1


def check_text_column(input: str, text_column: str) -> None:
    """Fail before anything is written when a local input's first row lacks `text_column`."""
    build_reader(input, text_column)  # a path that does not exist fails here
    if not (Path(assets.resolve(input)).exists() or str(input).startswith(assets.PREFIX)):
        return  # a Hub dataset: checked when it streams
    from loguru import logger  # datatrove's logger: a check of one row should not print reader progress

    first = None
    logger.disable("datatrove")
    try:
        for doc in build_reader(input, text_column, limit=1, adapter=_probe_row).run():
            first = doc.metadata[ROW]
            break
    finally:
        logger.enable("datatrove")
    if first is None:
        raise UserError(f"Input '{input}' has no rows.")
    if text_column not in first:
        raise UserError(f"Input '{input}' has no column '{text_column}'. Columns: {', '.join(first)}.")


def _jsonl_writer(folder: Path, adapter) -> JsonlWriter:
    return JsonlWriter(str(folder), output_filename="${rank}.jsonl", compression=None, adapter=adapter)


def kept_writer(out: Path) -> JsonlWriter:
    return _jsonl_writer(out / "parts" / "kept", _document_to_row)


def removed_writer(out: Path) -> JsonlWriter:
    return _jsonl_writer(out / "parts" / "removed", _removed_row)


def _total(metric) -> float:
    return metric.get("total", 0) if isinstance(metric, dict) else metric


class MergeAndReport(PipelineStep):
    """The last stage (one task): merge the parts into `data.jsonl` / `removed.jsonl` and write `report.json`
    with `kept` and `removed` counts, the removal reasons, a histogram of `histogram_key`, and the
    docs/s of the step `throughput` = (stage, step name), from datatrove's per-task stats."""

    name = "merge and report"
    type = "📝 - WRITER"

    def __init__(self, output_dir: str, extra: dict, merge: bool = True, histogram_key: str | None = None,
                 throughput: tuple[str, str] | None = None):
        super().__init__()
        self.output_dir, self.extra, self.merge = output_dir, extra, merge
        self.histogram_key, self.throughput = histogram_key, throughput

    def _scan(self, folder: Path, target: Path | None) -> tuple[int, Counter, Counter]:
        count, reasons, histogram = 0, Counter(), Counter()
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}") if target else None
        with open(tmp, "w", encoding="utf-8") if tmp else open(os.devnull, "w") as sink:
            for part in sorted(folder.glob("*.jsonl")):
                with open(part, encoding="utf-8") as f:
                    for line in f:
                        row = json.loads(line)
                        count += 1
                        if "filter_reason" in row:
                            reasons[row["filter_reason"]] += 1
                        if self.histogram_key and row.get(self.histogram_key) is not None:
                            histogram[str(row[self.histogram_key])] += 1
                        sink.write(line)
        if tmp:
            os.replace(tmp, target)  # atomic: a reader never sees half a data.jsonl
        return count, reasons, histogram

    def _docs_per_s(self) -> dict:
        """Documents per second inside one step (named as datatrove names it: `str(step)`), over its tasks' stats."""
        stage, step_name = self.throughput
        docs = seconds = 0.0
        devices = set()
        for path in (Path(self.output_dir) / "logs" / stage / "stats").glob("*.json"):
            for step in json.loads(path.read_text()):
                if step.get("name") == step_name:  # datatrove writes a metric seen never as 0, else {"total": ...}
                    docs += _total(step["stats"].get("total", 0))
                    seconds += _total(step["time_stats"])
                    devices |= {k.removeprefix("device_") for k in step["stats"] if k.startswith("device_")}
        return {"docs_per_s": round(docs / seconds, 1) if seconds else None, "scored_docs": int(docs),
                "scoring_seconds": round(seconds, 3), "scoring_devices": sorted(devices)}

    def run(self, data: DocumentsPipeline = None, rank: int = 0, world_size: int = 1) -> DocumentsPipeline:
        from smollm2_recipes.runkit import write_json_atomic

        out = Path(self.output_dir)
        kept, _, hist_kept = self._scan(out / "parts" / "kept", out / "data.jsonl" if self.merge else None)
        removed, reasons, hist_removed = self._scan(out / "parts" / "removed", out / "removed.jsonl" if self.merge else None)
        report = {"kept": kept, "removed": removed, "documents": kept + removed,
                  "retention": round(kept / max(kept + removed, 1), 6), "removed_by_reason": dict(sorted(reasons.items())), **self.extra}
        if self.histogram_key:
            report[f"{self.histogram_key}_histogram"] = dict(sorted((hist_kept + hist_removed).items()))
        if self.throughput:
            report.update(self._docs_per_s())
        report["data"] = str(out / "data.jsonl") if self.merge else str(out / "parts" / "kept")
        write_json_atomic(out / FINISHED_MARKER, report)
        print(json.dumps(report, indent=2), file=sys.stderr)
        yield from ()


@dataclass
class Stage:
    """One datatrove pipeline with its own task count; stages run in order, each after the previous finished."""

    name: str
    pipeline: list
    tasks: int


@dataclass
class Placement:
    """Where the stages run: the executor flags, checked, with the recipe's cluster settings merged in."""

    executor: str
    tasks: int
    workers: Optional[int]
    dry_run: bool
    slurm: dict
    ray: dict


def parse(types: list[type], argv: list[str]):
    """(parsed dataclasses..., Placement): the executor flags are read by executors.add_executor_args, the rest
    by recipe_parsing.parse (recipe + --key value). Nothing is written."""
    flags = ArgumentParser(prog="where it runs", usage="%(prog)s", add_help=False)
    executors.add_executor_args(flags)
    if {"-h", "--help"} & set(argv):
        flags.print_help()  # the recipe keys follow, printed by recipe_parsing.parse
    ex, rest = flags.parse_known_args(argv)
    if ex.logging_dir is not None:
        raise UserError("--logging_dir is fixed for curation: each stage logs under OUTPUT_DIR/logs/<stage> (drop the flag).")
    parsed = recipe_parsing.parse(types, rest, recipe_required=False)
    slurm, ray = executors.settings_from_args(ex, parsed[0].executor)
    tasks = default_tasks(parsed[0].input) if ex.tasks is None else ex.tasks
    executors.check_executor(ex.executor, tasks=tasks, workers=ex.workers, slurm=slurm, ray=ray, dry_run=ex.dry_run)
    return (*parsed, Placement(ex.executor, tasks, ex.workers, ex.dry_run, slurm, ray))


# keys that may change between a run and its resumption: they do not change what a finished task wrote
RESUMABLE_CHANGES = {"overwrite", "executor", "merge_output", "batch_size"}


def check_resumable(out: Path, settings: dict) -> None:
    """A folder holding an unfinished run may be resumed only with the same settings: its finished tasks
    (datatrove completions) were computed with those. Called before anything is written."""
    saved_path = out / "resolved_config.yaml"
    if settings.get("overwrite") or not saved_path.is_file() or (out / FINISHED_MARKER).exists():
        return
    import yaml

    saved = yaml.safe_load(saved_path.read_text()) or {}
    changed = sorted(k for k in set(saved) | set(settings) if k not in RESUMABLE_CHANGES and saved.get(k) != settings.get(k))
    if changed:
        raise UserError(f"output_dir '{out}' holds an unfinished run with other settings ({', '.join(changed)}); "
                        "re-run it with the same settings to resume, or pass --overwrite to start again.")


def settings_of(args, placement: Placement) -> dict:
    return {**recipe_parsing.config_dict(args), "tasks": placement.tasks}


def run(out: Path, args, placement: Placement, stages: list[Stage]) -> None:
    """Claim `out` (refusing a finished run unless --overwrite), record the settings, then run the stages.
    Call only after every argument is validated."""
    from smollm2_recipes.runkit import claim_output_dir, write_atomic

    settings = settings_of(args, placement)
    check_resumable(out, settings)
    if placement.dry_run and placement.executor != "slurm":  # a plan only: nothing is claimed or written
        print("dry run: stages " + ", ".join(f"{s.name} ({s.tasks} task{'s' * (s.tasks > 1)})" for s in stages)
              + f" on {placement.executor}; nothing ran.")
        return
    import yaml

    with claim_output_dir(out, finished_marker=FINISHED_MARKER, overwrite=args.overwrite):
        if args.overwrite:  # a fresh start: the old run's parts and task completions must not be reused
            for name in ("parts", "logs"):
                shutil.rmtree(out / name, ignore_errors=True)
            for name in ("data.jsonl", "removed.jsonl", FINISHED_MARKER):
                (out / name).unlink(missing_ok=True)
        write_atomic(out / "resolved_config.yaml", yaml.safe_dump(settings, sort_keys=True, allow_unicode=True))
        _launch(out, placement, stages)


def _launch(out: Path, placement: Placement, stages: list[Stage]) -> None:
    local = placement.executor == "local"
    built = []
    for stage in stages:
        workers = placement.workers or (min(stage.tasks, os.cpu_count() or 1) if local else None)
        executor = executors.build_executor(stage.pipeline, executor=placement.executor, tasks=stage.tasks,
                                            workers=min(workers, stage.tasks) if workers else None,
                                            logging_dir=out / "logs" / stage.name, slurm=placement.slurm,
                                            ray=placement.ray, dry_run=placement.dry_run)
        if built:
            executor.depends = built[-1]  # datatrove runs (local, Ray) or submits with afterok (Slurm) the dependency first
        built.append(executor)
    if placement.dry_run:  # Slurm: the scripts sbatch would get, written for the user to submit
        scripts = [executors.write_slurm_script(e) for e in built]
        print("sbatch scripts, one per stage; submit each after the previous one finished "
              "(sbatch --dependency=afterok:JOBID):\n" + "\n".join(f"  {s}" for s in scripts))
        return
    executors.run_executor(built[-1], kind=placement.executor, ray=placement.ray)
    if placement.executor == "slurm":
        print(f"submitted {len(built)} dependent Slurm jobs; {out / FINISHED_MARKER} appears when the last one finishes.")
