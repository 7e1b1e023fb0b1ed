"""The evaluate stage: every compared system on the same users, metrics in Spark, then the report.

The ranked lists of all systems (``evaluate.compare``) are one DataFrame, persisted,
from which three small aggregates are collected: the ranking and interest metrics per
system, coverage and novelty per system, and the distinctness histogram. The driver
only ever holds the item table and a handful of example users.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from functools import reduce
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from prismrec import schema as S
from prismrec import tracking
from prismrec.config import Config
from prismrec.errors import InputError
from prismrec.evaluation import als, itemknn, report as report_io, spark_metrics, systems, truth as truth_io
from prismrec.evaluation.interactions import training_interactions
from prismrec.evaluation.showcase import showcase
from prismrec.layout import Layout, record_stage
from prismrec.ranking.metrics import self_information
from prismrec.ranking.recommend import Ranking, category_codes
from prismrec.reports import EvaluateReport
from prismrec.scoring import udf
from prismrec.scoring.stage import model_dir, task_threads
from prismrec.spark import job_group

logger = logging.getLogger(__name__)
DISTINCTNESS_BINS = 40  # over cosine [-1, 1]


def curve_ks(ks: list[int]) -> list[int]:
    """The cut-offs of the Recall/NDCG-vs-K curves: a few small ones and every configured one."""
    return sorted({k for k in (1, 5, 10, 20) if k < max(ks)} | set(ks))


def item_table(layout: Layout) -> pd.DataFrame:
    """The item vocabulary (small: it is the catalogue, not the users), by item_idx."""
    columns = [S.ITEM_IDX, S.ITEM_ID, S.CATEGORY_ID, S.COUNT]
    return pd.read_parquet(layout.table("items"), columns=columns).sort_values(S.ITEM_IDX).reset_index(drop=True)


def system_rankings(spark: SparkSession, cfg: Config, layout: Layout, users: DataFrame, valid_users: DataFrame,
                    dirs: dict[str, str], num_items: int, item_topic: np.ndarray | None,
                    skip: dict[str, str], retrievals: dict) -> tuple[dict[str, DataFrame], dict]:
    """({system: ``user_id, ranked, …``}, ALS grid report) for every system of ``evaluate.compare``;
    ``retrievals``: each model system's :class:`~prismrec.ranking.retrieval.Retrieval`."""
    settings, top_n, threads = cfg.evaluate, max(cfg.evaluate.ks), task_threads(spark)
    frames, als_report = {}, {}
    interactions = training_interactions(spark.read.parquet(layout.table("train_sequences")))
    for name in settings.compare:
        if name in skip:
            continue
        if name in dirs:
            frames[name] = systems.model_rankings(users, dirs[name], top_n, cfg.score.batch_users, threads,
                                                  Ranking.of(cfg.score), item_topic, retrievals[name])
        elif name == "popularity":
            frames[name] = systems.popularity_rankings(users, num_items, top_n)
        elif name == "als":
            with job_group(spark, "evaluate", "ALS grid on the validation users"):
                frames[name], als_report = als.tuned_rankings(
                    interactions, valid_users, users, num_items, settings.als_ranks, settings.als_reg_params,
                    top_n, top_n, cfg.score.batch_users, cfg.run.seed)
        elif name == "itemknn":
            similarity = itemknn.similarities(interactions, settings.itemknn_neighbours)
            frames[name] = itemknn.rankings(similarity, users, top_n)
    return frames, als_report


def union(frames: dict[str, DataFrame]) -> DataFrame:
    tagged = [frame.withColumn(systems.SYSTEM, F.lit(name)) for name, frame in frames.items()]
    return reduce(lambda left, right: left.unionByName(right, allowMissingColumns=True), tagged)


