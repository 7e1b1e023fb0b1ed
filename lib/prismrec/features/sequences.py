"""Events → vocabularies, time-ordered item sequences, training windows, histories.

Every function takes and returns DataFrames and runs no action of its own.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from prismrec import schema as S

SEQ = "seq"
SEQ_LEN = "seq_len"
POS = "pos"
N_BEFORE = "n_before"


def item_vocabulary(events: DataFrame) -> DataFrame:
    """``item_idx ≥ 1, item_id, category_id, count`` by descending count (ties: item_id)."""
    counts = events.groupBy(S.ITEM_ID).agg(
        F.count(F.lit(1)).alias(S.COUNT),
        # An item's category is its most frequent one; max() breaks ties deterministically.
        F.max(F.struct(F.lit(0), S.CATEGORY_ID)).getField(S.CATEGORY_ID).alias(S.CATEGORY_ID),
    )
    order = Window.orderBy(F.desc(S.COUNT), F.asc(S.ITEM_ID))
    return counts.select(F.row_number().over(order).cast("int").alias(S.ITEM_IDX),
                         S.ITEM_ID, S.CATEGORY_ID, F.col(S.COUNT).cast("long"))


def category_vocabulary(items: DataFrame) -> DataFrame:
    """``category_idx ≥ 1, category_id, count`` (count = events), by descending count."""
    counts = items.groupBy(S.CATEGORY_ID).agg(F.sum(S.COUNT).cast("long").alias(S.COUNT))
    order = Window.orderBy(F.desc(S.COUNT), F.asc(S.CATEGORY_ID))
    return counts.select(F.row_number().over(order).cast("int").alias(S.CATEGORY_IDX),
                         S.CATEGORY_ID, S.COUNT)


def user_sequences(events: DataFrame, items: DataFrame, cutoff=None) -> DataFrame:
    """``user_id, seq: array<int> (item_idx in time order), seq_len, n_before``.

    ``n_before`` counts the events before ``cutoff`` (a timestamp; None: all of them).
    Ties in time are broken by item_idx so that the order is reproducible.
    """
    indexed = events.join(F.broadcast(items.select(S.ITEM_ID, S.ITEM_IDX)), S.ITEM_ID)
    grouped = indexed.groupBy(S.USER_ID).agg(
        F.sort_array(F.collect_list(F.struct(S.TS, S.ITEM_IDX))).alias("events"))
    before = (F.size(F.filter("events", lambda e: e.getField(S.TS) < F.lit(cutoff))) if cutoff is not None
              else F.size("events"))
    return grouped.select(S.USER_ID, F.col("events").getField(S.ITEM_IDX).alias(SEQ),
                          F.size("events").alias(SEQ_LEN), before.alias(N_BEFORE))


def left_pad(items: Column, length: int) -> Column:
    """The last ``length`` entries of ``items``, left-padded with the padding index."""
    tail = F.when(F.size(items) > length, F.slice(items, -length, length)).otherwise(items)
    pad = F.array_repeat(F.lit(S.PADDING_IDX), F.greatest(F.lit(length) - F.size(tail), F.lit(0)))
    return F.concat(pad, tail)


def training_windows(sequences: DataFrame, max_hist_len: int, max_examples_per_user: int,
                     sampling: str = "recent", seed: int = 0) -> DataFrame:
    """Sliding windows: target = item at position t ≥ 1, history = up to L items before it.

    Keeps ``max_examples_per_user`` windows per user: the most recent (``recent``) or a
    seeded random choice (``random``). Output: ``user_idx, hist_items int[L], hist_len,
    target_item`` plus ``_order``, a reproducible shuffle key.
    """
    exploded = sequences.select(S.USER_ID, SEQ, SEQ_LEN, F.posexplode(SEQ).alias(POS, S.TARGET_ITEM))
    if sampling == "recent":
        kept = exploded.where((F.col(POS) >= 1) & (F.col(POS) >= F.col(SEQ_LEN) - max_examples_per_user))
    else:
        draw = Window.partitionBy(S.USER_ID).orderBy(F.xxhash64(S.USER_ID, POS, F.lit(seed)), POS)
        kept = (exploded.where(F.col(POS) >= 1).withColumn("_draw", F.row_number().over(draw))
                .where(F.col("_draw") <= max_examples_per_user))
    start = F.greatest(F.lit(1), F.col(POS) - max_hist_len + 1)
    hist = F.slice(SEQ, start, F.col(POS) - start + 1)
    return kept.select(
        F.pmod(F.xxhash64(S.USER_ID), F.lit(2**31 - 1)).cast("int").alias(S.USER_IDX),
        left_pad(hist, max_hist_len).alias(S.HIST_ITEMS),
        F.size(hist).cast("int").alias(S.HIST_LEN),
        F.col(S.TARGET_ITEM).cast("int"),
        # An arbitrary but reproducible order, so consecutive rows are not one user's.
        F.xxhash64(S.USER_ID, POS).alias("_order"),
    )


def histories(input_items: Column, max_hist_len: int) -> list[Column]:
    """Columns ``hist_items, hist_len, seen_items`` from an ordered item array."""
    return [
        left_pad(input_items, max_hist_len).alias(S.HIST_ITEMS),
        F.least(F.size(input_items), F.lit(max_hist_len)).cast("int").alias(S.HIST_LEN),
        F.array_distinct(input_items).alias(S.SEEN_ITEMS),
    ]


def evaluation_users(sequences: DataFrame, max_hist_len: int, held_out: Column) -> DataFrame:
    """Held-out users: the first part of the sequence is input, the rest are targets.

    Targets are the distinct held-out items not already in the input (those are
    excluded from recommendations, so they could never be hit).
    Output: ``user_id, hist_items, hist_len, seen_items, target_items``.
    """
    n_input = F.col(SEQ_LEN) - held_out
    input_items = F.slice(SEQ, 1, n_input)
    targets = F.array_except(F.slice(SEQ, n_input + 1, held_out), input_items)
    return sequences.select(S.USER_ID, *histories(input_items, max_hist_len),
                            targets.alias(S.TARGET_ITEMS))


def scoring_histories(events: DataFrame, items: DataFrame, max_hist_len: int,
                      exclude_event_types: list[str]) -> DataFrame:
    """Every user's last L known items (the scoring input) and the items to exclude.

    ``events`` may hold users whose events were all filtered out of training: they
    keep a row, with an empty history when none of their items is in the vocabulary
    (scoring gives them the popularity fallback). ``seen_items`` holds the items of
    ``exclude_event_types`` events only.
    Output: ``user_id, hist_items int[L], hist_len, seen_items``.
    """
    indexed = events.join(F.broadcast(items.select(S.ITEM_ID, S.ITEM_IDX)), S.ITEM_ID, "left")
    known = F.when(F.col(S.ITEM_IDX).isNotNull(), F.struct(S.TS, S.ITEM_IDX, S.EVENT_TYPE))
    grouped = indexed.groupBy(S.USER_ID).agg(F.sort_array(F.collect_list(known)).alias("events"))
    excluded = F.array(*[F.lit(t) for t in exclude_event_types]) if exclude_event_types else \
        F.array().cast("array<string>")
    seen = F.filter("events", lambda e: F.array_contains(excluded, e.getField(S.EVENT_TYPE)))
    ordered = F.col("events").getField(S.ITEM_IDX)
    return grouped.select(
        S.USER_ID, left_pad(ordered, max_hist_len).alias(S.HIST_ITEMS),
        F.least(F.size(ordered), F.lit(max_hist_len)).cast("int").alias(S.HIST_LEN),
        F.array_distinct(seen.getField(S.ITEM_IDX)).alias(S.SEEN_ITEMS))
