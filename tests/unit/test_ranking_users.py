"""The ranking layer: one loop over users for scoring and evaluation, with no Spark or Horovod in it."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prismrec.ranking.recommend import Ranking
from prismrec.ranking.users import histories, rank_users, retrieve, seen, user_batches

pytestmark = pytest.mark.unit


class TinyModel:
    """A loaded artifact's surface: one interest per user, always the direction (1, 0)."""

    # item_idx 0 is padding; items 1, 2, 3 point along x, y and the diagonal.
    item_embeddings = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], dtype=np.float32)
    items = pd.DataFrame({"item_idx": [1, 2, 3], "item_id": ["a", "b", "c"], "category_id": ["x", "y", "x"],
                          "count": [10, 5, 2]})

    def encode(self, hist):
        batch = len(hist)
        return {"interest_vectors": np.tile(np.array([[[1.0, 0.0]]], dtype=np.float32), (batch, 1, 1)),
                "interest_weights": np.ones((batch, 1), dtype=np.float32)}


def users_frame() -> pd.DataFrame:
    return pd.DataFrame({"user_id": ["u1", "u2", "u3"],
                         "hist_items": [[0, 1], [0, 0], [2, 3]],
                         "seen_items": [[1], [], [2, 3]]})


def test_a_batch_is_ranked_by_its_interests_and_a_user_without_history_gets_the_popular_items():
    frame = users_frame()
    ranked = rank_users(TinyModel(), histories(frame), seen(frame), top_n=2, ranking=Ranking("max"))
    # u1: scores along (1, 0) are item 1: 1 (seen), item 3: 0.5, item 2: 0.
    assert ranked.items[0].tolist() == [3, 2] and ranked.scores[0].tolist() == [0.5, 0.0]
    assert ranked.interest[0].tolist() == [0, 0]
    # u2: all padding, so the most popular unseen items, scored by their event counts, from no interest.
    assert ranked.fallback.tolist() == [False, True, False]
    assert ranked.items[1].tolist() == [1, 2] and ranked.scores[1].tolist() == [10.0, 5.0]
    assert ranked.interest[1].tolist() == [-1, -1]
    # u3 has seen 2 and 3: item 1 is the only one left, the second slot is empty.
    assert ranked.items[2, 0] == 1 and ranked.scores[2, 0] == 1.0 and ranked.scores[2, 1] == -np.inf


def test_batches_cover_every_user_once_in_order():
    frames = [users_frame(), users_frame().iloc[:1]]
    sizes = [len(batch) for batch in user_batches(frames, batch_users=2)]
    assert sizes == [2, 1, 1]


def test_retrieve_keeps_seen_items_and_leaves_out_padding():
    vectors = TinyModel().encode(np.zeros((1, 2)))["interest_vectors"]
    assert retrieve(TinyModel(), vectors, 3).tolist() == [[[1, 3, 2]]]


def test_the_ranking_layer_loads_neither_spark_nor_horovod():
    # A fresh interpreter: the test process itself has Spark loaded by other tests.
    code = textwrap.dedent("""
        import json, sys
        import prismrec.ranking.metrics, prismrec.ranking.popularity, prismrec.ranking.topk, prismrec.ranking.users
        from test_ranking_users import TinyModel, users_frame
        from prismrec.ranking.users import histories, rank_users, seen
        frame = users_frame()
        rank_users(TinyModel(), histories(frame), seen(frame), 2)
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("pyspark", "horovod", "petastorm"))))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).parent)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
