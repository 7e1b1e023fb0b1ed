"""Interests and their merged top-N lists (no Spark): encode a batch of histories into
interest vectors [B, K, d], assign history items to interests, and rank items by them.

The loop over users that uses these is :mod:`prismrec.ranking.users`.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from prismrec import schema as S
from prismrec.ranking.topk import top_n


@dataclass(frozen=True)
class Interests:
    vectors: np.ndarray      # float32 [B, K, d]
    weights: np.ndarray      # float32 [B, K]
    assignment: np.ndarray   # int [B, L]: which interest each history slot belongs to (-1 for padding)


def encode(model, hist_items: np.ndarray) -> Interests:
    """Run the user encoder and assign each history item to its closest interest."""
    outputs = model.encode(hist_items.astype(np.int32))
    vectors = np.asarray(outputs["interest_vectors"], dtype=np.float32)
    history = np.asarray(model.item_embeddings)[hist_items]                 # [B, L, d]
    assignment = np.einsum("bld,bkd->blk", history, vectors).argmax(axis=-1)
    assignment = np.where(hist_items > 0, assignment, -1)
    return Interests(vectors, np.asarray(outputs["interest_weights"], dtype=np.float32), assignment)


@dataclass(frozen=True)
class Ranking:
    """How K interests' lists become one (the ``score`` keys of the same names).

    ``merge``: ``share`` interleaves the lists in proportion to the interest weights,
    ``max`` ranks by each item's best score; with ``max``, ``diversity`` is λ of the greedy
    category-diversity aggregation and ``interest_prior`` α adds α·log(weight_k) to
    interest k's scores.
    """

    merge: str = "max"
    diversity: float = 0.0
    interest_prior: float = 0.0

    @classmethod
    def of(cls, score_cfg) -> "Ranking":
        """From the ``score`` config section, which checked when it was built that its keys go together."""
        return cls(score_cfg.merge, score_cfg.diversity, score_cfg.interest_prior)

    @property
    def score_order(self) -> str | None:
        """Where scores never increase down a list: along all of it (``list``: the max merge),
        along each interest's part (``interest``: the share merge), or nowhere (None: λ > 0
        orders the list by greedy pick)."""
        if self.merge == "share":
            return "interest"
        return "list" if self.diversity == 0 else None


def rank_items(vectors: np.ndarray, weights: np.ndarray, item_table, seen_items: list[np.ndarray],
               top_n_items: int, ranking: Ranking, item_category: np.ndarray | None = None):
    """(items [B, N], scores [B, N], interest [B, N]) from interests [B, K, d] and weights [B, K];
    ``item_table``: the item embeddings [M, d] or a search over them (:func:`item_search`)."""
    if ranking.merge == "share":
        return top_n(vectors, item_table, seen_items, top_n_items, ranking.diversity, interest_share=weights)
    return top_n(vectors, item_table, seen_items, top_n_items, ranking.diversity, item_category,
                 prior_bias(weights, ranking.interest_prior))


def prior_bias(weights: np.ndarray, strength: float) -> np.ndarray | None:
    """[B, K] α·log(weight): favours the interests that explain more of the history (None when α = 0)."""
    if not strength:
        return None
    return strength * np.log(np.maximum(weights, 1e-6))


def item_search(model):
    """The exact search over a loaded model's item table
    (:class:`~prismrec.ranking.retrieval.ExactSearch`), made once per loaded model."""
    search = getattr(model, "_exact_search", None)
    if search is None:
        from prismrec.ranking.retrieval import ExactSearch

        search = ExactSearch(model.item_embeddings)
        object.__setattr__(model, "_exact_search", search)
    return search


def category_codes(items, num_items: int | None = None) -> np.ndarray:
    """int [num_items]: a category code ≥ 1 per item_idx of the items table (``item_idx``,
    ``category_id``), 0 for the padding index; ``num_items`` defaults to the largest item_idx + 1."""
    size = int(items[S.ITEM_IDX].max()) + 1 if num_items is None else num_items
    codes = np.zeros(size, dtype=np.int64)
    codes[items[S.ITEM_IDX].to_numpy()] = items[S.CATEGORY_ID].astype("category").cat.codes.to_numpy() + 1
    return codes


def item_category_codes(model) -> np.ndarray:
    """:func:`category_codes` of a loaded model's items, one per row of its item embeddings,
    computed once per loaded model."""
    codes = getattr(model, "_category_codes", None)
    if codes is None:
        codes = category_codes(model.items, np.asarray(model.item_embeddings).shape[0])
        object.__setattr__(model, "_category_codes", codes)
    return codes


def category_diversity(items: np.ndarray, item_category: np.ndarray, k: int) -> np.ndarray:
    """[B]: share of pairs in each top-k list whose categories differ (-1 slots ignored)."""
    out = np.zeros(len(items))
    for row, ranked in enumerate(items[:, :k]):
        cats = item_category[ranked[ranked > 0]]
        n = len(cats)
        if n > 1:
            same = (cats[:, None] == cats[None, :]).sum() - n
            out[row] = 1.0 - same / (n * (n - 1))
    return out


def interest_top_categories(interests: Interests, hist_items: np.ndarray, item_category: np.ndarray,
                            top: int = 3) -> list[list[list[str]]]:
    """Label each interest by the most frequent categories of the history items assigned to it.

    item_category: category_id per item_idx. Returns [B][K] lists of up to ``top`` category ids.
    """
    num_interests = interests.vectors.shape[1]
    labels = []
    for row_items, row_assign in zip(hist_items, interests.assignment):
        per_interest = []
        for k in range(num_interests):
            members = row_items[row_assign == k]
            per_interest.append([cat for cat, _ in Counter(item_category[members]).most_common(top)])
        labels.append(per_interest)
    return labels
