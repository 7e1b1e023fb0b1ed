"""Rank batches of users with a loaded model: the one loop behind scoring and evaluation (no Spark).

Both the full-population scoring UDF and the evaluation of model systems iterate
``mapInPandas`` frames of users (``user_id, hist_items, seen_items``) with
:func:`user_batches` and rank each batch with :func:`rank_users`, so that evaluation
measures exactly the lists scoring writes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from prismrec import schema as S
from prismrec.ranking.popularity import popularity_top_n
from prismrec.ranking.recommend import Interests, Ranking, encode, item_category_codes, item_tensor, rank_items
from prismrec.ranking.topk import exclusion_mask, top_n_per_interest


def user_batches(frames: Iterable, batch_users: int) -> Iterator:
    """Slices of at most ``batch_users`` rows of each pandas frame, in order."""
    for frame in frames:
        for start in range(0, len(frame), batch_users):
            yield frame.iloc[start:start + batch_users]


def histories(batch) -> np.ndarray:
    """int32 [B, L]: the padded histories (``hist_items``) of a frame of users."""
    return np.stack(batch[S.HIST_ITEMS].to_numpy()).astype(np.int32)


def seen(batch) -> list[np.ndarray]:
    """B int64 arrays: each user's items to exclude (``seen_items``)."""
    return [np.asarray(items, dtype=np.int64) for items in batch[S.SEEN_ITEMS]]


@dataclass(frozen=True)
class RankedUsers:
    """One batch of users ranked by a model.

    ``items``, ``scores``, ``interest``: [B, N] item_idx, score and the interest (0..K-1) each
    item came from; a -inf score marks an empty slot. ``fallback`` bool [B]: the user had no
    usable history and got the most popular unseen items instead (interest -1, the item's
    event count as score). ``hist`` [B, L] and ``interests`` (vectors [B, K, d], weights
    [B, K]) are what the items were ranked from.
    """

    hist: np.ndarray
    interests: Interests
    items: np.ndarray
    scores: np.ndarray
    interest: np.ndarray
    fallback: np.ndarray


def rank_users(model, hist: np.ndarray, seen_items: list[np.ndarray], top_n: int,
               ranking: Ranking = Ranking()) -> RankedUsers:
    """Each user's top-``top_n`` unseen items from their interests, merged by ``ranking``.

    ``model``: a loaded artifact (:func:`prismrec.training.artifact.load`), whose ``items``
    table gives each item's category and event count; ``hist``: int [B, L] padded histories
    (0 is padding); ``seen_items``: B arrays of item_idx to exclude. Users whose history is all
    padding get the popularity fallback. Raises ValueError for a diversity with the share merge.
    """
    interests = encode(model, hist)
    items, scores, interest = rank_items(interests.vectors, interests.weights, item_tensor(model), seen_items,
                                         top_n, ranking, item_category_codes(model))
    fallback = ~(hist > 0).any(axis=1)
    if fallback.any():
        popularity = model.items[S.COUNT].to_numpy().astype(np.float32)
        ranked = popularity_top_n([s for s, f in zip(seen_items, fallback) if f], len(popularity) + 1, top_n)
        items[fallback] = np.where(ranked > 0, ranked, 0)
        # item_idx i lives in row i-1 of the items table (index 0 is padding).
        scores[fallback] = np.where(ranked > 0, popularity[np.maximum(ranked, 1) - 1], -np.inf)
        interest[fallback] = -1
    return RankedUsers(hist, interests, items, scores, interest, fallback)


def retrieve(model, interest_vectors: np.ndarray, top_n: int) -> np.ndarray:
    """int [B, K, N]: each interest's own top-N items over the whole catalogue, seen items
    included (only the padding index is excluded): what an interest stands for."""
    padding_only = exclusion_mask([np.zeros(0, dtype=np.int64)] * len(interest_vectors),
                                  len(item_category_codes(model)))
    return top_n_per_interest(interest_vectors, item_tensor(model), padding_only, top_n)[1]
