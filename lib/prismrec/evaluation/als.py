"""Spark MLlib ALS on implicit feedback, as a baseline in the evaluation harness.

A small grid (``evaluate.als_ranks`` × ``evaluate.als_reg_params``) is fitted on the
training interactions; the setting with the best NDCG@K on the validation users ranks
the evaluated users. Users are ranked exactly (every item scored, seen items excluded)
by the same top-N code as the models, with their ALS factor as a single interest.
ALS has a factor only for users it was trained on, so it applies to the ``time``
protocol; users without a factor get an empty list.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterator

import numpy as np
import pandas as pd
from pyspark.ml.recommendation import ALS, ALSModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql import types as T

from prismrec import schema as S
from prismrec.evaluation import spark_metrics
from prismrec.preprocess.sequences import user_index
from prismrec.ranking.topk import as_search, top_n
from prismrec.ranking.users import seen, user_batches

logger = logging.getLogger(__name__)
FEATURES = "features"
MAX_ITER = 10


def fit(interactions: DataFrame, rank: int, reg_param: float, seed: int) -> ALSModel:
    """ALS with implicit preferences on ``user_idx, item_idx`` pairs (each pair is one unit of confidence)."""
    als = ALS(rank=rank, regParam=reg_param, maxIter=MAX_ITER, implicitPrefs=True, alpha=1.0, seed=seed,
              userCol=S.USER_IDX, itemCol=S.ITEM_IDX, ratingCol="_confidence", coldStartStrategy="drop")
    return als.fit(interactions.withColumn("_confidence", F.lit(1.0).cast("float")))


def item_matrix(model: ALSModel, num_items: int) -> tuple[np.ndarray, np.ndarray]:
    """(float32 [M, rank] item factors by item_idx, item_idx array of items ALS never saw).

    The item table is small enough for the driver; the users never are.
    """
    factors = model.itemFactors.toPandas()
    matrix = np.zeros((num_items, model.rank), dtype=np.float32)
    matrix[factors["id"].to_numpy()] = np.stack(factors[FEATURES].to_numpy())
    unseen = np.setdiff1d(np.arange(1, num_items), factors["id"].to_numpy())
    return matrix, unseen


def rankings_fn(item_factors: np.ndarray, unseen: np.ndarray, top_n_items: int, batch_users: int) -> Callable:
    """mapInPandas function: ``user_id, seen_items, features`` (null without a factor) → ``user_id, ranked``."""
    def rank(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        search = as_search(item_factors)
        for batch in user_batches(frames, batch_users):
            known = batch[FEATURES].notna().to_numpy()
            ranked = [np.zeros(0, dtype=np.int32)] * len(batch)
            if known.any():
                vectors = np.stack(batch[FEATURES][known].to_numpy()).astype(np.float32)[:, None, :]
                excluded = [np.concatenate([items, unseen]) for items in seen(batch[known])]
                items, scores, _ = top_n(vectors, search, excluded, top_n_items)
                for row, (user_items, user_scores) in zip(np.flatnonzero(known), zip(items, scores)):
                    ranked[row] = user_items[np.isfinite(user_scores)].astype(np.int32)
            yield pd.DataFrame({S.USER_ID: batch[S.USER_ID].to_numpy(), spark_metrics.RANKED: ranked})

    return rank


def rankings(model: ALSModel, users: DataFrame, num_items: int, top_n_items: int, batch_users: int) -> DataFrame:
    """``user_id, ranked`` for every row of ``users`` (``user_id, seen_items``)."""
    item_factors, unseen = item_matrix(model, num_items)
    factors = model.userFactors.select(F.col("id").alias(S.USER_IDX), F.col(FEATURES))
    with_factors = (users.select(S.USER_ID, S.SEEN_ITEMS).withColumn(S.USER_IDX, user_index(F.col(S.USER_ID)))
                    .join(factors, S.USER_IDX, "left").drop(S.USER_IDX))
    schema = T.StructType([T.StructField(S.USER_ID, T.StringType()),
                           T.StructField(spark_metrics.RANKED, T.ArrayType(T.IntegerType()))])
    return with_factors.mapInPandas(rankings_fn(item_factors, unseen, top_n_items, batch_users), schema=schema)


def tuned_rankings(interactions: DataFrame, valid_users: DataFrame, users: DataFrame, num_items: int,
                   ranks: list[int], reg_params: list[float], k: int, top_n_items: int, batch_users: int,
                   seed: int) -> tuple[DataFrame, dict]:
    """Fit the grid, pick by NDCG@k on ``valid_users``, rank ``users`` with the pick.

    Both user frames need ``user_id, seen_items, target_items``. Returns (``user_id, ranked``
    for ``users``, ``{"grid": [...], "chosen": {...}}``).
    """
    interactions = interactions.persist()
    grid, best = [], None
    for rank in ranks:
        for reg_param in reg_params:
            model = fit(interactions, rank, reg_param, seed)
            ranked = rankings(model, valid_users, num_items, k, batch_users).join(
                valid_users.select(S.USER_ID, S.TARGET_ITEMS), S.USER_ID)
            ndcg = spark_metrics.averages(ranked, [k])[f"ndcg@{k}"]
            grid.append({"rank": rank, "reg_param": reg_param, f"valid_ndcg@{k}": ndcg})
            logger.info("evaluate: ALS rank=%d regParam=%g → validation NDCG@%d %.4f", rank, reg_param, k, ndcg)
            if best is None or ndcg > best[0]:
                best = (ndcg, model, grid[-1])
    interactions.unpersist()
    return rankings(best[1], users, num_items, top_n_items, batch_users), {"grid": grid, "chosen": best[2]}
