"""The interest network family: pure TensorFlow/Keras 2, no Spark or Horovod.

Every model offers ``encode(hist_items)`` → interest vectors and weights,
``item_table()``, ``training_loss(batch, log_q, num_negatives, temperature)`` and
``get_config``, so training, export and scoring treat them alike.
"""
from __future__ import annotations

import numpy as np

ENCODERS = ("clustered", "self_attentive", "capsule", "mean_pool", "seed_mlp")


def build_model(model_cfg, num_items: int, max_hist_len: int, item_category_idx: np.ndarray,
                item_counts: np.ndarray):
    """The model named by ``model_cfg.encoder`` (a ``config.ModelSection``)."""
    if model_cfg.encoder == "seed_mlp":
        from prismrec.models.seed_mlp import SeedMLPModel, item_features

        slots, popularity = item_features(np.asarray(item_category_idx), np.asarray(item_counts),
                                          model_cfg.seed_mlp_dims)
        return SeedMLPModel(slots, popularity, max_hist_len)
    from prismrec.models.towers import MultiInterestModel

    return MultiInterestModel(num_items=num_items, embedding_dim=model_cfg.embedding_dim,
                              num_interests=model_cfg.num_interests, max_hist_len=max_hist_len,
                              hidden_dim=model_cfg.hidden_dim, encoder=model_cfg.encoder,
                              routing_iterations=model_cfg.routing_iterations,
                              cluster_iterations=model_cfg.cluster_iterations,
                              diversity_weight=model_cfg.diversity_weight)
