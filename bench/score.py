"""Full-population scoring: exact and approximate (ann) retrieval against Spark ALS, an
in-process TensorFlow ceiling and the machine's measured matmul peak.

Shapes: K = 4 interests, d = 64, N = 100, L = 50; M = --items (100,000 and 1,000,000). Each M
gets a model artifact whose item table is synthetic (weights of the encoder random:
throughput does not depend on training) and random histories over its items:

- ``--table clustered`` (default): items in M/1,000 categories, each item its category's
  centre plus noise (``--spread``: the noise's standard deviation against the centres'; 1.0 =
  half of the variance between categories). Trained catalogues put similar items near each
  other; how much, only a real catalogue says, so ``prismrec score`` reports the index's recall
  on every run's own model (``score.ann_recall_users``).
- ``--table gaussian``: every item drawn alone from N(0, I): no structure, the hardest case
  for an index.

and random histories (L = 50): ``--histories interests`` (default) gives each user 1..4 of the
categories, as the synthetic logs plant 1..4 interests per user with 5 % noise, so interest
vectors point at regions of the catalogue; ``--histories uniform`` draws every item from the
whole catalogue, so an interest vector of the random encoder mixes items from everywhere.

Measured, all through Spark local[2] (read histories, interests, retrieval + merge, Parquet
out), after a warm-up per model and mode, medians of --repeats:

- exact at the smallest M on each --users count (peak RSS per Python worker at each, to show
  it does not grow with U), against ALS (MLlib ``recommendForAllUsers(100)``, rank 64, same M)
  and the ceiling (TF matmul + ``top_k`` in one process on --ceiling-users users), with GFLOP/s
  (2·K·M·d per user) next to the peak of a large float32 matmul loop on all cores;
- at the largest M: the index built once (seconds), ann with each of --probes on the first
  --exact-sample users, ann on each --users count with the configured probes
  (``score.ann_probes``), then exact on the sample: users/s, peak RSS per worker, and Recall@100
  against exact (the share of each user's exact top-100 that ann's list holds, averaged).

The last line is one JSON object with the headline figures.

    .venv/bin/python bench/score.py [--items 100000 1000000] [--users 50000 200000] [--exact-sample 5000]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil

K, DIM, TOP_N, LENGTH = 4, 64, 100, 50
ITEMS_PER_CATEGORY = 1_000
MAX_INTERESTS, NOISE_FRACTION = 4, 0.05


def item_table(items: int, kind: str, spread: float, seed: int = 11) -> np.ndarray:
    """float32 [items + 1, d] (row 0 padding), scaled like a trained table (norms near 1)."""
    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        table = rng.normal(size=(items + 1, DIM))
    else:
        centres = rng.normal(size=(max(1, items // ITEMS_PER_CATEGORY), DIM))
        table = centres[np.arange(items + 1) % len(centres)] + spread * rng.normal(size=(items + 1, DIM))
    return (table / np.sqrt(DIM * (1 + spread ** 2 if kind == "clustered" else 1))).astype(np.float32)


def export_model(work: Path, items: int, kind: str, spread: float) -> Path:
    """A self_attentive artifact with K, d, L above whose item embeddings are ``item_table``."""
    from prismrec.config import load_config
    from prismrec.models import build_model
    from prismrec.training import artifact

    target = work / f"model-{kind}-{items}"
    if (target / "manifest.json").is_file():
        return target
    cfg = load_config(None, [f"model.num_interests={K}", f"model.embedding_dim={DIM}",
                             f"preprocess.max_hist_len={LENGTH}", "model.encoder=self_attentive"])
    frame = pd.DataFrame({"item_idx": np.arange(1, items + 1, dtype=np.int32),
                          "item_id": [f"i{i}" for i in range(1, items + 1)],
                          "category_id": [f"c{i % max(1, items // ITEMS_PER_CATEGORY)}" for i in range(1, items + 1)],
                          "count": np.arange(items, 0, -1, dtype=np.int64)})
    frame.to_parquet(work / f"items-{items}.parquet")
    model = build_model(cfg.model, items + 1, LENGTH, np.ones(items + 1, dtype=int), np.ones(items + 1))
    model.item_embedding.embeddings.assign(item_table(items, kind, spread))
    model.encode(np.zeros((1, LENGTH), dtype=np.int32))
    spec = {"model_dir": str(target), "items_path": str(work / f"items-{items}.parquet"),
            "config": cfg.to_dict(), "config_hash": cfg.config_hash()}
    return artifact.export(model, spec, metrics={})


def write_histories(work: Path, items: int, users: int, kind: str, seed: int = 5) -> Path:
    """``users`` histories of L items (seen = their distinct items), in 16 Parquet files.

    ``interests``: like the synthetic logs' defaults (``synthetic.max_interests`` 4,
    ``noise_fraction`` 0.05), each user holds 1..4 categories and draws 95 % of the history from
    them, the rest anywhere. ``uniform``: every item drawn from the whole catalogue.
    """
    path = work / f"histories-{kind}-{items}-{users}"
    if not path.exists():
        rng = np.random.default_rng(seed)
        hist = rng.integers(1, items + 1, size=(users, LENGTH), dtype=np.int64)
        if kind == "interests":
            categories = max(1, items // ITEMS_PER_CATEGORY)
            held = np.argsort(rng.random((users, categories)), axis=1)[:, :MAX_INTERESTS]
            counts = rng.integers(1, MAX_INTERESTS + 1, size=users)
            pick = held[np.arange(users)[:, None], (rng.random((users, LENGTH)) * counts[:, None]).astype(int)]
            # Item i belongs to category i mod categories (item_table), so these are the category's items.
            within = pick + categories * rng.integers(0, items // categories, size=(users, LENGTH))
            within = np.where(within == 0, categories, within)
            hist = np.where(rng.random((users, LENGTH)) < NOISE_FRACTION, hist, within)
        hist = hist.astype(np.int32)
        frame = pd.DataFrame({"user_id": [f"u{u:07d}" for u in range(users)], "hist_items": list(hist),
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
                    line = " ".join(process.info["cmdline"] or [])
                    if "pyspark.daemon" in line or "pyspark/worker" in line:
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


def score_cfg(mode: str, probes: int | None = None):
    from prismrec.config import load_config

    overrides = [f"score.retrieval={mode}", f"score.top_n={TOP_N}"]
    if probes:
        overrides.append(f"score.ann_probes={probes}")
    return load_config(None, overrides).score


def scored(spark, model_dir: Path, histories: Path, out: Path, batch_users: int, retrieval, repeats: int,
           items: int) -> dict:
    """Score ``histories`` through Spark into ``out``: median seconds of ``repeats``, users/s,
    interest·item scores/s (K·M per user), peak RSS per Python worker (MiB)."""
    from prismrec.scoring import udf
    from prismrec.spark import table_schema

    frame = spark.read.parquet(str(histories))
    users = frame.count()
    recs = frame.mapInPandas(udf.recommendations_fn(str(model_dir), TOP_N, batch_users, 1, None, retrieval),
                             schema=table_schema("recommendations"))
    runs, peak = [], 0
    for _ in range(repeats):
        with WorkerPeaks() as peaks:
            started = time.perf_counter()
            recs.write.mode("overwrite").parquet(str(out))
            runs.append(time.perf_counter() - started)
        peak = max([peak, *peaks.peaks.values()])
    seconds = statistics.median(runs)
    return {"users": users, "seconds": seconds, "runs": [round(r, 1) for r in runs], "users_per_s": users / seconds,
            "scores_per_s": users * K * items / seconds, "worker_peak_mib": peak / 2**20}


def recall_at_100(approximate: Path, exact: Path) -> float:
    """Mean over users of the share of the exact top-100 that the approximate list holds."""
    ann = pd.read_parquet(approximate, columns=["user_id", "item_id"]).groupby("user_id")["item_id"].apply(set)
    truth = pd.read_parquet(exact, columns=["user_id", "item_id"]).groupby("user_id")["item_id"].apply(set)
    return float(np.mean([len(found & ann.get(user, set())) / len(found) for user, found in truth.items()]))


def als_path(spark, users: int, items: int, work: Path) -> dict:
    from pyspark.ml.recommendation import ALS
    from pyspark.sql import functions as F

    rng = np.random.default_rng(9)
    count = max(users * 10, items)  # ten items a user, and every item at least once
    pairs = pd.DataFrame({"user": (np.arange(count) % users).astype(np.int32),
                          "item": rng.integers(0, items, count).astype(np.int32)})
    pairs.loc[: items - 1, "item"] = np.arange(items, dtype=np.int32)  # every item appears, so M is the full catalogue
    ratings = spark.createDataFrame(pairs).withColumn("rating", F.lit(1.0)).repartition(4)
    model = ALS(rank=DIM, maxIter=1, implicitPrefs=True, userCol="user", itemCol="item",
                ratingCol="rating", seed=1).fit(ratings)
    started = time.perf_counter()
    model.recommendForAllUsers(TOP_N).write.mode("overwrite").parquet(str(work / "als-recs"))
    seconds = time.perf_counter() - started
    return {"users": users, "seconds": seconds, "scores_per_s": users * items / seconds}


def ceiling(users: int, items: int, block: int = 256) -> dict:
    """TF matmul + ``top_k`` over [block, K, M] in one process (TensorFlow's default threads)."""
    import tensorflow as tf

    rng = np.random.default_rng(3)
    table = tf.constant(rng.normal(size=(items, DIM)).astype(np.float32))
    vectors = rng.normal(size=(block, K, DIM)).astype(np.float32)
    tf.math.top_k(tf.einsum("bkd,md->bkm", vectors, table), TOP_N)  # warm-up
    started = time.perf_counter()
    for _ in range(users // block):
        tf.math.top_k(tf.einsum("bkd,md->bkm", vectors, table), TOP_N).indices.numpy()
    seconds = time.perf_counter() - started
    done = (users // block) * block
    return {"users": done, "seconds": seconds, "scores_per_s": done * K * items / seconds}


def matmul_peak(size: int = 4096, repeats: int = 5) -> float:
    """GFLOP/s of a float32 [size, size] × [size, size] TensorFlow matmul on all cores, median."""
    import tensorflow as tf

    rng = np.random.default_rng(4)
    a = tf.constant(rng.normal(size=(size, size)).astype(np.float32))
    b = tf.constant(rng.normal(size=(size, size)).astype(np.float32))
    tf.matmul(a, b).numpy()  # warm-up
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        tf.matmul(a, b).numpy()
        runs.append(time.perf_counter() - started)
    return 2 * size ** 3 / statistics.median(runs) / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--users", type=int, nargs="+", default=[50_000, 200_000])
    parser.add_argument("--exact-sample", type=int, default=5_000, help="users scored exactly at the largest M")
    parser.add_argument("--probes", type=int, nargs="*", default=[8, 16, 32, 64],
                        help="score.ann_probes values tried on the exact sample (the configured one is always tried)")
    parser.add_argument("--als-users", type=int, default=50_000)
    parser.add_argument("--ceiling-users", type=int, default=20_000)
    parser.add_argument("--batch-users", type=int, default=None, help="default: score.batch_users")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--table", choices=("clustered", "gaussian"), default="clustered")
    parser.add_argument("--spread", type=float, default=1.0)
    parser.add_argument("--histories", choices=("interests", "uniform"), default="interests")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "prismrec-bench-score"))
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from prismrec.config import load_config
    from prismrec.ranking.retrieval import Retrieval
    from prismrec.scoring import udf
    from prismrec.spark import get_session

    batch = args.batch_users or score_cfg("exact").batch_users
    small, large = min(args.items), max(args.items)
    users = sorted(args.users)
    spark = get_session(load_config(None, ["spark.driver_memory=6g", "spark.shuffle_partitions=4"]))
    warm = write_histories(work, small, 2_000, args.histories)
    results: dict = {}

    # Exact at the smallest M, on every user count; ALS and the ceiling on the same M.
    model = export_model(work, small, args.table, args.spread)
    exact = Retrieval.of(score_cfg("exact"), small)
    scored(spark, model, warm, work / "warm", batch, exact, 1, small)
    results["exact_small"] = {u: scored(spark, model, write_histories(work, small, u, args.histories),
                                        work / f"exact-{small}-{u}", batch, exact, args.repeats, small)
                              for u in users}
    als = als_path(spark, args.als_users, small, work)

    # The largest M: index, exact on a sample, ann at each probes value on the same sample, then ann at scale.
    model = export_model(work, large, args.table, args.spread)
    configured = score_cfg("ann")
    built = not (model / Retrieval.of(configured, large).index_name).is_file()
    started = time.perf_counter()
    ann = udf.prepare(str(model), configured)
    index_seconds = time.perf_counter() - started
    # ann first, so that its workers' peak RSS does not include the exact search's copy of the table.
    sample = write_histories(work, large, args.exact_sample, args.histories)
    sweep = {}
    for probes in sorted({*args.probes, configured.ann_probes}):
        retrieval = Retrieval(ann.mode, ann.lists, probes)
        scored(spark, model, write_histories(work, large, 2_000, args.histories), work / "warm", batch, retrieval,
               1, large)
        sweep[probes] = scored(spark, model, sample, work / f"ann-{large}-{probes}", batch, retrieval,
                               args.repeats, large)
    ann_runs = {u: scored(spark, model, write_histories(work, large, u, args.histories), work / f"ann-{large}-{u}",
                          batch, ann, args.repeats, large) for u in users}
    exact_retrieval = Retrieval.of(score_cfg("exact"), large)
    scored(spark, model, write_histories(work, large, 2_000, args.histories), work / "warm", batch, exact_retrieval,
           1, large)
    exact_large = scored(spark, model, sample, work / f"exact-{large}", batch, exact_retrieval, args.repeats, large)
    for probes, result in sweep.items():
        result["recall_at_100"] = recall_at_100(work / f"ann-{large}-{probes}", work / f"exact-{large}")
    spark.stop()
    top = ceiling(args.ceiling_users, small)
    peak = matmul_peak()

    headline = results["exact_small"][max(users)]
    flops_per_user = 2 * K * small * DIM
    gflops = headline["users_per_s"] * flops_per_user / 1e9
    chosen = sweep[configured.ann_probes]
    print(f"shapes: K={K} d={DIM} N={TOP_N} L={LENGTH}; Spark local[2]; batch_users={batch}; "
          f"{args.table} item tables" + (f" (spread {args.spread})" if args.table == "clustered" else "")
          + f"; {args.histories} histories")
    print(f"matmul peak (TF float32 4096², all cores): {peak:.1f} GFLOP/s")
    for count, result in results["exact_small"].items():
        print(f"exact   M={small:>9,} U={count:>7,}: {result['seconds']:7.1f} s, {result['users_per_s']:8.1f} users/s, "
              f"{result['scores_per_s'] / 1e6:7.1f} M scores/s, {result['users_per_s'] * flops_per_user / 1e9:6.1f} "
              f"GFLOP/s, peak RSS per worker {result['worker_peak_mib']:6.0f} MiB")
    print(f"ALS     M={small:>9,} U={als['users']:>7,}: {als['seconds']:7.1f} s, "
          f"{als['scores_per_s'] / 1e6:7.1f} M user·item scores/s")
    print(f"ceiling M={small:>9,} U={top['users']:>7,}: {top['seconds']:7.1f} s, "
          f"{top['scores_per_s'] / 1e6:7.1f} M scores/s (TF matmul + top_k, one process)")
    print(f"index   M={large:>9,}: IVF, {ann.lists} lists, " + (f"built in {index_seconds:.1f} s (once per model)"
                                                                   if built else "already in the artifact"))
    print(f"exact   M={large:>9,} U={exact_large['users']:>7,}: {exact_large['seconds']:7.1f} s, "
          f"{exact_large['users_per_s']:8.1f} users/s, peak RSS per worker {exact_large['worker_peak_mib']:6.0f} MiB")
    for probes, result in sweep.items():
        print(f"ann     M={large:>9,} U={result['users']:>7,} probes={probes:>3}: {result['seconds']:7.1f} s, "
              f"{result['users_per_s']:8.1f} users/s, Recall@100 against exact {result['recall_at_100']:.4f}, "
              f"{result['users_per_s'] / exact_large['users_per_s']:.1f}x exact")
    for count, result in ann_runs.items():
        print(f"ann     M={large:>9,} U={count:>7,} probes={ann.probes:>3}: {result['seconds']:7.1f} s, "
              f"{result['users_per_s']:8.1f} users/s, peak RSS per worker {result['worker_peak_mib']:6.0f} MiB")
    summary = {
        "ann_recall_at_100": round(chosen["recall_at_100"], 4),
        "ann_over_exact_users_per_s": round(ann_runs[min(users)]["users_per_s"] / exact_large["users_per_s"], 2),
        "exact_over_ceiling": round(headline["scores_per_s"] / top["scores_per_s"], 3),
        "prismrec_over_als": round(headline["scores_per_s"] / als["scores_per_s"], 2),
        "exact_gflops": round(gflops, 1), "matmul_peak_gflops": round(peak, 1),
        "ann_probes": ann.probes, "ann_lists": ann.lists, "index_seconds": round(index_seconds, 1) if built else None,
        "worker_peak_mib": {"exact": {u: round(r["worker_peak_mib"]) for u, r in results["exact_small"].items()},
                            "ann": {u: round(r["worker_peak_mib"]) for u, r in ann_runs.items()}},
        "recall_by_probes": {p: round(r["recall_at_100"], 4) for p, r in sweep.items()},
        "ann_users_per_s_by_probes": {p: round(r["users_per_s"], 1) for p, r in sweep.items()},
        "exact_users_per_s": {"small": round(headline["users_per_s"], 1),
                              "large": round(exact_large["users_per_s"], 1)},
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
