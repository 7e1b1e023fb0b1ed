"""What the collaborative baselines learn from: the training sequences the models learn from.

A training sequence holds the items the user's training examples read (histories and
targets), so its distinct (user, item) pairs are the items of the user's training
sequence (the most recent ones when examples are capped). Nothing after a ``time``
cutoff and nothing of a held-out ``users`` user is in them.
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from prismrec import schema as S


def training_interactions(sequences: DataFrame) -> DataFrame:
    """Training sequences (``user_idx, seq, …``) → distinct ``user_idx, item_idx`` pairs."""
    return sequences.select(S.USER_IDX, F.explode(S.SEQ).alias(S.ITEM_IDX)).distinct()

