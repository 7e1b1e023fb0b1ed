"""Exact top-N over several interest vectors per user (numpy + TensorFlow, no Spark).

For each interest, its top-N unseen items (:mod:`prismrec.ranking.retrieval`: exact, or from an
approximate index), then the K·N candidates are merged into N, one of two ways:

- ``max``: by each item's best score. This equals the top-N of ``max_k score_k(item)``:
  an item in that top-N is, for its best interest k*, beaten under k* only by items
  that also beat it overall, so it is in k*'s own top-N.
- ``share``: the K lists are interleaved in proportion to the interests' shares w_k of
  the history (D'Hondt: the r-th item of interest k comes at (r + 1) / w_k), an item
  already taken is skipped, so a user's list holds each interest about as much as the
  history does. Scores are then non-increasing within each interest, not overall.
"""
from __future__ import annotations

import numpy as np

from prismrec.ranking.retrieval import candidates

NEG_INF = np.float32(-np.inf)


def exclusion_mask(seen_items: list[np.ndarray], num_items: int) -> np.ndarray:
    """float32 [B, M]: 0 where an item may be recommended, -inf for seen items and padding (0)."""
    mask = np.zeros((len(seen_items), num_items), dtype=np.float32)
    lengths = np.fromiter((len(s) for s in seen_items), dtype=np.int64, count=len(seen_items))
    if lengths.sum():
        rows = np.repeat(np.arange(len(seen_items)), lengths)
        mask[rows, np.concatenate(seen_items).astype(np.int64)] = NEG_INF
    mask[:, 0] = NEG_INF
    return mask


def as_search(items):
    """``items`` if it is already a search (:mod:`prismrec.ranking.retrieval`), else an exact
    search over the item table [M, d] it is."""
    if hasattr(items, "search"):
        return items
    from prismrec.ranking.retrieval import ExactSearch

    return ExactSearch(items)


