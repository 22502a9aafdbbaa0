"""Where the recipes and chat templates are, from any working directory.

The top-level `recipes/` and `chat_templates/` folders of the checkout are the source of truth. A wheel
carries a copy of both inside the package (`smollm2_recipes/data_files/`, written by setup.py's build
step); an editable install or a checkout on PYTHONPATH reads them from the checkout next to the package.
Every place that finds a recipe or a chat template goes through `find_recipe` / `find_chat_template`.
"""

from __future__ import annotations

import os
from pathlib import Path

from smollm2_recipes.errors import UserError

RECIPES, CHAT_TEMPLATES = "recipes", "chat_templates"
SHIPPED_ROOT = Path(__file__).with_name("data_files")  # present only in a built wheel / regular install
CHECKOUT_ROOT = Path(__file__).resolve().parent.parent  # the repository, for editable installs


def data_root() -> Path:
    """The folder holding `recipes/` and `chat_templates/` for this installation."""
    return SHIPPED_ROOT if (SHIPPED_ROOT / RECIPES).is_dir() else CHECKOUT_ROOT


def _find(path: str | os.PathLike, folder: str) -> Path | None:
    given = Path(os.path.expanduser(str(path)))
    if given.is_file():  # as typed, relative to the working directory or absolute
        return given
    if given.is_absolute():
        return None
    parts = given.parts[1:] if given.parts[:1] == (folder,) else given.parts  # "recipes/x.yaml" or "x.yaml"
    candidate = data_root() / folder / Path(*parts) if parts else None
    return candidate if candidate is not None and candidate.is_file() else None


def shipped(folder: str, pattern: str) -> list[str]:
    """Names (relative to `folder`) of the shipped files matching `pattern`, e.g. ("chat_templates", "*.jinja")."""
    root = data_root() / folder
    return sorted(p.relative_to(root).as_posix() for p in root.rglob(pattern))


def find_recipe(path: str | os.PathLike) -> Path:
    """A recipe YAML as typed, or else the shipped one of that name (`recipes/smollm2/tiny/sft.yaml` or
    `smollm2/tiny/sft.yaml`)."""
    found = _find(path, RECIPES)
    if found is None:
        raise UserError(f"Recipe '{path}' does not exist here nor among the shipped recipes in {data_root() / RECIPES} "
                        "(e.g. recipes/smollm2/sft.yaml, recipes/smollm2/tiny/sft.yaml).")
    return found


def find_chat_template(path: str | os.PathLike) -> Path:
    """A chat template file as typed, or else the shipped one of that name (`chat_templates/smollm2.jinja`)."""
    found = _find(path, CHAT_TEMPLATES)
    if found is None:
        valid = ", ".join(f"{CHAT_TEMPLATES}/{name}" for name in shipped(CHAT_TEMPLATES, "*.jinja"))
        raise UserError(f"chat_template_path '{path}' does not exist here nor among the shipped templates: {valid}.")
    return found
