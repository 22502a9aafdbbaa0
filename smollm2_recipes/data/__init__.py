"""Pretraining data: sources, staged token-share mixtures, packing, exact resumption, shards.

The names the training code imports: `DataArguments` (stages), `build_stream`, `PretrainStream`,
`build_eval_blocks` (mixture). Heavy modules are imported on first use.
"""

from smollm2_recipes.data.stages import DataArguments, SourceSpec, StageSpec

__all__ = ["DataArguments", "SourceSpec", "StageSpec", "build_stream", "build_eval_blocks", "PretrainStream"]


def __getattr__(name):
    if name in ("build_stream", "build_eval_blocks", "PretrainStream"):
        from smollm2_recipes.data import mixture

        return getattr(mixture, name)
    raise AttributeError(name)
