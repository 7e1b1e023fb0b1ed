"""Warm start: initialise a freshly built model from an exported artifact's weights.

The artifact's SavedModel tracks ``encoder_variables``, the exporting model's
``model.variables`` in order (see ``models.towers.export_encoder``), so a model
built from the same ``model`` config section lines up variable by variable. The
item table is the exception: tonight's vocabulary differs from the artifact's, so
its rows are matched by ``item_id``; items the artifact never saw keep their
random initialisation.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


def row_mapping(old_items, new_items) -> tuple[np.ndarray, np.ndarray]:
    """(new_rows, old_rows): the item_idx pairs of the item_ids both vocabularies hold.

    old_items / new_items: DataFrames with ``item_idx`` and ``item_id``. Row 0 (padding)
    always maps to row 0.
    """
    merged = new_items[["item_idx", "item_id"]].merge(old_items[["item_idx", "item_id"]], on="item_id",
                                                      suffixes=("_new", "_old"))
    new_rows = np.concatenate([[0], merged["item_idx_new"].to_numpy(np.int64)])
    old_rows = np.concatenate([[0], merged["item_idx_old"].to_numpy(np.int64)])
    return new_rows, old_rows


def load_initial_weights(model, model_dir: str, items_path: str) -> dict:
    """Assign ``model_dir``'s weights to ``model`` (built, same architecture); returns counts.

    items_path: tonight's item vocabulary (Parquet with item_idx, item_id). Raises
    ValueError when the artifact's variables do not match the model's (another
    ``model`` config): train with ``nightly.train_mode: full`` once to start over.
    """
    import pandas as pd
    import tensorflow as tf

    from prismrec.training import artifact

    root = Path(model_dir)
    artifact.verify(root)
    saved = list(tf.saved_model.load(str(root / "encoder")).encoder_variables)
    variables = list(model.variables)
    if len(saved) != len(variables):
        raise ValueError(f"warm start from {root}: it holds {len(saved)} variables, the model {len(variables)}; "
                         f"its model section differs from this config. Train with nightly.train_mode=full")
    item_table = getattr(getattr(model, "item_embedding", None), "embeddings", None)
    new_rows, old_rows = row_mapping(pd.read_parquet(root / "items.parquet"), pd.read_parquet(items_path))
    for target, source in zip(variables, saved):
        if item_table is not None and target is item_table:
            rows = target.numpy()
            rows[new_rows] = source.numpy()[old_rows]
            target.assign(rows)
        elif tuple(target.shape) == tuple(source.shape):
            target.assign(source)
        else:
            raise ValueError(f"warm start from {root}: variable {target.name} has shape {tuple(target.shape)}, "
                             f"the artifact's {tuple(source.shape)}; train with nightly.train_mode=full")
    counts = {"variables": len(variables), "items_carried": int(len(new_rows) - 1),
              "items_new": int(model.item_table().shape[0] - len(new_rows))}
    logger.info("warm start from %s: %d variables, %d items carried over, %d new items start random",
                root, counts["variables"], counts["items_carried"], counts["items_new"])
    return counts
