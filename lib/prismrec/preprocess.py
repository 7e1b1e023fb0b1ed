"""The preprocess stage: raw logs → canonical events, vocabularies, Petastorm training data.

Every input record is accounted for: kept, quarantined (with a reason), dropped as
an exact duplicate, or filtered by a named rule; the counts add up to the input,
the stage asserts it, and the run report holds them.
"""
from __future__ import annotations

import json
import logging
import re
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F

from prismrec import schema as S
from prismrec.config import Config, PreprocessSection
from prismrec.features import petastorm_io, sequences
from prismrec.features.split import holdout_size, share_size, user_split
from prismrec.layout import Layout, record_stage
from prismrec.logs import catalogue, sources, validate
from prismrec.logs.sources import InputError
from prismrec.spark import job_group, quiet_task_failures

logger = logging.getLogger(__name__)
FILTER_RULES = ("max_events_per_user", "min_item_events", "min_user_events")


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
COPIES = "copies"


def deduplicate(checked: DataFrame, max_events_per_user: int) -> DataFrame:
    """Collapse exact duplicates and tag bot-like users' events: the one shuffle of the records.

    ``checked`` is every parsed record with its validation ``reason`` (null: valid), as
    from ``validate.split_quarantine``. Identical valid records collapse into one row
    whose ``copies`` counts them; quarantined records never collapse. ``filter_rule`` is
    ``max_events_per_user`` for the events of users with more distinct events than that,
    else null. The records cross the network once, hashed by user; the output stays
    partitioned and sorted by user (cache it: every later step reads it).
    """
    valid = F.col(S.REASON).isNull()
    # A unique key per quarantined record keeps identical bad lines apart. Window functions
    # over the record (user first) need one sort, which leaves the rows in the user order
    # the bot rule's window needs; a groupBy would hash every record and sort them after.
    keys = [S.USER_ID, S.TS, *(c for c in checked.columns if c not in (S.USER_ID, S.TS)), "_record"]
    record = Window.partitionBy(*keys).orderBy("_record")
    distinct = (checked.withColumn("_record", F.when(~valid, F.monotonically_increasing_id()))
                .repartition(S.USER_ID)
                .select(*checked.columns, F.count(F.lit(1)).over(record.rowsBetween(
                            Window.unboundedPreceding, Window.unboundedFollowing)).alias(COPIES),
                        F.row_number().over(record).alias("_copy"))
                .where(F.col("_copy") == 1).drop("_copy"))
    user_events = F.sum(valid.cast("int")).over(Window.partitionBy(S.USER_ID))
    return distinct.withColumn(FILTER, F.when(valid & (user_events > max_events_per_user),
                                              F.lit("max_events_per_user")))


def item_event_counts(deduplicated: DataFrame) -> DataFrame:
    """``item_id, _item_events``: each item's events that no earlier rule removed (as small as the catalogue)."""
    untagged = F.col(S.REASON).isNull() & F.col(FILTER).isNull()
    return deduplicated.where(untagged).groupBy(S.ITEM_ID).agg(F.count(F.lit(1)).alias("_item_events"))


def tag_filters(deduplicated: DataFrame, item_events: DataFrame, cfg: Config) -> DataFrame:
    """Tag each remaining valid event with the first of the later named rules that removes it.

    After :func:`deduplicate`'s bot rule: items with fewer than ``min_item_events``
    events, then users with fewer than ``min_user_events`` (each counted over the events
    no earlier rule removed). ``filter_rule`` stays null for kept events and for
    quarantined records; tagging instead of filtering lets one action count every
    record. The per-item counts, a table as small as the catalogue, are broadcast, so
    the output keeps the input's partitioning by user. ``item_events`` is
    :func:`item_event_counts` of ``deduplicated``. Adds ``dt``.
    """
    pre = cfg.preprocess
    untagged = F.col(S.REASON).isNull() & F.col(FILTER).isNull()
    columns = [c for c in deduplicated.columns if c != FILTER]
    tagged = (deduplicated.join(F.broadcast(item_events), S.ITEM_ID, "left")
              .select(*columns, F.when(untagged & (F.coalesce("_item_events", F.lit(0)) < pre.min_item_events),
                                       F.lit("min_item_events")).otherwise(F.col(FILTER)).alias(FILTER)))
    remaining = F.sum(untagged.cast("int")).over(Window.partitionBy(S.USER_ID))
    return tagged.select(*columns, F.to_date(S.TS).alias(S.DT), F.when(
        untagged & (remaining < pre.min_user_events), F.lit("min_user_events")).otherwise(F.col(FILTER)).alias(FILTER))


