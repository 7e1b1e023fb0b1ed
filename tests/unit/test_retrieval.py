"""Each interest's candidates: the blocked exact top-k, the IVF index, and seen-item exclusion."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prismrec.config import ConfigError
from prismrec.ranking import retrieval
from prismrec.ranking.recommend import Ranking
from prismrec.ranking.retrieval import AnnSearch, ExactSearch, build_index, candidates, read_index, write_index
from prismrec.ranking.topk import top_n
from prismrec.ranking.users import rank_users, recall_against_exact

pytestmark = pytest.mark.unit


def table(rows: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)


def brute_force(items: np.ndarray, queries: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Every item scored, sorted, padding row 0 left out: the definition the searches must meet."""
    scores = queries @ items[1:].T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :count]
    return np.take_along_axis(scores, order, axis=1), order + 1


@pytest.mark.parametrize("rows,count,buffer", [(1001, 10, 1 << 25), (1001, 10, 4096), (1001, 10, 64),
                                               (1001, 1000, 4096), (1001, 5000, 1 << 25), (10, 3, 1 << 25)])
def test_the_blocked_top_k_equals_sorting_every_score(rows, count, buffer, monkeypatch):
    # buffer 64 with 4 queries makes chunks of one block; 4096, chunks of 1,024 items plus a tail of 8.
    monkeypatch.setattr(retrieval, "SCORE_BUFFER", buffer)
    items, queries = table(rows), table(4, seed=1)
    scores, found = ExactSearch(items).search(queries, count)
    expected_scores, expected = brute_force(items, queries, count)
    assert found.shape == (4, min(count, rows - 1))
    np.testing.assert_array_equal(found, expected)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-5)


def test_queries_are_searched_in_groups_with_the_same_answer(monkeypatch):
    items, queries = table(300), table(7, seed=8)
    whole = ExactSearch(items).search(queries, 20)
    monkeypatch.setattr(retrieval, "QUERY_GROUP", 3)  # groups of 3, 3 and 1 queries
    grouped = ExactSearch(items).search(queries, 20)
    np.testing.assert_array_equal(grouped[1], whole[1])
    np.testing.assert_array_equal(grouped[1], brute_force(items, queries, 20)[1])


def test_seen_items_are_removed_and_each_interest_still_has_n():
    items = np.array([[0, 0], [1, 0], [0.9, 0], [0.8, 0], [0.7, 0], [0.6, 0]], dtype=np.float32)
    vectors = np.array([[[1, 0]], [[1, 0]]], dtype=np.float32)            # 2 users, one interest along x
    scores, found = candidates(ExactSearch(items), vectors, [np.array([1, 3]), np.array([], dtype=np.int64)], 3)
    # User 0 has seen items 1 and 3: the next best are 2, 4, 5. User 1 has seen nothing.
    assert found[:, 0].tolist() == [[2, 4, 5], [1, 2, 3]]
    np.testing.assert_allclose(scores[0, 0], [0.9, 0.7, 0.6])


def test_a_catalogue_smaller_than_n_leaves_empty_slots():
    items = np.array([[0, 0], [1, 0], [0.5, 0]], dtype=np.float32)
    scores, found = candidates(ExactSearch(items), np.array([[[1, 0]]], dtype=np.float32), [np.array([1])], 3)
    # Two items: at most two slots; item 1 is seen, so the second is empty.
    assert found[0, 0].tolist() == [2, 0] and np.isneginf(scores[0, 0, 1])


def test_an_exhaustive_index_returns_the_exact_lists():
    items = table(2001, dim=16)
    index = build_index(items, lists=20)
    vectors = table(60, dim=16, seed=2).reshape(30, 2, 16)
    seen_items = [np.random.default_rng(u).choice(np.arange(1, 2001), size=u % 7, replace=False) for u in range(30)]
    exact = top_n(vectors, ExactSearch(items), seen_items, 25)
    approximate = top_n(vectors, AnnSearch(index, probes=20, num_items=len(items)), seen_items, 25)
    np.testing.assert_array_equal(approximate[0], exact[0])
    np.testing.assert_allclose(approximate[1], exact[1], rtol=1e-5)
    np.testing.assert_array_equal(approximate[2], exact[2])


def test_one_probe_finds_fewer_items_than_exhaustive_search():
    items = table(2001, dim=16)
    index = build_index(items, lists=20)
    queries = table(50, dim=16, seed=3)
    _, few = AnnSearch(index, probes=1, num_items=len(items)).search(queries, 50)
    _, exact = ExactSearch(items).search(queries, 50)
    overlap = np.mean([np.isin(e, f).mean() for e, f in zip(exact, few)])
    assert 0 < overlap < 1  # one list of twenty holds some of each top-50, never all of it


def test_the_index_file_round_trips_and_is_not_a_pickle(tmp_path):
    items = table(501)
    index = build_index(items, lists=5)
    write_index(index, tmp_path / "ivf.faiss")
    assert not (tmp_path / "ivf.faiss").read_bytes().startswith(b"\x80")  # pickle protocol 2+ starts with 0x80
    again = read_index(tmp_path / "ivf.faiss")
    assert retrieval.INDEX_READS[str(tmp_path / "ivf.faiss")] == 1 and again.ntotal == 500
    queries = table(3, seed=4)
    assert np.array_equal(AnnSearch(again, 5, 501).search(queries, 10)[1], ExactSearch(items).search(queries, 10)[1])


