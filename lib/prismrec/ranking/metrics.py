"""Ranking metrics, numpy reference implementation.

``ranked`` is [B, N] item indices best first, with -1 (or any non-item) in empty
slots; ``targets`` holds each user's held-out items. Definitions (per user):

- Recall@K  = |top-K ∩ targets| / |targets|
- HitRate@K = 1 if |top-K ∩ targets| > 0 else 0
- NDCG@K    = Σ_{i<K, ranked_i ∈ targets} 1/log2(i+2)  /  Σ_{i<min(K,|targets|)} 1/log2(i+2)
- Precision@K = |top-K ∩ targets| / K
- MRR       = 1 / (1 + position of the first hit in the whole list), 0 without a hit

Beyond accuracy (they need no targets):

- Coverage@K = |∪_users top-K| / number of catalogue items (one figure for all users)
- Novelty@K  = mean over a user's top-K items of −log2 p(item), p = the item's share of
  all interactions; 0 for an empty list

Users with no targets are undefined and must be filtered out beforehand.
"""
from __future__ import annotations

import numpy as np


def hits_matrix(ranked: np.ndarray, targets: list[np.ndarray]) -> np.ndarray:
    """bool [B, N]: whether ranked[b, i] is one of user b's targets."""
    return np.stack([np.isin(row, t) for row, t in zip(ranked, targets)]) if len(targets) else \
        np.zeros(ranked.shape, dtype=bool)


def batch_metrics(ranked: np.ndarray, targets: list[np.ndarray], ks: list[int]) -> dict[str, np.ndarray]:
    """Per-user metric arrays, keyed ``"{metric}@{k}"``."""
    hits = hits_matrix(ranked, targets)
    num_targets = np.array([len(np.unique(t)) for t in targets], dtype=np.float64)
    if np.any(num_targets == 0):
        raise ValueError("every user passed to batch_metrics needs at least one target item")
    discounts = 1.0 / np.log2(np.arange(hits.shape[1]) + 2.0)
    out = {}
    for k in ks:
        top = hits[:, :k]
        hit_count = top.sum(axis=1)
        ideal_len = np.minimum(num_targets, k).astype(int)
        ideal = np.array([discounts[:n].sum() for n in ideal_len])
        out[f"recall@{k}"] = hit_count / num_targets
        out[f"hit_rate@{k}"] = (hit_count > 0).astype(np.float64)
        out[f"ndcg@{k}"] = (top * discounts[:top.shape[1]]).sum(axis=1) / ideal
        out[f"precision@{k}"] = hit_count / k
    has_hit = hits.any(axis=1)
    first_position = hits.argmax(axis=1) + 1.0  # 1-based; meaningless where nothing was found
    # Divide only where a hit exists: np.where would evaluate 1/0 for every miss first.
    out["mrr"] = np.divide(1.0, first_position, out=np.zeros(len(hits)), where=has_hit)
    return out


def self_information(counts: np.ndarray) -> np.ndarray:
    """float [M]: −log2 of each item's share of all interactions (0 where the count is 0, e.g. padding)."""
    counts = np.asarray(counts, dtype=np.float64)
    share = counts / counts.sum()
    return np.where(counts > 0, -np.log2(np.where(counts > 0, share, 1.0)), 0.0)


def coverage(ranked: np.ndarray, num_items: int, k: int) -> float:
    """Share of the ``num_items`` catalogue items that appear in at least one user's top-k."""
    top = ranked[:, :k]
    return len(np.unique(top[top > 0])) / num_items


def novelty(ranked: np.ndarray, information: np.ndarray, k: int) -> np.ndarray:
    """[B]: mean self-information (``information[item_idx]``) of each user's top-k items; 0 when empty."""
    top = ranked[:, :k]
    valid = top > 0
    values = np.where(valid, information[np.where(valid, top, 0)], 0.0)
    return values.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
