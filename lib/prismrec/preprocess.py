"""The preprocess stage: raw logs → canonical events, vocabularies, Petastorm training data.

Every input record is accounted for: kept, quarantined (with a reason), dropped as
an exact duplicate, or filtered by a named rule; the counts add up to the input,
the stage asserts it, and the run report holds them.
"""
from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from prismrec import schema as S
from prismrec.config import Config
from prismrec.features import petastorm_io, sequences
from prismrec.features.split import holdout_size, user_split
from prismrec.layout import Layout, record_stage
from prismrec.logs import sources, validate
from prismrec.spark import job_group

logger = logging.getLogger(__name__)
FILTER_RULES = ("max_events_per_user", "min_item_events", "min_user_events")


class InputError(ValueError):
    """The input logs are missing or too broken to publish anything from."""


def source_path(cfg: Config) -> str:
    """Where the raw logs are: ``source.path``, or the synthetic logs under ``paths.data``."""
    if cfg.source.path:
        return cfg.source.path
    return str(Path(cfg.paths.data) / "synthetic" / "UserBehavior.csv")


def read_source(spark: SparkSession, cfg: Config) -> DataFrame:
    """The parsed (not yet validated) records of ``source.path`` in ``source.format``."""
    path = source_path(cfg)
    if not sources.input_exists(path):
        raise InputError(
            f"input path '{path}' (source.path, format {cfg.source.format}) does not exist; "
            f"fix: run `prismrec generate` for synthetic logs, or set --set source.path=<your logs>")
    fmt, weights = cfg.source.format, cfg.preprocess.event_weights
    if fmt in ("synthetic", "taobao"):
        return sources.read_taobao(spark, path, weights)
    if fmt == "movielens":
        return sources.read_movielens(spark, path)
    return sources.read_mapped(spark, path, fmt, cfg.source.mapping, weights, cfg.source.csv_delimiter)


def validation_rules(cfg: Config) -> validate.Rules:
    def day(text: str, key: str) -> datetime:
        try:
            return datetime.strptime(text, "%Y-%m-%d")
        except ValueError:
            raise InputError(f"{key}={text!r} is not a date; use YYYY-MM-DD") from None

    cutoff = (day(cfg.run.dt, "run.dt") + timedelta(days=1) if cfg.run.dt
              else datetime.now(timezone.utc).replace(tzinfo=None))
    return validate.Rules(cfg.preprocess.max_id_length, day(cfg.preprocess.min_timestamp,
                                                            "preprocess.min_timestamp"), cutoff)


FILTER = "filter_rule"


def tag_filters(events: DataFrame, cfg: Config) -> DataFrame:
    """Drop exact duplicates, then tag each event with the first named rule that removes it.

    Rules, in order: bot-like users (more than ``max_events_per_user`` events), items
    with fewer than ``min_item_events`` events, users with fewer than ``min_user_events``
    (each counted over the events no earlier rule removed). ``filter_rule`` is null
    for kept events. Tagging instead of filtering lets one action count every rule.
    """
    pre = cfg.preprocess
    untagged = F.col(FILTER).isNull()
    remaining = lambda key: F.sum(untagged.cast("int")).over(Window.partitionBy(key))  # noqa: E731
    tagged = events.dropDuplicates().withColumn(
        FILTER, F.when(F.count(F.lit(1)).over(Window.partitionBy(S.USER_ID)) > pre.max_events_per_user,
                       F.lit("max_events_per_user")))
    tagged = tagged.withColumn(FILTER, F.when(untagged & (remaining(S.ITEM_ID) < pre.min_item_events),
                                              F.lit("min_item_events")).otherwise(F.col(FILTER)))
    return tagged.withColumn(FILTER, F.when(untagged & (remaining(S.USER_ID) < pre.min_user_events),
                                            F.lit("min_user_events")).otherwise(F.col(FILTER)))


