"""Paired bootstrap interval of a difference in accuracy between two models scored on the same problems:
resample problems with replacement, keep each problem's pair of outcomes together, and read the percentile
interval of the mean difference (Efron & Tibshirani 1993, ch. 13; the paired design of Koehn 2004,
https://aclanthology.org/W04-3250). Pairing removes the problem-to-problem variance both models share."""

from __future__ import annotations

from smollm2_recipes.errors import UserError


def paired_bootstrap_ci(first: list[int], second: list[int], resamples: int = 10_000, seed: int = 0,
                        level: float = 0.95) -> dict:
    """{"n", "first", "second", "gain" (second - first), "ci": [lo, hi]} for per-problem 0/1 outcomes."""
    import numpy as np

    if len(first) != len(second) or not first:
        raise UserError(f"a paired bootstrap needs two equally long, non-empty lists of outcomes, got {len(first)} and {len(second)}.")
    diff = np.asarray(second, dtype=np.float64) - np.asarray(first, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return {"n": len(diff), "first": float(np.mean(first)), "second": float(np.mean(second)),
            "gain": float(diff.mean()), "ci": [float(lo), float(hi)], "resamples": resamples, "seed": seed}
