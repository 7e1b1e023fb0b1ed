"""The ranking metrics of ``evaluation.metrics``, in Spark SQL, for any number of users.

Input: a DataFrame with ``ranked: array<int>`` (best first) and ``target_items:
array<int>`` (non-empty) per user. Same definitions as the numpy reference; a test
keeps the two equal on random rankings.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from prismrec import schema as S

RANKED = "ranked"


def _hits(k: int | None) -> Column:
    ranked = F.slice(RANKED, 1, k) if k else F.col(RANKED)
    return F.transform(ranked, lambda item: F.array_contains(F.array_distinct(S.TARGET_ITEMS), item).cast("int"))


def per_user(ranked: DataFrame, ks: list[int], keep: tuple[str, ...] = ()) -> DataFrame:
    """One row per user with ``{metric}@{k}`` columns and ``mrr`` (plus the ``keep`` columns)."""
    targets = F.size(F.array_distinct(S.TARGET_ITEMS)).cast("double")
    columns = []
    for k in ks:
        hits = _hits(k)
        count = F.aggregate(hits, F.lit(0), lambda acc, h: acc + h).cast("double")
        dcg = F.aggregate(F.transform(hits, lambda h, i: h / F.log2(i + 2)), F.lit(0.0), lambda acc, x: acc + x)
        ideal = F.aggregate(F.transform(F.sequence(F.lit(0), F.least(targets, F.lit(float(k))).cast("int") - 1),
                                        lambda i: 1.0 / F.log2(i + 2)), F.lit(0.0), lambda acc, x: acc + x)
        columns += [(count / targets).alias(f"recall@{k}"), (dcg / ideal).alias(f"ndcg@{k}"),
                    (count > 0).cast("double").alias(f"hit_rate@{k}"), (count / k).alias(f"precision@{k}")]
    first = F.array_position(_hits(None), 1)
    columns.append(F.when(first > 0, 1.0 / first).otherwise(0.0).alias("mrr"))
    return ranked.select(S.USER_ID, *[F.col(f"`{c}`") for c in keep], *columns)


def averages(ranked: DataFrame, ks: list[int], by: str | None = None,
             extra: tuple[str, ...] = ()) -> dict:
    """Mean of every metric (and of the ``extra`` columns) over the users, per ``by`` value if given.

    One Spark action. Returns ``{name: value}``, or ``{group: {name: value}}`` with ``by``.
    """
    keep = tuple(c for c in (by, *extra) if c)
    frame = per_user(ranked, ks, keep)
    names = [c for c in frame.columns if c not in (S.USER_ID, by)]
    aggregates = [F.avg(F.col(f"`{n}`")).alias(n) for n in names] + [F.count(F.lit(1)).alias("_users")]
    if by is None:
        row = frame.agg(*aggregates).first()
        return {name: float(row[name]) for name in names}
    return {row[by]: {**{name: float(row[name]) for name in names}, "users": int(row["_users"])}
            for row in frame.groupBy(by).agg(*aggregates).collect()}
