"""Every column name and table schema, defined once.

Spark code imports the ``*_SCHEMA`` StructTypes through :func:`spark_schema`;
Petastorm readers and TensorFlow code use the plain column-name constants, so
this module imports pyspark lazily and stays importable from pure code.
"""
from __future__ import annotations

# Canonical events (after ingest).
USER_ID = "user_id"
ITEM_ID = "item_id"
CATEGORY_ID = "category_id"
EVENT_TYPE = "event_type"
WEIGHT = "weight"
TS = "ts"
DT = "dt"
EVENT_TYPES = ("view", "click", "cart", "fav", "buy", "rate")
UNKNOWN_CATEGORY = "unknown"

# Vocabularies: item_idx 0 is padding; indices by descending frequency.
ITEM_IDX = "item_idx"
CATEGORY_IDX = "category_idx"
COUNT = "count"
ITEM_NAME = "item_name"  # display name from the item catalogue; null when it has none
PADDING_IDX = 0

# Training examples and evaluation users.
USER_IDX = "user_idx"
HIST_ITEMS = "hist_items"
HIST_LEN = "hist_len"
TARGET_ITEM = "target_item"
TARGET_ITEMS = "target_items"
SEEN_ITEMS = "seen_items"
SPLIT = "split"
TRAIN_COLUMNS = (USER_IDX, HIST_ITEMS, HIST_LEN, TARGET_ITEM)

# Outputs.
RANK = "rank"
SCORE = "score"
INTEREST = "interest"
TOP_CATEGORIES = "top_categories"
VECTOR = "vector"
FALLBACK = "fallback"

# Quarantine.
RAW = "raw"
REASON = "reason"
SOURCE_FILE = "source_file"
RUN_ID = "run_id"


def spark_schema(name: str):
    """Return the Spark StructType of table ``name`` (see ``_SCHEMAS`` for the names)."""
    from pyspark.sql import types as T

    int_array = T.ArrayType(T.IntegerType(), containsNull=False)
    schemas = {
        "events": T.StructType([
            T.StructField(USER_ID, T.StringType(), False),
            T.StructField(ITEM_ID, T.StringType(), False),
            T.StructField(CATEGORY_ID, T.StringType(), False),
            T.StructField(EVENT_TYPE, T.StringType(), False),
            T.StructField(WEIGHT, T.FloatType(), False),
            T.StructField(TS, T.TimestampType(), False),
            T.StructField(DT, T.DateType(), False),
        ]),
        "train_examples": T.StructType([
            T.StructField(USER_IDX, T.IntegerType(), False),
            T.StructField(HIST_ITEMS, int_array, False),
            T.StructField(HIST_LEN, T.IntegerType(), False),
            T.StructField(TARGET_ITEM, T.IntegerType(), False),
        ]),
        "histories": T.StructType([
            T.StructField(USER_ID, T.StringType(), False),
            T.StructField(HIST_ITEMS, int_array, False),
            T.StructField(HIST_LEN, T.IntegerType(), False),
            T.StructField(SEEN_ITEMS, int_array, False),
        ]),
        "recommendations": T.StructType([
            T.StructField(USER_ID, T.StringType(), False),
            T.StructField(RANK, T.IntegerType(), False),
            T.StructField(ITEM_ID, T.StringType(), False),
            T.StructField(SCORE, T.FloatType(), False),
            T.StructField(INTEREST, T.IntegerType(), False),
            T.StructField(CATEGORY_ID, T.StringType(), False),
            T.StructField(FALLBACK, T.BooleanType(), False),
        ]),
        "user_interests": T.StructType([
            T.StructField(USER_ID, T.StringType(), False),
            T.StructField(INTEREST, T.IntegerType(), False),
            T.StructField(WEIGHT, T.FloatType(), False),
            T.StructField(TOP_CATEGORIES, T.ArrayType(T.StringType(), False), False),
            T.StructField(VECTOR, T.ArrayType(T.FloatType(), False), False),
        ]),
        "quarantine": T.StructType([
            T.StructField(RAW, T.StringType()),
            T.StructField(REASON, T.StringType(), False),
            T.StructField(SOURCE_FILE, T.StringType()),
            T.StructField(RUN_ID, T.StringType(), False),
        ]),
    }
    if name not in schemas:
        raise KeyError(f"no schema named {name!r}; known: {', '.join(sorted(schemas))}")
    return schemas[name]
