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
from prismrec.evaluation import spark_metrics
from prismrec.layout import Layout, record_stage
from prismrec.scoring import udf
from prismrec.scoring.recommend import category_diversity, item_category_codes, recommend
from prismrec.scoring.stage import model_dir, task_threads
from prismrec.spark import job_group

logger = logging.getLogger(__name__)
SYSTEMS = ("model", "popularity")


SYSTEM = "system"


def rankings_fn(directory: str, ks: list[int], batch_users: int, threads: int,
                diversity: float = 0.0, interest_prior: float = 0.0) -> Callable:
    """mapInPandas function: evaluation users → one row per (user, system) with its ranked list."""
    top_n = max(ks)

    def rank(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model = udf.load_once(directory, threads)
        num_items = model.item_embeddings.shape[0]
        categories = item_category_codes(model)
        for frame in frames:
            for start in range(0, len(frame), batch_users):
                batch = frame.iloc[start:start + batch_users]
                hist = np.stack(batch[S.HIST_ITEMS].to_numpy()).astype(np.int32)
                seen = [np.asarray(s, dtype=np.int64) for s in batch[S.SEEN_ITEMS]]
                _, items, scores, _ = recommend(model, hist, seen, top_n, diversity, interest_prior)
                ranked = {"model": np.where(np.isfinite(scores), items, -1),
                          "popularity": popularity_top_n(seen, num_items, top_n)}
                for system, system_ranked in ranked.items():
                    yield pd.DataFrame({
                        S.USER_ID: batch[S.USER_ID].to_numpy(), SYSTEM: system,
                        spark_metrics.RANKED: list(system_ranked.astype(np.int32)),
                        S.TARGET_ITEMS: batch[S.TARGET_ITEMS].to_numpy(),
                        **{f"category_diversity@{k}": category_diversity(system_ranked, categories, k) for k in ks},
                    })

    return rank


def run(spark: SparkSession, cfg: Config) -> dict:
    started = time.time()
    layout = Layout.of(cfg)
    meta = layout.read_meta()
    directory = model_dir(cfg, layout)
    ks = sorted(cfg.evaluate.ks)
    udf.load_once(directory, 1)
    users = (spark.read.parquet(layout.table("eval_users"))
             .where((F.col(S.SPLIT) == cfg.evaluate.split) & (F.size(S.TARGET_ITEMS) > 0)))
    diversity_columns = tuple(f"category_diversity@{k}" for k in ks)
    out_schema = T.StructType([T.StructField(S.USER_ID, T.StringType()), T.StructField(SYSTEM, T.StringType()),
                               T.StructField(spark_metrics.RANKED, T.ArrayType(T.IntegerType())),
                               T.StructField(S.TARGET_ITEMS, T.ArrayType(T.IntegerType()))]
                              + [T.StructField(c, T.DoubleType()) for c in diversity_columns])
    rankings = users.mapInPandas(rankings_fn(directory, ks, cfg.score.batch_users, task_threads(spark),
                                             cfg.score.diversity, cfg.score.interest_prior), schema=out_schema)
    with job_group(spark, "evaluate", f"metrics on {cfg.evaluate.split} users"):
        metrics = spark_metrics.averages(rankings, ks, by=SYSTEM, extra=diversity_columns)
    users_count = metrics["model"].pop("users")
    metrics["popularity"].pop("users")
    metrics = {system: metrics[system] for system in SYSTEMS}
    result = {"run_id": meta["run_id"], "dt": meta["dt"], "protocol": meta.get("protocol", "users"),
              "split": cfg.evaluate.split, "diversity_lambda": cfg.score.diversity,
              "users": users_count, "ks": ks, "model_dir": directory, "metrics": metrics,
              "seconds": round(time.time() - started, 2)}
    paths = report_io.write(result, layout.reports / meta["run_id"])
    cfg.save(layout.reports / meta["run_id"] / "config.yaml")
    result["report"] = {name: str(path) for name, path in paths.items()}
    record_stage(layout, meta["run_id"], "evaluate", result)
    logger.info("evaluate: %d %s users; model recall@%d %.4f vs popularity %.4f", result["users"],
                cfg.evaluate.split, ks[-1], metrics["model"][f"recall@{ks[-1]}"],
                metrics["popularity"][f"recall@{ks[-1]}"])
    return result