def test_too_few_items_for_the_lists_is_refused():
    with pytest.raises(ConfigError, match="score.ann_lists: an index of 50 lists needs at least as many items; "
                                          "the catalogue has 9"):
        build_index(table(10), lists=50)


class TwoInterestModel:
    """A loaded artifact's surface: 400 random items, two fixed interests per user."""

    def __init__(self):
        self.item_embeddings = table(401, dim=8, seed=5)
        self.items = pd.DataFrame({"item_idx": np.arange(1, 401), "item_id": [f"i{i}" for i in range(1, 401)],
                                   "category_id": [f"c{i % 7}" for i in range(1, 401)],
                                   "count": np.arange(400, 0, -1)})

    def encode(self, hist):
        vectors = np.stack([table(2, dim=8, seed=int(h[-1])) for h in hist])
        return {"interest_vectors": vectors, "interest_weights": np.full((len(hist), 2), 0.5, dtype=np.float32)}


def test_users_the_index_leaves_short_are_ranked_exactly():
    model = TwoInterestModel()
    # One probe of 40 lists holds about 10 items per interest: fewer than the 30 asked for once the
    # user's 60 seen items are gone, so every user is ranked again exactly and gets 30 items.
    search = AnnSearch(build_index(model.item_embeddings, lists=40), probes=1, num_items=401)
    rng = np.random.default_rng(6)
    hist = rng.integers(1, 401, size=(8, 5)).astype(np.int32)
    seen_items = [rng.choice(np.arange(1, 401), size=60, replace=False) for _ in range(8)]
    ranked = rank_users(model, hist, seen_items, 30, Ranking(), search)
    exact = rank_users(model, hist, seen_items, 30, Ranking())
    assert np.isfinite(ranked.scores).sum(axis=1).tolist() == [30] * 8
    assert not any(np.isin(row, s).any() for row, s in zip(ranked.items, seen_items))
    np.testing.assert_array_equal(ranked.items, exact.items)


def test_recall_against_exact_is_one_for_an_exhaustive_index_and_less_for_one_probe():
    model = TwoInterestModel()
    index = build_index(model.item_embeddings, lists=10)
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"hist_items": list(rng.integers(1, 401, size=(20, 5)).astype(np.int32)),
                          "seen_items": [rng.choice(np.arange(1, 401), size=3, replace=False) for _ in range(20)]})
    assert recall_against_exact(model, frame, 10, Ranking(), AnnSearch(index, 10, 401), batch_users=6) == (1.0, 20, 0.0)
    recall, users, reranked = recall_against_exact(model, frame, 10, Ranking(), AnnSearch(index, 1, 401))
    assert recall < 1.0 and users == 20 and reranked == 0.0


def test_recall_is_the_index_own_not_that_of_the_exact_re_ranking():
    model = TwoInterestModel()
    # As above: one probe of 40 lists cannot supply 30 unseen items, so every user is re-ranked
    # exactly and gets the exact list; the recall reported is what the index itself found.
    search = AnnSearch(build_index(model.item_embeddings, lists=40), probes=1, num_items=401)
    rng = np.random.default_rng(6)
    frame = pd.DataFrame({"hist_items": list(rng.integers(1, 401, size=(8, 5)).astype(np.int32)),
                          "seen_items": [rng.choice(np.arange(1, 401), size=60, replace=False) for _ in range(8)]})
    recall, users, reranked = recall_against_exact(model, frame, 30, Ranking(), search)
    assert users == 8 and reranked == 1.0 and recall < 0.5


def test_auto_is_exact_below_ann_min_items_and_ann_from_there_on():
    from prismrec.config import load_config
    from prismrec.ranking.retrieval import Retrieval

    score = load_config(None, ["score.ann_min_items=10000"]).score
    assert Retrieval.of(score, 9_999).mode == "exact" and Retrieval.of(score, 9_999).index_name is None
    at = Retrieval.of(score, 10_000)
    assert at.mode == "ann" and at.lists == 400 and at.index_name == "index/ivf400.faiss"  # 4·√10,000
    forced = load_config(None, ["score.retrieval=exact", "score.ann_min_items=1"]).score
    assert Retrieval.of(forced, 10_000).mode == "exact"
    assert Retrieval.of(load_config(None, ["score.retrieval=ann", "score.ann_lists=7"]).score, 50).lists == 7


def test_a_python_without_faiss_gets_a_config_error_naming_the_fix(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now raises ImportError
    with pytest.raises(ConfigError, match=r"score.retrieval=ann needs FAISS.*install faiss-cpu.*score.retrieval=exact"):
        retrieval.faiss_module()


def test_a_worker_refuses_an_altered_index(tmp_path):
    from prismrec.training import artifact
    from prismrec.scoring.index import open_search

    root = tmp_path / "m"
    root.mkdir()
    (root / "item_embeddings.npy").write_bytes(b"x")
    artifact.write_manifest(root, "hash")
    index = build_index(table(101), lists=4)
    artifact.add_file(root, "index/ivf4.faiss", lambda path: write_index(index, path))
    model = type("Loaded", (), {"item_embeddings": table(101)})()
    found = open_search(str(root), model, retrieval.Retrieval("ann", 4, 4), threads=1)
    assert found.index.ntotal == 100
    data = bytearray((root / "index" / "ivf4.faiss").read_bytes())
    data[-1] ^= 0x01
    (root / "index" / "ivf4.faiss").write_bytes(bytes(data))
    with pytest.raises(artifact.ArtifactError, match=r"ivf4.faiss was altered .*Fix: delete it"):
        open_search(str(root), model, retrieval.Retrieval("ann", 4, 4), threads=1)
