"""Baselines scored in the same harness as the model (no Spark)."""
from __future__ import annotations

import numpy as np


def popularity_top_n(seen_items: list[np.ndarray], num_items: int, top_n: int) -> np.ndarray:
    """Most popular unseen items per user: int [B, N], -1 in empty slots.

    Item indices are assigned by descending frequency, so popularity order is 1, 2, 3, ...
    """
    ranked = np.full((len(seen_items), top_n), -1, dtype=np.int64)
    for row, seen in enumerate(seen_items):
        candidates = np.arange(1, min(num_items, top_n + len(seen) + 1))
        picked = candidates[~np.isin(candidates, seen)][:top_n]
        ranked[row, :len(picked)] = picked
    return ranked
