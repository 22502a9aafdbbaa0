"""The 11 weighted task categories of MagPie-Ultra (system prompts condensed from argilla/magpie-ultra-v0.1;
weights as published). A recipe may replace them with its own `system_prompts: {key: [prompt, weight]}`."""

from __future__ import annotations

from smollm2_recipes.errors import UserError

_BASE = "You are an AI assistant designed to help with {what}. The user will ask {ask}; answer accurately and concisely."
MAGPIE_ULTRA: dict[str, tuple[str, float]] = {
    "information-seeking": (_BASE.format(what="a wide range of questions on many topics", ask="factual questions"), 0.05),
    "reasoning": (_BASE.format(what="logical thinking, problem-solving and critical analysis", ask="puzzles and arguments to analyse"), 0.125),
    "planning": (_BASE.format(what="making plans and strategies", ask="for help organising a project, trip or goal"), 0.05),
    "editing": (_BASE.format(what="refining written text", ask="for edits to grammar, style, clarity and structure"), 0.10),
    "coding": (_BASE.format(what="programming", ask="to write, review, explain or debug code"), 0.125),
    "math": (_BASE.format(what="mathematics", ask="math problems from arithmetic to advanced topics"), 0.125),
    "role-playing": (_BASE.format(what="role-play and character interaction", ask="you to adopt a persona or scenario"), 0.10),
    "data-analysis": (_BASE.format(what="data analysis and statistics", ask="about datasets, statistics and visualisation"), 0.125),
    "creative-writing": (_BASE.format(what="creative writing", ask="for stories, poems and other creative texts"), 0.10),
    "advice-seeking": (_BASE.format(what="advice and guidance", ask="for thoughtful advice on personal or professional matters"), 0.05),
    "brainstorming": (_BASE.format(what="brainstorming and idea generation", ask="for creative ideas and new angles"), 0.05),
}


def system_prompts(spec: dict | None) -> dict[str, tuple[str, float]]:
    """Validate a recipe's `system_prompts` (None → MagPie-Ultra's) as {key: (prompt, weight)}, weights summing to 1."""
    if spec is None:
        return dict(MAGPIE_ULTRA)
    if not isinstance(spec, dict) or not spec:
        raise UserError(f"system_prompts must be a mapping of category: [prompt, weight], got {spec!r}.")
    out = {}
    for key, value in spec.items():
        if not (isinstance(value, (list, tuple)) and len(value) == 2 and isinstance(value[0], str)
                and isinstance(value[1], (int, float)) and value[1] >= 0):
            raise UserError(f"system_prompts['{key}'] must be [prompt, weight >= 0], got {value!r}.")
        out[str(key)] = (value[0], float(value[1]))
    total = sum(w for _, w in out.values())
    if total <= 0:
        raise UserError("system_prompts weights sum to 0; give at least one category a positive weight.")
    # distilabel insists the weights sum to exactly 1
    return {k: (p, w / total) for k, (p, w) in out.items()}
