"""Spark side of scoring: iterator ``mapInPandas`` functions over users' histories.

Each Python worker loads (and verifies) the artifact once and keeps it; the item
table is memory-mapped read-only, so batches share it instead of copying it.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from prismrec import schema as S

logger = logging.getLogger(__name__)
_LOADED: dict[str, object] = {}


def load_once(model_dir: str, threads: int):
    """The worker-wide cached artifact for ``model_dir``."""
    if model_dir not in _LOADED:
        import tensorflow as tf

        from prismrec.training.artifact import load

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            logger.info("TensorFlow already initialised in this worker; keeping its thread settings")
        _LOADED[model_dir] = load(model_dir)
    return _LOADED[model_dir]


def prepare(model_dir: str, score_cfg):
    """The :class:`~prismrec.ranking.retrieval.Retrieval` the ``score`` config section gives for
    the model at ``model_dir`` (``auto`` resolved by its catalogue size), with its index built into
    the artifact first if it needs one. Runs on the driver, before any distributed work."""
    from prismrec.ranking.retrieval import Retrieval
    from prismrec.scoring.index import catalogue_size, ensure

    model = load_once(model_dir, 1)
    retrieval = Retrieval.of(score_cfg, catalogue_size(model))
    ensure(model_dir, model, retrieval)
    return retrieval


def search_once(model_dir: str, threads: int, retrieval=None):
    """The worker-wide search for ``model_dir``'s items: exact, or an :class:`AnnSearch` over the
    index ``retrieval`` names, read (and checked against the manifest) once per worker."""
    from prismrec.ranking.recommend import item_search
    from prismrec.ranking.retrieval import ANN

    model = load_once(model_dir, threads)
    if retrieval is None or retrieval.mode != ANN:
        return item_search(model)
    key = f"{model_dir}::{retrieval.index_name}"
    if key not in _LOADED:
        from prismrec.scoring.index import open_search

        _LOADED[key] = open_search(model_dir, model, retrieval, threads)
    return _LOADED[key].with_probes(retrieval.probes)


def recommendations_fn(model_dir: str, top_n: int, batch_users: int, threads: int,
                       ranking=None, retrieval=None) -> Callable:
    """mapInPandas function: histories → ``recommendations`` rows (without dt). ``retrieval``:
    a :class:`~prismrec.ranking.retrieval.Retrieval` (None = exact)."""
    from prismrec.ranking.recommend import Ranking
    from prismrec.ranking.users import histories, rank_users, seen, user_batches

    def score(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model = load_once(model_dir, threads)
        search = search_once(model_dir, threads, retrieval)
        item_ids = model.items[S.ITEM_ID].to_numpy()
        item_category = model.items[S.CATEGORY_ID].to_numpy()
        for batch in user_batches(frames, batch_users):
            ranked = rank_users(model, histories(batch), seen(batch), top_n, ranking or Ranking(), search)
            valid = np.isfinite(ranked.scores)
            rows, cols = np.nonzero(valid)
            picked = ranked.items[valid]
            # item_idx i lives in row i-1 of the vocabulary (index 0 is padding).
            yield pd.DataFrame({
                S.USER_ID: batch[S.USER_ID].to_numpy()[rows],
                S.RANK: (cols + 1).astype(np.int32),
                S.ITEM_ID: item_ids[picked - 1],
                S.SCORE: ranked.scores[valid].astype(np.float32),
                S.INTEREST: ranked.interest[valid].astype(np.int32),
                S.CATEGORY_ID: item_category[picked - 1],
                S.FALLBACK: ranked.fallback[rows],
            })

    return score


def interests_fn(model_dir: str, batch_users: int, threads: int) -> Callable:
    """mapInPandas function: histories → ``user_interests`` rows (without dt)."""
    from prismrec.ranking.recommend import encode, interest_top_categories
    from prismrec.ranking.users import histories, user_batches

    def describe(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model = load_once(model_dir, threads)
        padded_category = np.concatenate([[S.UNKNOWN_CATEGORY], model.items[S.CATEGORY_ID].to_numpy()])
        for batch in user_batches(frames, batch_users):
            batch = batch[batch[S.HIST_LEN] > 0]  # no history, no interests (they get the fallback)
            if batch.empty:
                continue
            hist = histories(batch)
            interests = encode(model, hist)
            labels = interest_top_categories(interests, hist, padded_category)
            batch_size, num_interests, _ = interests.vectors.shape
            yield pd.DataFrame({
                S.USER_ID: np.repeat(batch[S.USER_ID].to_numpy(), num_interests),
                S.INTEREST: np.tile(np.arange(num_interests, dtype=np.int32), batch_size),
                S.WEIGHT: interests.weights.reshape(-1).astype(np.float32),
                S.TOP_CATEGORIES: [cats for user in labels for cats in user],
                S.VECTOR: list(interests.vectors.reshape(batch_size * num_interests, -1)),
            })

    return describe
