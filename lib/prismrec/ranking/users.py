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
from prismrec.ranking.recommend import Interests, Ranking, encode, item_category_codes, item_search, rank_items


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
               ranking: Ranking = Ranking(), search=None) -> RankedUsers:
    """Each user's top-``top_n`` unseen items from their interests, merged by ``ranking``.

    ``model``: a loaded artifact (:func:`prismrec.training.artifact.load`), whose ``items``
    table gives each item's category and event count; ``hist``: int [B, L] padded histories
    (0 is padding); ``seen_items``: B arrays of item_idx to exclude; ``search``: how each
    interest finds its items (:mod:`prismrec.ranking.retrieval`; None = the exact search).
    Users an approximate search leaves with fewer than N unseen items are ranked again exactly.
    Users whose history is all padding get the popularity fallback. Raises ValueError for a
    diversity with the share merge.
    """
    interests = encode(model, hist)
    search = search or item_search(model)
    items, scores, interest = rank_items(interests.vectors, interests.weights, search, seen_items,
                                         top_n, ranking, item_category_codes(model))
    fallback = ~(hist > 0).any(axis=1)
    short = short_lists(search, items, scores, seen_items, top_n) & ~fallback
    if short.any():  # the index could not supply N unseen items: rank these users exactly
        exact = item_search(model)
        rows = np.flatnonzero(short)
        redo = rank_items(interests.vectors[rows], interests.weights[rows], exact, [seen_items[r] for r in rows],
                          top_n, ranking, item_category_codes(model))
        for ranked, again in zip((items, scores, interest), redo):
            ranked[rows] = again
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
    batch, num_interests, dim = interest_vectors.shape
    return item_search(model).search(interest_vectors.reshape(-1, dim), top_n)[1].reshape(batch, num_interests, -1)


def short_lists(search, items: np.ndarray, scores: np.ndarray, seen_items: list[np.ndarray],
                top_n: int) -> np.ndarray:
    """bool [B]: users an approximate search left with fewer than N items while the catalogue
    [1, M) holds more unseen ones (never for an exact search)."""
    from prismrec.ranking.retrieval import ExactSearch

    if isinstance(search, ExactSearch):
        return np.zeros(len(items), dtype=bool)
    catalogue = search.num_items - 1
    unseen = np.array([catalogue - len(np.unique(s[(s > 0) & (s <= catalogue)])) for s in seen_items])
    filled = np.isfinite(scores).sum(axis=1)
    return filled < np.minimum(top_n, unseen)


def recall_against_exact(model, frame, top_n: int, ranking: Ranking, search,
                         batch_users: int = 128) -> tuple[float, int, float]:
    """How well ``search`` (an approximate search) finds the exact lists of the users of ``frame``
    (``hist_items, seen_items``), in blocks of ``batch_users``: (Recall@N against exact: the share
    of each user's exact top-``top_n`` in the index's own list, before any exact re-ranking,
    averaged over the users with a non-empty exact list; those users' count; the share of them
    the index left short, whom scoring ranks again exactly). (1.0, 0, 0.0) without such users."""
    shares, short = [], 0
    for batch in user_batches([frame], batch_users):
        hist, seen_items = histories(batch), seen(batch)
        interests = encode(model, hist)

        def ranked(with_search):
            return rank_items(interests.vectors, interests.weights, with_search, seen_items, top_n, ranking,
                              item_category_codes(model))[:2]

        items, scores = ranked(search)
        exact_items, exact_scores = ranked(item_search(model))
        left_short = short_lists(search, items, scores, seen_items, top_n)
        for row in np.flatnonzero((hist > 0).any(axis=1)):  # users with a history (not the fallback)
            truth = exact_items[row][np.isfinite(exact_scores[row])]
            if len(truth):
                shares.append(np.isin(truth, items[row][np.isfinite(scores[row])]).mean())
                short += int(left_short[row])
    if not shares:
        return 1.0, 0, 0.0
    return float(np.mean(shares)), len(shares), short / len(shares)
