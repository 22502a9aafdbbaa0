"""datatrove pipeline steps of `smollm2 data tokenize` (see data/shards.py for the layout they write)."""

from __future__ import annotations

import shutil
from collections import deque
from pathlib import Path

import numpy as np
from datatrove.pipeline.base import PipelineStep

from smollm2_recipes.data.stages import SourceSpec
from smollm2_recipes.data.sources import clean_text, local_document_reader
from smollm2_recipes.runkit import write_json_atomic



class LocalSourceReader(PipelineStep):
    """Documents of a local or embedded source's split; task `rank` of `world_size` reads the rank-th
    contiguous slice, so the merged shards hold the documents in the order the mixture indexes them."""

    name = "📖 recipe source"
    type = "📖 - READER"

    def __init__(self, spec: SourceSpec, split: str, chunk: int = 512):
        super().__init__()
        self.spec, self.split, self.chunk = spec, split, chunk

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        from datatrove.data import Document

        reader = local_document_reader(self.spec, self.split)
        n = len(reader)
        lo, hi = n * rank // world_size, n * (rank + 1) // world_size
        counters: dict = {}
        for start in range(lo, hi, self.chunk):
            values = reader.texts(range(start, min(start + self.chunk, hi)))
            for i, value in enumerate(values, start):
                before = counters.get("invalid_utf8", 0)
                text = clean_text(value, counters, self.spec.name, self.spec.text_column)
                if counters.get("invalid_utf8", 0) > before:
                    self.stat_update("invalid_utf8")
                self.stat_update("documents")
                yield Document(text=text, id=f"{self.spec.name}/{self.split}/{i}")


class TokenizeSources(PipelineStep):
    """Task r: every source split's reader into its own `DocumentTokenizer` (one pipeline, N tasks)."""

    name = "🔢 recipe sources"
    type = "🔢 - TOKENIZER"

    def __init__(self, parts: list):
        super().__init__()
        self.parts = parts  # [(reader step, DocumentTokenizer)]

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        for reader, tokenizer in self.parts:
            documents = reader.run(None, rank, world_size)
            result = tokenizer.run(documents, rank, world_size)
            if result is not None:
                deque(result, maxlen=0)
            deque(documents, maxlen=0)  # a task with no documents: the reader still runs to its end
        return iter(())


class MergeAndSeal(PipelineStep):
    """The single merge task: each split's task files into one file (in rank order), then the manifest,
    written last and atomically, then the working folder is removed."""

    name = "🗃 merge + manifest"
    type = "🔢 - TOKENIZER"

    def __init__(self, output_dir: str, work_dir: str, manifest_name: str, parts: list[tuple[str, str]], header: dict):
        super().__init__()
        self.output_dir, self.work_dir, self.manifest_name = output_dir, work_dir, manifest_name
        self.parts, self.header = parts, header  # header: the manifest's fields other than "sources"

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        from datatrove.pipeline.tokens.merger import DocumentTokenizerMerger

        out = Path(self.output_dir)
        sources: dict = {}
        for name, split in self.parts:
            target = out / name / split
            if target.exists():
                shutil.rmtree(target)  # a merge killed half-way: start this split again
            DocumentTokenizerMerger(str(Path(self.work_dir) / name / split), str(target), save_filename=name, shuffle=False,
                                    progress=False).run(None, 0, 1)
            files = sorted(p.name for p in target.glob("*.ds"))
            ends = [np.fromfile(target / f"{f}.index", dtype=np.uint64) for f in files]
            sources.setdefault(name, {})[split] = {"files": files, "documents": int(sum(len(e) for e in ends)),
                                                   "tokens": int(sum(int(e[-1]) if len(e) else 0 for e in ends))}
        write_json_atomic(out / self.manifest_name, {**self.header, "sources": sources})
        shutil.rmtree(self.work_dir, ignore_errors=True)
        return iter(())
