"""The ranking metrics of ``ranking.metrics``, in Spark SQL, for any number of users.

Input: a DataFrame with ``ranked: array<int>`` (best first) and ``target_items:
array<int>`` (non-empty) per user. Same definitions as the numpy reference; a test
keeps the two equal on random rankings. Coverage and novelty (:func:`catalogue`) also
need the item table: ``item_idx`` and its ``self_information``.
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
        return {name: _number(row[name]) for name in names}
    return {row[by]: {**{name: _number(row[name]) for name in names}, "users": int(row["_users"])}
            for row in frame.groupBy(by).agg(*aggregates).collect()}


def _number(value) -> float | None:
    """A Spark average as a float; None where every user's value was null (the metric does not apply)."""
    return None if value is None else float(value)


SELF_INFORMATION = "self_information"


def catalogue(ranked: DataFrame, item_information: DataFrame, ks: list[int], num_items: int,
              by: str | None = None) -> dict:
    """Coverage@k and novelty@k (definitions in ``ranking.metrics``), in one Spark action.

    ``item_information``: ``item_idx, self_information`` (small; broadcast). ``num_items``:
    the catalogue size. Returns ``{name: value}``, or ``{group: {name: value}}`` with ``by``.
    """
    keys = [by] if by else []
    exploded = (ranked.select(*keys, S.USER_ID, F.posexplode(RANKED).alias("_pos", S.ITEM_IDX))
                .where(F.col(S.ITEM_IDX) > 0)
                .join(F.broadcast(item_information), S.ITEM_IDX, "left"))
    information = F.coalesce(F.col(SELF_INFORMATION), F.lit(0.0))
    per_user = exploded.groupBy(*keys, S.USER_ID).agg(
        *[F.avg(F.when(F.col("_pos") < k, information)).alias(f"novelty@{k}") for k in ks])
    user_counts = ranked.groupBy(*keys).agg(F.count(F.lit(1)).alias("_users"))
    novelty = per_user.groupBy(*keys).agg(*[F.sum(f"`novelty@{k}`").alias(f"novelty@{k}") for k in ks])
    coverage = exploded.groupBy(*keys).agg(
        *[(F.countDistinct(F.when(F.col("_pos") < k, F.col(S.ITEM_IDX))) / num_items).alias(f"coverage@{k}")
          for k in ks])
    # Users whose list is empty have novelty 0: divide the sum by every user of the group.
    joined = user_counts.join(novelty, keys, "left").join(coverage, keys, "left") if keys else \
        user_counts.crossJoin(novelty).crossJoin(coverage)
    rows = {(row[by] if by else None): {f"coverage@{k}": float(row[f"coverage@{k}"] or 0.0) for k in ks}
            | {f"novelty@{k}": float(row[f"novelty@{k}"] or 0.0) / row["_users"] for k in ks}
            for row in joined.collect()}
    return rows if by else rows[None]