# Session settings for the stage: every step after the dedup reads the cached records
# in their partitions and order by user, without another shuffle or sort.
STAGE_CONF = {
    # With AQE on, a cached plan is wrapped in AdaptiveSparkPlanExec, a leaf node that
    # reports UnknownPartitioning (Spark 3.5 does not override outputPartitioning:
    # https://github.com/apache/spark/blob/v3.5.7/sql/core/src/main/scala/org/apache/spark/sql/execution/adaptive/AdaptiveSparkPlanExec.scala),
    # and InMemoryTableScanExec passes that on, so each per-user step would reshuffle.
    "spark.sql.adaptive.enabled": "false",
    # collect_list as a streaming sort aggregate over the user-sorted records, instead of
    # a hash aggregate that falls back to sorting them again after 128 users.
    "spark.sql.execution.useObjectHashAggregateExec": "false",
    # The cached records are read a few times within minutes: encoding and compressing their
    # columns cost more CPU (a quarter of the read-to-count phase at 10 M events) than the
    # memory they save is worth; past storage memory they spill to disk either way.
    "spark.sql.inMemoryColumnarStorage.compressed": "false",
    # INT64 microseconds, Parquet's own timestamp type, instead of the legacy INT96 default:
    # cheaper to write, and what every current reader expects.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    # Smaller input splits (default 128 MiB): a single large log file still gives every
    # core several parse tasks, so the last wave is short.
    "spark.sql.files.maxPartitionBytes": str(64 * 2**20),
}


@contextmanager
def stage_conf(spark: SparkSession) -> Iterator[None]:
    """Apply ``STAGE_CONF`` for the duration of the stage, then restore the session's values."""
    before = {key: spark.conf.get(key, None) for key in STAGE_CONF}
    for key, value in STAGE_CONF.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def count_records(tagged: DataFrame) -> tuple[dict, object]:
    """(counts, last day of the kept events) from :func:`tag_filters`' output, in one action."""
    rows = tagged.groupBy(S.REASON, FILTER).agg(F.sum(COPIES).alias("records"), F.count(F.lit(1)).alias("distinct"),
                                                F.max(S.DT).alias("last_day")).collect()
    valid = [row for row in rows if row[S.REASON] is None]
    kept = [row for row in valid if row[FILTER] is None]
    counts = {
        "input": sum(row["records"] for row in rows),
        "quarantined": dict(sorted((row[S.REASON], row["records"]) for row in rows if row[S.REASON] is not None)),
        "kept": kept[0]["distinct"] if kept else 0,
        "duplicates": sum(row["records"] - row["distinct"] for row in valid),
        "filtered": {rule: sum(row["distinct"] for row in valid if row[FILTER] == rule) for rule in FILTER_RULES},
    }
    return counts, kept[0]["last_day"] if kept else None


# The config key most likely at fault when a quarantine reason dominates, per reason.
LIKELY_KEYS = {
    "wrong_field_count": "source.format / source.csv_delimiter",
    "unparseable_number": "source.format",
    "empty_id": "source.mapping.user / source.mapping.item",
    "control_characters": "source.csv_delimiter (or the files' encoding: UTF-8 is expected)",
    "id_too_long": "preprocess.max_id_length",
    "unparseable_timestamp": "source.mapping.timestamp_format",
    "timestamp_before_minimum": "preprocess.min_timestamp",
    "timestamp_after_cutoff": "run.dt (events at or after the day after it are quarantined)",
    "unknown_event_type": "source.mapping.event_types / source.mapping.default_event_type",
}


def dominant_reason(counts: dict, max_bad_fraction: float) -> str | None:
    """The most frequent quarantine reason when the quarantined share exceeds ``max_bad_fraction``, else None."""
    quarantined = counts["quarantined"]
    if not counts["input"] or sum(quarantined.values()) / counts["input"] <= max_bad_fraction:
        return None
    return max(sorted(quarantined), key=quarantined.get)


