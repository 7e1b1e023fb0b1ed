"""The preprocess stage: raw logs → canonical events, vocabularies, Petastorm training data.

Every input line is accounted for: kept, quarantined (with a reason), dropped as
an exact duplicate, or filtered by a named rule; the four add up to the input.
"""
from __future__ import annotations

import glob
import json
import logging
import time
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from prismrec import schema as S
from prismrec.config import Config
from prismrec.features import petastorm_io, sequences
from prismrec.features.split import holdout_size, user_split
from prismrec.layout import Layout, record_stage
from prismrec.logs import sources
from prismrec.spark import job_group

logger = logging.getLogger(__name__)


class InputError(ValueError):
    """The input logs are missing or too broken to publish anything from."""


def source_path(cfg: Config) -> str:
    """Where the raw logs are: ``source.path``, or the synthetic logs under ``paths.data``."""
    if cfg.source.path:
        return cfg.source.path
    return str(Path(cfg.paths.data) / "synthetic" / "UserBehavior.csv")


def read_source(spark: SparkSession, cfg: Config, run_id: str) -> tuple[DataFrame, DataFrame]:
    path = source_path(cfg)
    if "://" not in path and not glob.glob(path):
        raise InputError(
            f"input path '{path}' (source.path, format {cfg.source.format}) does not exist; "
            f"fix: run `prismrec generate` for synthetic logs, or set --set source.path=<your logs>")
    if cfg.source.format in ("synthetic", "taobao"):
        return sources.read_taobao_csv(spark, path, run_id, cfg.preprocess.event_weights)
    raise InputError(f"source.format={cfg.source.format!r} is not readable yet; use taobao or synthetic")


def apply_filters(events: DataFrame, cfg: Config) -> tuple[DataFrame, dict[str, DataFrame]]:
    """Drop exact duplicates, then items and users below the minimum counts.

    Returns the kept events and, per rule, the events that rule removed (lazily).
    """
    deduped = events.dropDuplicates()
    item_counts = deduped.groupBy(S.ITEM_ID).agg(F.count(F.lit(1)).alias("n"))
    rare_items = item_counts.where(F.col("n") < cfg.preprocess.min_item_events).select(S.ITEM_ID)
    after_items = deduped.join(rare_items, S.ITEM_ID, "left_anti")
    user_counts = after_items.groupBy(S.USER_ID).agg(F.count(F.lit(1)).alias("n"))
    short_users = user_counts.where(F.col("n") < cfg.preprocess.min_user_events).select(S.USER_ID)
    kept = after_items.join(short_users, S.USER_ID, "left_anti")
    return kept, {"deduped": deduped, "after_items": after_items}


def reconcile(counts: dict[str, int]) -> None:
    accounted = (counts["kept"] + counts["quarantined"] + counts["duplicates"]
                 + counts["filtered_min_item_events"] + counts["filtered_min_user_events"])
    if accounted != counts["input"]:
        raise AssertionError(f"row reconciliation failed: input={counts['input']} but "
                             f"kept+quarantined+duplicates+filtered={accounted} ({counts})")


