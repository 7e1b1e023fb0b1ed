"""The compared systems and their ranked lists, one Spark DataFrame per system.

``evaluate.compare`` names the systems: ``model`` (the scored model: ``score.model_id``
or models/LATEST), the baselines ``popularity``, ``als`` and ``itemknn``, and any other
name is a model id under ``models/``. Every system ranks the same evaluation users and
yields ``user_id, ranked``; model systems add the per-user interest-quality columns.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import types as T

from prismrec import schema as S
from prismrec.evaluation import interests as quality
from prismrec.evaluation.interests import PURITY_TOP_N
from prismrec.evaluation.spark_metrics import RANKED
from prismrec.evaluation.truth import TRUE_TOPICS
from prismrec.layout import Layout
from prismrec.ranking.popularity import popularity_top_n
from prismrec.ranking.recommend import Ranking, category_diversity, item_category_codes
from prismrec.ranking.users import histories, rank_users, retrieve, seen, user_batches
from prismrec.scoring import udf

BASELINES = ("popularity", "als", "itemknn")
SCORED_MODEL = "model"
# Collaborative baselines learn a row per training user; held-out users are new to them.
NEEDS_TRAINING_USERS = {"als": "ALS has no factor for users outside its training data (held-out users)",
                        "itemknn": "item-kNN is evaluated on the users its co-occurrences were counted on"}
SYSTEM = "system"
INTEREST_COLUMNS = ("distinctness", "weight_entropy", "category_purity", "recovered", "true_interests",
                    "recovered_evidenced", "evidenced_interests", "assignment_nmi")


def model_dirs(compare: list[str], layout: Layout, scored_model_dir: Callable[[], str]) -> dict[str, str]:
    """{system: artifact directory} for the model systems of ``compare``, checked to exist."""
    dirs = {}
    for name in compare:
        if name in BASELINES:
            continue
        directory = scored_model_dir() if name == SCORED_MODEL else str(layout.model_dir(name))
        if not Path(directory).is_dir():
            raise FileNotFoundError(f"evaluate.compare names {name!r} but there is no model at {directory}; "
                                    f"train it with --set score.model_id=... or remove it from evaluate.compare "
                                    f"(baselines: {', '.join(BASELINES)})")
        dirs[name] = directory
    return dirs


def ranked_schema(extra: tuple[str, ...] = ()) -> T.StructType:
    return T.StructType([T.StructField(S.USER_ID, T.StringType()),
                         T.StructField(RANKED, T.ArrayType(T.IntegerType()))]
                        + [T.StructField(name, T.DoubleType()) for name in extra])


def model_fn(directory: str, top_n: int, batch_users: int, threads: int, ranking: Ranking,
             item_topic: np.ndarray | None, retrieval=None) -> Callable:
    """mapInPandas function: users (``user_id, hist_items, seen_items`` and ``true_topics``
    when ``item_topic`` is given) → ``user_id, ranked`` and the interest-quality columns."""
    def rank(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model = udf.load_once(directory, threads)
        search = udf.search_once(directory, threads, retrieval)
        item_category = item_category_codes(model)
        for batch in user_batches(frames, batch_users):
            ranked = rank_users(model, histories(batch), seen(batch), top_n, ranking, search)
            interests = ranked.interests
            retrieved = retrieve(model, interests.vectors, PURITY_TOP_N)
            columns = {"distinctness": quality.mean_pairwise_cosine(interests.vectors),
                       "weight_entropy": quality.weight_entropy(interests.weights),
                       "category_purity": quality.category_purity(retrieved, item_category).mean(axis=1)}
            if item_topic is not None:
                columns.update(recovery_columns(retrieved, ranked.hist, batch[TRUE_TOPICS], item_topic))
                columns["assignment_nmi"] = quality.assignment_nmi(interests.assignment, ranked.hist, item_topic)
            yield pd.DataFrame({S.USER_ID: batch[S.USER_ID].to_numpy(),
                                RANKED: list(np.where(np.isfinite(ranked.scores), ranked.items, -1).astype(np.int32)),
                                **{name: np.asarray(values, dtype=np.float64) for name, values in columns.items()}})

    return rank


def recovery_columns(retrieved: np.ndarray, hist: np.ndarray, true_topics: pd.Series,
                     item_topic: np.ndarray) -> dict[str, list[float]]:
    """Per user: planted topics recovered and planted, over all of them and over the evidenced ones."""
    columns = {name: [] for name in INTEREST_COLUMNS[3:7]}
    for user_items, user_hist, planted in zip(retrieved, hist, true_topics):
        if planted is None:
            for values in columns.values():
                values.append(np.nan)
            continue
        found = quality.recovered_topics(user_items, item_topic, planted)
        evidenced = quality.evidenced_topics(user_hist, item_topic, planted)
        columns["recovered"].append(len(found))
        columns["true_interests"].append(len(planted))
        columns["recovered_evidenced"].append(np.isin(evidenced, found).sum())
        columns["evidenced_interests"].append(len(evidenced))
    return columns


def model_rankings(users: DataFrame, directory: str, top_n: int, batch_users: int, threads: int,
                   ranking: Ranking = Ranking(), item_topic: np.ndarray | None = None,
                   retrieval=None) -> DataFrame:
    """``user_id, ranked`` plus the interest-quality columns (the truth ones only with ``item_topic``);
    ``retrieval`` as scoring uses it (:func:`prismrec.scoring.udf.prepare`; None = exact)."""
    extra = INTEREST_COLUMNS if item_topic is not None else INTEREST_COLUMNS[:3]
    return users.mapInPandas(model_fn(directory, top_n, batch_users, threads, ranking, item_topic, retrieval),
                             schema=ranked_schema(extra))


def popularity_rankings(users: DataFrame, num_items: int, top_n: int) -> DataFrame:
    """``user_id, ranked``: the most popular unseen items (``num_items`` counts the padding index)."""
    def rank(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in frames:
            ranked = popularity_top_n(seen(frame), num_items, top_n).astype(np.int32)
            yield pd.DataFrame({S.USER_ID: frame[S.USER_ID].to_numpy(), RANKED: [row[row > 0] for row in ranked]})

    return users.select(S.USER_ID, S.SEEN_ITEMS).mapInPandas(rank, schema=ranked_schema())


def diversity_fn(item_category: np.ndarray, ks: list[int]) -> Callable:
    """mapInPandas function adding ``category_diversity@k`` (item_category: a code per item_idx)."""
    def annotate(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in frames:
            width = max([len(r) for r in frame[RANKED]] + [1])
            padded = np.full((len(frame), width), -1, dtype=np.int64)
            for row, ranked in enumerate(frame[RANKED]):
                padded[row, :len(ranked)] = ranked
            yield frame.assign(**{f"category_diversity@{k}": category_diversity(padded, item_category, k) for k in ks})

    return annotate


def with_category_diversity(rankings: DataFrame, item_category: np.ndarray, ks: list[int]) -> DataFrame:
    schema = T.StructType(rankings.schema.fields + [T.StructField(f"category_diversity@{k}", T.DoubleType())
                                                    for k in ks])
    return rankings.mapInPandas(diversity_fn(item_category, ks), schema=schema)
