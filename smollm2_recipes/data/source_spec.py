"""One source schema and one loader for every stage.

A source is a `SourceSpec`: `path` is a Hub dataset id, a local file (.jsonl/.json/.parquet/.csv/.txt, .gz
allowed) or folder (a `save_to_disk` folder or a folder of data files), or an `embedded:` asset; `config`,
`split`, `columns` and `weight` say which part of it is read and how much of it a mixture takes.
What a weight MEANS is the stage's to say:

- pretraining (`data.stages.StageSpec`): a share of the stage's TOKENS (normalised over the stage);
- SFT / DPO (`post_training.data.ChatMixture`): a fraction of the source's ROWS (<= 1 subsamples,
  > 1 repeats), as alignment-handbook's `dataset_mixer` did.

`load_source(spec)` returns a `datasets.Dataset` (or an `IterableDataset` when streaming): every local
file goes through `datasets.load_dataset` with the json/parquet/csv/text builder
(https://huggingface.co/docs/datasets/loading#local-and-remote-files), Hub ids through
`datasets.load_dataset(path, name=config, split=..., streaming=...)`.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smollm2_recipes import assets
from smollm2_recipes.errors import UserError
from smollm2_recipes.runkit.files import cache_dir
from smollm2_recipes.runkit.validation import reject_unknown_keys

DATA_EXTENSIONS = (".jsonl", ".json", ".parquet", ".txt")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
# suffix -> datasets' packaged builder; a .txt file is ONE document (a book, a page), not one per line
BUILDERS = {".jsonl": "json", ".json": "json", ".jsonl.gz": "json", ".json.gz": "json", ".parquet": "parquet",
            ".csv": "csv", ".txt": "text"}
SAVED_DATASET_MARKERS = ("dataset_dict.json", "state.json", "dataset_info.json")


class MissingSplit(UserError):
    """The source has no rows for the requested split (a held-out split may legitimately be absent)."""


@dataclass
class SourceSpec:
    """One source of documents (pretraining) or rows (SFT / DPO); see the module docstring."""

    name: str
    path: str
    weight: float = 1.0
    config: str | None = None  # the Hub dataset's configuration (`name=` of load_dataset)
    split: str = "train"
    eval_split: str | None = None  # held-out split; default: "test" for embedded/local sources, none for Hub ones
    text_column: str = "text"  # pretraining: the column holding the document
    columns: list[str] | dict[str, str] | None = None  # keep (list) or rename (mapping old: new) columns
    streaming: bool | None = None  # default: True for Hub ids in pretraining, False otherwise
    data_files: Any = None  # passed to load_dataset (e.g. path: json + data_files: [a.jsonl])
    data_dir: str | None = None  # passed to load_dataset (a sub-folder of a Hub dataset)
    revision: str | None = None
    shuffle_buffer: int = 10_000  # streaming sources: datasets' shuffle buffer (0 = shard order only, exact resume)
    long: bool = False  # belongs to the long-document group of a context-extension stage
    num_samples: int | None = None  # generated sets (arith:*): how many rows
    seed: int = 0  # generated sets: their seed
    options: dict = field(default_factory=dict)  # generated on-policy pairs: sampling options

    def __post_init__(self):
        where = f"source '{self.name}'"
        if not isinstance(self.name, str) or not self.name:
            raise UserError(f"Source name {self.name!r} must be a non-empty string.")
        if not isinstance(self.path, str) or not self.path:
            raise UserError(f"{where}: `path` must be a Hub dataset id, a local file/folder or embedded:NAME, got {self.path!r}.")
        try:
            self.weight = float(self.weight)
        except (TypeError, ValueError):
            raise UserError(f"{where}: weight {self.weight!r} is not a number.") from None
        if not math.isfinite(self.weight) or self.weight < 0:
            raise UserError(f"{where}: weight {self.weight} is invalid; weights must be finite and >= 0.")
        if not isinstance(self.shuffle_buffer, int) or self.shuffle_buffer < 0:
            raise UserError(f"{where}: shuffle_buffer {self.shuffle_buffer!r} must be an integer >= 0.")
        if self.columns is not None and not isinstance(self.columns, (list, dict)):
            raise UserError(f"{where}: columns must be a list (keep) or a mapping old: new (rename), got {self.columns!r}.")

    @property
    def is_hub(self) -> bool:
        return is_hub_id(self)

    @property
    def is_streaming(self) -> bool:
        return self.is_hub if self.streaming is None else bool(self.streaming)

    def identity(self) -> tuple:
        """What makes two sources with the same name the same data (stages may repeat a source)."""
        return (self.path, self.config, self.split, self.text_column, str(self.data_files), self.data_dir, self.revision)

    def load_options(self, split: str | None = None) -> dict:
        """`datasets.load_dataset` keyword arguments for a Hub source's split."""
        options = {"name": self.config, "split": split or self.split}
        for key in ("data_files", "revision", "data_dir"):
            if getattr(self, key) is not None:
                options[key] = getattr(self, key)
        return options

    @classmethod
    def from_dict(cls, raw: Any, where: str, allowed: set[str], **defaults) -> "SourceSpec":
        """A source from a recipe mapping; `allowed` are the keys the stage reads (others are refused with
        the closest valid one). `id` (handbook's name for a Hub id) is read as `path`."""
        if not isinstance(raw, dict):
            raise UserError(f"{where}: each source must be a mapping with a path (and weight), got {raw!r}.")
        reject_unknown_keys(raw, allowed, f"{where}, source '{raw.get('name') or raw.get('id') or raw.get('path')}'")
        raw = dict(raw)
        if "id" in raw:
            if raw.get("path") not in (None, raw["id"]):
                raise UserError(f"{where}: a source has both id '{raw['id']}' and path '{raw['path']}'; give one.")
            raw["path"] = raw.pop("id")
        if not raw.get("path"):
            raise UserError(f"{where}: source {raw!r} has no 'path' (a Hub id, a local file or folder, or embedded:NAME).")
        raw.setdefault("name", str(raw["path"]))
        for key, value in defaults.items():
            if raw.get(key) is None:
                raw[key] = value
        return cls(**raw)