def likely_key(reason: str, samples: list[str], cfg: Config) -> str:
    """The config key to look at for ``reason``, with the change to make when the samples show it."""
    mapping = cfg.source.mapping
    if reason == "unparseable_timestamp" and cfg.source.format in ("csv", "jsonl", "parquet"):
        # 13-digit epoch values are milliseconds (10 digits: seconds) until the year 2286.
        digits = {len(match) for text in samples for match in re.findall(r"(?<![0-9])[0-9]{10,16}(?![0-9])", text)}
        for width, fmt in ((13, "unix_ms"), (10, "unix_s")):
            if width in digits and mapping.timestamp_format != fmt:
                return (f"source.mapping.timestamp_format (now {mapping.timestamp_format!r}; {width}-digit values "
                        f"suggest --set source.mapping.timestamp_format={fmt})")
        return f"source.mapping.timestamp_format (now {mapping.timestamp_format!r})"
    return LIKELY_KEYS.get(reason, "source.format")


def refusal(counts: dict, max_bad_fraction: float, reason: str, samples: list, cfg: Config, where: str) -> InputError:
    """The error for a run whose quarantine share is too high: counts, raw samples of the dominant
    ``reason`` with their files, the likely config key, and where the quarantine was written."""
    quarantined = sum(counts["quarantined"].values())
    shown = "; ".join(f"{row[S.RAW]!r} in {row[S.SOURCE_FILE]}" for row in samples)
    return InputError(
        f"{quarantined} of {counts['input']} input records ({quarantined / counts['input']:.1%}) failed validation "
        f"{counts['quarantined']}, above preprocess.max_bad_fraction={max_bad_fraction}; nothing was published. "
        f"Most are {reason}, e.g. {shown}. Check {likely_key(reason, [row[S.RAW] for row in samples], cfg)}; "
        f"every quarantined record is in {where}")


def check_counts(counts: dict, path: str) -> None:
    """Refuse input with nothing in it or nothing kept; assert that the counts reconcile."""
    if counts["input"] == 0:
        raise sources.no_records(path)
    quarantined = sum(counts["quarantined"].values())
    accounted = (counts["kept"] + counts["duplicates"] + quarantined + sum(counts["filtered"].values()))
    if accounted != counts["input"]:
        raise AssertionError(f"record reconciliation failed: input={counts['input']} but "
                             f"kept+quarantined+duplicates+filtered={accounted} ({counts})")
    if counts["kept"] == 0:
        raise InputError(f"no events left after validation and filters ({counts}); lower "
                         f"preprocess.min_user_events / min_item_events or check the input")


def split_sequences(seqs: DataFrame, cfg: Config) -> tuple[DataFrame, DataFrame]:
    """(training sequences, evaluation users) under ``preprocess.protocol``.

    users: hashed train users train on their whole sequence; valid/test users' last
    ``holdout_fraction`` are targets. time: everyone trains on events before the
    cutoff; users with events after it are evaluated (valid/test by the same hash).
    last: see :func:`split_last`.
    """
    pre = cfg.preprocess
    seq, length, before = F.col(sequences.SEQ), F.col(sequences.SEQ_LEN), F.col(sequences.N_BEFORE)
    if pre.protocol == "last":
        return split_last(seqs, pre)
    if pre.protocol == "users":
        train = seqs.where(F.col(S.SPLIT) == "train")
        held_out = seqs.where(F.col(S.SPLIT) != "train").withColumn("_held", holdout_size(length, pre.holdout_fraction))
    else:
        train = seqs.where(before >= 2).withColumn(sequences.SEQ, F.slice(seq, 1, before)) \
            .withColumn(sequences.SEQ_LEN, before)
        held_out = seqs.where(before < length).withColumn("_held", length - before) \
            .withColumn(S.SPLIT, F.when(F.col(S.SPLIT) == "valid", "valid").otherwise("test"))
    held_out = held_out.where((length - F.col("_held")) >= F.greatest(F.lit(pre.min_hist_len), F.lit(1)))
    return train, sequences.evaluation_users(held_out, pre.max_hist_len, F.col("_held"))


