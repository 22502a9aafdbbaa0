"""Argument parsers whose errors are one line: argparse prints the whole usage before its error (124 lines for
a TrainingArguments stage); here the reason comes alone, as a UserError, and the usage only with --help.
`ArgumentParser.error` is documented as the method to override for this:
https://docs.python.org/3/library/argparse.html#argparse.ArgumentParser.error"""

from __future__ import annotations

import argparse

from smollm2_recipes.errors import UserError


class OneLineErrors:
    def error(self, message):
        raise UserError(f"{message} (see `{self.prog} --help`).")


class ArgumentParser(OneLineErrors, argparse.ArgumentParser):
    """`argparse.ArgumentParser` for the project's commands."""


def recipe_parser(types):
    """TRL's `TrlParser` over `types`, with one-line errors."""
    from trl import TrlParser

    class RecipeParser(OneLineErrors, TrlParser):
        pass

    return RecipeParser(types)
