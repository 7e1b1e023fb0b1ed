"""Every column name and table schema, defined once.

Names only, so that pure code (ranking, models) can use them; the Spark StructTypes
of the tables are :func:`prismrec.spark.table_schema`.
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
# The training data holds each training user's item sequence and which of its positions are
# targets; the trainer's input pipeline cuts one example per target from it.
SEQ = "seq"
TARGET_POS = "target_pos"
SEQUENCE_COLUMNS = (USER_IDX, SEQ, TARGET_POS)
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