def split_last(seqs: DataFrame, pre: PreprocessSection) -> tuple[DataFrame, DataFrame]:
    """(training sequences, evaluation users) of the ``last`` protocol: each user's own tail is held out.

    ``seqs``: ``user_id, seq, seq_len`` from :func:`sequences.user_sequences`. Of a user's
    n events, the last n_test = floor(test_share · n) are the test part, the n_valid =
    floor(valid_share · n) before them the valid part, the rest the training part that
    every user trains on (:func:`share_size` floors the shares exactly). Valid rows: input
    and seen = the training part. Test rows: input = the training part (no refit), seen =
    training ∪ valid parts. Targets are the part's distinct items not seen; rows without
    any, and users whose training part is shorter than ``min_hist_len``, are left out.
    """
    seq, length = sequences.SEQ, F.col(sequences.SEQ_LEN)
    n_valid, n_test = share_size(length, pre.valid_share), share_size(length, pre.test_share)
    parts = seqs.select(S.USER_ID, seq, length, (length - n_valid - n_test).alias("_n_train"),
                        n_valid.alias("_n_valid"), n_test.alias("_n_test"))
    n_train, n_valid, n_test = F.col("_n_train"), F.col("_n_valid"), F.col("_n_test")
    train = parts.select(S.USER_ID, F.slice(seq, 1, n_train).alias(seq), n_train.alias(sequences.SEQ_LEN))
    evaluated = parts.where(n_train >= max(pre.min_hist_len, 1))
    # Each row's sequence ends with its targets: a valid row's is cut after the valid part,
    # and a test row's valid part is seen (excluded) but not input.
    valid = evaluated.select(S.USER_ID, F.lit("valid").alias(S.SPLIT), F.slice(seq, 1, n_train + n_valid).alias(seq),
                             (n_train + n_valid).alias(sequences.SEQ_LEN), n_valid.alias("_held"), n_train)
    test = evaluated.select(S.USER_ID, F.lit("test").alias(S.SPLIT), seq, length, n_test.alias("_held"), n_train)
    rows = sequences.evaluation_users(valid.unionByName(test), pre.max_hist_len, F.col("_held"), n_train)
    return train, rows.where(F.size(S.TARGET_ITEMS) > 0)


def run(spark: SparkSession, cfg: Config) -> dict:
    """Run the stage; returns the stage report (also written to ``reports/<run_id>.json``)."""
    cached: list[DataFrame] = []  # freed however the stage ends
    # Any input file that cannot be read ends the stage with one line naming it (exit code 3).
    with stage_conf(spark), quiet_task_failures(spark), \
            sources.read_failures(spark, source_path(cfg), cfg.source.format):
        try:
            return _run(spark, cfg, cached)
        finally:
            for frame in cached:
                frame.unpersist()


