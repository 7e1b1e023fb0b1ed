"""Deterministic splits: users by a seeded hash (``users``), each user's last events by share (``last``)."""
from __future__ import annotations

from decimal import Decimal

from pyspark.sql import Column
from pyspark.sql import functions as F

_BUCKETS = 10_000


def user_split(user_id: Column, valid_fraction: float, test_fraction: float, seed: int) -> Column:
    """'train' | 'valid' | 'test' from a seeded hash of the user id (stable across runs and clusters)."""
    bucket = F.pmod(F.xxhash64(user_id, F.lit(seed)), F.lit(_BUCKETS)) / _BUCKETS
    return (F.when(bucket < test_fraction, F.lit("test"))
            .when(bucket < test_fraction + valid_fraction, F.lit("valid"))
            .otherwise(F.lit("train")))


def holdout_size(seq_len: Column, holdout_fraction: float) -> Column:
    """Number of trailing events held out as targets: at least 1, at most len-1."""
    held = F.ceil(seq_len * F.lit(holdout_fraction)).cast("int")
    return F.least(F.greatest(held, F.lit(1)), seq_len - 1)


def share_size(seq_len: Column, share: float) -> Column:
    """floor(share · seq_len) as an int, exactly for the share as written in decimal.

    The share becomes a decimal literal (``Decimal(str(0.7))`` is exactly 7/10), so the
    product is exact: 0.7 · 90 is 63, where doubles give 62.99999999999999 and floor 62.
    """
    return F.floor(F.lit(Decimal(str(share))) * seq_len).cast("int")
