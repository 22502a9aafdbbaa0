"""Paired bootstrap interval of a difference in accuracy between two models scored on the same problems:
resample problems with replacement, keep each problem's pair of outcomes together, and read the percentile
interval of the mean difference (Efron & Tibshirani 1993, ch. 13; the paired design of Koehn 2004,
https://aclanthology.org/W04-3250). Pairing removes the problem-to-problem variance both models share."""

from __future__ import annotations

from smollm2_recipes.errors import UserError


def paired_bootstrap_ci(first: list[int], second: list[int], resamples: int = 10_000, seed: int = 0,
                        level: float = 0.95) -> dict:
    """{"n", "first", "second", "gain" (second - first), "ci": [lo, hi], "up"/"down" (problems only the second /
    only the first got right), "resolvable_gain" / "problems_to_resolve_gain" (the power of this many problems
    at this churn, below)} for per-problem 0/1 outcomes."""
    import numpy as np

    if len(first) != len(second) or not first:
        raise UserError(f"a paired bootstrap needs two equally long, non-empty lists of outcomes, got {len(first)} and {len(second)}.")
    diff = np.asarray(second, dtype=np.float64) - np.asarray(first, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    gain, up, down = float(diff.mean()), int((diff > 0).sum()), int((diff < 0).sum())
    changed = (up + down) / len(diff)
    return {"n": len(diff), "first": float(np.mean(first)), "second": float(np.mean(second)), "gain": gain,
            "ci": [float(lo), float(hi)], "up": up, "down": down,
            "resolvable_gain": resolvable_gain(changed, len(diff), level),
            "problems_to_resolve_gain": problems_to_resolve(gain, changed, level), "resamples": resamples, "seed": seed}


# Power of the paired comparison (normal approximation). A problem's difference is -1, 0 or 1; when a share c of
# problems changes either way and the true gain is g, its variance is c - g^2, and an interval at `level`
# excludes 0 with probability `power` once g >= (z_level + z_power) * sqrt((c - g^2) / n).

def _z_sum(level: float, power: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(1 - (1 - level) / 2) + NormalDist().inv_cdf(power)


def resolvable_gain(changed_share: float, n: int, level: float = 0.95, power: float = 0.8) -> float:
    """The smallest true gain that `n` problems resolve (interval above 0 with probability `power`) when a
    share `changed_share` of them changes either way: g solving g = k * sqrt((c - g^2) / n)."""
    k = _z_sum(level, power)
    return k * (changed_share / (n + k * k)) ** 0.5


def problems_to_resolve(gain: float, changed_share: float, level: float = 0.95, power: float = 0.8) -> int | None:
    """Problems needed to resolve a true `gain` when a share `changed_share` of problems changes either way;
    None for a gain that is not above 0 (no number of problems shows one)."""
    if gain <= 0:
        return None
    return int(-(-_z_sum(level, power) ** 2 * (changed_share - gain * gain) // (gain * gain)))
