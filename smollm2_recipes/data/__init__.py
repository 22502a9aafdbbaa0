"""Pretraining data: sources, staged token-share mixtures, packing, exact resumption, shards, the embedded corpus.

The names the training code imports: `DataArguments` (config), `build_stream`, `PretrainStream`,
`build_eval_blocks` (mixture), `corpus_path` (corpus). Heavy modules are imported on first use.
"""

from smollm2_recipes.data.config import DataArguments, SourceSpec, StageSpec

__all__ = ["DataArguments", "SourceSpec", "StageSpec", "build_stream", "build_eval_blocks", "PretrainStream", "corpus_path"]


def __getattr__(name):
    if name in ("build_stream", "build_eval_blocks", "PretrainStream"):
        from smollm2_recipes.data import mixture

        return getattr(mixture, name)
    if name == "corpus_path":
        from smollm2_recipes.data.corpus import corpus_path

        return corpus_path
    raise AttributeError(name)
