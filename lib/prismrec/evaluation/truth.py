"""The planted ground truth of the synthetic logs, for judging learned interests.

``<paths.data>/synthetic/truth_items.parquet`` (item_id, category_id, topic) and
``truth_user_interests.parquet`` (user_id, topic, weight), written by ``prismrec generate``.
Other sources have no truth; the truth-based figures are then left out.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from prismrec import schema as S
from prismrec.config import Config

TOPIC = "topic"
TRUE_TOPICS = "true_topics"


@dataclass(frozen=True)
class Truth:
    item_topic: np.ndarray     # int [M]: planted topic per item_idx, -1 for padding and unknown items
    users_path: str            # truth_user_interests.parquet


def load(cfg: Config, items: pd.DataFrame) -> Truth | None:
    """The truth for the vocabulary ``items`` (item_idx, item_id), or None when there is none."""
    folder = Path(cfg.paths.data) / "synthetic"
    items_path, users_path = folder / "truth_items.parquet", folder / "truth_user_interests.parquet"
    if cfg.source.format != "synthetic" or not (items_path.is_file() and users_path.is_file()):
        return None
    truth = pd.read_parquet(items_path, columns=[S.ITEM_ID, TOPIC])
    known = items[[S.ITEM_IDX, S.ITEM_ID]].merge(truth, on=S.ITEM_ID)
    item_topic = np.full(int(items[S.ITEM_IDX].max()) + 1, -1, dtype=np.int64)
    item_topic[known[S.ITEM_IDX].to_numpy()] = known[TOPIC].to_numpy()
    return Truth(item_topic, str(users_path))


def with_true_topics(spark: SparkSession, users: DataFrame, truth: Truth) -> DataFrame:
    """``users`` plus ``true_topics: array<int>`` (null for users the truth does not know)."""
    topics = (spark.read.parquet(truth.users_path).groupBy(S.USER_ID)
              .agg(F.sort_array(F.collect_list(F.col(TOPIC).cast("int"))).alias(TRUE_TOPICS)))
    return users.join(topics, S.USER_ID, "left")
