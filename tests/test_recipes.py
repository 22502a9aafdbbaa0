"""Every YAML under recipes/ parses with the installed transformers / TRL / accelerate, through the same
parser its command uses: a key renamed upstream fails here, not in a user's run."""

from pathlib import Path

import pytest

REPO = Path(__file__).parent.parent
# accelerate configs are parsed by accelerate itself in test_accelerate_configs.py
RECIPES = sorted(p for p in (REPO / "recipes").rglob("*.yaml") if p.parent.name != "accelerate_configs")


def _types(path: Path):
    """The dataclasses the recipe's command parses it into."""
    rel = path.relative_to(REPO / "recipes").as_posix()
    if rel.startswith("smollm2/"):
        from smollm2_recipes.data.stages import DataArguments
        from smollm2_recipes.training.pretrain_config import ModelArguments, PretrainConfig

        if path.stem == "pretrain":
            return [PretrainConfig, ModelArguments, DataArguments]
        if path.stem == "context_extension":
            from smollm2_recipes.training.context_extension import ExtensionStartArguments, PasskeyArguments

            return [PretrainConfig, ModelArguments, DataArguments, PasskeyArguments, ExtensionStartArguments]
        if path.stem == "sft":
            from smollm2_recipes.post_training.sft import CONFIG_TYPES

            return CONFIG_TYPES
        if path.stem == "dpo":
            from smollm2_recipes.post_training.dpo import CONFIG_TYPES

            return CONFIG_TYPES
    if rel.startswith("eval/"):
        from smollm2_recipes.evaluation.runner import EvalConfig

        return [EvalConfig]
    if rel.startswith("synth/"):
        from smollm2_recipes.synth.magpie import MagpieArgs
        from smollm2_recipes.synth.preferences import PreferenceArgs
        from smollm2_recipes.synth.smol_tasks import SmolTaskArgs
        from smollm2_recipes.synth.textbooks import TextbookArgs

        kinds = {"magpie": MagpieArgs, "preferences": PreferenceArgs, "rewrite": SmolTaskArgs, "summarize": SmolTaskArgs,
                 "constraints": SmolTaskArgs, "textbooks": TextbookArgs}
        return [next(cls for key, cls in kinds.items() if key in path.stem)]
    if rel.startswith("curation/"):
        from smollm2_recipes.curation.annotate import AnnotateArgs
        from smollm2_recipes.curation.classifier import ClassifierArgs
        from smollm2_recipes.curation.decontaminate import DecontaminateArgs
        from smollm2_recipes.curation.dedup import DedupArgs
        from smollm2_recipes.curation.filter import FilterArgs

        kinds = {"annotate": AnnotateArgs, "classifier": ClassifierArgs, "filter": FilterArgs, "decontaminate": DecontaminateArgs,
                 "dedup": DedupArgs}
        return [next(cls for key, cls in kinds.items() if key in path.stem)]
    raise AssertionError(f"no parser known for recipes/{rel}: add it to this test")


def test_the_published_recipes_exist():
    names = {p.relative_to(REPO / "recipes").as_posix() for p in RECIPES}
    for size in ("135M", "360M", "1.7B", "tiny"):
        for stage in ("pretrain", "context_extension", "sft", "dpo"):
            assert f"smollm2/{size}/{stage}.yaml" in names


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.relative_to(REPO / "recipes").as_posix())
def test_recipe_parses(path, tmp_path):
    from smollm2_recipes.recipe_parsing import parse

    parsed = parse(_types(path), [str(path), "--output_dir", str(tmp_path / "out")])
    assert parsed and all(getattr(p, "output_dir", str(tmp_path / "out")) == str(tmp_path / "out") for p in parsed)
    assert not (tmp_path / "out").exists()  # parsing writes nothing
