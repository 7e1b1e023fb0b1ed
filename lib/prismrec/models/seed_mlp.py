"""The seed document's model, kept as a baseline and an interpretable interest profile.

A user's recency-weighted, normalised histogram over the D most frequent
categories → Dense(128, relu) → Dense(64, relu) → Dense(D, sigmoid): the predicted
interest in each category, trained with MSE against the target's category. It
recommends through the same contract as the multi-interest models: one interest
vector (the profile, K = 1, d = D) and an item table whose row i is
``one_hot(category(i)) × popularity(i)``, so an item scores its category's
predicted interest times its popularity.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow import keras


@keras.utils.register_keras_serializable(package="prismrec")
class SeedMLPModel(keras.Model):
    """item_slot: per item_idx, its category's slot in 0..D-1, or -1 outside the top D (and for padding);
    item_popularity: per item_idx, in [0, 1] (0 for padding)."""

    num_interests = 1

    def __init__(self, item_slot, item_popularity, max_hist_len: int, recency_decay: float = 0.9, **kwargs):
        super().__init__(**kwargs)
        self.item_slot_values = [int(v) for v in item_slot]
        self.item_popularity_values = [float(v) for v in item_popularity]
        self.num_dims = max(self.item_slot_values) + 1
        self.max_hist_len, self.recency_decay = max_hist_len, recency_decay
        self.item_slot = tf.constant(self.item_slot_values, tf.int32)
        self.item_popularity = tf.constant(self.item_popularity_values, tf.float32)
        self.mlp = keras.Sequential([keras.layers.Dense(128, activation="relu"),
                                     keras.layers.Dense(64, activation="relu"),
                                     keras.layers.Dense(self.num_dims, activation="sigmoid")], name="mlp")

    def features(self, hist_items):
        """[B, D]: recency-weighted category histogram of the history, normalised to sum 1."""
        hist_items = tf.cast(hist_items, tf.int32)
        length = tf.shape(hist_items)[1]
        recency = self.recency_decay ** tf.cast(tf.range(length - 1, -1, -1), tf.float32)       # newest = 1
        slots = tf.gather(self.item_slot, hist_items)                                           # [B, L]
        counted = tf.one_hot(slots, self.num_dims) * recency[None, :, None]                     # -1 → zeros
        histogram = tf.reduce_sum(counted, axis=1)
        return histogram / tf.maximum(tf.reduce_sum(histogram, axis=1, keepdims=True), 1e-9)

    def encode(self, hist_items, training=False):
        profile = self.mlp(self.features(hist_items), training=training)                      # [B, D]
        nonempty = tf.cast(tf.reduce_any(tf.cast(hist_items, tf.int32) > 0, axis=1, keepdims=True), tf.float32)
        return {"interest_vectors": profile[:, None, :], "interest_weights": nonempty}

    def call(self, inputs, training=False):
        encoded = self.encode(inputs["hist_items"], training=training)
        return {"user_vector": encoded["interest_vectors"][:, 0], **encoded}

    def item_table(self):
        return tf.one_hot(self.item_slot, self.num_dims) * self.item_popularity[:, None]

    def training_loss(self, batch, log_q=None, num_negatives: int = 0, temperature: float = 1.0, seed=None):
        """MSE between the predicted profile and the target's category (one-hot; zero outside the top D)."""
        profile = self(batch, training=True)["user_vector"]
        label = tf.one_hot(tf.gather(self.item_slot, tf.cast(batch["target_item"], tf.int32)), self.num_dims)
        return tf.reduce_mean(tf.square(profile - label))

    def get_config(self):
        return {"item_slot": self.item_slot_values, "item_popularity": self.item_popularity_values,
                "max_hist_len": self.max_hist_len, "recency_decay": self.recency_decay}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def item_features(item_category_idx: np.ndarray, item_counts: np.ndarray, num_dims: int) -> tuple[np.ndarray, np.ndarray]:
    """(item_slot, item_popularity) per item_idx from its category_idx (1 = most frequent) and event count."""
    slots = np.where((item_category_idx >= 1) & (item_category_idx <= num_dims), item_category_idx - 1, -1)
    slots[0] = -1
    popularity = np.log1p(np.asarray(item_counts, dtype=np.float64))
    popularity = popularity / max(popularity.max(), 1e-9)
    popularity[0] = 0.0
    return slots.astype(np.int32), popularity.astype(np.float32)