def reconcile(counts: dict) -> None:
    accounted = (counts["kept"] + counts["duplicates"] + sum(counts["quarantined"].values())
                 + sum(counts["filtered"].values()))
    if accounted != counts["input"]:
        raise AssertionError(f"record reconciliation failed: input={counts['input']} but "
                             f"kept+quarantined+duplicates+filtered={accounted} ({counts})")


def split_sequences(seqs: DataFrame, cfg: Config) -> tuple[DataFrame, DataFrame]:
    """(training sequences, evaluation users) under ``preprocess.protocol``.

    users: hashed train users train on their whole sequence; valid/test users' last
    ``holdout_fraction`` are targets. time: everyone trains on events before the
    cutoff; users with events after it are evaluated (valid/test by the same hash).
    """
    pre = cfg.preprocess
    seq, length, before = F.col(sequences.SEQ), F.col(sequences.SEQ_LEN), F.col(sequences.N_BEFORE)
    if pre.protocol == "users":
        train = seqs.where(F.col(S.SPLIT) == "train")
        held_out = seqs.where(F.col(S.SPLIT) != "train").withColumn("_held", holdout_size(length, pre.holdout_fraction))
    else:
        train = seqs.where(before >= 2).withColumn(sequences.SEQ, F.slice(seq, 1, before)) \
            .withColumn(sequences.SEQ_LEN, before)
        held_out = seqs.where(before < length).withColumn("_held", length - before) \
            .withColumn(S.SPLIT, F.when(F.col(S.SPLIT) == "valid", "valid").otherwise("test"))
    held_out = held_out.where((length - F.col("_held")) >= F.greatest(F.lit(pre.min_hist_len), F.lit(1)))
    evaluation = sequences.evaluation_users(held_out, pre.max_hist_len, F.col("_held"))
    return train, held_out.select(S.USER_ID, S.SPLIT).join(evaluation, S.USER_ID)


