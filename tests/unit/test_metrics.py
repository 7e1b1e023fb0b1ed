"""Ranking metrics: limits and hand-derived values."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from prismrec.ranking.popularity import popularity_top_n
from prismrec.ranking.metrics import batch_metrics

pytestmark = pytest.mark.unit


def test_perfect_ranking_scores_one():
    got = batch_metrics(np.array([[4, 2, 9, 1]]), [np.array([2, 4])], [2, 4])
    assert got["recall@2"][0] == got["ndcg@2"][0] == got["hit_rate@2"][0] == 1.0
    assert got["ndcg@4"][0] == pytest.approx(1.0)


def test_empty_ranking_scores_zero():
    got = batch_metrics(np.full((1, 3), -1), [np.array([5])], [3])
    assert got["recall@3"][0] == got["ndcg@3"][0] == got["hit_rate@3"][0] == 0.0


def test_hand_derived_values():
    # targets {3, 8}; ranking [1, 3, 5, 8]: hits at positions 1 and 3 (0-based).
    # recall@2 = 1/2; ndcg@4 = (1/log2(3) + 1/log2(5)) / (1 + 1/log2(3)) = (0.6309 + 0.4307) / 1.6309 = 0.6509
    got = batch_metrics(np.array([[1, 3, 5, 8]]), [np.array([3, 8])], [2, 4])
    assert got["recall@2"][0] == 0.5
    assert got["recall@4"][0] == 1.0
    assert got["ndcg@4"][0] == pytest.approx((1 / np.log2(3) + 1 / np.log2(5)) / (1 + 1 / np.log2(3)))


def test_users_without_targets_are_refused():
    with pytest.raises(ValueError, match="at least one target"):
        batch_metrics(np.array([[1]]), [np.array([], dtype=np.int64)], [1])


def test_popularity_skips_seen_items():
    ranked = popularity_top_n([np.array([1, 3]), np.array([], dtype=np.int64)], num_items=6, top_n=3)
    assert ranked.tolist() == [[2, 4, 5], [1, 2, 3]]


def test_popularity_with_too_few_items_pads():
    ranked = popularity_top_n([np.array([1, 2])], num_items=4, top_n=3)
    assert ranked.tolist() == [[3, -1, -1]]


def test_precision_and_mrr_by_hand():
    # ranking [1, 3, 5, 8], targets {3, 8}: precision@2 = 1/2, precision@4 = 2/4; first hit at rank 2 → MRR 1/2.
    got = batch_metrics(np.array([[1, 3, 5, 8], [9, 9, 9, 9]]), [np.array([3, 8]), np.array([4])], [2, 4])
    assert got["precision@2"].tolist() == [0.5, 0.0]
    assert got["precision@4"].tolist() == [0.5, 0.0]
    assert got["mrr"].tolist() == [0.5, 0.0]


def test_mrr_of_misses_is_zero_without_dividing_by_zero():
    # first hits at rank 3, none, rank 1, none (an empty list): MRR = 1/3, 0, 1/1, 0.
    ranked = np.array([[4, 6, 2], [5, 9, -1], [8, 1, 3], [-1, -1, -1]])
    targets = [np.array([2]), np.array([3]), np.array([3, 8]), np.array([7])]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a 1/0 evaluated for a miss would raise here
        got = batch_metrics(ranked, targets, [3])
    assert got["mrr"].tolist() == [1 / 3, 0.0, 1.0, 0.0]