def run(spark: SparkSession, cfg: Config) -> dict:
    """Run the stage; returns the stage report (also written to ``reports/<run_id>.json``)."""
    started = time.time()
    layout = Layout.of(cfg)
    pre = cfg.preprocess
    events, quarantine = read_source(spark, cfg, run_id=f"{cfg.run.name}-preprocess")
    with job_group(spark, "preprocess", "validate and count input"):
        counts = {"input": events.count() + quarantine.count(), "quarantined": quarantine.count()}
        valid = events.count()
    logger.info("preprocess: %d input rows, %d quarantined", counts["input"], counts["quarantined"])
    bad_share = counts["quarantined"] / max(counts["input"], 1)
    if bad_share > pre.max_bad_fraction:
        raise InputError(
            f"{counts['quarantined']} of {counts['input']} input rows ({bad_share:.1%}) failed validation, "
            f"above preprocess.max_bad_fraction={pre.max_bad_fraction}; nothing was published. "
            f"See the reasons with --set preprocess.max_bad_fraction=1 and inspect the quarantine table")
    kept, stages = apply_filters(events, cfg)
    kept = kept.cache()
    with job_group(spark, "preprocess", "deduplicate and filter"):
        deduped = stages["deduped"].count()
        after_items = stages["after_items"].count()
        counts["kept"] = kept.count()
    counts["duplicates"] = valid - deduped
    counts["filtered_min_item_events"] = deduped - after_items
    counts["filtered_min_user_events"] = after_items - counts["kept"]
    reconcile(counts)
    logger.info("preprocess: kept %d events (%s)", counts["kept"], counts)
    if counts["kept"] == 0:
        raise InputError(f"no events left after validation and filters ({counts}); lower "
                         f"preprocess.min_user_events / min_item_events or check the input")

    dt = cfg.run.dt or str(kept.agg(F.max(S.DT)).first()[0])
    run_id = f"{cfg.run.name}-{dt}"
    items = sequences.item_vocabulary(kept).cache()
    categories = sequences.category_vocabulary(items)
    seqs = sequences.user_sequences(kept, items).withColumn(
        S.SPLIT, user_split(F.col(S.USER_ID), pre.valid_fraction, pre.test_fraction, cfg.run.seed)).cache()

    with job_group(spark, "preprocess", "write tables"):
        kept.write.mode("overwrite").partitionBy(S.DT).parquet(layout.table("events"))
        quarantine.write.mode("overwrite").parquet(layout.table("quarantine"))
        items.coalesce(1).write.mode("overwrite").parquet(layout.table("items"))
        categories.coalesce(1).write.mode("overwrite").parquet(layout.table("categories"))
        train_seqs = seqs.where(F.col(S.SPLIT) == "train")
        examples = sequences.training_windows(train_seqs, pre.max_hist_len, pre.max_examples_per_user)
        petastorm_io.write_examples(examples, layout.table("train_examples"), pre.max_hist_len,
                                    pre.row_group_rows, pre.num_files)
        held_out = seqs.where((F.col(S.SPLIT) != "train") & (F.col(sequences.SEQ_LEN) >= 2))
        eval_users = sequences.evaluation_users(
            held_out.withColumn("_held", holdout_size(F.col(sequences.SEQ_LEN), pre.holdout_fraction)),
            pre.max_hist_len, F.col("_held"))
        (held_out.select(S.USER_ID, S.SPLIT).join(eval_users, S.USER_ID)
         .repartition(2).write.mode("overwrite").partitionBy(S.SPLIT).parquet(layout.table("eval_users")))
        sequences.scoring_histories(seqs, pre.max_hist_len).write.mode("overwrite") \
            .parquet(layout.table("histories"))

    split_counts = {row[S.SPLIT]: row["count"] for row in seqs.groupBy(S.SPLIT).count().collect()}
    num_items = items.agg(F.max(S.ITEM_IDX)).first()[0] + 1
    train_layout = petastorm_io.parquet_layout(layout.table("train_examples"))
    meta = {"run_id": run_id, "dt": dt, "num_items": int(num_items), "counts": counts,
            "users_by_split": split_counts, "train_examples": train_layout,
            "max_hist_len": pre.max_hist_len, "config_hash": cfg.config_hash()}
    layout.meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True))
    cfg.save(layout.preprocessed / "config.yaml")
    meta["seconds"] = round(time.time() - started, 2)
    record_stage(layout, run_id, "preprocess", meta)
    logger.info("preprocess: done in %.1fs: %d users %s, %d training examples in %d row groups",
                meta["seconds"], sum(split_counts.values()), split_counts, train_layout["rows"],
                train_layout["row_groups"])
    kept.unpersist()
    seqs.unpersist()
    return meta
