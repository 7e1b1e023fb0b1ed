"""The preprocess stage: raw logs → canonical events, vocabularies, Petastorm training data.

Every input record is accounted for (:mod:`prismrec.preprocess.records`): kept,
quarantined (with a reason), dropped as an exact duplicate, or filtered by a named rule;
the counts add up to the input, the stage asserts it, and the run report holds them.
"""
from __future__ import annotations

import json
import logging
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from prismrec import schema as S
from prismrec.config import Config
from prismrec.layout import Layout, record_stage
from prismrec.preprocess import catalogue, petastorm_io, sequences, sources, validate
from prismrec.preprocess.records import (FILTER, check_counts, count_records, deduplicate, dominant_reason,
                                         item_event_counts, refusal, tag_filters)
from prismrec.preprocess.sources import InputError
from prismrec.preprocess.split import split_sequences, user_split
from prismrec.reports import PreprocessReport
from prismrec.spark import job_group, quiet_task_failures

logger = logging.getLogger(__name__)


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
    """The record checks: id length, and timestamps from ``preprocess.min_timestamp`` up to the end of
    ``run.dt`` (or now). Both dates were checked when the config loaded."""
    cutoff = (datetime.strptime(cfg.run.dt, "%Y-%m-%d") + timedelta(days=1) if cfg.run.dt
              else datetime.now(timezone.utc).replace(tzinfo=None))
    return validate.Rules(cfg.preprocess.max_id_length, datetime.strptime(cfg.preprocess.min_timestamp, "%Y-%m-%d"),
                          cutoff)


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
    # A timestamp the configured pattern does not parse becomes null, and its record is quarantined as
    # unparseable_timestamp. Under the default EXCEPTION policy, a value the pre-3.0 parser would have read
    # differently (e.g. "2026-1-5" for yyyy-MM-dd) fails the whole job with SparkUpgradeException
    # INCONSISTENT_BEHAVIOR_CROSS_VERSION.PARSE_DATETIME_BY_NEW_PARSER
    # (https://spark.apache.org/docs/3.5.7/sql-migration-guide.html, "Upgrading from Spark SQL 2.4 to 3.0").
    "spark.sql.legacy.timeParserPolicy": "CORRECTED",
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


def run(spark: SparkSession, cfg: Config) -> PreprocessReport:
    """Reads ``source.path`` (and ``source.items.path``); writes ``<paths.output>/preprocessed/``: events,
    quarantine, items, categories, train_sequences (Petastorm), eval_users, histories, ``_meta.json``
    and ``config.yaml``; on a refusal only ``<paths.output>/refused/quarantine``. Also records the
    report in ``reports/<run_id>.json``. Raises InputError (exit 3) for unreadable or refused input."""
    cached: list[DataFrame] = []  # freed however the stage ends
    # Any input file that cannot be read ends the stage with one line naming it (exit code 3).
    with stage_conf(spark), quiet_task_failures(spark), \
            sources.read_failures(spark, source_path(cfg), cfg.source.format):
        try:
            return _run(spark, cfg, cached)
        finally:
            for frame in cached:
                frame.unpersist()


