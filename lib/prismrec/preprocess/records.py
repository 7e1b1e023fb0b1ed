"""Every input record accounted for: exact duplicates collapsed, named filter rules tagged,
and the counts that must add up to the input, with the refusal when too many records are bad.

A record is kept, quarantined with a reason (:mod:`prismrec.preprocess.validate`), dropped as
an exact duplicate, or filtered by one of ``FILTER_RULES``; :func:`check_counts` asserts that
the four add up to the input.
"""
from __future__ import annotations

import re

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F

from prismrec import schema as S
from prismrec.config import Config
from prismrec.preprocess import sources
from prismrec.preprocess.sources import InputError

FILTER_RULES = ("max_events_per_user", "min_item_events", "min_user_events")
FILTER = "filter_rule"
COPIES = "copies"


def deduplicate(checked: DataFrame, max_events_per_user: int) -> DataFrame:
    """Collapse exact duplicates and tag bot-like users' events: the one shuffle of the records.

    ``checked`` is every parsed record with its validation ``reason`` (null: valid), as
    from ``validate.split_quarantine``. Identical valid records collapse into one row
    whose ``copies`` counts them; quarantined records never collapse. ``filter_rule`` is
    ``max_events_per_user`` for the events of users with more distinct events than that,
    else null. The records cross the network once, hashed by user; the output stays
    partitioned and sorted by user (cache it: every later step reads it).
    """
    valid = F.col(S.REASON).isNull()
    # A unique key per quarantined record keeps identical bad lines apart. Window functions
    # over the record (user first) need one sort, which leaves the rows in the user order
    # the bot rule's window needs; a groupBy would hash every record and sort them after.
    keys = [S.USER_ID, S.TS, *(c for c in checked.columns if c not in (S.USER_ID, S.TS)), "_record"]
    record = Window.partitionBy(*keys).orderBy("_record")
    distinct = (checked.withColumn("_record", F.when(~valid, F.monotonically_increasing_id()))
                .repartition(S.USER_ID)
                .select(*checked.columns, F.count(F.lit(1)).over(record.rowsBetween(
                            Window.unboundedPreceding, Window.unboundedFollowing)).alias(COPIES),
                        F.row_number().over(record).alias("_copy"))
                .where(F.col("_copy") == 1).drop("_copy"))
    user_events = F.sum(valid.cast("int")).over(Window.partitionBy(S.USER_ID))
    return distinct.withColumn(FILTER, F.when(valid & (user_events > max_events_per_user),
                                              F.lit("max_events_per_user")))


def item_event_counts(deduplicated: DataFrame) -> DataFrame:
    """``item_id, _item_events``: each item's events that no earlier rule removed (as small as the catalogue)."""
    untagged = F.col(S.REASON).isNull() & F.col(FILTER).isNull()
    return deduplicated.where(untagged).groupBy(S.ITEM_ID).agg(F.count(F.lit(1)).alias("_item_events"))


def tag_filters(deduplicated: DataFrame, item_events: DataFrame, cfg: Config) -> DataFrame:
    """Tag each remaining valid event with the first of the later named rules that removes it.

    After :func:`deduplicate`'s bot rule: items with fewer than ``min_item_events``
    events, then users with fewer than ``min_user_events`` (each counted over the events
    no earlier rule removed). ``filter_rule`` stays null for kept events and for
    quarantined records; tagging instead of filtering lets one action count every
    record. The per-item counts, a table as small as the catalogue, are broadcast, so
    the output keeps the input's partitioning by user. ``item_events`` is
    :func:`item_event_counts` of ``deduplicated``. Adds ``dt``.
    """
    settings = cfg.preprocess
    untagged = F.col(S.REASON).isNull() & F.col(FILTER).isNull()
    columns = [c for c in deduplicated.columns if c != FILTER]
    tagged = (deduplicated.join(F.broadcast(item_events), S.ITEM_ID, "left")
              .select(*columns, F.when(untagged & (F.coalesce("_item_events", F.lit(0)) < settings.min_item_events),
                                       F.lit("min_item_events")).otherwise(F.col(FILTER)).alias(FILTER)))
    remaining = F.sum(untagged.cast("int")).over(Window.partitionBy(S.USER_ID))
    too_few = untagged & (remaining < settings.min_user_events)
    return tagged.select(*columns, F.to_date(S.TS).alias(S.DT),
                         F.when(too_few, F.lit("min_user_events")).otherwise(F.col(FILTER)).alias(FILTER))


