"""ALS and item-kNN: valid rankings for every user, better than random on the tiny planted logs."""
from __future__ import annotations

import numpy as np
import pytest
from pyspark.sql import functions as F

from prismrec import schema as S
from prismrec.evaluation import als, itemknn
from prismrec.evaluation.interactions import training_interactions
from prismrec.ranking.metrics import batch_metrics
from prismrec.layout import Layout

pytestmark = pytest.mark.spark
TOP_N = 20


@pytest.fixture(scope="module")
def inputs(spark, time_protocol):
    """(training interactions, test users as a DataFrame and as pandas, num_items) of the time protocol."""
    cfg, meta, _ = time_protocol
    layout = Layout.of(cfg)
    interactions = training_interactions(spark.read.parquet(layout.table("train_sequences"))).cache()
    users = spark.read.parquet(layout.table("eval_users")).where(
        (F.col(S.SPLIT) == "test") & (F.size(S.TARGET_ITEMS) > 0))
    return interactions, users, users.toPandas().set_index(S.USER_ID), meta.items + 1


def check_rankings(ranked, users, num_items) -> np.ndarray:
    """Every user once; distinct, real, unseen items, at most TOP_N; returns [B, TOP_N] padded with -1."""
    assert sorted(ranked[S.USER_ID]) == sorted(users.index)
    padded = np.full((len(ranked), TOP_N), -1)
    for row, (user_id, items) in enumerate(zip(ranked[S.USER_ID], ranked["ranked"])):
        items = np.asarray(items)
        assert len(items) == len(set(items.tolist())) <= TOP_N
        assert ((items >= 1) & (items < num_items)).all()
        assert not np.isin(items, users.loc[user_id, S.SEEN_ITEMS]).any()
        padded[row, :len(items)] = items
    return padded


def recall(padded, ranked, users) -> float:
    targets = [np.asarray(users.loc[u, S.TARGET_ITEMS]) for u in ranked[S.USER_ID]]
    return float(batch_metrics(padded, targets, [TOP_N])[f"recall@{TOP_N}"].mean())


def random_recall(users, num_items, seed=0) -> float:
    """Recall@TOP_N of uniformly random unseen items, averaged over 20 draws."""
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(20):
        padded = np.stack([rng.permutation(np.setdiff1d(np.arange(1, num_items), seen))[:TOP_N]
                           for seen in users[S.SEEN_ITEMS]])
        draws.append(batch_metrics(padded, [np.asarray(t) for t in users[S.TARGET_ITEMS]], [TOP_N])
                     [f"recall@{TOP_N}"].mean())
    return float(np.mean(draws))


def test_als_ranks_every_user_validly_and_beats_random(inputs):
    interactions, users, table, num_items = inputs
    model = als.fit(interactions, rank=8, reg_param=0.1, seed=3)
    ranked = als.rankings(model, users, num_items, TOP_N, batch_users=16).toPandas()
    padded = check_rankings(ranked, table, num_items)
    assert (padded[:, 0] > 0).mean() > 0.9  # time protocol: nearly every evaluated user was trained on
    assert recall(padded, ranked, table) > 2 * random_recall(table, num_items)


def test_itemknn_similarities_are_cosines_and_rankings_beat_random(inputs):
    interactions, users, table, num_items = inputs
    similarity = itemknn.similarities(interactions, neighbours=30).toPandas()
    assert similarity[itemknn.SIMILARITY].between(0.0, 1.0 + 1e-12).all()
    assert (similarity[S.ITEM_IDX] != similarity[itemknn.NEIGHBOUR]).all()
    assert similarity.groupby(S.ITEM_IDX).size().max() <= 30
    # sim(i, j) = sim(j, i) wherever both directions survived the top-30 cut.
    both = similarity.merge(similarity, left_on=[S.ITEM_IDX, itemknn.NEIGHBOUR],
                            right_on=[itemknn.NEIGHBOUR, S.ITEM_IDX])
    assert len(both) and np.allclose(both[f"{itemknn.SIMILARITY}_x"], both[f"{itemknn.SIMILARITY}_y"])
    ranked = itemknn.rankings(itemknn.similarities(interactions, 30), users, TOP_N).toPandas()
    padded = check_rankings(ranked, table, num_items)
    assert recall(padded, ranked, table) > 2 * random_recall(table, num_items)
