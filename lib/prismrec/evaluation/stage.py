"""The evaluate stage: the model and baselines on held-out users, metrics aggregated in Spark."""
from __future__ import annotations

import logging
import time
from typing import Callable, Iterator

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from prismrec import schema as S
from prismrec.config import Config
from prismrec.evaluation import report as report_io
from prismrec.evaluation.baselines import popularity_top_n
from prismrec.evaluation.metrics import batch_metrics
from prismrec.layout import Layout, record_stage
from prismrec.scoring import udf
from prismrec.scoring.recommend import category_diversity, item_category_codes, recommend
from prismrec.scoring.stage import model_dir, task_threads
from prismrec.spark import job_group

logger = logging.getLogger(__name__)
SYSTEMS = ("model", "popularity")


def metric_columns(ks: list[int]) -> list[str]:
    return [f"{system}__{metric}_at_{k}" for system in SYSTEMS
            for metric in ("recall", "ndcg", "hit_rate", "category_diversity") for k in ks]


def per_user_metrics_fn(directory: str, ks: list[int], batch_users: int, threads: int,
                        diversity: float = 0.0) -> Callable:
    """mapInPandas function: evaluation users → one row of metrics per user."""
    top_n = max(ks)

    def evaluate(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model = udf.load_once(directory, threads)
        num_items = model.item_embeddings.shape[0]
        categories = item_category_codes(model)
        for frame in frames:
            for start in range(0, len(frame), batch_users):
                batch = frame.iloc[start:start + batch_users]
                hist = np.stack(batch[S.HIST_ITEMS].to_numpy()).astype(np.int32)
                seen = [np.asarray(s, dtype=np.int64) for s in batch[S.SEEN_ITEMS]]
                targets = [np.asarray(t, dtype=np.int64) for t in batch[S.TARGET_ITEMS]]
                _, items, scores, _ = recommend(model, hist, seen, top_n, diversity)
                ranked = {"model": np.where(np.isfinite(scores), items, -1),
                          "popularity": popularity_top_n(seen, num_items, top_n)}
                out = {S.USER_ID: batch[S.USER_ID].to_numpy()}
                for system, system_ranked in ranked.items():
                    for name, values in batch_metrics(system_ranked, targets, ks).items():
                        metric, k = name.split("@")
                        out[f"{system}__{metric}_at_{k}"] = values
                    for k in ks:
                        out[f"{system}__category_diversity_at_{k}"] = category_diversity(
                            system_ranked, categories, k)
                yield pd.DataFrame(out)

    return evaluate


def run(spark: SparkSession, cfg: Config) -> dict:
    started = time.time()
    layout = Layout.of(cfg)
    meta = layout.read_meta()
    directory = model_dir(cfg, layout)
    ks = sorted(cfg.evaluate.ks)
    udf.load_once(directory, 1)
    users = (spark.read.parquet(layout.table("eval_users"))
             .where((F.col(S.SPLIT) == cfg.evaluate.split) & (F.size(S.TARGET_ITEMS) > 0)))
    columns = metric_columns(ks)
    out_schema = T.StructType([T.StructField(S.USER_ID, T.StringType())]
                              + [T.StructField(c, T.DoubleType()) for c in columns])
    per_user = users.mapInPandas(per_user_metrics_fn(directory, ks, cfg.score.batch_users,
                                                     task_threads(spark), cfg.score.diversity), schema=out_schema)
    with job_group(spark, "evaluate", f"metrics on {cfg.evaluate.split} users"):
        row = per_user.agg(F.count(F.lit(1)).alias("users"), *[F.avg(c).alias(c) for c in columns]).first()
    metrics: dict[str, dict[str, float]] = {system: {} for system in SYSTEMS}
    for column in columns:
        system, name = column.split("__")
        metrics[system][name.replace("_at_", "@")] = float(row[column])
    result = {"run_id": meta["run_id"], "dt": meta["dt"], "protocol": meta.get("protocol", "users"),
              "split": cfg.evaluate.split, "diversity_lambda": cfg.score.diversity,
              "users": int(row["users"]), "ks": ks, "model_dir": directory, "metrics": metrics,
              "seconds": round(time.time() - started, 2)}
    paths = report_io.write(result, layout.reports / meta["run_id"])
    cfg.save(layout.reports / meta["run_id"] / "config.yaml")
    result["report"] = {name: str(path) for name, path in paths.items()}
    record_stage(layout, meta["run_id"], "evaluate", result)
    logger.info("evaluate: %d %s users; model recall@%d %.4f vs popularity %.4f", result["users"],
                cfg.evaluate.split, ks[-1], metrics["model"][f"recall@{ks[-1]}"],
                metrics["popularity"][f"recall@{ks[-1]}"])
    return result
