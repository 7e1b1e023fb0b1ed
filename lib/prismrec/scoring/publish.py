"""Validate staged outputs, then swap the ``dt`` partition in; never publish a broken table.

The swap uses Hadoop's FileSystem API, so it works on local disk, HDFS, S3A and DBFS alike.
"""
from __future__ import annotations

import logging

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from prismrec import schema as S
from prismrec.errors import EXIT_REFUSED, PrismrecError

logger = logging.getLogger(__name__)


class PublishError(PrismrecError, RuntimeError):
    """Staged output failed validation; the published output was left as it was (exit code 4)."""

    exit_code = EXIT_REFUSED


def recommendation_problems(recs: DataFrame, histories: DataFrame, items: DataFrame, top_n: int,
                            score_order: str | None = "list") -> list[str]:
    """Every check the recommendations table must pass; returns one line per failure (empty: valid).

    histories: user_id, seen_items; items: item_idx, item_id (the vocabulary). ``score_order``:
    scores must not increase along each user's list (``list``), along each interest's part of
    it (``interest``), or are not checked (None).
    """
    num_items = items.count()
    expected = histories.select(
        S.USER_ID,
        F.least(F.lit(top_n), F.lit(num_items) - F.size(F.array_remove(S.SEEN_ITEMS, 0))).alias("expected"))
    within = [S.USER_ID, S.INTEREST] if score_order == "interest" else [S.USER_ID]
    by_rank = Window.partitionBy(*within).orderBy(S.RANK)
    per_user = (recs.withColumn("prev_score", F.lag(S.SCORE).over(by_rank))
                .groupBy(S.USER_ID).agg(
                    F.count(F.lit(1)).alias("rows"), F.min(S.RANK).alias("min_rank"),
                    F.max(S.RANK).alias("max_rank"), F.countDistinct(S.RANK).alias("ranks"),
                    F.countDistinct(S.ITEM_ID).alias("distinct_items"),
                    F.sum((F.isnan(S.SCORE) | (F.abs(S.SCORE) == float("inf"))).cast("int")).alias("nonfinite"),
                    F.sum((F.col(S.SCORE) > F.col("prev_score")).cast("int")).alias("increasing")))
    joined = expected.join(per_user, S.USER_ID, "full_outer").fillna(0, subset=["rows"])
    seen = (histories.select(S.USER_ID, F.explode(S.SEEN_ITEMS).alias(S.ITEM_IDX))
            .join(items.select(S.ITEM_IDX, S.ITEM_ID), S.ITEM_IDX))
    excluded_hits = recs.join(seen, [S.USER_ID, S.ITEM_ID], "left_semi").count()
    summary = joined.agg(
        F.sum(F.col("expected").isNull().cast("int")).alias("unknown_users"),
        F.sum((F.col("rows") != F.col("expected")).cast("int")).alias("wrong_row_count"),
        F.sum(((F.col("rows") > 0) & ((F.col("min_rank") != 1) | (F.col("max_rank") != F.col("rows"))
                                      | (F.col("ranks") != F.col("rows")))).cast("int")).alias("bad_ranks"),
        F.sum((F.col("distinct_items") != F.col("rows")).cast("int")).alias("duplicate_items"),
        F.sum("nonfinite").alias("nonfinite_scores"),
        F.sum("increasing").alias("increasing_scores"),
    ).first().asDict()
    summary["excluded_items"] = excluded_hits
    if score_order is None:
        summary.pop("increasing_scores")
    return [f"{name}: {int(value)}" for name, value in summary.items() if value]


class HadoopFs:
    """The few FileSystem operations publishing needs, through Spark's JVM."""

    def __init__(self, spark: SparkSession):
        self._jvm = spark._jvm
        self._conf = spark._jsc.hadoopConfiguration()

    def _path(self, path: str):
        jpath = self._jvm.org.apache.hadoop.fs.Path(path)
        return jpath, jpath.getFileSystem(self._conf)

    def exists(self, path: str) -> bool:
        jpath, fs = self._path(path)
        return fs.exists(jpath)

    def delete(self, path: str) -> None:
        jpath, fs = self._path(path)
        fs.delete(jpath, True)

    def move(self, source: str, target: str) -> None:
        src, fs = self._path(source)
        dst, _ = self._path(target)
        fs.mkdirs(dst.getParent())
        if not fs.rename(src, dst):
            raise PublishError(f"could not move {source} to {target}")


def swap_in(spark: SparkSession, staged: str, target: str) -> None:
    """Replace ``target`` with ``staged``; the old partition is removed only after the move."""
    fs = HadoopFs(spark)
    retired = f"{target}.retired"
    fs.delete(retired)
    if fs.exists(target):
        fs.move(target, retired)
    fs.move(staged, target)
    fs.delete(retired)
    logger.info("published %s", target)
