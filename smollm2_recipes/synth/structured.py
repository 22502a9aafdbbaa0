"""Reading structured (JSON) answers from an LLM without ever crashing on a bad one.

A tagger or judge reply can be empty, prose, truncated JSON, or JSON with values outside the allowed set.
Each case yields nulls and a status; `Tally` counts statuses so a run's summary can say how many rows
carry nulls and why.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any, Iterable

OK, EMPTY, INVALID_JSON, MISSING, NO_SCORE = "ok", "empty_generation", "invalid_json", "missing_or_invalid_fields", "no_score"


def extract_json_object(text: str | None) -> dict | None:
    """The first JSON object in `text` (models often wrap it in prose or ``` fences), or None. A flat object
    cut off by max_new_tokens after a complete value (`{"a": "x", "b": "y"`) is closed and accepted."""
    if not text:
        return None
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", text):
        body = text[match.start():].split("```")[0].rstrip().rstrip(",")
        for candidate in (body, body + "}"):
            try:
                obj, _ = decoder.raw_decode(candidate)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                return obj
    return None


def _normalise(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def parse_fields(text: str | None, allowed: dict[str, Iterable[Any] | None]) -> tuple[dict[str, Any], str]:
    """Fields named in `allowed` from the JSON object in `text`. `allowed[key]` is the set of valid values
    (compared case-insensitively for strings) or None for any value. Invalid or absent values are None.
    Returns (fields, status)."""
    fields: dict[str, Any] = {key: None for key in allowed}
    if text is None or not str(text).strip():
        return fields, EMPTY
    obj = extract_json_object(text)
    if obj is None:
        return fields, INVALID_JSON
    lowered = {_normalise(k): v for k, v in obj.items()}
    complete = True
    for key, valid in allowed.items():
        value = _normalise(lowered.get(key.lower()))
        if value is not None and valid is not None:
            valid_set = {_normalise(v) for v in valid}
            value = value if value in valid_set else None
        fields[key] = value
        complete &= value is not None
    return fields, OK if complete else MISSING


def parse_score(text: str | None, low: int = 0, high: int = 5) -> tuple[int | None, str]:
    """An integer score in [low, high]: from a JSON {"score": n}, else from "Score: n" / "n/5", else None."""
    if text is None or not str(text).strip():
        return None, EMPTY
    obj = extract_json_object(text)
    candidates = []
    if obj is not None:
        candidates.append(obj.get("score", obj.get("Score")))
    m = re.search(r"(?:score|rating|points?)\W{0,3}(\d+)", text, flags=re.I) or re.search(r"\b(\d)\s*/\s*%d\b" % high, text)
    if m:
        candidates.append(m.group(1))
    for value in candidates:
        try:
            score = int(float(value))
        except (TypeError, ValueError):
            continue
        if low <= score <= high:
            return score, OK
    return None, NO_SCORE


class Tally(Counter):
    """Counts of parse statuses; `summary()` is what a run's summary.json shows."""

    def summary(self) -> dict[str, int]:
        total = sum(self.values())
        return {"total": total, "parsed": self[OK], "null": total - self[OK],
                **{k: v for k, v in sorted(self.items()) if k != OK}}