def is_hub_id(spec: SourceSpec) -> bool:
    path = spec.path
    if assets.is_embedded(path) or Path(os.path.expanduser(path)).exists():
        return False
    return bool(HUB_ID.match(path)) and not path.endswith(DATA_EXTENSIONS + (".csv", ".gz"))


def local_path(spec: SourceSpec) -> Path | None:
    """The local file or folder a source reads (embedded assets resolved), or None for a Hub id."""
    if assets.is_embedded(spec.path):
        return Path(assets.resolve(spec.path))
    path = Path(os.path.expanduser(spec.path))
    return path if path.exists() else None


def is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and any((path / m).exists() for m in SAVED_DATASET_MARKERS)


def builder_for(path: Path) -> str | None:
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    return BUILDERS.get(suffix)


def _one_line(err: BaseException) -> str:
    text = str(err)
    return text.splitlines()[0] if text else type(err).__name__


@contextlib.contextmanager
def _quiet_datasets():
    """datasets' own error log and progress bar around a local file's conversion: a broken file must end in one
    line (ours, below), not three. Its public switches: huggingface.co/docs/datasets/package_reference/utilities"""
    import datasets

    verbosity, bars_were_on = datasets.logging.get_verbosity(), not datasets.utils.are_progress_bars_disabled()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        datasets.logging.set_verbosity(verbosity)
        if bars_were_on:
            datasets.enable_progress_bars()


def _load(spec: SourceSpec, what: str, *args, **kwargs):
    import datasets

    try:
        if spec.is_hub:  # downloads keep their progress bars
            return datasets.load_dataset(*args, **kwargs)
        with _quiet_datasets():
            return datasets.load_dataset(*args, **kwargs)
    except (FileNotFoundError, ValueError, ConnectionError, OSError, UnicodeDecodeError) as err:
        raise UserError(f"source '{spec.name}': cannot load dataset {what}: {_one_line(err)}") from None
    except Exception as err:  # datasets raises its own types (DatasetNotFoundError, ...) for unknown ids
        if type(err).__module__.startswith(("datasets", "huggingface_hub", "requests", "httpx", "pyarrow")):
            raise UserError(f"source '{spec.name}': cannot load dataset {what}: {type(err).__name__}: {_one_line(err)}") from None
        raise


def select_columns(spec: SourceSpec, ds):
    """Keep (list) or rename (mapping old: new) the source's `columns`."""
    if not spec.columns:
        return ds
    wanted = list(spec.columns)
    have = ds.column_names
    missing = [c for c in wanted if have is not None and c not in have]
    if missing:
        raise UserError(f"source '{spec.name}' has no column(s) {missing}; its columns are {have}.")
    ds = ds.select_columns(wanted)
    if isinstance(spec.columns, dict):
        ds = ds.rename_columns({k: v for k, v in spec.columns.items() if k != v})
    return ds


