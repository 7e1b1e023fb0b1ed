"""Interest extractors: an embedded history [B, L, d] → K interest vectors [B, K, d]."""
from __future__ import annotations

import tensorflow as tf
from tensorflow import keras

_MASKED = -1e9


@keras.utils.register_keras_serializable(package="prismrec")
class SelfAttentiveExtractor(keras.layers.Layer):
    """ComiRec-SA: K attention heads over the history, A = softmax_L(W2 · tanh(W1 · Hᵀ)).

    call(history [B, L, d], mask [B, L] bool) → (interest_vectors [B, K, d], attention [B, K, L]).
    An all-padding history gets zero attention and zero interests (never NaN).
    """

    def __init__(self, num_interests: int, hidden_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.num_interests = num_interests
        self.hidden_dim = hidden_dim
        self.hidden = keras.layers.Dense(hidden_dim, activation="tanh", name="w1")
        self.heads = keras.layers.Dense(num_interests, use_bias=False, name="w2")

    def call(self, history, mask):
        logits = tf.transpose(self.heads(self.hidden(history)), [0, 2, 1])        # [B, K, L]
        valid = tf.cast(mask, logits.dtype)[:, None, :]                           # [B, 1, L]
        logits = logits * valid + _MASKED * (1.0 - valid)
        attention = tf.nn.softmax(logits, axis=-1) * valid                        # pads get exactly 0
        return tf.matmul(attention, history), attention

    def get_config(self):
        return {**super().get_config(), "num_interests": self.num_interests, "hidden_dim": self.hidden_dim}


def cluster_history(items, mask, num_clusters: int, iterations: int):
    """Per-user spherical k-means of the history: [B, L, d] items, [B, L] mask → [B, K, L] 0/1 membership.

    Directions only (items are L2-normalised) and no gradient. The first centre is the newest
    item; each next one is the item farthest from the centres so far (farthest-point seeding,
    so a user's separate tastes seed separate clusters); then ``iterations`` rounds of assign
    to the nearest centre / move each centre to its members' mean (an empty cluster keeps its
    centre). Padding belongs to no cluster; a history with fewer distinct directions than K
    leaves some clusters empty (all zero rows).
    """
    points = tf.math.l2_normalize(tf.stop_gradient(items), axis=-1)                 # [B, L, d]
    valid = tf.cast(mask, points.dtype)                                             # [B, L]
    length = tf.shape(points)[1]
    # Histories are left-padded: the newest valid item has the largest valid position.
    newest = tf.argmax(valid * tf.cast(tf.range(1, length + 1), points.dtype)[None, :], axis=1)
    centres = [tf.gather(points, newest, batch_dims=1)]                             # K × [B, d]
    nearest = tf.reduce_sum(tf.square(points - centres[0][:, None, :]), axis=-1)   # [B, L]
    for _ in range(1, num_clusters):
        farthest = tf.argmax(nearest * valid - (1.0 - valid), axis=1)               # padding never wins
        centres.append(tf.gather(points, farthest, batch_dims=1))
        nearest = tf.minimum(nearest, tf.reduce_sum(tf.square(points - centres[-1][:, None, :]), axis=-1))
    centres = tf.stack(centres, axis=1)                                              # [B, K, d]

    def members_of(centres):
        # argmin_k |x − c_k|² = argmin_k (|c_k|² − 2 x·c_k); the first centre wins a tie.
        cost = tf.reduce_sum(tf.square(centres), axis=-1)[:, None, :] - 2.0 * tf.matmul(
            points, centres, transpose_b=True)                                       # [B, L, K]
        return tf.transpose(tf.one_hot(tf.argmin(cost, axis=-1), num_clusters) * valid[..., None], [0, 2, 1])

    for _ in range(iterations):
        members = members_of(centres)                                                # [B, K, L]
        counts = tf.reduce_sum(members, axis=-1, keepdims=True)                      # [B, K, 1]
        centres = tf.where(counts > 0, tf.matmul(members, points) / tf.maximum(counts, 1.0), centres)
    return members_of(centres)


@keras.utils.register_keras_serializable(package="prismrec")
class ClusteredAttentionExtractor(keras.layers.Layer):
    """K interests from K clusters of the user's own history, each pooled by attention.

    The history is split per user by ``cluster_history`` (on the item embeddings alone), so
    each interest covers one region of what the user did, however the tastes of the
    population are spread; inside a cluster, one learned attention score per position,
    a = w2 · tanh(W1 · h), weighs the members (recent ones above old ones, as the
    position embedding lets it). A cluster left empty pools the whole history instead.
    call(history [B, L, d], mask [B, L] bool, items [B, L, d] to cluster on, by default the
    history) → (interest_vectors [B, K, d], attention [B, K, L]); an all-padding history gets
    zeros (never NaN).
    """

    def __init__(self, num_interests: int, hidden_dim: int, cluster_iterations: int = 5, **kwargs):
        super().__init__(**kwargs)
        self.num_interests = num_interests
        self.hidden_dim = hidden_dim
        self.cluster_iterations = cluster_iterations
        self.hidden = keras.layers.Dense(hidden_dim, activation="tanh", name="w1")
        self.score = keras.layers.Dense(1, use_bias=False, name="w2")

    def call(self, history, mask, items=None):
        members = cluster_history(history if items is None else items, mask, self.num_interests,
                                  self.cluster_iterations)                                   # [B, K, L]
        valid = tf.cast(mask, history.dtype)[:, None, :]                                     # [B, 1, L]
        empty = tf.reduce_sum(members, axis=-1, keepdims=True) == 0                          # [B, K, 1]
        pooled = tf.where(empty, valid, members)
        logits = tf.transpose(self.score(self.hidden(history)), [0, 2, 1])                   # [B, 1, L]
        logits = logits * pooled + _MASKED * (1.0 - pooled)                                  # [B, K, L]
        attention = tf.nn.softmax(logits, axis=-1) * pooled
        return tf.matmul(attention, history), attention

    def get_config(self):
        return {**super().get_config(), "num_interests": self.num_interests, "hidden_dim": self.hidden_dim,
                "cluster_iterations": self.cluster_iterations}


@keras.utils.register_keras_serializable(package="prismrec")
class MeanPoolExtractor(keras.layers.Layer):
    """Single-vector baseline (YouTube-DNN style): masked mean of the history, K = 1."""

    num_interests = 1

    def call(self, history, mask):
        valid = tf.cast(mask, history.dtype)                                      # [B, L]
        count = tf.maximum(tf.reduce_sum(valid, axis=1, keepdims=True), 1.0)
        attention = (valid / count)[:, None, :]                                   # [B, 1, L]
        return tf.matmul(attention, history), attention


def squash(vectors, axis=-1):
    """Capsule non-linearity: keeps the direction, maps the norm into [0, 1)."""
    squared = tf.reduce_sum(tf.square(vectors), axis=axis, keepdims=True)
    return vectors * squared / (1.0 + squared) / tf.sqrt(squared + 1e-9)


@keras.utils.register_keras_serializable(package="prismrec")
class CapsuleExtractor(keras.layers.Layer):
    """Dynamic routing (MIND / ComiRec-DR): K interest capsules from the history.

    Items are mapped by one shared bilinear matrix and scaled by a learned gate per
    position, û_j = g_j·S·e_j with g_j = 2·sigmoid(γ_j) (1 at the start), so that
    capsules can weigh recent items above old ones as attention heads do; routing
    logits b [K, L] start from a fixed random draw (so the K capsules start apart) and
    are refined for ``routing_iterations`` rounds: w = softmax_K(b) over the valid
    items, v_k = squash(Σ_j w_kj û_j), b_kj += v_k·û_j. Only the last round passes
    gradients to the logits (ComiRec-DR). call(history [B, L, d], mask [B, L]) → (v [B, K, d], w [B, K, L]);
    L may not exceed the length it was built with.
    """

    def __init__(self, num_interests: int, routing_iterations: int = 3, **kwargs):
        super().__init__(**kwargs)
        self.num_interests = num_interests
        self.routing_iterations = routing_iterations

    def build(self, input_shape):
        dim, length = int(input_shape[-1]), int(input_shape[-2])
        self.bilinear = self.add_weight(name="bilinear", shape=(dim, dim),
                                        initializer=keras.initializers.GlorotNormal())
        self.initial_logits = self.add_weight(name="initial_logits", shape=(self.num_interests, length),
                                              initializer=keras.initializers.RandomNormal(stddev=1.0),
                                              trainable=False)
        self.position_gate = self.add_weight(name="position_gate", shape=(length,), initializer="zeros")
        super().build(input_shape)

    def call(self, history, mask):
        # Histories are left-padded: a shorter one takes the logits and gates of the newest positions.
        built_length = self.initial_logits.shape[1]
        newest = built_length - tf.shape(history)[1]
        gate = 2.0 * tf.sigmoid(self.position_gate[newest:])                              # [L]
        mapped = tf.matmul(history, self.bilinear) * gate[None, :, None]                # [B, L, d]
        valid = tf.cast(mask, history.dtype)[:, None, :]                                # [B, 1, L]
        initial = self.initial_logits[:, newest:]                                         # [K, L]
        logits = tf.tile(initial[None], [tf.shape(history)[0], 1, 1])                    # [B, K, L]
        frozen = tf.stop_gradient(mapped)
        for iteration in range(self.routing_iterations):
            last = iteration == self.routing_iterations - 1
            weights = tf.nn.softmax(logits, axis=1) * valid                             # over capsules
            capsules = squash(tf.matmul(weights, mapped if last else frozen))           # [B, K, d]
            if not last:
                logits = logits + tf.matmul(capsules, frozen, transpose_b=True)
        return capsules, weights

    def get_config(self):
        return {**super().get_config(), "num_interests": self.num_interests,
                "routing_iterations": self.routing_iterations}