def _run(spark: SparkSession, cfg: Config, cached: list[DataFrame]) -> PreprocessReport:
    def cache(frame: DataFrame) -> DataFrame:
        cached.append(frame.persist(StorageLevel.MEMORY_AND_DISK))
        return frame

    started = time.time()
    layout, settings = Layout.of(cfg), cfg.preprocess
    checked = validate.split_quarantine(read_source(spark, cfg), validation_rules(cfg), "")[0]
    with job_group(spark, "preprocess", "read, validate, deduplicate, filter and count input records"):
        # The records, deduplicated and tagged with their filter rule: the one thing the stage
        # holds. The per-item counts the tags need are computed from the same shuffle output
        # (Spark reuses the exchange of the deduplication for both branches of the join).
        deduplicated = deduplicate(checked, settings.max_events_per_user)
        tagged = cache(tag_filters(deduplicated, item_event_counts(deduplicated), cfg))
        counts, last_day = count_records(tagged)
    quarantined = sum(counts["quarantined"].values())
    logger.info("preprocess: %d input records, %d quarantined %s; kept %d events; %d duplicates; filtered %s "
                "(%.1fs)", counts["input"], quarantined, counts["quarantined"], counts["kept"], counts["duplicates"],
                counts["filtered"], time.time() - started)
    quarantine = validate.quarantined(tagged, f"{cfg.run.name}-preprocess")
    reason = dominant_reason(counts, settings.max_bad_fraction)
    if reason is not None:
        # Refused: nothing is published, but the quarantine is written aside to be looked at.
        where = str(layout.refused_quarantine)
        quarantine.write.mode("overwrite").parquet(where)
        samples = spark.read.parquet(where).where(F.col(S.REASON) == reason).limit(3).collect()
        raise refusal(counts, settings.max_bad_fraction, reason, samples, cfg, where)
    check_counts(counts, source_path(cfg))
    valid = F.col(S.REASON).isNull()
    kept = validate.valid_events(tagged.where(F.col(FILTER).isNull()))

    dt = cfg.run.dt or str(last_day)
    run_id = f"{cfg.run.name}-{dt}"
    time_cutoff = (datetime.combine(last_day, datetime.min.time()) - timedelta(days=settings.time_holdout_days - 1)
                   if settings.protocol == "time" else None)
    with job_group(spark, "preprocess", "write events, quarantine and vocabularies"):
        # The catalogue's categories replace the events' own before categories are counted.
        listed = catalogue.for_source(spark, cfg.source, source_path(cfg))
        vocabulary: list[DataFrame] = []  # held while the vocabularies are written, then released

        def hold(frame: DataFrame) -> DataFrame:
            vocabulary.append(cache(frame))
            return frame

        items = hold(catalogue.with_catalogue(sequences.item_vocabulary(kept, hold), listed))
        coverage = catalogue.coverage(items) if listed is not None else None
        if coverage:
            logger.info("preprocess: item catalogue: %d items missing from it, %d with duplicate rows",
                        coverage["items_missing_from_catalogue"], coverage["items_with_duplicate_catalogue_rows"])
        # Both vocabularies come range-partitioned in index order (sequences.number_rows), so their
        # part files, read in name order, are in index order too; no step moves them into one task.
        (items.drop(catalogue.CATALOGUE_ROWS).sortWithinPartitions(S.ITEM_IDX)
         .write.mode("overwrite").parquet(layout.table("items")))
        (sequences.category_vocabulary(items, hold).sortWithinPartitions(S.CATEGORY_IDX)
         .write.mode("overwrite").parquet(layout.table("categories")))
        # Ids and timestamps are near-unique per file: a dictionary would overflow and fall
        # back to plain encoding after paying for the lookups (Parquet's per-column option).
        no_dictionary = {f"parquet.enable.dictionary#{column}": "false" for column in (S.USER_ID, S.ITEM_ID, S.TS)}
        kept.write.mode("overwrite").options(**no_dictionary).partitionBy(S.DT).parquet(layout.table("events"))
        quarantine.write.mode("overwrite").parquet(layout.table("quarantine"))
        for frame in vocabulary:
            frame.unpersist()
        logger.info("preprocess: wrote events and vocabularies (%.1fs)", time.time() - started)

    with job_group(spark, "preprocess", "build sequences, write training sequences, evaluation users and histories"):
        # Users filtered out of training for short histories are still scored; bots are not.
        scorable = tagged.where(valid & (F.col(FILTER).isNull() | (F.col(FILTER) != "max_events_per_user")))
        # The item vocabulary as written, not held from the step before.
        written_items = spark.read.parquet(layout.table("items"))
        # Held within this step only: each of its three tables reads it.
        per_user = cache(sequences.user_events(scorable, written_items, F.col(FILTER).isNull()))
        user_seqs = (sequences.user_sequences(per_user, time_cutoff)
                     .withColumn(S.SPLIT, user_split(F.col(S.USER_ID), settings.valid_fraction,
                                                     settings.test_fraction, cfg.run.seed)))
        train_seqs, eval_users = split_sequences(user_seqs, cfg)
        training = sequences.training_sequences(train_seqs, settings.max_hist_len, settings.max_examples_per_user,
                                                settings.example_sampling, cfg.run.seed, settings.num_files,
                                                settings.targets_per_row)
        petastorm_io.write_sequences(training, layout.table("train_sequences"), settings.row_group_rows,
                                     settings.max_hist_len, settings.targets_per_row)
        (eval_users.repartition(2, S.USER_ID).sortWithinPartitions(S.USER_ID)
         .write.mode("overwrite").partitionBy(S.SPLIT).parquet(layout.table("eval_users")))
        (sequences.scoring_histories(per_user, settings.max_hist_len, cfg.score.exclude_event_types)
         .repartition(spark.sparkContext.defaultParallelism, S.USER_ID)
         .sortWithinPartitions(S.USER_ID).write.mode("overwrite").parquet(layout.table("histories")))
        logger.info("preprocess: wrote training sequences, evaluation users and histories (%.1fs)", time.time() - started)

    splits = user_seqs.select(S.SPLIT)
    if settings.protocol == "last":
        # Every user trains, and may be a valid and a test user too: these counts overlap.
        splits = user_seqs.select(F.lit("train").alias(S.SPLIT)).union(
            spark.read.schema(eval_users.schema).parquet(layout.table("eval_users")).select(S.SPLIT))
    if not layout.has_rows("eval_users"):
        logger.warning("preprocess: no evaluation users under the %s protocol: no user has a held-out event; "
                       "evaluate and training's validation need some", settings.protocol)
    split_counts = {row[S.SPLIT]: row["count"] for row in splits.groupBy(S.SPLIT).count().collect()}
    num_items = written_items.agg(F.max(S.ITEM_IDX)).first()[0] + 1
    # Files, row groups, bytes and the examples the trainer will cut, from the files' footers.
    train_layout = petastorm_io.parquet_layout(layout.table("train_sequences"))
    # Under `last` every user is a training user and the split counts overlap.
    num_users = split_counts.get("train", 0) if settings.protocol == "last" else sum(split_counts.values())
    meta = {"run_id": run_id, "dt": dt, "protocol": settings.protocol, "num_items": int(num_items), "users": num_users,
            "counts": counts, "users_by_split": split_counts, "train_sequences": train_layout,
            "max_hist_len": settings.max_hist_len, "catalogue": coverage, "config_hash": cfg.config_hash()}
    layout.meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True))
    cfg.save(layout.preprocessed / "config.yaml")
    meta["seconds"] = round(time.time() - started, 2)
    meta["events_per_second"] = round(counts["input"] / max(meta["seconds"], 1e-9))
    record_stage(layout, run_id, "preprocess", meta)
    report = PreprocessReport.of(meta)
    logger.info("preprocess: done: %s", report.summary())
    return report