def _utf8_file(path: Path, counters: dict | None) -> Path:
    """`path` itself if it is valid UTF-8; otherwise a repaired copy in the cache (each bad byte becomes
    U+FFFD) with the repaired documents counted as `invalid_utf8`: datasets' json builder stops at the
    first bad byte whatever its `encoding_errors`, and one bad byte must not stop a pretraining run."""
    import hashlib

    raw = path.read_bytes()
    try:
        raw.decode("utf-8")
        return path
    except UnicodeDecodeError:
        pass
    if path.suffix == ".jsonl":  # one document per line
        lines = raw.split(b"\n")
        bad = 0
        for i, line in enumerate(lines):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                bad += 1
                lines[i] = line.decode("utf-8", "replace").encode("utf-8")
        repaired = b"\n".join(lines)
    else:  # .json / .txt: the file is the unit
        bad, repaired = 1, raw.decode("utf-8", "replace").encode("utf-8")
    if counters is not None:
        counters["invalid_utf8"] = counters.get("invalid_utf8", 0) + bad
    out = cache_dir() / "utf8-repaired" / f"{hashlib.sha256(raw).hexdigest()[:24]}{path.suffix}"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
        tmp.write_bytes(repaired)
        os.replace(tmp, out)
    return out


def _name_the_broken_line(spec: SourceSpec, files: list[Path]) -> None:
    """datasets' json builder says only that generation failed: find the first line that is not a JSON object."""
    import json

    for path in files:
        if path.suffix != ".jsonl":
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    ok = isinstance(json.loads(line), dict)
                except ValueError:
                    ok = False
                if not ok:
                    raise UserError(f"source '{spec.name}': {path} line {number} is not a JSON object "
                                    f"({line.strip()[:40]!r}); fix or remove that line.") from None


def load_files(spec: SourceSpec, files: list[Path], counters: dict | None = None):
    """Local data files of one source, in order, as one `datasets.Dataset` through datasets' packaged
    builders (json / parquet / csv / text, a .txt file being one document). Empty files hold no rows;
    files with bytes that are not UTF-8 are read from a repaired copy (counted in `counters`)."""
    import itertools

    import datasets

    parts = []
    for builder, group in itertools.groupby([f for f in files if f.stat().st_size > 0], key=builder_for):
        group = list(group)
        if builder is None:
            raise UserError(f"source '{spec.name}': {group[0]} has an unsupported type; use .jsonl, .json, .parquet, .csv or .txt.")
        if builder in ("json", "text") and not any(f.suffix == ".gz" for f in group):
            group = [_utf8_file(f, counters) for f in group]
        extra = {"sample_by": "document"} if builder == "text" else {}
        where = str(group[0]) + (f" (+{len(group) - 1} files)" if len(group) > 1 else "")
        try:
            parts.append(_load(spec, where, builder, data_files=[str(f) for f in group], split="train", **extra))
        except UserError:
            if builder == "json":
                _name_the_broken_line(spec, group)
            raise
    if not parts:
        return datasets.Dataset.from_dict({spec.text_column: []})
    if len(parts) > 1 and len({tuple(p.column_names) for p in parts}) > 1 and all(spec.text_column in p.column_names for p in parts):
        parts = [p.select_columns([spec.text_column]) for p in parts]  # e.g. jsonl with metadata next to parquet without
    return datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]


def load_source(spec: SourceSpec, split: str | None = None, streaming: bool = False):
    """The source's `split` (default: its own) as a `datasets.Dataset`, or an `IterableDataset` with
    `streaming=True`, with its `columns` applied. Every mistake is one `UserError` naming the source."""
    import datasets

    split = split or spec.split
    path = local_path(spec)
    if path is None:
        if spec.path.startswith((".", "/", "~")) or spec.path.endswith(DATA_EXTENSIONS + (".csv", ".gz")) or not is_hub_id(spec):
            raise UserError(f"source '{spec.name}': path '{spec.path}' does not exist and is not a Hub dataset id "
                            "(valid: owner/name, a local .jsonl/.json/.parquet/.csv/.txt file or folder, or embedded:NAME).")
        what = f"'{spec.path}'" + (f" config '{spec.config}'" if spec.config else "") + f" split '{split}'"
        ds = _load(spec, what, spec.path, streaming=streaming, **spec.load_options(split))
        return select_columns(spec, ds)
    if is_saved_dataset(path):
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise MissingSplit(f"source '{spec.name}': {path} has no split '{split}'; splits: {', '.join(ds)}.")
            ds = ds[split]
        return select_columns(spec, ds.to_iterable_dataset() if streaming else ds)
    if path.is_dir():  # a folder of data files: datasets infers the builder and the splits from the file names
        ds = _load(spec, f"folder {path} split '{split}'", str(path), spec.config, split=split, streaming=streaming)
        return select_columns(spec, ds)
    builder = builder_for(path)
    if builder is None:
        raise UserError(f"source '{spec.name}': {path} has an unsupported type; use .jsonl, .json, .parquet, .csv or .txt "
                        "(or a save_to_disk folder).")
    if not streaming:
        return select_columns(spec, load_files(spec, [path]))
    extra = {"sample_by": "document"} if builder == "text" else {}
    ds = _load(spec, str(path), builder, data_files=str(path), split="train", streaming=True, **extra)
    return select_columns(spec, ds)
