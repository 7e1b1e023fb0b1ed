"""EASE: a closed-form item–item linear model for implicit feedback (numpy only).

Steck, "Embarrassingly Shallow Autoencoders for Sparse Data", WWW 2019. With X the
binary [users, items] interaction matrix and λ > 0, the item–item weights

    B = argmin ‖X − X·B‖² + λ‖B‖²   subject to diag(B) = 0

have the closed form G = XᵀX + λI, P = G⁻¹, B_ij = −P_ij / P_jj (i ≠ j), B_jj = 0.
A user's scores over the catalogue are x_u·B: the sum of the rows of B of the items
the user interacted with.

Item indices follow the project's vocabulary: ``item_idx ≥ 1``, and 0 is padding,
whose row and column of every matrix here stay 0.
"""
from __future__ import annotations

import numpy as np

# Dense binary rows are built this many cells at a time (≈ 32 MiB of float64).
_BLOCK_CELLS = 1 << 22


def _distinct_items(items: np.ndarray, num_items: int, user: int) -> np.ndarray:
    """A user's distinct real item indices (padding dropped); ValueError for an index outside [0, num_items)."""
    items = np.asarray(items, dtype=np.int64).ravel()
    bad = items[(items < 0) | (items >= num_items)]
    if bad.size:
        raise ValueError(f"user row {user} holds item index {int(bad[0])}, outside [0, {num_items}) "
                         f"(num_items={num_items}; 0 is padding)")
    return np.unique(items[items > 0])


def _binary_rows(user_items: list[np.ndarray], num_items: int, start: int) -> np.ndarray:
    """float64 [len(user_items), num_items]: 1 where the user interacted with the item."""
    rows = np.zeros((len(user_items), num_items), dtype=np.float64)
    for offset, items in enumerate(user_items):
        rows[offset, _distinct_items(items, num_items, start + offset)] = 1.0
    return rows


def item_gram(user_items: list[np.ndarray], num_items: int) -> np.ndarray:
    """Item co-occurrence counts G = XᵀX of the binary interaction matrix X.

    user_items: one int array of item indices per user (repeats count once; 0 is padding
    and ignored). Returns float64 [num_items, num_items]: G_ij = number of users with
    both i and j, G_ii = number of users with i; row and column 0 are 0. X is built
    densely only a block of users at a time, never as a whole [users, items] matrix.
    Raises ValueError for ``num_items < 1`` or an item index outside [0, num_items).
    """
    if num_items < 1:
        raise ValueError(f"num_items={num_items} must be at least 1 (the padding index 0)")
    gram = np.zeros((num_items, num_items), dtype=np.float64)
    block = max(1, _BLOCK_CELLS // num_items)
    for start in range(0, len(user_items), block):
        rows = _binary_rows(user_items[start:start + block], num_items, start)
        gram += rows.T @ rows
    return gram


def ease_weights(gram: np.ndarray, l2: float) -> np.ndarray:
    """EASE item–item weights B from the Gram matrix (Steck 2019, closed form).

    gram: [M, M] item co-occurrence counts (:func:`item_gram`); l2: λ > 0, added to the
    diagonal, which keeps G + λI invertible even for items no user has (zero rows,
    such as padding row 0: their rows and columns of B come out 0). Returns float32
    [M, M] with B_ij = −P_ij / P_jj for P = (G + λI)⁻¹ and a zero diagonal.
    Raises ValueError for l2 ≤ 0 (or not finite) and for a gram that is not a square matrix.
    """
    gram = np.asarray(gram, dtype=np.float64)
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
        raise ValueError(f"gram must be a square [items, items] matrix, got shape {gram.shape}")
    if not np.isfinite(l2) or l2 <= 0:
        raise ValueError(f"l2={l2!r} must be a finite number > 0 (EASE's λ on the diagonal)")
    precision = np.linalg.inv(gram + l2 * np.eye(gram.shape[0]))
    weights = -precision / np.diag(precision)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights.astype(np.float32)


def ease_scores(user_items: list[np.ndarray], weights: np.ndarray) -> np.ndarray:
    """Scores x_u·W of each user over the catalogue: the sum of the rows of W of their distinct items.

    user_items: B int arrays of item indices (repeats count once; 0 is padding and ignored);
    weights: [M, M] item–item weights (EASE's B, or any item-to-item matrix such as
    item-kNN's similarities). Returns float32 [B, M]. Seen items are not excluded here.
    Raises ValueError for an item index outside [0, M).
    """
    weights = np.asarray(weights)
    num_items = weights.shape[0]
    scores = np.zeros((len(user_items), weights.shape[1]), dtype=np.float32)
    for row, items in enumerate(user_items):
        distinct = _distinct_items(items, num_items, row)
        if distinct.size:
            scores[row] = weights[distinct].sum(axis=0)
    return scores