def distinctness_histogram(rankings: DataFrame) -> dict[str, list[int]]:
    """{system: counts over DISTINCTNESS_BINS equal bins of mean pairwise cosine in [-1, 1]} (one action)."""
    column = F.col("distinctness")
    bins = F.least(F.floor((column + 1.0) / 2.0 * DISTINCTNESS_BINS), F.lit(DISTINCTNESS_BINS - 1))
    rows = (rankings.where(column.isNotNull()).groupBy(systems.SYSTEM, bins.cast("int").alias("bin")).count()
            .collect())
    histogram: dict[str, list[int]] = {}
    for row in rows:
        histogram.setdefault(row[systems.SYSTEM], [0] * DISTINCTNESS_BINS)[row["bin"]] += row["count"]
    return histogram


def split_interest_quality(metrics: dict, has_truth: bool) -> dict:
    """Move the interest columns out of ``metrics`` into {system: {name: value}} (model systems only)."""
    quality = {}
    for system, values in metrics.items():
        columns = {name: values.pop(name, None) for name in systems.INTEREST_COLUMNS}
        if columns["distinctness"] is None and columns["weight_entropy"] is None:
            continue
        for share, (found, planted) in {"recovery_share": ("recovered", "true_interests"),
                                         "evidenced_recovery_share": ("recovered_evidenced",
                                                                      "evidenced_interests")}.items():
            found, planted = columns.pop(found), columns.pop(planted)
            columns[share] = found / planted if has_truth and found is not None and planted else None
        quality[system] = columns
    return quality


def other_protocols(cfg: Config) -> dict[str, dict]:
    """The evaluations of ``evaluate.other_outputs`` (each evaluated before this one), by protocol."""
    results = {}
    for root in cfg.evaluate.other_outputs:
        layout = Layout(Path(root).resolve())
        path = layout.reports / layout.read_meta()["run_id"] / report_io.JSON_NAME
        if not path.is_file():
            raise FileNotFoundError(f"evaluate.other_outputs names {root} but it has no evaluation at {path}; "
                                    f"run `prismrec evaluate --set paths.output={root}` first")
        result = json.loads(path.read_text())
        results[result["protocol"]] = {key: result[key] for key in report_io.SUMMARY_KEYS}
    return results


def track_evaluation(cfg: Config, result: dict) -> None:
    """Add the metrics table (``<split>.<system>.<metric>``), the report and its figures to the MLflow run
    of the evaluated model (the first of ``evaluate.compare``'s models), when there is a model."""
    if not result["model_dir"]:
        return
    tracker = tracking.model_run(cfg, Path(result["model_dir"]).name)
    tracker.log_metrics({f"{result['split']}.{system}.{metric}": value
                         for system, values in result["metrics"].items() for metric, value in values.items()})
    folder = f"evaluation/{result['split']}"
    for path in [*result["report"].values(), *result.get("plots", {}).values()]:
        tracker.log_artifact(path, folder)
    tracker.end()


