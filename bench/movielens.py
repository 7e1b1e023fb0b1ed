"""MovieLens-100K, leave-last-out: popularity, Spark ALS, item-kNN, EASE and prismrec's models.

One harness for every system. The data is the MovieLens-100K copy inside the recbole 1.2.1
wheel (fetched with `pip download`, cached under --work), written as a CSV and preprocessed
by prismrec itself under `preprocess.protocol=last`: per user, in time order, the last 10 %
of the ratings are test targets, the 10 % before them validation targets, the rest training
data. Every rating is one implicit positive.

Systems (--systems): `popularity` (training interaction counts); `als` (Spark MLlib ALS,
implicit, a rank × regParam × alpha grid); `itemknn` (cosine item–item, a grid of
neighbour counts); `ease` (Steck 2019, a grid of λ); and prismrec models trained by the
train stage, each into models/bench-<system>: `default` (the --conf file as it is),
`default_k1` (model.num_interests=1) and one per encoder (model.encoder=<name>).
--set overrides apply to every prismrec model. Baselines fit on the training items; every
system ranks the whole catalogue with each user's seen items excluded, is tuned on
validation NDCG@20 and reported on test: Recall@20, NDCG@20 (± standard error over users),
Recall@50, coverage@50, and the paired per-user difference to ALS on the same users.
Prints a markdown table, then one JSON line per system (also written to <work>/results.json).

    .venv/bin/python bench/movielens.py [--work DIR] [--conf conf/base.yaml] [--systems ...]
        [--set key=value ...] [--skip-preprocess]
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from prismrec import schema as S
from prismrec.cli import configure_logging
from prismrec.config import load_config
from prismrec.ranking.metrics import batch_metrics, coverage
from prismrec.models import ENCODERS
from prismrec.evaluation.ease import ease_scores, ease_weights, item_gram

ROOT = Path(__file__).resolve().parents[1]
WHEEL, MOVIELENS = "recbole==1.2.1", "recbole/dataset_example/ml-100k/ml-100k"
TOP_N, SELECT_BY = 50, "ndcg@20"
# Rank varies fastest: a fit's cost grows with it, so the ETA from the first few fits holds.
ALS_GRID = [(rank, reg, alpha) for reg in (0.01, 0.1, 1.0) for alpha in (0.3, 1.0, 5.0, 40.0)
            for rank in (16, 32, 64, 128)]
ALS_MAX_ITER, SEED = 15, 42
KNN_NEIGHBOURS = (5, 10, 25, 50, 100, 200, 400)
EASE_L2 = (50.0, 100.0, 200.0, 350.0, 500.0, 750.0, 1000.0, 1500.0, 2000.0)
BASELINES = ("popularity", "als", "itemknn", "ease")
MODELS = {"default": [], "default_k1": ["model.num_interests=1"],
          **{encoder: [f"model.encoder={encoder}"] for encoder in ENCODERS}}
logger = logging.getLogger("bench.movielens")


def movielens_csv(work: Path) -> Path:
    """``user_id,item_id,category,timestamp`` (category: a movie's first genre) from the recbole wheel."""
    target = work / "ml-100k.csv"
    if target.is_file():
        return target
    cache = work / "cache"
    if not list(cache.glob("recbole-*.whl")):
        logger.info("fetching %s with pip download into %s", WHEEL, cache)
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", WHEEL, "-d", str(cache)],
                       check=True, stdout=sys.stderr)  # stdout is for the results
    with zipfile.ZipFile(next(cache.glob("recbole-*.whl"))) as wheel:
        ratings = wheel.read(f"{MOVIELENS}.inter").decode().splitlines()
        movies = wheel.read(f"{MOVIELENS}.item").decode("utf-8", "replace").splitlines()
    # ml-100k.item: item_id, movie_title, release_year, class (space-separated genres).
    genre = {fields[0]: (fields[3].split() or [""])[0] for fields in (line.split("\t") for line in movies[1:])}
    partial = target.with_suffix(".partial")
    with open(partial, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "item_id", "category", "timestamp"])
        for line in ratings[1:]:  # user_id, item_id, rating, timestamp: every rating is one positive
            user, item, _, timestamp = line.split("\t")
            writer.writerow([user, item, genre.get(item, ""), int(float(timestamp))])
    partial.rename(target)
    logger.info("wrote %d ratings of %d movies to %s", len(ratings) - 1, len(genre), target)
    return target


