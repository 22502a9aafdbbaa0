"""`embedded:NAME`: the one door from the library into the offline world (smollm2_recipes.offline).

A recipe names an offline asset with an `embedded:` prefix (`embedded:SmolLM2-135M-Instruct`,
`embedded:corpus/web`); everything else (a Hub id, a local path) passes through `resolve` unchanged, so
real runs and offline runs share one code path.
"""

from __future__ import annotations

import os

from smollm2_recipes.preflight import require_local_or_hub

PREFIX = "embedded:"


def is_embedded(name: str | os.PathLike | None) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def resolve(name: str | os.PathLike) -> str:
    """`embedded:NAME` → a local path; anything else (Hub id, local path) is returned unchanged, after
    checking that a Hub id is cached or reachable: offline, a flagship recipe stops here, before any model
    loads, with one line naming the id and the offline alternative."""
    if not is_embedded(name):
        if isinstance(name, str):
            require_local_or_hub(name)
        return str(name)
    key = name[len(PREFIX):]
    if key.startswith("corpus/"):
        from smollm2_recipes.offline.corpus import corpus_path

        return str(corpus_path(key.split("/", 1)[1]))
    from smollm2_recipes.offline.embedded import materialise

    return str(materialise(key))
