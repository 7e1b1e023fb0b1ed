"""Sampled softmax with in-batch plus sampled negatives and a log-Q correction."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

_MASKED = -1e9
# log q of the padding row: finite (so subtracting it never makes inf - inf), never sampled.
PADDING_LOG_Q = -1e9


def log_q_from_counts(counts: np.ndarray, power: float = 0.75) -> np.ndarray:
    """float32 [M]: log of q ∝ count^power over items 1..M-1; index 0 (padding) gets PADDING_LOG_Q."""
    weights = np.power(np.asarray(counts, dtype=np.float64), power)
    weights[0] = 0.0
    total = weights.sum()
    if total <= 0:
        raise ValueError("log_q_from_counts needs at least one item with a positive count")
    with np.errstate(divide="ignore"):
        log_q = np.log(weights / total)
    log_q[~np.isfinite(log_q)] = PADDING_LOG_Q
    return log_q.astype(np.float32)


def sample_negatives(log_q: tf.Tensor, num_samples: int, seed=None) -> tf.Tensor:
    """int32 [S] items drawn from q (padding, with log q = -1e9, is never drawn).

    ``seed``: an int32 [2] tensor makes the draw a pure function of it (stateless), so a
    resumed run draws what an uninterrupted one would; None uses the stateful generator.
    """
    if seed is None:
        return tf.cast(tf.random.categorical(log_q[None, :], num_samples)[0], tf.int32)
    return tf.cast(tf.random.stateless_categorical(log_q[None, :], num_samples, seed=seed)[0], tf.int32)


def sampled_softmax_loss(user_vectors, target_items, item_embeddings, sampled_items, log_q, temperature: float):
    """Mean softmax cross-entropy of each target against in-batch and sampled candidates.

    user_vectors: [B, d]; target_items: [B] int; item_embeddings: [M, d];
    sampled_items: [S] int; log_q: [M]. Candidates are the B targets then the S samples;
    logits = u·e / temperature − log q (the log-Q correction removes the sampler's
    popularity bias); a candidate equal to the row's own target, other than the label
    itself, is masked (an accidental hit is not a negative).
    """
    target_items = tf.cast(target_items, tf.int32)
    candidates = tf.concat([target_items, tf.cast(sampled_items, tf.int32)], axis=0)      # [B+S]
    logits = tf.matmul(user_vectors, tf.gather(item_embeddings, candidates), transpose_b=True)
    logits = logits / temperature - tf.gather(log_q, candidates)[None, :]
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