def data_overrides(source: Path, output: Path) -> list[str]:
    """Where the data is and how it is split: every rating kept, no timestamp cut (data ends in 1998)."""
    return [f"paths.output={output}", f"paths.data={output.parent / 'data'}", "run.name=movielens",
            "run.dt=2000-01-01", "source.format=csv", f"source.path={source}", "source.mapping.user=user_id",
            "source.mapping.item=item_id", "source.mapping.category=category", "source.mapping.event_type=",
            "source.mapping.timestamp=timestamp", "source.mapping.timestamp_format=unix_s",
            "source.mapping.default_event_type=rate", "preprocess.protocol=last", "preprocess.valid_share=0.1",
            "preprocess.test_share=0.1", "preprocess.min_item_events=1", "preprocess.min_user_events=1"]


@dataclass(frozen=True)
class Split:
    """The evaluation users of one split, sorted by user_id."""

    user_ids: np.ndarray
    hist_items: np.ndarray        # int32 [B, L], left-padded with 0
    seen_items: list[np.ndarray]  # excluded from every ranking
    targets: list[np.ndarray]
    train_items: list[np.ndarray]  # each user's training items: what the baselines score from


def read_splits(eval_users: str) -> tuple[Split, Split, dict[str, np.ndarray]]:
    """(valid, test, {user_id: training items}). A valid row's seen items are exactly the user's
    training items; a user without one (no new valid item) has them as the test row's seen items."""
    frames = {split: pd.read_parquet(f"{eval_users}/{S.SPLIT}={split}").sort_values(S.USER_ID)
              for split in ("valid", "test")}
    train = {u: np.asarray(s, dtype=np.int64) for split in ("test", "valid")
             for u, s in zip(frames[split][S.USER_ID], frames[split][S.SEEN_ITEMS])}

    def split_of(frame: pd.DataFrame) -> Split:
        frame = frame[frame[S.TARGET_ITEMS].map(len) > 0]
        return Split(frame[S.USER_ID].to_numpy(), np.stack(frame[S.HIST_ITEMS].to_numpy()).astype(np.int32),
                     [np.asarray(s, dtype=np.int64) for s in frame[S.SEEN_ITEMS]],
                     [np.asarray(t, dtype=np.int64) for t in frame[S.TARGET_ITEMS]],
                     [train[u] for u in frame[S.USER_ID]])

    return split_of(frames["valid"]), split_of(frames["test"]), train


def rank_unseen(scores: np.ndarray, seen_items: list[np.ndarray], top_n: int) -> np.ndarray:
    """int [B, N]: each user's top-N items by ``scores`` [B, M], seen items and padding excluded,
    ties to the lower item index; -1 where fewer than N items have a finite score."""
    from prismrec.ranking.topk import exclusion_mask

    masked = scores.astype(np.float32) + exclusion_mask(seen_items, scores.shape[1])
    ranked = np.argsort(-masked, axis=1, kind="stable")[:, :top_n]
    return np.where(np.isfinite(np.take_along_axis(masked, ranked, axis=1)), ranked, -1)


Ranker = Callable[[Split], np.ndarray]  # a split → ranked [B, N]


def popularity(train: dict[str, np.ndarray], num_items: int, spark) -> Iterator[tuple[str, Ranker]]:
    """Every user gets the items with the most training users, in that order."""
    counts = np.bincount(np.concatenate(list(train.values())), minlength=num_items).astype(np.float32)
    yield "training interaction counts", lambda split: rank_unseen(
        np.broadcast_to(counts, (len(split.user_ids), num_items)), split.seen_items, TOP_N)


