"""Top-N over several interests equals a brute-force numpy ranking."""
from __future__ import annotations

import numpy as np
import pytest

from prismrec.config import ConfigError, ScoreSection
from prismrec.ranking.recommend import Ranking
from prismrec.ranking.topk import diversify, exclusion_mask, interleave_interests, merge_interests, top_n

pytestmark = pytest.mark.unit


def brute_force(vectors, items, seen, n):
    """max over interests, seen items and padding removed, sorted by score then item index."""
    scores = np.einsum("bkd,md->bkm", vectors, items)
    best_interest = scores.argmax(axis=1)
    best = scores.max(axis=1)
    out = []
    for user in range(len(vectors)):
        allowed = [m for m in range(1, len(items)) if m not in set(seen[user].tolist())]
        ranked = sorted(allowed, key=lambda m: (-best[user, m], m))[:n]
        out.append((ranked, best[user, ranked], best_interest[user, ranked]))
    return out


@pytest.mark.parametrize("num_interests,n,seen_per_user", [(1, 5, 0), (3, 10, 4), (4, 7, 20), (2, 40, 15)])
def test_matches_brute_force(num_interests, n, seen_per_user):
    rng = np.random.default_rng(num_interests * 100 + n)
    vectors = rng.normal(size=(6, num_interests, 8)).astype(np.float32)
    items = rng.normal(size=(50, 8)).astype(np.float32)
    seen = [rng.choice(np.arange(1, 50), size=seen_per_user, replace=False) for _ in range(6)]
    got_items, got_scores, got_interest = top_n(vectors, items, seen, n)
    for user, (ranked, scores, interest) in enumerate(brute_force(vectors, items, seen, n)):
        valid = np.isfinite(got_scores[user])
        assert got_items[user][valid].tolist() == ranked
        np.testing.assert_allclose(got_scores[user][valid], scores, rtol=1e-5)
        assert got_interest[user][valid].tolist() == interest.tolist()


def test_fewer_items_than_n_leaves_empty_slots():
    items = np.eye(4, dtype=np.float32)
    vectors = np.ones((1, 2, 4), dtype=np.float32)
    # 3 real items (1..3), item 2 seen → only 2 can be recommended.
    got_items, got_scores, _ = top_n(vectors, items, [np.array([2])], 5)
    assert np.isfinite(got_scores[0]).sum() == 2
    assert sorted(got_items[0][np.isfinite(got_scores[0])].tolist()) == [1, 3]


def test_merge_keeps_each_items_best_interest():
    # Interest 0 ranks item 7 (0.9) then 5 (0.5); interest 1 ranks 5 (0.8) then 7 (0.1).
    scores = np.array([[[0.9, 0.5], [0.8, 0.1]]], dtype=np.float32)
    items = np.array([[[7, 5], [5, 7]]])
    merged_items, merged_scores, interest = merge_interests(scores, items, 2)
    assert merged_items.tolist() == [[7, 5]]
    np.testing.assert_allclose(merged_scores, [[0.9, 0.8]])
    assert interest.tolist() == [[0, 1]]


def test_share_merge_interleaves_in_proportion_and_skips_items_taken():
    # Shares 0.75 / 0.25: interest 0's r-th item comes at (r + 1) / 0.75 = 1.33, 2.67, 4, 5.33,
    # interest 1's at 4, 8: order 0, 0, (0 and 1 tie at 4: the lower item index first), 0.
    # Item 5 on both lists at the same turn (4) is taken once, for interest 0; interest 1's next
    # item keeps its own turn (8), after interest 0's fourth (5.33).
    scores = np.array([[[0.9, 0.8, 0.7, 0.6], [0.5, 0.4, 0.3, 0.2]]], dtype=np.float32)
    items = np.array([[[1, 2, 3, 4], [5, 6, 7, 8]]])
    got_items, got_scores, interest = interleave_interests(scores, items, np.array([[0.75, 0.25]]), 5)
    assert got_items.tolist() == [[1, 2, 3, 5, 4]] and interest.tolist() == [[0, 0, 0, 1, 0]]
    np.testing.assert_allclose(got_scores, [[0.9, 0.8, 0.7, 0.5, 0.6]])
    shared = np.array([[[1, 2, 5, 4], [5, 6, 7, 8]]])
    got_items, _, interest = interleave_interests(scores, shared, np.array([[0.75, 0.25]]), 5)
    assert got_items.tolist() == [[1, 2, 5, 4, 6]] and interest.tolist() == [[0, 0, 0, 0, 1]]


