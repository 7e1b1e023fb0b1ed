"""Train (one process) → score → evaluate on tiny synthetic data, checked against numpy."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prismrec import schema as S
from prismrec.stages import run as run_stage
from prismrec.layout import Layout
from prismrec.training import artifact

pytestmark = pytest.mark.smoke


@pytest.fixture(scope="module")
def scored(scored_tiny):
    return scored_tiny


def brute_force_top_n(model, hist_items, seen, n, merge):
    """The user's top n, seen items and padding removed: by max over interests of interest·item
    (``max``), or each interest's own top n taken in turns (r + 1) / weight, an item once (``share``)."""
    encoded = model.encode(hist_items[None, :].astype(np.int32))
    vectors, weights = np.asarray(encoded["interest_vectors"][0]), np.asarray(encoded["interest_weights"][0])
    scores = vectors @ np.asarray(model.item_embeddings).T                                    # [K, M]
    scores[:, 0] = -np.inf
    scores[:, np.asarray(seen, dtype=np.int64)] = -np.inf
    if merge == "max":
        best = scores.max(axis=0)
        return [int(i) for i in np.lexsort((np.arange(len(best)), -best))[:n] if np.isfinite(best[i])]
    turns = []
    for k, row in enumerate(scores):
        ranked = [int(i) for i in np.lexsort((np.arange(len(row)), -row))[:n] if np.isfinite(row[i])]
        turns += [((r + 1) / max(float(weights[k]), 1e-9), item) for r, item in enumerate(ranked)]
    taken = []
    for _, item in sorted(turns):
        if item not in taken:
            taken.append(item)
    return taken[:n]


def test_udf_output_equals_brute_force_numpy(scored):
    cfg, meta, train, score = scored
    model = artifact.load(train.model_dir)
    recs = pd.read_parquet(score.recommendations)
    histories = pd.read_parquet(Layout.of(cfg).table("histories"))
    idx_of = dict(zip(model.items[S.ITEM_ID], model.items[S.ITEM_IDX]))
    for _, user in histories.sample(25, random_state=0).iterrows():
        got = recs[recs[S.USER_ID] == user[S.USER_ID]].sort_values(S.RANK)
        expected = brute_force_top_n(model, user[S.HIST_ITEMS], user[S.SEEN_ITEMS], cfg.score.top_n, cfg.score.merge)
        assert [idx_of[i] for i in got[S.ITEM_ID]] == expected
        assert got[S.RANK].tolist() == list(range(1, len(expected) + 1))


def test_every_user_has_recommendations_and_interests(scored):
    cfg, meta, _, score = scored
    users = sum(meta.record["users_by_split"].values())
    recs = pd.read_parquet(score.recommendations)
    interests = pd.read_parquet(score.user_interests)
    assert recs[S.USER_ID].nunique() == users
    assert len(interests) == users * cfg.model.num_interests
    weights = interests.groupby(S.USER_ID)[S.WEIGHT].sum()
    np.testing.assert_allclose(weights, 1.0, atol=1e-5)
    assert all(len(v) == cfg.model.embedding_dim for v in interests[S.VECTOR].head(10))
    assert recs[S.INTEREST].between(0, cfg.model.num_interests - 1).all()


def test_evaluate_reports_model_and_popularity(spark, scored):
    cfg, *_ = scored
    result = run_stage("evaluate", cfg, spark)
    assert result.users > 0
    for system in ("model", "popularity"):
        for k in cfg.evaluate.ks:
            assert 0.0 <= result.metrics[system][f"recall@{k}"] <= 1.0
    markdown = open(result.files["markdown"]).read()
    assert "| model |" in markdown and "| popularity |" in markdown
