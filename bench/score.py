"""Full-population scoring throughput against Spark ALS and an in-process ceiling.

Shapes (defaults from the product's target): U users, M = 100,000 items, K = 4,
d = 64, N = 100. A model artifact with those shapes is exported (weights are
random: throughput does not depend on training) with random histories (L = 50).

- prismrec: end to end through Spark local[2]: read histories, compute interests,
  exact top-N per interest + merge, write Parquet. Interest·item scores/s = U·K·M / s.
  Peak RSS of each Python worker is sampled, at two user counts, to show it does not
  grow with U.
- ALS: Spark MLlib ALS (rank 64, implicit) ``recommendForAllUsers(100)``, written to
  Parquet, on --als-users users and the same M: scores/s = users·M / s.
- ceiling: TensorFlow matmul + ``top_k`` in one process, no Spark, same K, d, M, N,
  on --ceiling-users users: scores/s = users·K·M / s.

    .venv/bin/python bench/score.py [--users 50000 200000] [--als-users 50000] [--ceiling-users 20000]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

ITEMS, K, DIM, TOP_N, LENGTH = 100_000, 4, 64, 100, 50


def export_model(work: Path) -> Path:
    from prismrec.config import load_config
    from prismrec.models import build_model
    from prismrec.training import artifact

    cfg = load_config(None, [f"model.num_interests={K}", f"model.embedding_dim={DIM}",
                             f"preprocess.max_hist_len={LENGTH}"])
    items = pd.DataFrame({"item_idx": np.arange(1, ITEMS + 1, dtype=np.int32),
                          "item_id": [f"i{i}" for i in range(1, ITEMS + 1)],
                          "category_id": [f"c{i % 500}" for i in range(1, ITEMS + 1)],
                          "count": np.arange(ITEMS, 0, -1, dtype=np.int64)})
    items.to_parquet(work / "items.parquet")
    model = build_model(cfg.model, ITEMS + 1, LENGTH, np.ones(ITEMS + 1, dtype=int), np.ones(ITEMS + 1))
    model.encode(np.zeros((1, LENGTH), dtype=np.int32))
    spec = {"model_dir": str(work / "model"), "items_path": str(work / "items.parquet"),
            "config": cfg.to_dict(), "config_hash": cfg.config_hash()}
    return artifact.export(model, spec, metrics={})


def write_histories(work: Path, users: int, seed: int = 5) -> Path:
    path = work / f"histories-{users}"
    if not path.exists():
        rng = np.random.default_rng(seed)
        hist = rng.integers(1, ITEMS + 1, size=(users, LENGTH), dtype=np.int32)
        frame = pd.DataFrame({"user_id": [f"u{u}" for u in range(users)], "hist_items": list(hist),
                              "hist_len": np.full(users, LENGTH, dtype=np.int32),
                              "seen_items": [np.unique(h) for h in hist]})
        path.mkdir()
        for part, chunk in enumerate(np.array_split(np.arange(users), 16)):
            frame.iloc[chunk].to_parquet(path / f"part-{part:03d}.parquet")
    return path


class WorkerPeaks:
    """Samples the RSS of every PySpark Python worker while a Spark job runs."""

    def __init__(self):
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            for process in psutil.process_iter(["cmdline"]):
                try:
                    if "pyspark.daemon" in " ".join(process.info["cmdline"] or []) or \
                            "pyspark/worker" in " ".join(process.info["cmdline"] or []):
                        self.peaks[process.pid] = max(self.peaks.get(process.pid, 0), process.memory_info().rss)
                except psutil.Error:
                    continue
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def prismrec_path(spark, model_dir: Path, histories: Path, work: Path, batch_users: int) -> dict:
    from prismrec.scoring import udf
    from prismrec.spark import table_schema

    out = work / f"recs-{histories.name}"
    frame = spark.read.parquet(str(histories))
    recs = frame.mapInPandas(udf.recommendations_fn(str(model_dir), TOP_N, batch_users, 1),
                             schema=table_schema("recommendations"))
    with WorkerPeaks() as peaks:
        started = time.perf_counter()
        recs.write.mode("overwrite").parquet(str(out))
        seconds = time.perf_counter() - started
    users = frame.count()
    worker_peak = max(peaks.peaks.values()) / 2**20 if peaks.peaks else float("nan")
    return {"users": users, "seconds": seconds, "scores_per_s": users * K * ITEMS / seconds,
            "worker_peak_mib": worker_peak}


def als_path(spark, users: int, work: Path) -> dict:
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import functions as F

    rng = np.random.default_rng(9)
    pairs = pd.DataFrame({"user": np.repeat(np.arange(users), 10).astype(np.int32),
                          "item": rng.integers(0, ITEMS, users * 10).astype(np.int32)})
    pairs.loc[: ITEMS - 1, "item"] = np.arange(ITEMS, dtype=np.int32)  # every item appears, so M is the full catalogue
    ratings = spark.createDataFrame(pairs).withColumn("rating", F.lit(1.0)).repartition(4)
    model = ALS(rank=DIM, maxIter=1, implicitPrefs=True, userCol="user", itemCol="item",
                ratingCol="rating", seed=1).fit(ratings)
    started = time.perf_counter()
    model.recommendForAllUsers(TOP_N).write.mode("overwrite").parquet(str(work / "als-recs"))
    seconds = time.perf_counter() - started
    return {"users": users, "seconds": seconds, "scores_per_s": users * ITEMS / seconds}


def ceiling(users: int, block: int = 256) -> dict:
    import tensorflow as tf

    rng = np.random.default_rng(3)
    table = tf.constant(rng.normal(size=(ITEMS, DIM)).astype(np.float32))
    vectors = rng.normal(size=(block, K, DIM)).astype(np.float32)
    tf.math.top_k(tf.einsum("bkd,md->bkm", vectors, table), TOP_N)  # warm-up
    started = time.perf_counter()
    for _ in range(users // block):
        tf.math.top_k(tf.einsum("bkd,md->bkm", vectors, table), TOP_N).indices.numpy()
    seconds = time.perf_counter() - started
    done = (users // block) * block
    return {"users": done, "seconds": seconds, "scores_per_s": done * K * ITEMS / seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument("--als-users", type=int, default=50_000)
    parser.add_argument("--ceiling-users", type=int, default=20_000)
    parser.add_argument("--batch-users", type=int, default=128)
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "prismrec-bench-score"))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from prismrec.config import load_config
    from prismrec.spark import get_session

    model_dir = export_model(work)
    spark = get_session(load_config(None, ["spark.driver_memory=6g", "spark.shuffle_partitions=4"]))
    prismrec_path(spark, model_dir, write_histories(work, 5_000), work, args.batch_users)  # warm-up
    ours = {u: prismrec_path(spark, model_dir, write_histories(work, u), work, args.batch_users)
            for u in sorted(args.users)}
    als = als_path(spark, args.als_users, work)
    spark.stop()
    top = ceiling(args.ceiling_users)
    largest = ours[max(ours)]
    print(f"shapes: M={ITEMS:,} K={K} d={DIM} N={TOP_N}; Spark local[2]; batch_users={args.batch_users}")
    for users, result in ours.items():
        print(f"prismrec  U={users:>7,}: {result['seconds']:7.1f} s, {result['scores_per_s'] / 1e6:7.1f} M interest·item "
              f"scores/s, peak RSS per Python worker {result['worker_peak_mib']:6.0f} MiB")
    print(f"ALS       U={als['users']:>7,}: {als['seconds']:7.1f} s, {als['scores_per_s'] / 1e6:7.1f} M user·item scores/s")
    print(f"ceiling   U={top['users']:>7,}: {top['seconds']:7.1f} s, {top['scores_per_s'] / 1e6:7.1f} M scores/s "
          f"(TF matmul + top_k, one process)")
    print(f"prismrec / ALS     = {largest['scores_per_s'] / als['scores_per_s']:.2f}x   (target >= 5)")
    print(f"prismrec / ceiling = {largest['scores_per_s'] / top['scores_per_s']:.2f}    (target >= 0.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