def merge_interests(scores: np.ndarray, items: np.ndarray, top_n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merge [B, K, N] per-interest candidates into each user's N best distinct items.

    Returns (items [B, N], scores [B, N], interest [B, N]); slots with no
    recommendable item left have score -inf (the caller drops them).
    """
    return _take(scores, items, *_best_distinct(scores, items, top_n))


def interleave_interests(scores: np.ndarray, items: np.ndarray, shares: np.ndarray,
                         top_n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interleave [B, K, N] per-interest candidates (each list best first) in proportion to
    ``shares`` [B, K] (D'Hondt), skipping items already taken; an interest with share 0 comes
    last. Returns (items [B, N], scores [B, N], interest [B, N]); -inf marks empty slots.
    """
    rank = np.arange(scores.shape[2], dtype=np.float64)[None, None, :]
    turn = (rank + 1.0) / np.maximum(shares.astype(np.float64), 1e-9)[:, :, None]          # [B, K, N]
    return _take(scores, items, *_best_distinct(np.where(np.isfinite(scores), -turn, -np.inf), items, top_n))


def _best_distinct(keys: np.ndarray, items: np.ndarray, top_n: int) -> tuple[np.ndarray, np.ndarray]:
    """([B, N] flat positions, [B, N] filled) of the N largest ``keys`` [B, K, N'] over distinct
    items (an item keeps its largest key; ties go to the lower item index). A slot is not
    filled when its key is -inf: an excluded item, or a duplicate once the distinct ones ran out."""
    batch = keys.shape[0]
    flat_keys = keys.reshape(batch, -1).astype(np.float64)
    flat_items = items.reshape(batch, -1)
    # Keep each item's best occurrence: sort by (item, -key), blank later duplicates.
    order = np.lexsort((-flat_keys, flat_items), axis=-1)
    sorted_items = np.take_along_axis(flat_items, order, axis=-1)
    duplicate = np.zeros_like(sorted_items, dtype=bool)
    duplicate[:, 1:] = sorted_items[:, 1:] == sorted_items[:, :-1]
    np.put_along_axis(flat_keys, order, np.where(duplicate, -np.inf,
                                                 np.take_along_axis(flat_keys, order, axis=-1)), axis=-1)
    # Stable descending sort; ties broken by item index for reproducibility.
    positions = np.lexsort((flat_items, -flat_keys), axis=-1)[:, :top_n]
    return positions, np.isfinite(np.take_along_axis(flat_keys, positions, axis=-1))


def _take(scores: np.ndarray, items: np.ndarray, positions: np.ndarray, filled: np.ndarray):
    """(items, scores, interest) [B, N] at flat ``positions`` of [B, K, N'] candidates; an
    unfilled slot scores -inf."""
    batch, num_interests, per_interest = scores.shape
    interest = np.repeat(np.arange(num_interests), per_interest)[None, :].repeat(batch, axis=0)
    taken_scores = np.take_along_axis(scores.reshape(batch, -1), positions, axis=-1)
    return (np.take_along_axis(items.reshape(batch, -1), positions, axis=-1),
            np.where(filled, taken_scores, NEG_INF).astype(scores.dtype),
            np.take_along_axis(interest, positions, axis=-1))


def top_n(interest_vectors: np.ndarray, items, seen_items: list[np.ndarray],
          top_n: int, diversity: float = 0.0, item_category: np.ndarray | None = None,
          interest_bias: np.ndarray | None = None,
          interest_share: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each user's top-N items over their interests, excluding seen items and padding (item_idx 0).

    interest_vectors: [B, K, d]; items: the item table [M, d] (searched exactly) or a search
    over it (:mod:`prismrec.ranking.retrieval`); seen_items: B arrays of item_idx.
    By default the ``max`` merge: ``interest_bias`` [B, K], if given, is added to every score
    of interest k (a prior per interest); a constant per interest does not change that
    interest's own top-N, so the merge stays exact. With ``diversity`` λ > 0 the K·N
    candidates are re-picked by :func:`diversify` (``item_category``: a category index per item_idx).
    ``interest_share`` [B, K] selects the ``share`` merge instead (:func:`interleave_interests`;
    no bias, no diversity).
    Returns (items [B, N], scores [B, N], interest [B, N]); -inf scores mark empty slots.
    """
    scores, items = candidates(as_search(items), interest_vectors, seen_items, top_n)
    if interest_share is not None:
        if diversity:
            raise ValueError(f"diversity {diversity} needs the max merge; the share merge keeps each interest's order")
        return interleave_interests(scores, items, interest_share, top_n)
    if interest_bias is not None:
        scores = scores + interest_bias[:, :, None].astype(scores.dtype)
    if diversity == 0:
        return merge_interests(scores, items, top_n)
    merged = merge_interests(scores, items, scores.shape[1] * scores.shape[2])
    return diversify(*merged, item_category=item_category, top_n=top_n, diversity=diversity)


def diversify(items: np.ndarray, scores: np.ndarray, interest: np.ndarray, item_category: np.ndarray,
              top_n: int, diversity: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ComiRec's greedy aggregation over merged candidates [B, C] (best first, -inf = empty).

    Picks N items one at a time, each maximising ``score + λ · (number of already
    picked items of another category)``, i.e. the marginal gain of
    Σ score + λ Σ_{pairs} [categories differ]. λ = 0 keeps the order by score.
    Returns (items, scores, interest) [B, N], ordered by pick; scores stay the raw scores.
    """
    if diversity == 0:
        return items[:, :top_n], scores[:, :top_n], interest[:, :top_n]
    batch, candidates = items.shape
    categories = item_category[items]                                   # [B, C]
    available = np.isfinite(scores)
    picked = np.full((batch, top_n), -1, dtype=np.int64)
    same_count = np.zeros((batch, candidates))                          # picked items sharing each candidate's category
    rows = np.arange(batch)
    for slot in range(top_n):
        gain = np.where(available, scores + diversity * (slot - same_count), -np.inf)
        choice = gain.argmax(axis=1)
        valid = np.isfinite(gain[rows, choice])
        picked[valid, slot] = choice[valid]
        available[rows[valid], choice[valid]] = False
        same_count += valid[:, None] & (categories == categories[rows, choice][:, None])
    taken = np.where(picked >= 0, picked, 0)
    out_scores = np.where(picked >= 0, np.take_along_axis(scores, taken, axis=1), -np.inf)
    return (np.take_along_axis(items, taken, axis=1), out_scores.astype(np.float32),
            np.take_along_axis(interest, taken, axis=1))
