"""The data part of a pretraining recipe: `DataArguments` (parsed by `configs.parse` next to the
TrainingArguments subclass, so no field here may share a name with TrainingArguments) and the typed,
validated stages and sources it holds.

A recipe's `stages:` is a list of mappings:

    stages:
      - name: stable-1
        tokens: 6_000_000_000_000          # the stage's token budget
        sources:
          - {name: fineweb-edu, path: HuggingFaceFW/fineweb-edu, split: train, streaming: true, weight: 0.54}
          - {name: code, path: embedded:corpus/code, weight: 0.1}

Sources use the one schema of `data.source_spec`; here weights are shares of TOKENS within the stage; they are normalised, so 54/36/10 and .54/.36/.10 are the
same mixture. Every mistake a user can make here is a `UserError` naming the stage, the source and the value.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from smollm2_recipes.data.source_spec import DATA_EXTENSIONS, SourceSpec
from smollm2_recipes.errors import UserError
from smollm2_recipes.runkit.validation import reject_unknown_keys

__all__ = ["DATA_EXTENSIONS", "DataArguments", "SourceSpec", "StageSpec", "data_args_from_recipe", "pretraining_source"]

# The keys a pretraining source reads (the shared schema's SFT/DPO-only keys are refused here).
PRETRAIN_SOURCE_KEYS = {"name", "path", "weight", "config", "split", "eval_split", "text_column", "streaming", "data_files",
                        "data_dir", "revision", "shuffle_buffer", "long"}


def _reject_unknown_keys(raw: dict, cls, where: str) -> None:
    reject_unknown_keys(raw, {f.name for f in dataclasses.fields(cls)}, where)


def pretraining_source(raw: Any, stage: str) -> SourceSpec:
    """A pretraining source: `name` is required (it names shard folders and the stream's state), and its
    weight is a share of the stage's tokens."""
    if isinstance(raw, dict):
        for key in ("name", "path"):
            if key not in raw:
                raise UserError(f"stage '{stage}': source {raw!r} has no '{key}'.")
        if isinstance(raw["name"], str) and "/" in raw["name"]:
            raise UserError(f"Source name {raw['name']!r} must be a non-empty string without '/'.")
    return SourceSpec.from_dict(raw, f"stage '{stage}'", PRETRAIN_SOURCE_KEYS)


@dataclass
class StageSpec:
    name: str
    tokens: int
    sources: list[SourceSpec]
    min_document_tokens: int = 0  # long sources skip (and count) documents shorter than this
    long_document_share: float | None = None  # share of tokens from the `long: true` sources

    @classmethod
    def from_dict(cls, raw: Any, index: int) -> "StageSpec":
        if not isinstance(raw, dict):
            raise UserError(f"stages[{index}] must be a mapping with name, tokens and sources, got {raw!r}.")
        _reject_unknown_keys(raw, cls, f"stages[{index}] ('{raw.get('name')}')")
        name = str(raw.get("name") or f"stage-{index + 1}")
        if "tokens" not in raw:
            raise UserError(f"stage '{name}' has no `tokens` (its token budget).")
        try:
            tokens = int(float(raw["tokens"])) if not isinstance(raw["tokens"], int) else raw["tokens"]
        except (TypeError, ValueError):
            raise UserError(f"stage '{name}': tokens {raw['tokens']!r} is not a number.") from None
        if tokens <= 0:
            raise UserError(f"stage '{name}': tokens {tokens} must be > 0.")
        raw_sources = raw.get("sources")
        if not isinstance(raw_sources, list) or not raw_sources:
            raise UserError(f"stage '{name}' has no sources; give a list of {{name, path, weight}}.")
        sources = [pretraining_source(s, name) for s in raw_sources]
        seen = set()
        for s in sources:
            if s.name in seen:
                raise UserError(f"stage '{name}' lists source '{s.name}' twice; give each source a unique name.")
            seen.add(s.name)
        total = sum(s.weight for s in sources)
        if total <= 0:
            raise UserError(f"stage '{name}': the weights of its sources sum to {total:g}; at least one must be > 0.")
        stage = cls(name=name, tokens=tokens, sources=sources,
                    min_document_tokens=int(raw.get("min_document_tokens") or 0),
                    long_document_share=raw.get("long_document_share"))
        if stage.min_document_tokens < 0:
            raise UserError(f"stage '{name}': min_document_tokens {stage.min_document_tokens} must be >= 0.")
        share = stage.long_document_share
        if share is not None:
            if not isinstance(share, (int, float)) or not 0 <= share <= 1:
                raise UserError(f"stage '{name}': long_document_share {share!r} must be a number in [0, 1].")
            long_w = sum(s.weight for s in sources if s.long)
            short_w = total - long_w
            if share > 0 and long_w <= 0:
                raise UserError(f"stage '{name}': long_document_share {share} needs at least one source with `long: true` and weight > 0.")
            if share < 1 and short_w <= 0:
                raise UserError(f"stage '{name}': long_document_share {share} leaves {1 - share:g} for the other sources, but none has weight > 0.")
        return stage

    def weights(self) -> dict[str, float]:
        """Normalised token shares; with long_document_share, the long group gets exactly that share."""
        total = sum(s.weight for s in self.sources)
        share = self.long_document_share
        if share is None:
            return {s.name: s.weight / total for s in self.sources}
        long_w = sum(s.weight for s in self.sources if s.long)
        short_w = total - long_w
        out = {}
        for s in self.sources:
            group_w, group_share = (long_w, share) if s.long else (short_w, 1 - share)
            out[s.name] = s.weight / group_w * group_share if group_w > 0 else 0.0
        return out


@dataclass
class DataArguments:
    """The data mixture of a pretraining run (see the module docstring for `stages`)."""

    tokenizer_name: str = field(default="embedded:smollm2-tokenizer", metadata={"help": "tokenizer used to tokenise the sources"})
    seq_len: int = field(default=2048, metadata={"help": "tokens per packed block"})
    mixture_seed: int = field(default=42, metadata={"help": "seeds every document shuffle and epoch reshuffle"})
    stages: list[dict] = field(default_factory=list, metadata={"help": "list of {name, tokens, sources: [{name, path, weight, ...}]}"})
    position_ids_per_document: bool = field(default=False, metadata={"help": "restart position ids after each EOS"})
    shards_dir: str | None = field(default=None, metadata={"help": "read the datatrove shards `smollm2 data tokenize` wrote (memory-mapped)"})
    eval_stage: str | None = field(default=None, metadata={"help": "stage whose mixture the held-out blocks follow (default: last)"})
    tokenize_batch_size: int = field(default=64, metadata={"help": "documents per tokenizer batch call"})

    def __post_init__(self):
        if not isinstance(self.seq_len, int) or self.seq_len < 2:
            raise UserError(f"seq_len {self.seq_len!r} must be an integer >= 2.")
        if self.tokenize_batch_size < 1:
            raise UserError(f"tokenize_batch_size {self.tokenize_batch_size} must be >= 1.")
        if not isinstance(self.stages, list):
            raise UserError(f"`stages` must be a list of stages, got {type(self.stages).__name__}.")
        self.stage_specs = [StageSpec.from_dict(raw, i) for i, raw in enumerate(self.stages)]
        names = [s.name for s in self.stage_specs]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise UserError(f"stage names must be unique; repeated: {', '.join(sorted(dupes))}.")
        by_name: dict[str, SourceSpec] = {}
        for stage in self.stage_specs:
            if stage.tokens < self.seq_len:
                raise UserError(f"stage '{stage.name}': tokens {stage.tokens} is less than one block of seq_len {self.seq_len}.")
            for s in stage.sources:
                other = by_name.setdefault(s.name, s)
                if other.identity() != s.identity():
                    raise UserError(f"source '{s.name}' names two different datasets ({other.path} vs {s.path}); "
                                    "a source name must mean the same data in every stage.")
        if self.eval_stage is not None and self.eval_stage not in names:
            raise UserError(f"eval_stage '{self.eval_stage}' is not a stage; stages: {', '.join(names)}.")

    def stage(self, name: str | None) -> StageSpec:
        if not self.stage_specs:
            raise UserError("The recipe has no `stages:`; add at least one stage with sources.")
        if name is None:
            return self.stage_specs[-1]
        for s in self.stage_specs:
            if s.name == name:
                return s
        raise UserError(f"Unknown stage '{name}'. Stages: {', '.join(s.name for s in self.stage_specs)}.")

    def all_sources(self) -> dict[str, SourceSpec]:
        """Every distinct source over all stages, by name, in first-appearance order."""
        out: dict[str, SourceSpec] = {}
        for stage in self.stage_specs:
            for s in stage.sources:
                out.setdefault(s.name, s)
        return out


def data_args_from_recipe(path, **overrides) -> DataArguments:
    """DataArguments from a recipe's data keys alone (inspect/tokenize ignore the training keys)."""
    from smollm2_recipes.recipe_parsing import load_recipe

    recipe = load_recipe(path)
    valid = {f.name for f in dataclasses.fields(DataArguments)}
    kwargs = {k: v for k, v in recipe.items() if k in valid}
    kwargs.update({k: v for k, v in overrides.items() if v is not None})
    if not kwargs.get("stages"):
        raise UserError(f"Recipe '{path}' has no `stages:` (the data mixture).")
    return DataArguments(**kwargs)