def als(train: dict[str, np.ndarray], num_items: int, spark) -> Iterator[tuple[str, Ranker]]:
    """Spark MLlib ALS on the binary training pairs; scores u·v ranked in numpy (items ALS never saw: -inf)."""
    from pyspark.ml.recommendation import ALS

    users = sorted(train)
    user_pos = {user: pos for pos, user in enumerate(users)}
    pairs = pd.DataFrame({"user": np.repeat(np.arange(len(users)), [len(train[u]) for u in users]),
                          "item": np.concatenate([train[u] for u in users]), "rating": np.float32(1.0)})
    interactions = spark.createDataFrame(pairs).persist()
    for rank, reg, alpha in ALS_GRID:
        model = ALS(rank=rank, regParam=reg, alpha=alpha, maxIter=ALS_MAX_ITER, implicitPrefs=True, seed=SEED,
                    userCol="user", itemCol="item", ratingCol="rating").fit(interactions)
        user_rows, item_rows = model.userFactors.toPandas(), model.itemFactors.toPandas()
        user_factors = np.zeros((len(users), rank), dtype=np.float32)
        user_factors[user_rows["id"].to_numpy()] = np.stack(user_rows["features"].to_numpy())
        item_factors = np.zeros((num_items, rank), dtype=np.float32)
        item_factors[item_rows["id"].to_numpy()] = np.stack(item_rows["features"].to_numpy())
        unknown = np.full(num_items, -np.inf, dtype=np.float32)
        unknown[item_rows["id"].to_numpy()] = 0.0

        def ranker(split: Split, user_factors=user_factors, item_factors=item_factors, unknown=unknown):
            rows = np.array([user_pos[u] for u in split.user_ids])
            return rank_unseen(user_factors[rows] @ item_factors.T + unknown, split.seen_items, TOP_N)

        yield f"rank={rank} regParam={reg:g} alpha={alpha:g} maxIter={ALS_MAX_ITER}", ranker
    interactions.unpersist()


def itemknn(train: dict[str, np.ndarray], num_items: int, spark) -> Iterator[tuple[str, Ranker]]:
    """sim(i, j) = users(i ∧ j) / √(users(i)·users(j)); each item keeps its k most similar; a user's
    score for j is Σ sim(h, j) over their training items h (as ``evaluation.itemknn``, in numpy)."""
    gram = item_gram(list(train.values()), num_items)
    norms = np.sqrt(np.diag(gram))
    cosine = np.divide(gram, np.outer(norms, norms), out=np.zeros_like(gram), where=np.outer(norms, norms) > 0)
    np.fill_diagonal(cosine, 0.0)
    order = np.argsort(-cosine, axis=1, kind="stable")
    for neighbours in KNN_NEIGHBOURS:
        kept = np.zeros_like(cosine, dtype=np.float32)
        rows = np.arange(num_items)[:, None]
        kept[rows, order[:, :neighbours]] = cosine[rows, order[:, :neighbours]]
        yield f"neighbours={neighbours}", lambda split, kept=kept: rank_unseen(
            ease_scores(split.train_items, kept), split.seen_items, TOP_N)


def ease(train: dict[str, np.ndarray], num_items: int, spark) -> Iterator[tuple[str, Ranker]]:
    """EASE (``prismrec.evaluation.ease``) on the binary training items, one candidate per λ."""
    gram = item_gram(list(train.values()), num_items)
    for l2 in EASE_L2:
        weights = ease_weights(gram, l2)
        yield f"l2={l2:g}", lambda split, weights=weights: rank_unseen(
            ease_scores(split.train_items, weights), split.seen_items, TOP_N)


