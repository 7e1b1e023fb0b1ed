"""Events → vocabularies, time-ordered item sequences, training sequences, histories.

Every function takes and returns DataFrames and runs no action of its own, except
the vocabulary numbering (:func:`number_rows`), which materialises one sort and
collects one count per partition.
"""
from __future__ import annotations

from typing import Callable

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from prismrec import schema as S

SEQ = S.SEQ
SEQ_LEN = "seq_len"
POS = "pos"
N_BEFORE = "n_before"
EVENTS = "events"
TRAIN = "train"


def number_rows(frame: DataFrame, order: list[Column], name: str,
                hold: Callable[[DataFrame], DataFrame] = DataFrame.localCheckpoint) -> DataFrame:
    """``frame`` with ``name``: int 1..n in ``order``, which must be total (no ties), as one global sort.

    A ``Window.orderBy`` without a partition would move every row into one task. Here the
    sort is range-partitioned (each partition holds one contiguous slice of the order)
    and held once (``hold``: ``localCheckpoint`` by default, or a caller's persist that it
    releases when done), so that both passes read the same partitions (a recomputed sort
    may sample other range bounds); ``frame`` is held before it, so it is computed once.
    The driver collects one ``(partition, first row id, rows)`` triple per partition, and
    each row's number is the rows of the partitions before it plus its place in its own.
    Runs three actions.
    """
    part, row = "_part", "_row"
    # The input is materialised first: the sort's range-bound sampling and the sort itself
    # would otherwise each compute it (a pass over every event for the item counts).
    # monotonically_increasing_id: partition id in the upper bits, consecutive row numbers below.
    ordered = hold(hold(frame).orderBy(*order).select(
        "*", F.spark_partition_id().alias(part), F.monotonically_increasing_id().alias(row)))
    sizes = sorted(ordered.groupBy(part).agg(F.min(row).alias("first"), F.count(F.lit(1)).alias("rows")).collect(),
                   key=lambda size: size[part])
    shift, before = [], 0
    for size in sizes:
        shift += [F.lit(size[part]), F.lit(before + 1 - size["first"])]
        before += size["rows"]
    number = F.col(row) + F.create_map(*shift)[F.col(part)] if shift else F.lit(None)
    return ordered.select(number.cast("int").alias(name), *frame.columns)


def item_vocabulary(events: DataFrame, hold: Callable[[DataFrame], DataFrame] = DataFrame.localCheckpoint) -> DataFrame:
    """``item_idx ≥ 1, item_id, category_id, count`` by descending count (ties: item_id).

    ``count`` is the item's events. An item's category is its most frequent one among
    its events; a tie goes to the smallest ``category_id`` as a string (``"102"`` before
    ``"99"``). Numbered by :func:`number_rows` (three actions, no one-partition window;
    ``hold`` as there).
    """
    per_category = events.groupBy(S.ITEM_ID, S.CATEGORY_ID).agg(F.count(F.lit(1)).alias("_events"))
    # min over (−events, category): the most events first, then the smallest category.
    counts = per_category.groupBy(S.ITEM_ID).agg(
        F.sum("_events").cast("long").alias(S.COUNT),
        F.min(F.struct(-F.col("_events"), F.col(S.CATEGORY_ID))).getField(S.CATEGORY_ID).alias(S.CATEGORY_ID))
    numbered = number_rows(counts, [F.desc(S.COUNT), F.asc(S.ITEM_ID)], S.ITEM_IDX, hold)
    return numbered.select(S.ITEM_IDX, S.ITEM_ID, S.CATEGORY_ID, S.COUNT)


def category_vocabulary(items: DataFrame,
                        hold: Callable[[DataFrame], DataFrame] = DataFrame.localCheckpoint) -> DataFrame:
    """``category_idx ≥ 1, category_id, count`` (count = events), by descending count (ties: category_id).

    ``items``: ``category_id, count`` per item, as from :func:`item_vocabulary`.
    Numbered by :func:`number_rows` (``hold`` as there).
    """
    counts = items.groupBy(S.CATEGORY_ID).agg(F.sum(S.COUNT).cast("long").alias(S.COUNT))
    numbered = number_rows(counts, [F.desc(S.COUNT), F.asc(S.CATEGORY_ID)], S.CATEGORY_IDX, hold)
    return numbered.select(S.CATEGORY_IDX, S.CATEGORY_ID, S.COUNT)