def count_records(tagged: DataFrame) -> tuple[dict, object]:
    """(counts, last day of the kept events) from :func:`tag_filters`' output, in one action."""
    rows = tagged.groupBy(S.REASON, FILTER).agg(F.sum(COPIES).alias("records"), F.count(F.lit(1)).alias("distinct"),
                                                F.max(S.DT).alias("last_day")).collect()
    valid = [row for row in rows if row[S.REASON] is None]
    kept = [row for row in valid if row[FILTER] is None]
    counts = {
        "input": sum(row["records"] for row in rows),
        "quarantined": dict(sorted((row[S.REASON], row["records"]) for row in rows if row[S.REASON] is not None)),
        "kept": kept[0]["distinct"] if kept else 0,
        "duplicates": sum(row["records"] - row["distinct"] for row in valid),
        "filtered": {rule: sum(row["distinct"] for row in valid if row[FILTER] == rule) for rule in FILTER_RULES},
    }
    return counts, kept[0]["last_day"] if kept else None


# The config key most likely at fault when a quarantine reason dominates, per reason.
LIKELY_KEYS = {
    "wrong_field_count": "source.format / source.csv_delimiter",
    "unparseable_number": "source.format",
    "empty_id": "source.mapping.user / source.mapping.item",
    "control_characters": "source.csv_delimiter (or the files' encoding: UTF-8 is expected)",
    "not_utf8": "the files' encoding: UTF-8 is expected (convert them, e.g. iconv -f latin1 -t utf-8)",
    "id_too_long": "preprocess.max_id_length",
    "unparseable_timestamp": "source.mapping.timestamp_format",
    "timestamp_before_minimum": "preprocess.min_timestamp",
    "timestamp_after_cutoff": "run.dt (events at or after the day after it are quarantined)",
    "unknown_event_type": "source.mapping.event_types / source.mapping.default_event_type",
}


def dominant_reason(counts: dict, max_bad_fraction: float) -> str | None:
    """The most frequent quarantine reason when the quarantined share exceeds ``max_bad_fraction``, else None."""
    quarantined = counts["quarantined"]
    if not counts["input"] or sum(quarantined.values()) / counts["input"] <= max_bad_fraction:
        return None
    return max(sorted(quarantined), key=quarantined.get)


def likely_key(reason: str, samples: list[str], cfg: Config) -> str:
    """The config key to look at for ``reason``, with the change to make when the samples show it."""
    mapping = cfg.source.mapping
    if reason == "unparseable_timestamp" and cfg.source.format in ("csv", "jsonl", "parquet"):
        # 13-digit epoch values are milliseconds (10 digits: seconds) until the year 2286.
        digits = {len(match) for text in samples for match in re.findall(r"(?<![0-9])[0-9]{10,16}(?![0-9])", text)}
        for width, fmt in ((13, "unix_ms"), (10, "unix_s")):
            if width in digits and mapping.timestamp_format != fmt:
                return (f"source.mapping.timestamp_format (now {mapping.timestamp_format!r}; {width}-digit values "
                        f"suggest --set source.mapping.timestamp_format={fmt})")
        return f"source.mapping.timestamp_format (now {mapping.timestamp_format!r})"
    return LIKELY_KEYS.get(reason, "source.format")


def refusal(counts: dict, max_bad_fraction: float, reason: str, samples: list, cfg: Config, where: str) -> InputError:
    """The error for a run whose quarantine share is too high: counts, raw samples of the dominant
    ``reason`` with their files, the likely config key, and where the quarantine was written."""
    quarantined = sum(counts["quarantined"].values())
    shown = "; ".join(f"{row[S.RAW]!r} in {row[S.SOURCE_FILE]}" for row in samples)
    return InputError(
        f"{quarantined} of {counts['input']} input records ({quarantined / counts['input']:.1%}) failed validation "
        f"{counts['quarantined']}, above preprocess.max_bad_fraction={max_bad_fraction}; nothing was published. "
        f"Most are {reason}, e.g. {shown}. Check {likely_key(reason, [row[S.RAW] for row in samples], cfg)}; "
        f"every quarantined record is in {where}")


def check_counts(counts: dict, path: str) -> None:
    """Refuse input with nothing in it or nothing kept; assert that the counts reconcile."""
    if counts["input"] == 0:
        raise sources.no_records(path)
    quarantined = sum(counts["quarantined"].values())
    accounted = (counts["kept"] + counts["duplicates"] + quarantined + sum(counts["filtered"].values()))
    if accounted != counts["input"]:
        raise AssertionError(f"record reconciliation failed: input={counts['input']} but "
                             f"kept+quarantined+duplicates+filtered={accounted} ({counts})")
    if counts["kept"] == 0:
        raise InputError(f"no events left after validation and filters ({counts}); lower "
                         f"preprocess.min_user_events / min_item_events or check the input")
