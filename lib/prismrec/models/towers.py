"""The multi-interest model: item tower (embeddings) and user tower (extractor over the history)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow import keras

from prismrec.models.extractors import CapsuleExtractor, MeanPoolExtractor, SelfAttentiveExtractor
from prismrec.models.losses import interest_diversity_penalty, sample_negatives, sampled_softmax_loss

ENCODERS = ("self_attentive", "capsule", "mean_pool")


@keras.utils.register_keras_serializable(package="prismrec")
class MultiInterestModel(keras.Model):
    """Item embeddings [num_items, d] (row 0 = padding) and a K-interest user encoder.

    ``encode(hist_items [B, L])`` → ``interest_vectors [B, K, d]``, ``interest_weights [B, K]``;
    ``call({"hist_items", "target_item"})`` adds ``user_vector [B, d]``, the interest with the
    largest dot product with the target (ComiRec's hard label-aware selection).
    """

    def __init__(self, num_items: int, embedding_dim: int, num_interests: int, max_hist_len: int,
                 hidden_dim: int = 64, encoder: str = "self_attentive", routing_iterations: int = 3,
                 diversity_weight: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if encoder not in ENCODERS:
            raise ValueError(f"model.encoder={encoder!r} is unknown; allowed: {', '.join(ENCODERS)}")
        self.num_items, self.embedding_dim, self.max_hist_len = num_items, embedding_dim, max_hist_len
        self.hidden_dim, self.encoder = hidden_dim, encoder
        self.routing_iterations, self.diversity_weight = routing_iterations, diversity_weight
        self.item_embedding = keras.layers.Embedding(
            num_items, embedding_dim, name="item_embedding",
            embeddings_initializer=keras.initializers.RandomNormal(stddev=embedding_dim ** -0.5))
        self.position_embedding = keras.layers.Embedding(
            max_hist_len, embedding_dim, name="position_embedding",
            embeddings_initializer=keras.initializers.RandomNormal(stddev=0.01))
        if encoder == "self_attentive":
            self.extractor = SelfAttentiveExtractor(num_interests, hidden_dim, name="extractor")
        elif encoder == "capsule":
            self.extractor = CapsuleExtractor(num_interests, routing_iterations, name="extractor")
        else:
            self.extractor = MeanPoolExtractor(name="extractor")
        self.num_interests = self.extractor.num_interests

    def encode(self, hist_items, training=False):
        hist_items = tf.cast(hist_items, tf.int32)
        mask = hist_items > 0
        items = self.item_embedding(hist_items)                                            # [B, L, d]
        positions = self.position_embedding(tf.range(tf.shape(hist_items)[1]))[None]       # [1, L, d]
        vectors, _ = self.extractor(items + positions, mask)                                # [B, K, d]
        # Weight of interest k: the share of history items whose closest interest is k.
        closest = tf.argmax(tf.matmul(items, vectors, transpose_b=True), axis=-1)          # [B, L]
        members = tf.one_hot(closest, self.num_interests) * tf.cast(mask, tf.float32)[..., None]
        counts = tf.reduce_sum(members, axis=1)                                             # [B, K]
        weights = counts / tf.maximum(tf.reduce_sum(counts, axis=1, keepdims=True), 1.0)
        return {"interest_vectors": vectors, "interest_weights": weights}

    def call(self, inputs, training=False):
        encoded = self.encode(inputs["hist_items"], training=training)
        target = self.item_embedding(tf.cast(inputs["target_item"], tf.int32))             # [B, d]
        affinity = tf.einsum("bkd,bd->bk", encoded["interest_vectors"], target)
        chosen = tf.gather(encoded["interest_vectors"], tf.argmax(affinity, axis=-1), batch_dims=1)
        return {"user_vector": chosen, **encoded}

    def item_table(self):
        """The [num_items, d] item embedding matrix."""
        return self.item_embedding.embeddings

    def training_loss(self, batch, log_q, num_negatives: int, temperature: float, seed=None):
        """Sampled softmax (in-batch + ``num_negatives`` sampled, log-Q corrected) on the
        label-aware interest, plus ``diversity_weight`` × the mean pairwise interest cosine."""
        outputs = self({"hist_items": batch["hist_items"], "target_item": batch["target_item"]}, training=True)
        loss = sampled_softmax_loss(outputs["user_vector"], batch["target_item"], self.item_table(),
                                    sample_negatives(log_q, num_negatives, seed), log_q, temperature)
        if self.diversity_weight:
            loss += self.diversity_weight * interest_diversity_penalty(outputs["interest_vectors"])
        return loss

    def get_config(self):
        return {"num_items": self.num_items, "embedding_dim": self.embedding_dim,
                "num_interests": self.num_interests, "max_hist_len": self.max_hist_len,
                "hidden_dim": self.hidden_dim, "encoder": self.encoder,
                "routing_iterations": self.routing_iterations, "diversity_weight": self.diversity_weight}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def export_encoder(model: MultiInterestModel, path: str) -> None:
    """Write the user encoder as a SavedModel with one ``encode`` signature."""
    module = tf.Module()
    module.model = model

    @tf.function(input_signature=[tf.TensorSpec([None, model.max_hist_len], tf.int32, name="hist_items")])
    def encode(hist_items):
        return model.encode(hist_items)

    module.encode = encode
    tf.saved_model.save(module, path, signatures={"encode": encode})


def load_encoder(path: str):
    """A callable ``hist_items int32[B, L] → {interest_vectors, interest_weights}`` as numpy."""
    loaded = tf.saved_model.load(path)
    encode = loaded.signatures["encode"]

    def run(hist_items: np.ndarray) -> dict[str, np.ndarray]:
        outputs = encode(hist_items=tf.constant(hist_items, dtype=tf.int32))
        return {name: value.numpy() for name, value in outputs.items()}

    run.loaded = loaded  # keep the SavedModel's resources alive
    return run
