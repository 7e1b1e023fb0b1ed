"""The multi-interest model: item tower (embeddings) and user tower (extractor over the history)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from tensorflow import keras

from prismrec.models.extractors import (CapsuleExtractor, ClusteredAttentionExtractor, MeanPoolExtractor,
                                        SelfAttentiveExtractor)
from prismrec.models.losses import interest_diversity_penalty, sample_negatives, sampled_softmax_loss

ENCODERS = ("clustered", "self_attentive", "capsule", "mean_pool")


def select_interest(interest_vectors, target_embeddings):
    """ComiRec's hard label-aware selection: each user's interest with the largest dot product
    with its target. interest_vectors: [B, K, d]; target_embeddings: [B, d] → [B, d]."""
    affinity = tf.einsum("bkd,bd->bk", interest_vectors, target_embeddings)                # [B, K]
    return tf.gather(interest_vectors, tf.argmax(affinity, axis=-1), batch_dims=1)


@keras.utils.register_keras_serializable(package="prismrec")
class MultiInterestModel(keras.Model):
    """Item embeddings [num_items, d] (row 0 = padding) and a K-interest user encoder.

    ``encode(hist_items [B, L])`` → ``interest_vectors [B, K, d]``, ``interest_weights [B, K]``;
    ``call({"hist_items", "target_item"})`` adds ``user_vector [B, d]``, the interest with the
    largest dot product with the target (ComiRec's hard label-aware selection).
    """

    def __init__(self, num_items: int, embedding_dim: int, num_interests: int, max_hist_len: int,
                 hidden_dim: int = 64, encoder: str = "clustered", routing_iterations: int = 3,
                 cluster_iterations: int = 5, diversity_weight: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        if encoder not in ENCODERS:
            raise ValueError(f"model.encoder={encoder!r} is unknown; allowed: {', '.join(ENCODERS)}")
        self.num_items, self.embedding_dim, self.max_hist_len = num_items, embedding_dim, max_hist_len
        self.hidden_dim, self.encoder = hidden_dim, encoder
        self.routing_iterations, self.diversity_weight = routing_iterations, diversity_weight
        self.cluster_iterations = cluster_iterations
        self.item_embedding = keras.layers.Embedding(
            num_items, embedding_dim, name="item_embedding",
            embeddings_initializer=keras.initializers.RandomNormal(stddev=embedding_dim ** -0.5))
        # Built now so item_table() works before the first call (export, checkpoint restore).
        self.item_embedding.build((None,))
        self.position_embedding = keras.layers.Embedding(
            max_hist_len, embedding_dim, name="position_embedding",
            embeddings_initializer=keras.initializers.RandomNormal(stddev=0.01))
        if encoder == "self_attentive":
            self.extractor = SelfAttentiveExtractor(num_interests, hidden_dim, name="extractor")
        elif encoder == "clustered":
            self.extractor = ClusteredAttentionExtractor(num_interests, hidden_dim, cluster_iterations,
                                                         name="extractor")
        elif encoder == "capsule":
            self.extractor = CapsuleExtractor(num_interests, routing_iterations, name="extractor")
        else:
            self.extractor = MeanPoolExtractor(name="extractor")
        # Built for the full length, whatever length its first batch has (capsule logits are per position).
        self.extractor.build(tf.TensorShape([None, max_hist_len, embedding_dim]))
        self.num_interests = self.extractor.num_interests

    def encode(self, hist_items, training=False):
        """hist_items: int [B, L ≤ max_hist_len], left-padded with 0 → ``interest_vectors`` float32
        [B, K, d] and ``interest_weights`` float32 [B, K] (rows sum to 1; all zero for an empty history)."""
        hist_items = tf.cast(hist_items, tf.int32)
        mask = hist_items > 0
        items = self.item_embedding(hist_items)                                            # [B, L, d]
        # Positions count back from the newest item, so a shorter left-padded batch encodes as
        # the same histories padded to max_hist_len.
        length = tf.shape(hist_items)[1]
        positions = self.position_embedding(tf.range(self.max_hist_len - length, self.max_hist_len))[None]
        if self.encoder == "clustered":  # clusters by what the items are, not by where they sit
            vectors, _ = self.extractor(items + positions, mask, items)                     # [B, K, d]
        else:
            vectors, _ = self.extractor(items + positions, mask)                            # [B, K, d]
        # Weight of interest k: the share of history items whose closest interest is k.
        closest = tf.argmax(tf.matmul(items, vectors, transpose_b=True), axis=-1)          # [B, L]
        members = tf.one_hot(closest, self.num_interests) * tf.cast(mask, tf.float32)[..., None]
        counts = tf.reduce_sum(members, axis=1)                                             # [B, K]
        weights = counts / tf.maximum(tf.reduce_sum(counts, axis=1, keepdims=True), 1.0)
        return {"interest_vectors": vectors, "interest_weights": weights}

    def call(self, inputs, training=False):
        """inputs: ``hist_items`` int [B, L], ``target_item`` int [B] → the encode outputs plus
        ``user_vector`` [B, d], the interest chosen for the target (see ``select_interest``)."""
        encoded = self.encode(inputs["hist_items"], training=training)
        target = self.item_embedding(tf.cast(inputs["target_item"], tf.int32))             # [B, d]
        return {"user_vector": select_interest(encoded["interest_vectors"], target), **encoded}

    def item_table(self):
        """float32 [num_items, d]: the item embedding matrix (row 0 is padding, never to be recommended)."""
        return tf.convert_to_tensor(self.item_embedding.embeddings)

    def training_loss(self, batch, log_q, num_negatives: int, temperature: float, seed=None):
        """Sampled softmax (in-batch + ``num_negatives`` sampled, log-Q corrected) where every
        candidate is scored by the user's interest closest to it, as retrieval merges the K
        lists (so the target's score is its label-aware interest's, and an interest that
        claims a negative is corrected too), plus ``diversity_weight`` × the mean pairwise
        interest cosine."""
        outputs = self({"hist_items": batch["hist_items"], "target_item": batch["target_item"]}, training=True)
        loss = sampled_softmax_loss(outputs["interest_vectors"], batch["target_item"], self.item_table(),
                                    sample_negatives(log_q, num_negatives, seed), log_q, temperature)
        if self.diversity_weight:
            loss += self.diversity_weight * interest_diversity_penalty(outputs["interest_vectors"])
        return loss

    def get_config(self):
        return {"num_items": self.num_items, "embedding_dim": self.embedding_dim,
                "num_interests": self.num_interests, "max_hist_len": self.max_hist_len,
                "hidden_dim": self.hidden_dim, "encoder": self.encoder,
                "routing_iterations": self.routing_iterations, "cluster_iterations": self.cluster_iterations,
                "diversity_weight": self.diversity_weight}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def export_encoder(model, path: str) -> None:
    """Write ``model.encode`` as a SavedModel with one serving signature, ``encode``:
    hist_items int32 [None, max_hist_len] → interest_vectors [B, K, d], interest_weights [B, K].

    Works for any model with ``encode`` and ``max_hist_len``. Only the variables are saved with
    the function, not the Keras object, so loading needs neither prismrec nor Keras.
    """
    @tf.function(input_signature=[tf.TensorSpec([None, model.max_hist_len], tf.int32, name="hist_items")])
    def encode(hist_items):
        return model.encode(hist_items)

    concrete = encode.get_concrete_function()  # traced first: an unbuilt model makes its variables here
    module = tf.Module()
    # Tracking the variables alone is enough for the function to capture them, and skips
    # Keras' own SavedModel tracing of every layer's call.
    module.encoder_variables = list(model.variables)
    module.encode = encode
    tf.saved_model.save(module, path, signatures={"encode": concrete})


def load_encoder(path: str):
    """A callable ``hist_items np.int32 [B, L] → {"interest_vectors", "interest_weights"}`` as numpy.

    Calls the SavedModel's ``encode`` concrete function directly (no Keras, no ``predict``).
    Raises TypeError for a non-integer ``hist_items`` and ValueError for a length other than
    the exported ``max_hist_len``.
    """
    loaded = tf.saved_model.load(path)
    encode = loaded.signatures["encode"]
    length = encode.structured_input_signature[1]["hist_items"].shape[1]

    def run(hist_items: np.ndarray) -> dict[str, np.ndarray]:
        hist_items = np.asarray(hist_items)
        if not np.issubdtype(hist_items.dtype, np.integer):
            raise TypeError(f"hist_items must be integer item indices, got dtype {hist_items.dtype}")
        if hist_items.ndim != 2 or hist_items.shape[1] != length:
            raise ValueError(f"hist_items must have shape [batch, {length}] (the exported max_hist_len), "
                             f"got {hist_items.shape}")
        outputs = encode(hist_items=tf.constant(hist_items, dtype=tf.int32))
        return {name: value.numpy() for name, value in outputs.items()}

    run.loaded = loaded  # keeps the SavedModel's variables alive as long as the callable
    return run
