"""Raw log sources → canonical events plus quarantined rows.

Each reader returns ``(events, quarantine)``: ``events`` has the canonical
schema (``schema.spark_schema("events")``); ``quarantine`` holds every row that
could not be mapped, with its raw text, the reason and the source file.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from prismrec import schema as S

# Taobao UserBehavior's behaviour codes → canonical event types.
TAOBAO_EVENT_TYPES = {"pv": "view", "cart": "cart", "fav": "fav", "buy": "buy"}
TAOBAO_FIELDS = ("user", "item", "category", "behavior", "timestamp")


def read_taobao_csv(spark: SparkSession, path: str, run_id: str,
                    event_weights: dict[str, float]) -> tuple[DataFrame, DataFrame]:
    """Read Taobao UserBehavior CSV (no header: user,item,category,behavior,timestamp).

    Lines are read as text so that malformed lines keep their raw form for the
    quarantine instead of being silently padded or truncated by the CSV parser.
    """
    lines = (spark.read.text(path)
             .withColumn(S.SOURCE_FILE, F.input_file_name())
             .withColumnRenamed("value", S.RAW))
    parts = F.split(F.col(S.RAW), ",", -1)
    fields = {name: F.trim(parts.getItem(i)) for i, name in enumerate(TAOBAO_FIELDS)}
    behaviour_map = F.create_map(*[F.lit(x) for pair in TAOBAO_EVENT_TYPES.items() for x in pair])
    weight_map = F.create_map(*[F.lit(x) for pair in event_weights.items() for x in pair])
    event_type = behaviour_map[fields["behavior"]]
    reason = (
        F.when(F.size(parts) != len(TAOBAO_FIELDS), F.lit("wrong_field_count"))
        .when((fields["user"] == "") | (fields["item"] == ""), F.lit("empty_id"))
        .when(~fields["timestamp"].rlike(r"^-?[0-9]{1,12}$"), F.lit("unparseable_timestamp"))
        .when(event_type.isNull(), F.lit("unknown_event_type"))
    )
    parsed = lines.select(
        S.RAW, S.SOURCE_FILE, reason.alias(S.REASON),
        fields["user"].alias(S.USER_ID),
        fields["item"].alias(S.ITEM_ID),
        F.when(fields["category"] == "", F.lit(S.UNKNOWN_CATEGORY))
         .otherwise(fields["category"]).alias(S.CATEGORY_ID),
        event_type.alias(S.EVENT_TYPE),
        weight_map[event_type].cast("float").alias(S.WEIGHT),
        F.timestamp_seconds(fields["timestamp"].cast("long")).alias(S.TS),
    )
    return split_quarantine(parsed, run_id)


def split_quarantine(parsed: DataFrame, run_id: str) -> tuple[DataFrame, DataFrame]:
    """Split rows with a non-null ``reason`` off into the quarantine schema."""
    parsed = parsed.cache()
    quarantine = (parsed.where(F.col(S.REASON).isNotNull())
                  .select(S.RAW, S.REASON, S.SOURCE_FILE, F.lit(run_id).alias(S.RUN_ID)))
    events = (parsed.where(F.col(S.REASON).isNull())
              .select(S.USER_ID, S.ITEM_ID, S.CATEGORY_ID, S.EVENT_TYPE, S.WEIGHT, S.TS,
                      F.to_date(S.TS).alias(S.DT)))
    return events, quarantine
