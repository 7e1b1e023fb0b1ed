"""What the collaborative baselines learn from: the training windows the models learn from.

Each training window holds up to L history items and one target, so the distinct
(user, item) pairs over a user's windows are the items of their training sequence
(the most recent ones when windows are capped). Nothing after a ``time`` cutoff and
nothing of a held-out ``users`` user is in them.
"""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from prismrec import schema as S


def user_index(user_id: Column) -> Column:
    """The ``user_idx`` the training windows carry for ``user_id`` (as in ``features.sequences``)."""
    return F.pmod(F.xxhash64(user_id), F.lit(2**31 - 1)).cast("int")


def training_interactions(examples: DataFrame) -> DataFrame:
    """Training examples → distinct ``user_idx, item_idx`` pairs (padding dropped)."""
    items = F.concat(S.HIST_ITEMS, F.array(S.TARGET_ITEM))
    return (examples.select(S.USER_IDX, F.explode(items).alias(S.ITEM_IDX))
            .where(F.col(S.ITEM_IDX) > S.PADDING_IDX).distinct())

