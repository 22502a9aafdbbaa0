"""Recipes and chat templates are found by their shipped names from any working directory, through one
lookup (smollm2_recipes.package_data); the flagship recipes are links to the 1.7B ones, never copies."""

import os
from pathlib import Path

import pytest

from smollm2_recipes import cli
from smollm2_recipes.errors import UserError
from smollm2_recipes.package_data import data_root, find_chat_template, find_recipe

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("stage", ["pretrain", "context_extension", "sft", "dpo"])
def test_flagship_recipes_are_links_to_the_1_7B_recipes(stage):
    link = REPO / "recipes" / "smollm2" / f"{stage}.yaml"
    assert link.is_symlink() and os.readlink(link) == f"1.7B/{stage}.yaml"
    assert link.resolve() == (REPO / "recipes" / "smollm2" / "1.7B" / f"{stage}.yaml").resolve()


def test_shipped_names_resolve_from_another_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert data_root() == REPO  # a checkout (editable install): the top-level folders are the source of truth
    for name in ("recipes/smollm2/tiny/sft.yaml", "smollm2/tiny/sft.yaml"):
        assert find_recipe(name) == REPO / "recipes" / "smollm2" / "tiny" / "sft.yaml"
    assert find_recipe("recipes/smollm2/sft.yaml").read_text() == (REPO / "recipes/smollm2/1.7B/sft.yaml").read_text()
    assert find_chat_template("chat_templates/smollm2.jinja") == REPO / "chat_templates" / "smollm2.jinja"


def test_a_local_file_wins_over_a_shipped_one(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "chat_templates").mkdir()
    (tmp_path / "chat_templates" / "smollm2.jinja").write_text("mine")
    assert find_chat_template("chat_templates/smollm2.jinja").read_text() == "mine"


def test_unknown_names_are_one_line_listing_what_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match=r"chat_template_path 'chat_templates/nope.jinja'.*chat_templates/smollm2.jinja"):
        find_chat_template("chat_templates/nope.jinja")
    with pytest.raises(UserError, match=r"Recipe 'recipes/nope.yaml' does not exist"):
        find_recipe("recipes/nope.yaml")


def test_the_cli_runs_a_shipped_recipe_from_another_working_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # parsing gets as far as the run's services: the recipe was found and parsed outside the checkout
    assert cli.run("sft", ["recipes/smollm2/tiny/sft.yaml", "--report_to", "no-such-tracker"]) == 2
    assert "report_to 'no-such-tracker'" in capsys.readouterr().err
    assert cli.run("sft", ["recipes/nope.yaml"]) == 2
    assert "Recipe 'recipes/nope.yaml' does not exist" in capsys.readouterr().err