def prismrec_model(system: str, conf: str, overrides: list[str], spark) -> Iterator[tuple[str, Ranker]]:
    """Train with the train stage into models/bench-<system>; rank as scoring does (``rank_users``)."""
    from prismrec.ranking.recommend import Ranking
    from prismrec.ranking.users import rank_users
    from prismrec.scoring.udf import load_once
    from prismrec.stages import run as run_stage

    cfg = load_config(conf, overrides)
    report = run_stage("train", cfg, spark, model_id=f"bench-{system}")
    best = report.best_epoch
    model, ranking = load_once(report.model_dir, os.cpu_count() or 1), Ranking.of(cfg.score)

    def ranker(split: Split) -> np.ndarray:
        ranked = []
        for start in range(0, len(split.user_ids), cfg.score.batch_users):
            end = start + cfg.score.batch_users
            batch = rank_users(model, split.hist_items[start:end], split.seen_items[start:end], TOP_N, ranking)
            ranked.append(np.where(np.isfinite(batch.scores), batch.items, -1))
        return np.concatenate(ranked)

    interests = model.encode(np.zeros((1, cfg.preprocess.max_hist_len), dtype=np.int32))["interest_vectors"]
    yield (f"encoder={cfg.model.encoder} K={interests.shape[1]} d={model.item_embeddings.shape[1]} epochs "
           f"{len(report.epochs)}/{cfg.train.epochs} (best {best.epoch})"), ranker


def per_user(ranked: np.ndarray, split: Split) -> dict[str, np.ndarray]:
    with np.errstate(divide="ignore"):  # MRR's 1/0 for users without a hit, which np.where discards
        return batch_metrics(ranked, split.targets, [20, 50])


def tune(name: str, candidates: Iterator[tuple[str, Ranker]], total: int, valid: Split, test: Split) -> dict:
    """The candidate with the best validation NDCG@20, and its test ranking."""
    started, best = time.perf_counter(), None
    for done, (setting, ranker) in enumerate(candidates, start=1):
        score = float(per_user(ranker(valid), valid)[SELECT_BY].mean())
        if best is None or score > best[0]:
            best = (score, setting, ranker)
        elapsed = time.perf_counter() - started
        logger.info("%s %d/%d %s: valid NDCG@20 %.4f (best %.4f; %.0fs, ETA %.0fs)", name, done, total, setting,
                    score, best[0], elapsed, elapsed / done * (total - done))
    return {"valid": best[0], "setting": best[1], "ranked": best[2](test)}


def summary(name: str, tuned: dict, test: Split, catalogue: int, reference: dict | None, seconds: float) -> dict:
    metrics = per_user(tuned["ranked"], test)
    row = {"system": name, "setting": tuned["setting"], "valid_ndcg@20": tuned["valid"], "users": len(test.user_ids),
           "recall@20": float(metrics["recall@20"].mean()), "ndcg@20": float(metrics["ndcg@20"].mean()),
           "ndcg@20_se": float(metrics["ndcg@20"].std(ddof=1) / np.sqrt(len(test.user_ids))),
           "recall@50": float(metrics["recall@50"].mean()), "ndcg@50": float(metrics["ndcg@50"].mean()),
           "coverage@50": coverage(tuned["ranked"], catalogue, 50), "seconds": round(seconds, 1)}
    for metric in ("ndcg@20", "recall@20"):
        diff = metrics[metric] - reference[metric] if reference else None
        row[f"{metric}_diff_vs_als"] = None if diff is None else float(diff.mean())
        row[f"{metric}_diff_vs_als_se"] = None if diff is None else float(diff.std(ddof=1) / np.sqrt(len(diff)))
    row["per_user"] = metrics
    return row