def user_events(events: DataFrame, items: DataFrame, in_training: Column) -> DataFrame:
    """One row per user: ``user_id, events: array<struct<ts, item_id, item_idx, event_type, train>>``.

    The single per-user aggregation that both the training sequences and the scoring
    histories are read from. Entries are sorted by time, ties by the raw item_id as a
    string (not by item_idx, which follows popularity and so changes with the data); events whose
    item is not in ``items`` are left out (a user may keep an empty array). ``train``
    is ``in_training`` evaluated per event: whether it belongs to the training sequence.
    If ``events`` is already hash-partitioned by user, this adds no shuffle.
    """
    indexed = events.join(F.broadcast(items.select(S.ITEM_ID, S.ITEM_IDX)), S.ITEM_ID, "left")
    entry = F.when(F.col(S.ITEM_IDX).isNotNull(),
                   F.struct(S.TS, S.ITEM_ID, S.ITEM_IDX, S.EVENT_TYPE, in_training.alias(TRAIN)))
    return indexed.groupBy(S.USER_ID).agg(F.sort_array(F.collect_list(entry)).alias(EVENTS))


def user_sequences(per_user: DataFrame, cutoff=None) -> DataFrame:
    """``user_id, seq: array<int> (item_idx in time order), seq_len, n_before`` from :func:`user_events`.

    Only the ``train`` entries, and only users who have one. ``n_before`` counts the
    entries before ``cutoff`` (a timestamp; None: all of them).
    """
    training = F.filter(EVENTS, lambda e: e.getField(TRAIN))
    before = (F.size(F.filter(training, lambda e: e.getField(S.TS) < F.lit(cutoff))) if cutoff is not None
              else F.size(training))
    return (per_user.select(S.USER_ID, training.alias(EVENTS)).where(F.size(EVENTS) > 0)
            .select(S.USER_ID, F.col(EVENTS).getField(S.ITEM_IDX).alias(SEQ), F.size(EVENTS).alias(SEQ_LEN),
                    before.alias(N_BEFORE)))


def left_pad(items: Column, length: int) -> Column:
    """The last ``length`` entries of ``items``, left-padded with the padding index."""
    tail = F.when(F.size(items) > length, F.slice(items, -length, length)).otherwise(items)
    pad = F.array_repeat(F.lit(S.PADDING_IDX), F.greatest(F.lit(length) - F.size(tail), F.lit(0)))
    return F.concat(pad, tail)


def user_index(user_id: Column) -> Column:
    """The ``user_idx`` (int, 0 ≤ idx < 2³¹ − 1) the training data carries for ``user_id``: a hash, no vocabulary."""
    return F.pmod(F.xxhash64(user_id), F.lit(2**31 - 1)).cast("int")


def training_sequences(sequences: DataFrame, max_hist_len: int, max_examples_per_user: int,
                       sampling: str = "recent", seed: int = 0, num_files: int = 1,
                       targets_per_row: int = 16) -> DataFrame:
    """Each training user's targets and the events they read: the training data, not yet cut into windows.

    A target is an item at position t ≥ 1 (0-based) of the user's time-ordered sequence; its
    history is the up to L items before it. Of the n − 1 possible targets a user keeps
    ``max_examples_per_user`` (E): the most recent (``recent``) or a seeded random choice
    (``random``: the smallest ``xxhash64(user_id, t, seed)``). The kept targets, ascending, are
    cut into rows of at most ``targets_per_row`` (C) consecutive ones. A row's ``seq`` is the part
    of the user's sequence its examples read, from max(0, first target − L) to its last target
    (under ``recent`` at most L + C events; ``random`` targets are spread out, so a row spans
    the events between them too), and ``target_pos`` holds its targets' positions in that
    ``seq``. The trainer's input pipeline cuts the examples
    (:func:`prismrec.preprocess.petastorm_io.examples`), so under ``recent`` the data holds
    about (L + 2C) / C values per example instead of L + 3. Rows, not users,
    are the unit the reader's shuffle mixes: a row group holds rows of many users.

    Output: ``user_idx, seq array<int>, target_pos array<int>`` plus ``_order``, a seeded
    random shuffle key (``xxhash64(user_id, row number, seed)``), in ``num_files`` partitions
    by ``user_idx`` and row number (one per training file); users with fewer than two events
    have no row.
    """
    length = F.col(SEQ_LEN)
    if sampling == "recent":
        first = F.greatest(F.lit(1), length - max_examples_per_user)
        chosen = F.sequence(first, length - 1)
    else:
        # Every candidate position keyed by its draw; the lowest keys are kept, then put back in order.
        draws = F.transform(F.sequence(F.lit(1), length - 1),
                            lambda t: F.struct(F.xxhash64(S.USER_ID, t, F.lit(seed)).alias("draw"), t.alias(POS)))
        chosen = F.array_sort(F.slice(F.array_sort(draws), 1, max_examples_per_user).getField(POS))
    users = sequences.where(length >= 2).select(S.USER_ID, SEQ, chosen.alias("_chosen"))
    rows = users.select(S.USER_ID, SEQ, "_chosen", F.explode(
        F.sequence(F.lit(0), F.floor((F.size("_chosen") - 1) / targets_per_row).cast("int"))).alias("_row"))
    # F.slice and element_at are 1-based.
    targets = F.slice("_chosen", F.col("_row") * targets_per_row + 1, targets_per_row)
    offset = F.greatest(F.lit(0), F.element_at("_targets", 1) - max_hist_len)
    return (rows.select(S.USER_ID, SEQ, "_row", targets.alias("_targets"))
            .select(user_index(F.col(S.USER_ID)).alias(S.USER_IDX),
                    F.slice(SEQ, offset + 1, F.element_at("_targets", -1) - offset + 1).alias(S.SEQ),
                    F.transform("_targets", lambda t: (t - offset).cast("int")).alias(S.TARGET_POS),
                    F.col("_row"),
                    F.xxhash64(S.USER_ID, F.col("_row"), F.lit(seed)).alias("_order"))
            .repartition(num_files, S.USER_IDX, "_row")
            .drop("_row"))