def _run(spark: SparkSession, cfg: Config, cached: list[DataFrame]) -> dict:
    def cache(frame: DataFrame) -> DataFrame:
        cached.append(frame.persist(StorageLevel.MEMORY_AND_DISK))
        return frame

    started = time.time()
    layout, pre = Layout.of(cfg), cfg.preprocess
    checked = validate.split_quarantine(read_source(spark, cfg), validation_rules(cfg), "")[0]
    with job_group(spark, "preprocess", "read, validate, deduplicate, filter and count input records"):
        deduplicated = cache(deduplicate(checked, pre.max_events_per_user))
        # Cached too: each step that reads the tagged records broadcasts them again.
        item_events = cache(item_event_counts(deduplicated))
        tagged = tag_filters(deduplicated, item_events, cfg)
        counts, last_day = count_records(tagged)
    quarantined = sum(counts["quarantined"].values())
    logger.info("preprocess: %d input records, %d quarantined %s; kept %d events; %d duplicates; filtered %s "
                "(%.1fs)", counts["input"], quarantined, counts["quarantined"], counts["kept"], counts["duplicates"],
                counts["filtered"], time.time() - started)
    quarantine = validate.quarantined(tagged, f"{cfg.run.name}-preprocess")
    reason = dominant_reason(counts, pre.max_bad_fraction)
    if reason is not None:
        # Refused: nothing is published, but the quarantine is written aside to be looked at.
        where = str(layout.refused_quarantine)
        quarantine.write.mode("overwrite").parquet(where)
        samples = spark.read.parquet(where).where(F.col(S.REASON) == reason).limit(3).collect()
        raise refusal(counts, pre.max_bad_fraction, reason, samples, cfg, where)
    check_counts(counts, source_path(cfg))
    valid = F.col(S.REASON).isNull()
    kept = validate.valid_events(tagged.where(F.col(FILTER).isNull()))

    dt = cfg.run.dt or str(last_day)
    run_id = f"{cfg.run.name}-{dt}"
    time_cutoff = (datetime.combine(last_day, datetime.min.time()) - timedelta(days=pre.time_holdout_days - 1)
                   if pre.protocol == "time" else None)
    with job_group(spark, "preprocess", "write events, quarantine and vocabularies"):
        # The catalogue's categories replace the events' own before categories are counted.
        listed = catalogue.for_source(spark, cfg.source, source_path(cfg))
        items = cache(catalogue.with_catalogue(sequences.item_vocabulary(kept), listed))
        coverage = catalogue.coverage(items) if listed is not None else None
        if coverage:
            logger.info("preprocess: item catalogue: %d items missing from it, %d with duplicate rows",
                        coverage["items_missing_from_catalogue"], coverage["items_with_duplicate_catalogue_rows"])
        (items.drop(catalogue.CATALOGUE_ROWS).coalesce(1).sortWithinPartitions(S.ITEM_IDX)
         .write.mode("overwrite").parquet(layout.table("items")))
        sequences.category_vocabulary(items).coalesce(1).write.mode("overwrite").parquet(layout.table("categories"))
        # Ids and timestamps are near-unique per file: a dictionary would overflow and fall
        # back to plain encoding after paying for the lookups (Parquet's per-column option).
        no_dictionary = {f"parquet.enable.dictionary#{column}": "false" for column in (S.USER_ID, S.ITEM_ID, S.TS)}
        kept.write.mode("overwrite").options(**no_dictionary).partitionBy(S.DT).parquet(layout.table("events"))
        quarantine.write.mode("overwrite").parquet(layout.table("quarantine"))
        logger.info("preprocess: wrote events and vocabularies (%.1fs)", time.time() - started)

    with job_group(spark, "preprocess", "build sequences, write training data and histories"):
        # Users filtered out of training for short histories are still scored; bots are not.
        scorable = tagged.where(valid & (F.col(FILTER).isNull() | (F.col(FILTER) != "max_events_per_user")))
        per_user = cache(sequences.user_events(scorable, items, F.col(FILTER).isNull()))
        seqs = (sequences.user_sequences(per_user, time_cutoff)
                .withColumn(S.SPLIT, user_split(F.col(S.USER_ID), pre.valid_fraction, pre.test_fraction, cfg.run.seed)))
        train_seqs, eval_users = split_sequences(seqs, cfg)
        examples = sequences.training_windows(train_seqs, pre.max_hist_len, pre.max_examples_per_user,
                                              pre.example_sampling, cfg.run.seed, pre.num_files)
        petastorm_io.write_examples(examples, layout.table("train_examples"), pre.max_hist_len, pre.row_group_rows)
        (eval_users.repartition(2, S.USER_ID).sortWithinPartitions(S.USER_ID)
         .write.mode("overwrite").partitionBy(S.SPLIT).parquet(layout.table("eval_users")))
        (sequences.scoring_histories(per_user, pre.max_hist_len, cfg.score.exclude_event_types)
         .repartition(spark.sparkContext.defaultParallelism, S.USER_ID)
         .sortWithinPartitions(S.USER_ID).write.mode("overwrite").parquet(layout.table("histories")))
        logger.info("preprocess: wrote training examples and histories (%.1fs)", time.time() - started)

    splits = seqs.select(S.SPLIT)
    if pre.protocol == "last":
        # Every user trains, and may be a valid and a test user too: these counts overlap.
        splits = seqs.select(F.lit("train").alias(S.SPLIT)).union(
            spark.read.parquet(layout.table("eval_users")).select(S.SPLIT))
    split_counts = {row[S.SPLIT]: row["count"] for row in splits.groupBy(S.SPLIT).count().collect()}
    num_items = items.agg(F.max(S.ITEM_IDX)).first()[0] + 1
    train_layout = petastorm_io.parquet_layout(layout.table("train_examples"))
    # Under `last` every user is a training user and the split counts overlap.
    num_users = split_counts.get("train", 0) if pre.protocol == "last" else sum(split_counts.values())
    meta = {"run_id": run_id, "dt": dt, "protocol": pre.protocol, "num_items": int(num_items), "users": num_users,
            "counts": counts, "users_by_split": split_counts, "train_examples": train_layout,
            "max_hist_len": pre.max_hist_len, "catalogue": coverage, "config_hash": cfg.config_hash()}
    layout.meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True))
    cfg.save(layout.preprocessed / "config.yaml")
    meta["seconds"] = round(time.time() - started, 2)
    meta["events_per_second"] = round(counts["input"] / max(meta["seconds"], 1e-9))
    record_stage(layout, run_id, "preprocess", meta)
    logger.info("preprocess: done in %.1fs: %d users %s, %d training examples in %d row groups",
                meta["seconds"], num_users, split_counts, train_layout["rows"],
                train_layout["row_groups"])
    return meta