def table(rows: list[dict]) -> str:
    def paired(row: dict, metric: str) -> str:
        if row[f"{metric}_diff_vs_als"] is None:
            return "n/a"
        return f"{row[f'{metric}_diff_vs_als']:+.4f} ± {row[f'{metric}_diff_vs_als_se']:.4f}"

    lines = ["| system | chosen setting | valid NDCG@20 | Recall@20 | NDCG@20 ± se | Recall@50 | coverage@50 "
             "| ΔNDCG@20 vs ALS | ΔRecall@20 vs ALS | seconds |", "|---" * 10 + "|"]
    lines += [f"| {r['system']} | {r['setting']} | {r['valid_ndcg@20']:.4f} | {r['recall@20']:.4f} | "
              f"{r['ndcg@20']:.4f} ± {r['ndcg@20_se']:.4f} | {r['recall@50']:.4f} | {r['coverage@50']:.3f} | "
              f"{paired(r, 'ndcg@20')} | {paired(r, 'recall@20')} | {r['seconds']:.0f} |" for r in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(ROOT / "output" / "bench-movielens"),
                        help="cache, preprocessed data, models, the conf used and results.json (default: %(default)s)")
    parser.add_argument("--conf", default=str(ROOT / "conf" / "base.yaml"),
                        help="config layered over the defaults, as the CLI does (default: %(default)s)")
    systems = [*BASELINES, *MODELS]
    parser.add_argument("--systems", nargs="+", default=systems, choices=systems, metavar="SYSTEM",
                        help=f"which systems, in order (default: all): {', '.join(systems)}")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override for every prismrec model, e.g. train.epochs=10 (repeatable)")
    parser.add_argument("--skip-preprocess", action="store_true", help="reuse the preprocessed data in --work")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING"))
    args = parser.parse_args()
    configure_logging(args.log_level)
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    # One copy of the conf for the whole run: preprocess and every model read the same settings.
    conf = work / "conf.yaml"
    conf.write_text(Path(args.conf).read_text())
    data = data_overrides(movielens_csv(work), work / "output")
    cfg = load_config(conf, data)

    from prismrec.stages import run as run_stage
    from prismrec.layout import Layout
    from prismrec.spark import get_session

    spark, layout = get_session(cfg), Layout.of(cfg)
    started = time.perf_counter()
    if not args.skip_preprocess:
        run_stage("preprocess", cfg, spark)
    preprocess_seconds = time.perf_counter() - started
    meta = layout.read_meta()
    if meta["protocol"] != "last":
        raise SystemExit(f"{layout.preprocessed} was preprocessed under protocol {meta['protocol']!r}, not 'last'; "
                         f"rerun without --skip-preprocess")
    valid, test, train = read_splits(layout.table("eval_users"))
    catalogue = len(pd.read_parquet(layout.table("items"), columns=[S.ITEM_IDX]))
    logger.info("%d items, %d users with training items, %d training pairs; %d valid and %d test users",
                catalogue, len(train), sum(len(t) for t in train.values()), len(valid.user_ids), len(test.user_ids))

    baselines = {"popularity": (popularity, 1), "als": (als, len(ALS_GRID)),
                 "itemknn": (itemknn, len(KNN_NEIGHBOURS)), "ease": (ease, len(EASE_L2))}
    # ALS first when asked for: every other system is compared with it user by user.
    order = sorted(args.systems, key=lambda name: name != "als")
    results, reference = {}, None
    for name in order:
        started = time.perf_counter()
        if name in baselines:
            build, total = baselines[name]
            candidates = build(train, meta["num_items"], spark)
        else:
            total, candidates = 1, prismrec_model(name, str(conf), [*data, *args.overrides, *MODELS[name]], spark)
        tuned = tune(name, candidates, total, valid, test)
        results[name] = summary(name, tuned, test, catalogue, reference, time.perf_counter() - started)
        reference = reference or (results[name]["per_user"] if name == "als" else None)
        logger.info("%s: test NDCG@20 %.4f, Recall@20 %.4f (%.0fs)", name, results[name]["ndcg@20"],
                    results[name]["recall@20"], results[name]["seconds"])
    rows = [{k: v for k, v in results[name].items() if k != "per_user"} for name in args.systems]
    print(f"\nMovieLens-100K, leave-last-out (10 % valid, 10 % test per user): {len(valid.user_ids)} valid and "
          f"{len(test.user_ids)} test users, {catalogue} items, full ranking, seen items excluded; "
          f"preprocess {preprocess_seconds:.0f}s.\n")
    print(table(rows))
    (work / "results.json").write_text(json.dumps(rows, indent=1))
    print()
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
