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


@keras.utils.register_keras_serializable(package="prismrec")
class MeanPoolExtractor(keras.layers.Layer):
    """Single-vector baseline (YouTube-DNN style): masked mean of the history, K = 1."""

    num_interests = 1

    def call(self, history, mask):
        valid = tf.cast(mask, history.dtype)                                      # [B, L]
        count = tf.maximum(tf.reduce_sum(valid, axis=1, keepdims=True), 1.0)
        attention = (valid / count)[:, None, :]                                   # [B, 1, L]
        return tf.matmul(attention, history), attention
