"""The report's illustrations: metric curves, interest–category heatmap, item map, distinctness, examples.

Works on the driver with small inputs only: the metric aggregates, the item table and
a few users (``HEATMAP_USERS``, of whom the first ``EXAMPLE_USERS`` are explained).
The featured model is the first model system of ``evaluate.compare``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from prismrec import schema as S
from prismrec.config import Config
from prismrec.evaluation import plots
from prismrec.evaluation.interests import PURITY_TOP_N
from prismrec.evaluation.truth import TOPIC, TRUE_TOPICS, Truth
from prismrec.layout import Layout
from prismrec.ranking.recommend import encode
from prismrec.ranking.users import histories, retrieve
from prismrec.scoring.explain import UnknownUserError, explain
from prismrec.training import artifact

logger = logging.getLogger(__name__)
HEATMAP_USERS = 6
HEATMAP_MIN_SHARE = 0.1  # categories below this share in every interest are left out of the heatmap
EXAMPLE_USERS = 3
SHOWN_RECOMMENDATIONS = 10


def example_users(users: DataFrame, has_truth: bool) -> pd.DataFrame:
    """The users with the most planted topics (then the longest histories): a top-k, not a collect."""
    order = ([F.desc(F.coalesce(F.size(TRUE_TOPICS), F.lit(0)))] if has_truth else []) + [F.desc(S.HIST_LEN)]
    columns = [S.USER_ID, S.HIST_ITEMS] + ([TRUE_TOPICS] if has_truth else [])
    return users.orderBy(*order, S.USER_ID).select(*columns).limit(HEATMAP_USERS).toPandas()


def retrieved_items(model, hist_items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(interest weights [B, K], each interest's top PURITY_TOP_N items [B, K, N]) for a few users."""
    interests = encode(model, hist_items)
    return interests.weights, retrieve(model, interests.vectors, PURITY_TOP_N)


def category_topics(items: pd.DataFrame, truth: Truth | None) -> pd.Series:
    """category_id → its planted topic (the most common topic of its items), or "" without truth."""
    if truth is None:
        return pd.Series("", index=items[S.CATEGORY_ID].unique())
    topics = pd.Series(truth.item_topic[items[S.ITEM_IDX].to_numpy()], index=items[S.CATEGORY_ID].to_numpy())
    return topics.groupby(level=0).agg(lambda t: f"topic {t.mode().iloc[0]}" if (t >= 0).any() else "")


def heatmap(model, picked: pd.DataFrame, items: pd.DataFrame, truth: Truth | None, path: Path) -> Path:
    hist = histories(picked)
    weights, retrieved = retrieved_items(model, hist)
    category = np.concatenate([[""], items[S.CATEGORY_ID].to_numpy()])
    users, interests, top = retrieved.shape
    rows = pd.DataFrame({"row": np.repeat(np.arange(users * interests), top),
                         S.CATEGORY_ID: category[retrieved.reshape(-1)]})
    shares = pd.crosstab(rows["row"], rows[S.CATEGORY_ID], normalize="index")
    groups = category_topics(items, truth)
    shown = shares.columns[shares.max(axis=0) >= HEATMAP_MIN_SHARE]
    columns = sorted(shown, key=lambda c: (groups.get(c, ""), c))
    labels = [f"user {u} · interest {k} (w {weights[i, k]:.2f})"
              for i, u in enumerate(picked[S.USER_ID]) for k in range(interests)]
    return plots.interest_heatmap(shares[columns].to_numpy(), labels, [str(c) for c in columns],
                                  [groups.get(c, "") for c in columns], path)


def projection(model, items: pd.DataFrame, truth: Truth | None, path: Path) -> Path:
    """PCA (numpy SVD) of the item embeddings, coloured by planted topic, else by top category."""
    embeddings = np.asarray(model.item_embeddings)[items[S.ITEM_IDX].to_numpy()]
    centred = embeddings - embeddings.mean(axis=0)
    _, _, components = np.linalg.svd(centred, full_matrices=False)
    coordinates = centred @ components[:2].T
    if truth is not None:
        labels = np.array([f"topic {t}" if t >= 0 else "unknown" for t in truth.item_topic[items[S.ITEM_IDX]]])
        return plots.item_projection(coordinates, labels, "planted topic", path)
    top = items[S.CATEGORY_ID].value_counts().index[:12]
    labels = np.where(items[S.CATEGORY_ID].isin(top), items[S.CATEGORY_ID], "other")
    return plots.item_projection(coordinates, labels, "category", path)


def explanations(cfg: Config, layout: Layout, picked: pd.DataFrame, truth: Truth | None) -> list[dict]:
    """The first EXAMPLE_USERS users explained from the published outputs (``prismrec explain``)."""
    dt = layout.read_meta()["dt"]
    planted = pd.read_parquet(truth.users_path, filters=[(S.USER_ID, "in", list(picked[S.USER_ID]))]) \
        if truth is not None else pd.DataFrame(columns=[S.USER_ID, TOPIC, S.WEIGHT])
    examples = []
    for user_id in picked[S.USER_ID].head(EXAMPLE_USERS):
        try:
            lines = explain(cfg, user_id, dt).splitlines()
            cut = lines.index("  recommendations:") + 1 + SHOWN_RECOMMENDATIONS
            text = "\n".join(lines[:cut] + ([f"    … ({len(lines) - cut} more)"] if len(lines) > cut else []))
        except (FileNotFoundError, UnknownUserError) as error:
            text = f"no published recommendations to explain ({error}); run `prismrec score` first"
        mine = planted[planted[S.USER_ID] == user_id].sort_values(S.WEIGHT, ascending=False)
        examples.append({"user_id": user_id, "explanation": text,
                         "planted_topics": [{"topic": int(t), "weight": round(float(w), 3)}
                                            for t, w in zip(mine[TOPIC], mine[S.WEIGHT])]})
    return examples


def showcase(spark: SparkSession, cfg: Config, layout: Layout, users: DataFrame, dirs: dict[str, str],
             items: pd.DataFrame, truth: Truth | None, result: dict, directory: Path) -> dict:
    """Write the PNGs into ``directory``; returns {"plots": {name: path}, "examples": [...]}."""
    directory.mkdir(parents=True, exist_ok=True)
    curves = {result["protocol"]: result["metrics"],
              **{p: other["metrics"] for p, other in result["other_protocols"].items()}}
    ks = [k for k in result["curve_ks"] if all(f"recall@{k}" in values for by_system in curves.values()
                                                for values in by_system.values())]
    paths = {"curves": plots.metric_curves(curves, result["systems"], ks, directory / "recall_ndcg_vs_k.png"),
             "distinctness": plots.distinctness(result["distinctness_histogram"]["counts"],
                                                result["distinctness_histogram"]["bins"],
                                                directory / "interest_distinctness.png")}
    examples = []
    if dirs:
        model = artifact.load(next(iter(dirs.values())))
        picked = example_users(users, truth is not None)
        paths["heatmap"] = heatmap(model, picked, items, truth, directory / "interest_category_heatmap.png")
        paths["projection"] = projection(model, items, truth, directory / "item_embeddings_pca.png")
        examples = explanations(cfg, layout, picked, truth)
    return {"plots": {name: str(path) for name, path in paths.items()}, "examples": examples}