def test_share_merge_leaves_empty_slots_and_equals_max_for_one_interest():
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(4, 1, 8)).astype(np.float32)
    items = rng.normal(size=(30, 8)).astype(np.float32)
    seen = [rng.choice(np.arange(1, 30), size=5, replace=False) for _ in range(4)]
    by_max = top_n(vectors, items, seen, 10)
    by_share = top_n(vectors, items, seen, 10, interest_share=np.ones((4, 1)))
    for got, expected in zip(by_share, by_max):
        np.testing.assert_array_equal(got, expected)
    few = top_n(np.ones((1, 2, 4), np.float32), np.eye(4, dtype=np.float32), [np.array([2])], 5,
                interest_share=np.array([[0.5, 0.5]]))
    assert np.isfinite(few[1][0]).sum() == 2 and sorted(few[0][0][np.isfinite(few[1][0])].tolist()) == [1, 3]


def test_share_merge_refuses_the_max_only_keys_naming_them():
    # The score section refuses the combination when it is built, so no Ranking ever holds it.
    with pytest.raises(ConfigError, match=r"'score\.diversity' has value 0\.2.*score\.merge=max"):
        ScoreSection(merge="share", diversity=0.2)
    with pytest.raises(ConfigError, match=r"'score\.interest_prior' has value -1\.0.*score\.merge=max"):
        ScoreSection(merge="share", interest_prior=-1.0)
    assert Ranking.of(ScoreSection(merge="max", diversity=0.2)).score_order is None
    assert Ranking.of(ScoreSection(merge="max")).score_order == "list"
    assert Ranking.of(ScoreSection(merge="share")).score_order == "interest"


def test_exclusion_mask_blocks_padding_and_seen():
    mask = exclusion_mask([np.array([1, 3]), np.array([], dtype=np.int64)], 4)
    assert np.isneginf(mask).tolist() == [[True, True, False, True], [True, False, False, False]]


def test_diversify_with_zero_lambda_keeps_the_score_order():
    items = np.array([[5, 6, 7, 8]])
    scores = np.array([[0.9, 0.8, 0.7, 0.6]], dtype=np.float32)
    got = diversify(items, scores, np.zeros_like(items), np.array([0, 1, 1, 1, 1, 1, 1, 2, 2]), 3, 0.0)
    assert got[0].tolist() == [[5, 6, 7]]


def test_diversify_trades_score_for_new_categories():
    # Items 5, 6 are category 1, item 7 category 2. Scores 0.9, 0.8, 0.7; λ = 0.2.
    # Slot 0: gains = scores → 5. Slot 1: 6 gains 0.8 + 0.2·(1 − 1) = 0.8; 7 gains 0.7 + 0.2·1 = 0.9 → 7.
    items = np.array([[5, 6, 7]])
    scores = np.array([[0.9, 0.8, 0.7]], dtype=np.float32)
    categories = np.array([0, 0, 0, 0, 0, 1, 1, 2])
    got_items, got_scores, got_interest = diversify(items, scores, np.array([[0, 1, 2]]), categories, 3, 0.2)
    assert got_items.tolist() == [[5, 7, 6]]
    np.testing.assert_allclose(got_scores, [[0.9, 0.7, 0.8]])
    assert got_interest.tolist() == [[0, 2, 1]]


def test_top_n_with_diversity_returns_distinct_unseen_items():
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(4, 3, 8)).astype(np.float32)
    table = rng.normal(size=(60, 8)).astype(np.float32)
    seen = [np.array([1, 2, 3])] * 4
    items, scores, _ = top_n(vectors, table, seen, 10, diversity=0.3, item_category=np.arange(60) % 4)
    for row in items:
        assert len(set(row.tolist())) == 10 and not {1, 2, 3, 0} & set(row.tolist())


def test_interest_bias_matches_brute_force():
    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(5, 3, 8)).astype(np.float32)
    table = rng.normal(size=(40, 8)).astype(np.float32)
    bias = rng.normal(size=(5, 3)).astype(np.float32)
    seen = [rng.choice(np.arange(1, 40), size=5, replace=False) for _ in range(5)]
    got_items, got_scores, got_interest = top_n(vectors, table, seen, 8, interest_bias=bias)
    scores = np.einsum("bkd,md->bkm", vectors, table) + bias[:, :, None]
    for user in range(5):
        best = scores[user].max(axis=0)
        allowed = [m for m in range(1, 40) if m not in set(seen[user].tolist())]
        expected = sorted(allowed, key=lambda m: (-best[m], m))[:8]
        assert got_items[user].tolist() == expected
        assert got_interest[user].tolist() == scores[user][:, expected].argmax(axis=0).tolist()
