"""Sampled softmax with in-batch plus sampled negatives and a log-Q correction."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

_MASKED = -1e9
# log q of the padding row: finite (so subtracting it never makes inf - inf), never sampled.
PADDING_LOG_Q = -1e9
# The log-Q correction is clipped here (q ≈ 1e-13, below any real item's q): an item that is
# never sampled (zero count) could otherwise reach the logits as an in-batch target with +1e9.
LOG_Q_FLOOR = -30.0


def log_q_from_counts(counts: np.ndarray, power: float = 0.75) -> np.ndarray:
    """float32 [M]: log q with q ∝ counts^power over items 1..M-1 (q sums to 1 over them).

    counts: [M] non-negative, indexed by item_idx. Index 0 (padding) and zero-count items get
    PADDING_LOG_Q (-1e9): ``tf.random.categorical`` never draws them, and it stays finite.
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 1 or counts.shape[0] < 2:
        raise ValueError(f"counts must be 1-D, padding at index 0 then at least one item; "
                         f"got shape {counts.shape}")
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise ValueError("counts must be finite and non-negative")
    if not np.isfinite(power) or power < 0:
        raise ValueError(f"power must be a finite number >= 0, got {power}")
    weights = np.where(counts > 0, np.power(counts, power), 0.0)
    weights[0] = 0.0
    total = weights.sum()
    if total <= 0:
        raise ValueError("log_q_from_counts needs at least one item (index >= 1) with a positive count")
    log_q = np.full(counts.shape, PADDING_LOG_Q)
    positive = weights > 0
    log_q[positive] = np.log(weights[positive] / total)
    return log_q.astype(np.float32)


def sample_negatives(log_q: tf.Tensor, num_samples: int, seed=None) -> tf.Tensor:
    """int32 [S] items drawn with replacement from q = softmax(log_q), log_q: [M].

    Padding is excluded by its log q: ``log_q_from_counts`` gives index 0 -1e9, so exp of it
    underflows to probability 0 (as it would for -inf).

    ``seed``: an int32 [2] tensor makes the draw a pure function of it (stateless), so a
    resumed run draws what an uninterrupted one would; None uses the stateful generator.
    """
    if seed is None:
        return tf.cast(tf.random.categorical(log_q[None, :], num_samples)[0], tf.int32)
    return tf.cast(tf.random.stateless_categorical(log_q[None, :], num_samples, seed=seed)[0], tf.int32)


def sampled_softmax_loss(user_vectors, target_items, item_embeddings, sampled_items, log_q, temperature: float):
    """Mean softmax cross-entropy of each target against in-batch and sampled candidates.

    user_vectors: [B, d], or [B, K, d] interests of which each candidate takes its best,
    u·e = max_k u_k·e (as retrieval merges K lists); target_items: [B] int; item_embeddings:
    [M, d]; sampled_items: [S] int; log_q: [M] (see ``log_q_from_counts``) → scalar.
    Candidates are the B targets then the S samples, so the label of row i is column i;
    logits [B, B+S] = u·e / temperature − log q (the log-Q correction removes the sampler's
    popularity bias; log q is clipped at LOG_Q_FLOOR); a candidate equal to the row's own
    target, other than the label itself, is masked (an accidental hit is not a negative).
    """
    if isinstance(temperature, (int, float)) and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    target_items = tf.cast(target_items, tf.int32)
    candidates = tf.concat([target_items, tf.cast(sampled_items, tf.int32)], axis=0)      # [B+S]
    candidate_embeddings = tf.gather(item_embeddings, candidates)
    if user_vectors.shape.rank == 3:
        logits = tf.reduce_max(tf.einsum("bkd,cd->bkc", user_vectors, candidate_embeddings), axis=1)
    else:
        logits = tf.matmul(user_vectors, candidate_embeddings, transpose_b=True)
    correction = tf.maximum(tf.gather(log_q, candidates), LOG_Q_FLOOR)
    logits = logits / temperature - correction[None, :]
    batch = tf.shape(target_items)[0]
    labels = tf.range(batch)
    same_item = tf.equal(target_items[:, None], candidates[None, :])                        # [B, B+S]
    is_label = tf.one_hot(labels, tf.shape(candidates)[0], on_value=True, off_value=False)
    logits = tf.where(same_item & ~is_label, tf.cast(_MASKED, logits.dtype), logits)
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def interest_diversity_penalty(interest_vectors) -> tf.Tensor:
    """Mean pairwise cosine between a user's distinct interests [B, K, d] (0 for K = 1)."""
    normed = tf.math.l2_normalize(interest_vectors, axis=-1)
    cosine = tf.matmul(normed, normed, transpose_b=True)                                     # [B, K, K]
    k = tf.shape(cosine)[-1]
    off_diagonal = 1.0 - tf.eye(k, dtype=cosine.dtype)
    pairs = tf.maximum(tf.cast(k * (k - 1), cosine.dtype), 1.0)
    return tf.reduce_mean(tf.reduce_sum(cosine * off_diagonal, axis=[1, 2]) / pairs)
