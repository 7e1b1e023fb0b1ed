"""Validation: every parsed record is kept or quarantined with exactly one reason.

Rules apply in the order of ``REASONS``; the first that matches names the record's reason.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from prismrec import schema as S
from prismrec.preprocess.sources import PRE_REASON

REASONS = (
    "wrong_field_count",         # the record does not split into the expected fields
    "unparseable_number",        # a numeric field (a rating) is not a number
    "empty_id",                  # user or item id null or blank
    "control_characters",        # an id or category holds ASCII control characters
    "not_utf8",                  # an id or category was not UTF-8 (decoded to U+FFFD, the replacement character)
    "id_too_long",               # an id longer than preprocess.max_id_length
    "unparseable_timestamp",     # the timestamp does not parse with the configured format
    "timestamp_before_minimum",  # earlier than preprocess.min_timestamp
    "timestamp_after_cutoff",    # at or after the run's cutoff (the day after run.dt)
    "unknown_event_type",        # the event type has no canonical mapping
)
_CONTROL = r"[\x00-\x1f\x7f]"


@dataclass(frozen=True)
class Rules:
    max_id_length: int
    min_timestamp: datetime
    cutoff: datetime  # exclusive


def _blank(column: Column) -> Column:
    return column.isNull() | (column == "")


def reason(rules: Rules) -> Column:
    """The first failing rule's name, or null for a valid record."""
    ids = (F.col(S.USER_ID), F.col(S.ITEM_ID))
    checks = [
        (F.col(PRE_REASON).isNotNull(), F.col(PRE_REASON)),
        (_blank(ids[0]) | _blank(ids[1]), F.lit("empty_id")),
        (F.concat_ws("", *ids, F.col(S.CATEGORY_ID)).rlike(_CONTROL), F.lit("control_characters")),
        # Spark decodes text as UTF-8 and puts U+FFFD where the bytes are not: two Latin-1 ids that differ
        # only there would read the same and merge.
        (F.concat_ws("", *ids, F.col(S.CATEGORY_ID)).contains("\ufffd"), F.lit("not_utf8")),
        ((F.length(ids[0]) > rules.max_id_length) | (F.length(ids[1]) > rules.max_id_length), F.lit("id_too_long")),
        (F.col(S.TS).isNull(), F.lit("unparseable_timestamp")),
        (F.col(S.TS) < F.lit(rules.min_timestamp), F.lit("timestamp_before_minimum")),
        (F.col(S.TS) >= F.lit(rules.cutoff), F.lit("timestamp_after_cutoff")),
        (F.col(S.EVENT_TYPE).isNull(), F.lit("unknown_event_type")),
    ]
    result = F.when(*checks[0])
    for condition, name in checks[1:]:
        result = result.when(condition, name)
    return result


def split_quarantine(parsed: DataFrame, rules: Rules, run_id: str) -> tuple[DataFrame, DataFrame, DataFrame]:
    """(checked, events, quarantine) of the parsed records.

    ``checked`` is every record with a ``reason`` column (null: valid); it keeps ``raw``
    and ``source_file`` for quarantined records only, as valid ones never need them again.
    """
    bad = reason(rules)
    checked = parsed.select(
        F.when(bad.isNotNull(), F.col(S.RAW)).alias(S.RAW),
        F.when(bad.isNotNull(), F.col(S.SOURCE_FILE)).alias(S.SOURCE_FILE),
        S.USER_ID, S.ITEM_ID, S.CATEGORY_ID, S.EVENT_TYPE, S.WEIGHT, S.TS, bad.alias(S.REASON))
    return checked, valid_events(checked), quarantined(checked, run_id)


def valid_events(checked: DataFrame) -> DataFrame:
    """The canonical events (``spark.table_schema("events")`` columns) among ``checked`` records."""
    return (checked.where(F.col(S.REASON).isNull())
            .select(S.USER_ID, S.ITEM_ID, S.CATEGORY_ID, S.EVENT_TYPE, S.WEIGHT, S.TS, F.to_date(S.TS).alias(S.DT)))


def quarantined(checked: DataFrame, run_id: str) -> DataFrame:
    """The quarantine table's rows among ``checked`` records."""
    return (checked.where(F.col(S.REASON).isNotNull())
            .select(S.RAW, S.REASON, S.SOURCE_FILE, F.lit(run_id).alias(S.RUN_ID)))