def histories(input_items: Column, max_hist_len: int) -> list[Column]:
    """Columns ``hist_items, hist_len, seen_items`` from an ordered item array."""
    return [
        left_pad(input_items, max_hist_len).alias(S.HIST_ITEMS),
        F.least(F.size(input_items), F.lit(max_hist_len)).cast("int").alias(S.HIST_LEN),
        F.array_distinct(input_items).alias(S.SEEN_ITEMS),
    ]


def evaluation_users(sequences: DataFrame, max_hist_len: int, held_out: Column,
                     n_input: Column | None = None) -> DataFrame:
    """Held-out users: the first part of the sequence is known, the last ``held_out`` items are targets.

    The known part's distinct items are ``seen_items`` (excluded from recommendations);
    the model input (``hist_items``) is its first ``n_input`` items (None: all of it).
    Targets are the distinct held-out items not already seen (those could never be hit).
    Output: ``user_id, split, hist_items, hist_len, seen_items, target_items``.
    """
    n_known = F.col(SEQ_LEN) - held_out
    known = F.slice(SEQ, 1, n_known)
    input_items = known if n_input is None else F.slice(SEQ, 1, n_input)
    hist_items, hist_len, _ = histories(input_items, max_hist_len)
    targets = F.array_except(F.slice(SEQ, n_known + 1, held_out), known)
    return sequences.select(S.USER_ID, S.SPLIT, hist_items, hist_len, F.array_distinct(known).alias(S.SEEN_ITEMS),
                            targets.alias(S.TARGET_ITEMS))


def scoring_histories(per_user: DataFrame, max_hist_len: int, exclude_event_types: list[str]) -> DataFrame:
    """Every user's last L known items (the scoring input) and the items to exclude.

    ``per_user`` comes from :func:`user_events` and may hold users whose events were
    all filtered out of training: they keep a row, with an empty history when none of
    their items is in the vocabulary (scoring gives them the popularity fallback).
    ``seen_items`` holds the items of ``exclude_event_types`` events only.
    Output: ``user_id, hist_items int[L], hist_len, seen_items``.
    """
    excluded = F.array(*[F.lit(t) for t in exclude_event_types]) if exclude_event_types else \
        F.array().cast("array<string>")
    seen = F.filter(EVENTS, lambda e: F.array_contains(excluded, e.getField(S.EVENT_TYPE)))
    ordered = F.col(EVENTS).getField(S.ITEM_IDX)
    return per_user.select(
        S.USER_ID, left_pad(ordered, max_hist_len).alias(S.HIST_ITEMS),
        F.least(F.size(ordered), F.lit(max_hist_len)).cast("int").alias(S.HIST_LEN),
        F.array_distinct(seen.getField(S.ITEM_IDX)).alias(S.SEEN_ITEMS))
