"""EASE (Steck 2019): Gram matrix, closed-form weights and scores, derived by hand."""
from __future__ import annotations

import numpy as np
import pytest

from prismrec.evaluation import ease
from prismrec.evaluation.ease import ease_scores, ease_weights, item_gram

pytestmark = pytest.mark.unit

# Three users over items 1..3 (index 0 is padding): u1 = {1, 2}, u2 = {2, 3}, u3 = {1, 2, 3}.
# u1 repeats an item and carries left padding, which must change nothing.
USERS = [np.array([0, 0, 1, 2, 2]), np.array([2, 3]), np.array([1, 2, 3])]
# G_ij = users holding both i and j: G11 = 2 (u1, u3), G22 = 3, G33 = 2, G12 = 2 (u1, u3),
# G13 = 1 (u3), G23 = 2 (u2, u3).
GRAM = np.array([[0, 0, 0, 0],
                 [0, 2, 2, 1],
                 [0, 2, 3, 2],
                 [0, 1, 2, 2]], dtype=np.float64)
# λ = 1 on items 1..3: G + I = [[3, 2, 1], [2, 4, 2], [1, 2, 3]].
# det = 3·(4·3 − 2·2) − 2·(2·3 − 2·1) + 1·(2·2 − 4·1) = 3·8 − 2·4 + 1·0 = 16.
# Cofactors (symmetric): C11 = 4·3 − 2·2 = 8, C12 = −(2·3 − 2·1) = −4, C13 = 2·2 − 4·1 = 0,
# C22 = 3·3 − 1·1 = 8, C23 = −(3·2 − 2·1) = −4, C33 = 3·4 − 2·2 = 8.
# P = C / 16 = [[0.5, −0.25, 0], [−0.25, 0.5, −0.25], [0, −0.25, 0.5]]   (check: row 1 of G+I · column 1
# of P = 3·0.5 − 2·0.25 + 0 = 1; · column 2 = −0.75 + 1 − 0.25 = 0).
# B_ij = −P_ij / P_jj with P_jj = 0.5 for every j: B12 = B21 = B23 = B32 = 0.25 / 0.5 = 0.5, B13 = B31 = 0;
# the padding block of G + λI is [λ], so P's row and column 0 are 0 off the diagonal and so are B's.
WEIGHTS = np.array([[0, 0, 0, 0],
                    [0, 0, 0.5, 0],
                    [0, 0.5, 0, 0.5],
                    [0, 0, 0.5, 0]], dtype=np.float32)


def test_gram_counts_co_occurring_users():
    assert np.array_equal(item_gram(USERS, 4), GRAM)


def test_gram_is_the_same_across_user_blocks(monkeypatch):
    # 4 cells per block with 4 items: one user per block, so every block boundary is crossed.
    monkeypatch.setattr(ease, "_BLOCK_CELLS", 4)
    assert np.array_equal(item_gram(USERS, 4), GRAM)


def test_gram_refuses_an_item_outside_the_catalogue():
    with pytest.raises(ValueError, match="item index 4, outside"):
        item_gram([np.array([1]), np.array([2, 4])], 4)


def test_weights_by_hand():
    got = ease_weights(GRAM, 1.0)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, WEIGHTS, atol=1e-6)


def test_weights_have_zero_diagonal_and_zero_padding():
    got = ease_weights(GRAM, 7.0)
    assert np.all(np.diag(got) == 0.0)
    assert np.all(got[0] == 0.0) and np.all(got[:, 0] == 0.0)


def test_item_no_user_has_gets_zero_weights_not_nan():
    # Item 4 exists in the catalogue but nobody interacted with it: its row of G is 0.
    got = ease_weights(item_gram(USERS, 5), 1.0)
    assert np.all(np.isfinite(got))
    assert np.all(got[4] == 0.0) and np.all(got[:, 4] == 0.0)
    np.testing.assert_allclose(got[:4, :4], WEIGHTS, atol=1e-6)


@pytest.mark.parametrize("l2", [0.0, -1.0, float("nan")])
def test_l2_must_be_positive(l2):
    with pytest.raises(ValueError, match=r"l2=.* must be a finite number > 0"):
        ease_weights(GRAM, l2)


def test_gram_must_be_square():
    with pytest.raises(ValueError, match=r"square.*\(4, 3\)"):
        ease_weights(np.zeros((4, 3)), 1.0)


def test_weights_solve_the_constrained_ridge_regression():
    # Each column j of B is the ridge regression of item j's column of X on the other items'
    # columns (diag(B) = 0 excludes item j itself): (X₋ⱼᵀX₋ⱼ + λI) b = X₋ⱼᵀ xⱼ.
    rng = np.random.default_rng(3)
    dense = (rng.random((30, 6)) < 0.4).astype(np.float64)
    dense[:, 0] = 0.0  # padding
    users = [np.flatnonzero(row) for row in dense]
    got = ease_weights(item_gram(users, 6), 2.5).astype(np.float64)
    for j in range(1, 6):
        others = [i for i in range(1, 6) if i != j]
        design = dense[:, others]
        expected = np.linalg.solve(design.T @ design + 2.5 * np.eye(len(others)), design.T @ dense[:, j])
        np.testing.assert_allclose(got[others, j], expected, rtol=1e-5, atol=1e-6)


def test_scores_are_the_users_rows_times_weights():
    # {1}: row 1 of B = [0, 0, 0.5, 0]; {1, 2}: rows 1 + 2 = [0, 0.5, 0.5, 0.5]; {3}: row 3 = [0, 0, 0.5, 0];
    # {} (padding only): 0 everywhere.
    users = [np.array([1]), np.array([2, 1, 1]), np.array([0, 3]), np.array([0, 0])]
    got = ease_scores(users, WEIGHTS)
    np.testing.assert_allclose(got, [[0, 0, 0.5, 0], [0, 0.5, 0.5, 0.5], [0, 0, 0.5, 0], [0, 0, 0, 0]])
    dense = np.array([[0, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]], dtype=np.float32)
    np.testing.assert_allclose(got, dense @ WEIGHTS)
