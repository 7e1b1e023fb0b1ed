"""Item-kNN on co-occurrence, computed in Spark, as a baseline in the evaluation harness.

similarity(i, j) = users(i and j) / sqrt(users(i) · users(j)) over the training
interactions (cosine of the binary user columns), keeping each item's
``neighbours`` most similar items. A user's score for item j is the sum of
similarity(h, j) over the distinct items h of their history; seen items are excluded.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from prismrec import schema as S
from prismrec.evaluation.spark_metrics import RANKED

NEIGHBOUR = "neighbour"
SIMILARITY = "similarity"


def similarities(interactions: DataFrame, neighbours: int) -> DataFrame:
    """``user_idx, item_idx`` pairs → ``item_idx, neighbour, similarity`` (top ``neighbours`` per item)."""
    counts = interactions.groupBy(S.ITEM_IDX).agg(F.count(F.lit(1)).alias("_users"))
    # Co-counts are symmetric: count each unordered pair once (half the shuffle), then mirror it.
    half = (interactions.alias("a").join(interactions.alias("b"), S.USER_IDX)
            .where(F.col(f"a.{S.ITEM_IDX}") < F.col(f"b.{S.ITEM_IDX}"))
            .groupBy(F.col(f"a.{S.ITEM_IDX}").alias(S.ITEM_IDX), F.col(f"b.{S.ITEM_IDX}").alias(NEIGHBOUR))
            .agg(F.count(F.lit(1)).alias("_both")))
    pairs = half.unionByName(half.select(F.col(NEIGHBOUR).alias(S.ITEM_IDX), F.col(S.ITEM_IDX).alias(NEIGHBOUR),
                                         "_both"))
    scored = (pairs.join(F.broadcast(counts), S.ITEM_IDX)
              .join(F.broadcast(counts.withColumnRenamed(S.ITEM_IDX, NEIGHBOUR).withColumnRenamed("_users", "_other")),
                    NEIGHBOUR)
              .select(S.ITEM_IDX, NEIGHBOUR, (F.col("_both") / F.sqrt(F.col("_users") * F.col("_other"))).alias(SIMILARITY)))
    order = Window.partitionBy(S.ITEM_IDX).orderBy(F.desc(SIMILARITY), F.asc(NEIGHBOUR))
    return scored.withColumn("_rank", F.row_number().over(order)).where(F.col("_rank") <= neighbours).drop("_rank")


def rankings(similarity: DataFrame, users: DataFrame, top_n: int) -> DataFrame:
    """``user_id, ranked`` (best first, up to ``top_n``) for every row of ``users`` (``user_id, hist_items, seen_items``).

    Users none of whose history items has a neighbour get an empty list.
    """
    history = (users.select(S.USER_ID, F.explode(F.array_distinct(S.HIST_ITEMS)).alias(S.ITEM_IDX))
               .where(F.col(S.ITEM_IDX) > S.PADDING_IDX))
    seen = users.select(S.USER_ID, F.explode(S.SEEN_ITEMS).alias(NEIGHBOUR))
    scores = (history.join(similarity, S.ITEM_IDX).groupBy(S.USER_ID, NEIGHBOUR)
              .agg(F.sum(SIMILARITY).alias(S.SCORE))
              .join(seen, [S.USER_ID, NEIGHBOUR], "left_anti"))
    order = Window.partitionBy(S.USER_ID).orderBy(F.desc(S.SCORE), F.asc(NEIGHBOUR))
    top = (scores.withColumn(S.RANK, F.row_number().over(order)).where(F.col(S.RANK) <= top_n)
           .groupBy(S.USER_ID).agg(F.sort_array(F.collect_list(F.struct(S.RANK, NEIGHBOUR))).alias("_top")))
    ranked = F.coalesce(F.transform("_top", lambda entry: entry.getField(NEIGHBOUR)), F.array().cast("array<int>"))
    return users.select(S.USER_ID).join(top, S.USER_ID, "left").select(S.USER_ID, ranked.alias(RANKED))
