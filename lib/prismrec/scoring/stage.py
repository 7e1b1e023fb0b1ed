"""The score stage: every user's top-N recommendations and interests, validated, then published."""
from __future__ import annotations

import logging
import time

from pyspark.sql import SparkSession

from prismrec.config import Config
from prismrec.layout import Layout, record_stage
from prismrec.ranking.recommend import Ranking
from prismrec.ranking.retrieval import ANN, Retrieval
from prismrec.ranking.users import recall_against_exact
from prismrec.reports import ScoreReport
from prismrec.scoring import publish, udf
from prismrec.spark import job_group, table_schema

logger = logging.getLogger(__name__)
ANN_RECALL_WARNING = 0.95


def model_dir(cfg: Config, layout: Layout) -> str:
    """``score.model_id`` if set, else the model the last train stage wrote (models/LATEST)."""
    model_id = cfg.score.model_id
    if not model_id:
        latest = layout.latest_model
        if not latest.is_file():
            raise FileNotFoundError(f"no trained model under {latest.parent}; run `prismrec train` first "
                                    f"or set --set score.model_id=<id>")
        model_id = latest.read_text().strip()
    return str(layout.model_dir(model_id))


def task_threads(spark: SparkSession) -> int:
    return int(spark.conf.get("spark.task.cpus", "1"))


def ann_check(histories, directory: str, cfg: Config, ranking: Ranking, retrieval: Retrieval) -> dict:
    """The retrieval's entries in the run report. With approximate retrieval, the first
    ``score.ann_recall_users`` users are ranked both ways on the driver: ``ann_recall`` is the
    share of each one's exact top-N that the index's own list holds, averaged (Recall@N against
    exact, before the exact re-ranking of users the index leaves short, whose share is
    ``ann_reranked_share``); a warning below 0.95 names the key that raises it."""
    if retrieval.mode != ANN:
        return {"retrieval": retrieval.mode}
    entries = {"retrieval": retrieval.mode, "ann_lists": retrieval.lists, "ann_probes": retrieval.probes}
    wanted = cfg.score.ann_recall_users
    if not wanted:
        return entries
    sample = histories.limit(wanted).toPandas()
    model = udf.load_once(directory, 1)
    recall, users, reranked = recall_against_exact(model, sample, cfg.score.top_n, ranking,
                                                   udf.search_once(directory, 1, retrieval), cfg.score.batch_users)
    if recall < ANN_RECALL_WARNING:
        logger.warning("score: the index found %.3f of the exact top-%d of %d users (Recall@%d against exact)%s; "
                       "raise score.ann_probes (now %d of %d lists) for more, or set score.retrieval=exact",
                       recall, cfg.score.top_n, users, cfg.score.top_n,
                       f", and left {reranked:.0%} of them short, ranked again exactly" if reranked else "",
                       retrieval.probes, retrieval.lists)
    return {**entries, "ann_recall": round(recall, 4), "ann_recall_users": users,
            "ann_reranked_share": round(reranked, 4)}


def run(spark: SparkSession, cfg: Config) -> ScoreReport:
    """Reads the preprocessed histories and items and the model (``score.model_id`` or models/LATEST);
    writes ``recommendations`` and ``user_interests`` to a staging folder, checks them, then publishes
    them as the ``dt`` partitions of ``<paths.output>/recommendations`` and ``user_interests``.
    Raises PublishError (exit 4) when the staged output fails its checks."""
    started = time.time()
    layout = Layout.of(cfg)
    meta = layout.read_meta()
    dt, run_id = meta["dt"], meta["run_id"]
    directory = model_dir(cfg, layout)
    # Verifies the artifact and builds the index it needs on the driver, before any distributed work.
    retrieval = udf.prepare(directory, cfg.score)
    histories = spark.read.parquet(layout.table("histories"))
    threads, ranking = task_threads(spark), Ranking.of(cfg.score)
    recommendations = histories.mapInPandas(
        udf.recommendations_fn(directory, cfg.score.top_n, cfg.score.batch_users, threads, ranking, retrieval),
        schema=table_schema("recommendations"))
    interests = histories.mapInPandas(udf.interests_fn(directory, cfg.score.batch_users, threads),
                                      schema=table_schema("user_interests"))
    staging = layout.root / "_staging" / run_id
    staged = {"recommendations": str(staging / "recommendations"),
              "user_interests": str(staging / "user_interests")}
    with job_group(spark, "score", f"score {meta['users_by_split']} users"):
        recommendations.write.mode("overwrite").parquet(staged["recommendations"])
        interests.write.mode("overwrite").parquet(staged["user_interests"])
    with job_group(spark, "score", "validate staged recommendations"):
        problems = publish.recommendation_problems(
            spark.read.parquet(staged["recommendations"]), histories,
            spark.read.parquet(layout.table("items")), cfg.score.top_n,
            score_order=ranking.score_order)
    if problems:
        raise publish.PublishError(f"staged recommendations at {staged['recommendations']} failed "
                                   f"validation ({'; '.join(problems)}); the published dt={dt} is unchanged")
    checked = ann_check(histories, directory, cfg, ranking, retrieval)  # before publishing: it may fail
    for name, path in staged.items():
        publish.swap_in(spark, path, str(layout.output_table(name, dt)))
        # Underscore files are invisible to Spark's Parquet reader.
        cfg.save(layout.output_table(name, dt) / "_prismrec_config.yaml")
    report = {"dt": dt, "model_dir": directory, "users": histories.count(), **checked,
              "recommendations": str(layout.output_table("recommendations", dt)),
              "user_interests": str(layout.output_table("user_interests", dt)),
              "seconds": round(time.time() - started, 2)}
    record_stage(layout, run_id, "score", report)
    scored = ScoreReport.of(report)
    logger.info("score: %s", scored.summary())
    return scored