def run(spark: SparkSession, cfg: Config) -> EvaluateReport:
    """Reads the preprocessed eval_users, items and train_sequences, every model of ``evaluate.compare``
    and the planted truth when there is one; writes ``<paths.output>/reports/<run_id>/evaluation.{json,md}``
    with its figures, and the stage's entry in ``reports/<run_id>.json``; adds them to the model's MLflow
    run. Raises InputError when there are no evaluation users, FileNotFoundError for a compared model that does not exist."""
    started = time.time()
    layout = Layout.of(cfg)
    meta = layout.read_meta()
    protocol, ks = meta.get("protocol", "users"), sorted(cfg.evaluate.ks)
    if not layout.has_rows("eval_users"):
        keys = {"last": "preprocess.valid_share and test_share", "time": "preprocess.time_holdout_days"}
        raise InputError(f"no evaluation users in {layout.table('eval_users')}: under preprocess.protocol="
                         f"{protocol} no user has a held-out event; raise "
                         f"{keys.get(protocol, 'preprocess.holdout_fraction')} and preprocess again")
    dirs = systems.model_dirs(cfg.evaluate.compare, layout, lambda: model_dir(cfg, layout))
    # Verifies every artifact, and builds the index scoring would use, on the driver before any distributed work.
    retrievals = {name: udf.prepare(directory, cfg.score) for name, directory in dirs.items()}
    items = item_table(layout)
    truth = truth_io.load(cfg, items)
    eval_users = spark.read.parquet(layout.table("eval_users")).where(F.size(S.TARGET_ITEMS) > 0)
    users = eval_users.where(F.col(S.SPLIT) == cfg.evaluate.split)
    if truth is not None:
        users = truth_io.with_true_topics(spark, users, truth)
    users = users.persist(StorageLevel.MEMORY_AND_DISK)  # every system ranks the same users
    skip = {name: reason for name, reason in systems.NEEDS_TRAINING_USERS.items()
            if name in cfg.evaluate.compare and protocol == "users"}
    frames, als_report = system_rankings(spark, cfg, layout, users, eval_users.where(F.col(S.SPLIT) == "valid"),
                                         dirs, meta["num_items"], truth and truth.item_topic, skip, retrievals)
    rankings = systems.with_category_diversity(
        union(frames).join(users.select(S.USER_ID, S.TARGET_ITEMS), S.USER_ID), category_codes(items), ks)
    rankings = rankings.persist(StorageLevel.MEMORY_AND_DISK)
    information = spark.createDataFrame(pd.DataFrame({
        S.ITEM_IDX: items[S.ITEM_IDX].astype("int32"),
        spark_metrics.SELF_INFORMATION: self_information(items[S.COUNT].to_numpy())}))
    extra = tuple(f"category_diversity@{k}" for k in ks) + tuple(
        c for c in systems.INTEREST_COLUMNS if c in rankings.columns)
    with job_group(spark, "evaluate", f"metrics of {len(frames)} systems on {cfg.evaluate.split} users"):
        metrics = spark_metrics.averages(rankings, curve_ks(ks), by=systems.SYSTEM, extra=extra)
        catalogue = spark_metrics.catalogue(rankings, information, ks, len(items), by=systems.SYSTEM)
        histogram = distinctness_histogram(rankings)
    rankings.unpersist()
    users_count = max(values.pop("users") for values in metrics.values())
    metrics = {name: {**metrics[name], **catalogue[name]} for name in cfg.evaluate.compare if name in metrics}
    quality = split_interest_quality(metrics, truth is not None)
    result = {"run_id": meta["run_id"], "dt": meta["dt"], "protocol": protocol, "split": cfg.evaluate.split,
              "diversity_lambda": cfg.score.diversity, "users": users_count, "ks": ks, "curve_ks": curve_ks(ks),
              "systems": list(cfg.evaluate.compare), "model_dirs": dirs, "model_dir": next(iter(dirs.values()), ""),
              "metrics": metrics, "not_applicable": skip, "interest_quality": quality, "als": als_report,
              "retrieval": {name: dataclasses.asdict(r) if r.mode == "ann" else {"mode": r.mode}
                            for name, r in retrievals.items()},
              "distinctness_histogram": {"bins": DISTINCTNESS_BINS, "counts": histogram},
              "output": str(layout.root), "other_protocols": other_protocols(cfg)}
    directory = layout.reports / meta["run_id"]
    result.update(showcase(spark, cfg, layout, users, dirs, items, truth, result, directory))
    users.unpersist()
    result["seconds"] = round(time.time() - started, 2)
    paths = report_io.write(result, directory)
    cfg.save(directory / "config.yaml")
    result["report"] = {name: str(path) for name, path in paths.items()}
    track_evaluation(cfg, result)
    record_stage(layout, meta["run_id"], "evaluate", {k: v for k, v in result.items() if k != "examples"})
    report = EvaluateReport.of(result)
    logger.info("evaluate: %s", report.summary())
    return report
