"""Interest quality, numpy reference (no Spark): distinctness, weights, purity, planted-interest recovery.

Per user, with K interest vectors and each interest's top-N retrieved items:

- distinctness: mean cosine over the K·(K−1)/2 pairs of interest vectors (NaN when K = 1)
- weight entropy: −Σ_k w_k log2 w_k of the interest weights (0 for one interest)
- category purity of interest k: share of its top-N items that are in its most frequent category
- recovery (planted data): each interest's top-N items give a topic distribution; interests
  are matched one-to-one to the user's true topics greedily on that overlap, and a true
  topic is recovered when its matched interest has a majority (> 1/2) of its items in it;
  reported over every planted topic and over the evidenced ones (≥ MIN_EVIDENCE input items)
- NMI between the interest each history item is assigned to and the item's true topic
"""
from __future__ import annotations

import numpy as np

RECOVERY_SHARE = 0.5
MIN_EVIDENCE = 3  # input items a planted topic needs before a model can be asked to find it
PURITY_TOP_N = 20  # items an interest retrieves when judging its purity and its topic


def mean_pairwise_cosine(vectors: np.ndarray) -> np.ndarray:
    """vectors: [B, K, d] → [B] mean cosine over the distinct pairs; NaN when K < 2."""
    num_interests = vectors.shape[1]
    if num_interests < 2:
        return np.full(vectors.shape[0], np.nan)
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=-1, keepdims=True), 1e-12)
    cosine = np.einsum("bkd,bjd->bkj", unit, unit)
    upper = np.triu_indices(num_interests, k=1)
    return cosine[:, upper[0], upper[1]].mean(axis=1)


def weight_entropy(weights: np.ndarray) -> np.ndarray:
    """weights: [B, K], rows summing to 1 → [B] entropy in bits."""
    safe = np.where(weights > 0, weights, 1.0)
    return -(np.where(weights > 0, weights * np.log2(safe), 0.0)).sum(axis=1)


def category_purity(top_items: np.ndarray, item_category: np.ndarray) -> np.ndarray:
    """top_items: [B, K, N] item_idx (≤ 0 = empty slot); item_category: [M] codes → [B, K] purity (0 if empty)."""
    purity = np.zeros(top_items.shape[:2])
    for index in np.ndindex(*top_items.shape[:2]):
        items = top_items[index]
        items = items[items > 0]
        if len(items):
            purity[index] = np.unique(item_category[items], return_counts=True)[1].max() / len(items)
    return purity


def topic_shares(top_items: np.ndarray, item_topic: np.ndarray, topics: np.ndarray) -> np.ndarray:
    """top_items: [K, N] one user's retrieved items → [K, T]: share of interest k's items in topics[t]."""
    shares = np.zeros((top_items.shape[0], len(topics)))
    for k, items in enumerate(top_items):
        items = items[items > 0]
        if len(items):
            shares[k] = (item_topic[items][:, None] == topics[None, :]).mean(axis=0)
    return shares


def greedy_match(overlap: np.ndarray) -> list[tuple[int, int]]:
    """One-to-one (row, column) pairs, taking the largest remaining overlap first (ties: lowest indices)."""
    pairs, rows, columns = [], set(), set()
    for flat in np.argsort(-overlap, axis=None, kind="stable"):
        row, column = np.unravel_index(flat, overlap.shape)
        if row not in rows and column not in columns:
            pairs.append((int(row), int(column)))
            rows.add(row)
            columns.add(column)
    return pairs


def recovered_topics(top_items: np.ndarray, item_topic: np.ndarray, true_topics: np.ndarray) -> np.ndarray:
    """The ones of a user's ``true_topics`` that a learned interest recovers (top_items: [K, N])."""
    true_topics = np.asarray(true_topics)
    shares = topic_shares(top_items, item_topic, true_topics)
    return np.sort(true_topics[[t for k, t in greedy_match(shares) if shares[k, t] > RECOVERY_SHARE]])


def evidenced_topics(hist_items: np.ndarray, item_topic: np.ndarray, true_topics: np.ndarray) -> np.ndarray:
    """The ones of a user's ``true_topics`` with at least MIN_EVIDENCE items in their input history [L]."""
    topics = item_topic[hist_items[hist_items > 0]]
    return np.asarray([t for t in true_topics if (topics == t).sum() >= MIN_EVIDENCE], dtype=np.int64)


def entropy(labels: np.ndarray) -> float:
    counts = np.unique(labels, return_counts=True)[1] / len(labels)
    return float(-(counts * np.log(counts)).sum())


def nmi(labels_a: np.ndarray, labels_b: np.ndarray) -> float:
    """Normalised mutual information, I(a; b) / mean(H(a), H(b)); 1 when both are constant, 0 when one is."""
    labels_a, labels_b = np.asarray(labels_a), np.asarray(labels_b)
    h_a, h_b = entropy(labels_a), entropy(labels_b)
    if h_a == 0 and h_b == 0:
        return 1.0
    if h_a == 0 or h_b == 0:
        return 0.0
    _, joint = np.unique(np.stack([labels_a, labels_b]), axis=1, return_inverse=True)
    mutual = h_a + h_b - entropy(joint.reshape(-1))
    return float(mutual / ((h_a + h_b) / 2))


def assignment_nmi(assignment: np.ndarray, hist_items: np.ndarray, item_topic: np.ndarray) -> np.ndarray:
    """[B]: NMI between each history item's interest (assignment [B, L], -1 = padding) and its true topic.

    NaN for users whose history spans fewer than two topics (nothing to disentangle).
    """
    out = np.full(len(hist_items), np.nan)
    for row, (assigned, items) in enumerate(zip(assignment, hist_items)):
        real = items > 0
        topics = item_topic[items[real]]
        if len(np.unique(topics)) > 1:
            out[row] = nmi(assigned[real], topics)
    return out