def run(spark: SparkSession, cfg: Config) -> dict:
    """Run the stage; returns the stage report (also written to ``reports/<run_id>.json``)."""
    started = time.time()
    layout, pre = Layout.of(cfg), cfg.preprocess
    parsed = read_source(spark, cfg)
    checked, events, quarantine = validate.split_quarantine(parsed, validation_rules(cfg), f"{cfg.run.name}-preprocess")
    checked = checked.persist(StorageLevel.MEMORY_AND_DISK)
    with job_group(spark, "preprocess", "read, validate and count input records"):
        by_reason = {row[S.REASON]: row["count"] for row in checked.groupBy(S.REASON).count().collect()}
    valid = by_reason.pop(None, 0)
    counts = {"input": valid + sum(by_reason.values()), "quarantined": dict(sorted(by_reason.items()))}
    quarantined = sum(by_reason.values())
    logger.info("preprocess: %d input records, %d valid, %d quarantined %s (%.1fs)", counts["input"], valid,
                quarantined, counts["quarantined"], time.time() - started)
    if counts["input"] == 0:
        raise InputError(f"no records found under '{source_path(cfg)}'; check source.path and source.format")
    bad_share = quarantined / counts["input"]
    if bad_share > pre.max_bad_fraction:
        raise InputError(
            f"{quarantined} of {counts['input']} input records ({bad_share:.1%}) failed validation "
            f"{counts['quarantined']}, above preprocess.max_bad_fraction={pre.max_bad_fraction}; nothing was "
            f"published. Fix the input or raise preprocess.max_bad_fraction")

    with job_group(spark, "preprocess", "deduplicate and filter"):
        tagged = tag_filters(events, cfg).persist(StorageLevel.MEMORY_AND_DISK)
        by_rule = {row[FILTER]: row["count"] for row in tagged.groupBy(FILTER).count().collect()}
    counts["kept"] = by_rule.pop(None, 0)
    counts["filtered"] = {rule: by_rule.get(rule, 0) for rule in FILTER_RULES}
    counts["duplicates"] = valid - counts["kept"] - sum(counts["filtered"].values())
    kept = tagged.where(F.col(FILTER).isNull()).drop(FILTER)
    reconcile(counts)
    logger.info("preprocess: kept %d events; %d duplicates; filtered %s (%.1fs)", counts["kept"],
                counts["duplicates"], counts["filtered"], time.time() - started)
    if counts["kept"] == 0:
        raise InputError(f"no events left after validation and filters ({counts}); lower "
                         f"preprocess.min_user_events / min_item_events or check the input")

    last_day = kept.agg(F.max(S.DT)).first()[0]
    dt = cfg.run.dt or str(last_day)
    run_id = f"{cfg.run.name}-{dt}"
    time_cutoff = (datetime.combine(last_day, datetime.min.time()) - timedelta(days=pre.time_holdout_days - 1)
                   if pre.protocol == "time" else None)
    items = sequences.item_vocabulary(kept).persist()
    seqs = (sequences.user_sequences(kept, items, time_cutoff)
            .withColumn(S.SPLIT, user_split(F.col(S.USER_ID), pre.valid_fraction, pre.test_fraction, cfg.run.seed))
            .persist(StorageLevel.MEMORY_AND_DISK))
    train_seqs, eval_users = split_sequences(seqs, cfg)

    with job_group(spark, "preprocess", "write tables"):
        kept.write.mode("overwrite").partitionBy(S.DT).parquet(layout.table("events"))
        quarantine.write.mode("overwrite").parquet(layout.table("quarantine"))
        items.coalesce(1).write.mode("overwrite").parquet(layout.table("items"))
        sequences.category_vocabulary(items).coalesce(1).write.mode("overwrite").parquet(layout.table("categories"))
        logger.info("preprocess: wrote events and vocabularies (%.1fs)", time.time() - started)
        examples = sequences.training_windows(train_seqs, pre.max_hist_len, pre.max_examples_per_user,
                                              pre.example_sampling, cfg.run.seed)
        petastorm_io.write_examples(examples, layout.table("train_examples"), pre.max_hist_len,
                                    pre.row_group_rows, pre.num_files)
        (eval_users.repartition(2, S.USER_ID).sortWithinPartitions(S.USER_ID)
         .write.mode("overwrite").partitionBy(S.SPLIT).parquet(layout.table("eval_users")))
        # Users filtered out of training for short histories are still scored; bots are not.
        scorable = tagged.where(F.col(FILTER).isNull() | (F.col(FILTER) != "max_events_per_user"))
        (sequences.scoring_histories(scorable, items, pre.max_hist_len, cfg.score.exclude_event_types)
         .repartition(spark.sparkContext.defaultParallelism, S.USER_ID)
         .sortWithinPartitions(S.USER_ID).write.mode("overwrite").parquet(layout.table("histories")))
        logger.info("preprocess: wrote training examples and histories (%.1fs)", time.time() - started)

    split_counts = {row[S.SPLIT]: row["count"] for row in seqs.groupBy(S.SPLIT).count().collect()}
    num_items = items.agg(F.max(S.ITEM_IDX)).first()[0] + 1
    train_layout = petastorm_io.parquet_layout(layout.table("train_examples"))
    meta = {"run_id": run_id, "dt": dt, "protocol": pre.protocol, "num_items": int(num_items),
            "counts": counts, "users_by_split": split_counts, "train_examples": train_layout,
            "max_hist_len": pre.max_hist_len, "config_hash": cfg.config_hash()}
    layout.meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True))
    cfg.save(layout.preprocessed / "config.yaml")
    meta["seconds"] = round(time.time() - started, 2)
    meta["events_per_second"] = round(counts["input"] / max(meta["seconds"], 1e-9))
    record_stage(layout, run_id, "preprocess", meta)
    logger.info("preprocess: done in %.1fs: %d users %s, %d training examples in %d row groups",
                meta["seconds"], sum(split_counts.values()), split_counts, train_layout["rows"],
                train_layout["row_groups"])
    for frame in (checked, tagged, items, seqs):
        frame.unpersist()
    return meta
