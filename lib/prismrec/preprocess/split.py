"""The evaluation protocols' splits (``preprocess.protocol``), all deterministic: users by a seeded
hash (``users``), events before a cutoff day (``time``), each user's last events by share (``last``)."""
from __future__ import annotations

from decimal import Decimal

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from prismrec import schema as S
from prismrec.config import Config, PreprocessSection
from prismrec.preprocess import sequences

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


def split_sequences(user_seqs: DataFrame, cfg: Config) -> tuple[DataFrame, DataFrame]:
    """(training sequences, evaluation users) under ``preprocess.protocol``.

    users: hashed train users train on their whole sequence; valid/test users' last
    ``holdout_fraction`` are targets. time: everyone trains on events before the
    cutoff; users with events after it are evaluated (valid/test by the same hash).
    last: see :func:`split_last`.
    """
    settings = cfg.preprocess
    seq, length, before = F.col(sequences.SEQ), F.col(sequences.SEQ_LEN), F.col(sequences.N_BEFORE)
    if settings.protocol == "last":
        return split_last(user_seqs, settings)
    if settings.protocol == "users":
        train = user_seqs.where(F.col(S.SPLIT) == "train")
        held_out = (user_seqs.where(F.col(S.SPLIT) != "train")
                    .withColumn("_held", holdout_size(length, settings.holdout_fraction)))
    else:
        train = user_seqs.where(before >= 2).withColumn(sequences.SEQ, F.slice(seq, 1, before)) \
            .withColumn(sequences.SEQ_LEN, before)
        held_out = user_seqs.where(before < length).withColumn("_held", length - before) \
            .withColumn(S.SPLIT, F.when(F.col(S.SPLIT) == "valid", "valid").otherwise("test"))
    held_out = held_out.where((length - F.col("_held")) >= F.greatest(F.lit(settings.min_hist_len), F.lit(1)))
    return train, sequences.evaluation_users(held_out, settings.max_hist_len, F.col("_held"))


def split_last(user_seqs: DataFrame, settings: PreprocessSection) -> tuple[DataFrame, DataFrame]:
    """(training sequences, evaluation users) of the ``last`` protocol: each user's own tail is held out.

    ``user_seqs``: ``user_id, seq, seq_len`` from :func:`sequences.user_sequences`. Of a user's
    n events, the last n_test = floor(test_share · n) are the test part, the n_valid =
    floor(valid_share · n) before them the valid part, the rest the training part that
    every user trains on (:func:`share_size` floors the shares exactly). Valid rows: input
    and seen = the training part. Test rows: input = the training part (no refit), seen =
    training ∪ valid parts. Targets are the part's distinct items not seen; rows without
    any, and users whose training part is shorter than ``min_hist_len``, are left out.
    """
    seq, length = sequences.SEQ, F.col(sequences.SEQ_LEN)
    n_valid, n_test = share_size(length, settings.valid_share), share_size(length, settings.test_share)
    parts = user_seqs.select(S.USER_ID, seq, length, (length - n_valid - n_test).alias("_n_train"),
                        n_valid.alias("_n_valid"), n_test.alias("_n_test"))
    n_train, n_valid, n_test = F.col("_n_train"), F.col("_n_valid"), F.col("_n_test")
    train = parts.select(S.USER_ID, F.slice(seq, 1, n_train).alias(seq), n_train.alias(sequences.SEQ_LEN))
    evaluated = parts.where(n_train >= max(settings.min_hist_len, 1))
    # Each row's sequence ends with its targets: a valid row's is cut after the valid part,
    # and a test row's valid part is seen (excluded) but not input.
    valid = evaluated.select(S.USER_ID, F.lit("valid").alias(S.SPLIT), F.slice(seq, 1, n_train + n_valid).alias(seq),
                             (n_train + n_valid).alias(sequences.SEQ_LEN), n_valid.alias("_held"), n_train)
    test = evaluated.select(S.USER_ID, F.lit("test").alias(S.SPLIT), seq, length, n_test.alias("_held"), n_train)
    rows = sequences.evaluation_users(valid.unionByName(test), settings.max_hist_len, F.col("_held"), n_train)
    return train, rows.where(F.size(S.TARGET_ITEMS) > 0)
