"""Coverage, novelty and interest quality: limits, hand-derived values, and Spark = numpy."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prismrec import schema as S
from prismrec.evaluation import interests as quality
from prismrec.ranking.metrics import coverage, novelty, self_information


def ranked_frame(spark, ranked: list[list[int]]):
    return spark.createDataFrame(pd.DataFrame({S.USER_ID: [str(u) for u in range(len(ranked))],
                                               "ranked": [[int(i) for i in r] for r in ranked]}),
                                 schema=f"{S.USER_ID} string, ranked array<int>")


def information_frame(spark, counts: np.ndarray):
    return spark.createDataFrame(pd.DataFrame({S.ITEM_IDX: np.arange(1, len(counts), dtype=np.int32),
                                               "self_information": self_information(counts)[1:]}))


@pytest.mark.spark
@pytest.mark.parametrize("seed", [0, 1])
def test_spark_coverage_and_novelty_match_numpy(spark, seed):
    from prismrec.evaluation import spark_metrics

    rng = np.random.default_rng(seed)
    num_items = 60
    counts = np.concatenate([[0], rng.integers(1, 500, size=num_items)])
    ranked = np.full((30, 12), -1)
    for row in range(30):  # lists of every length, empty included, with -1 padding at the end
        length = rng.integers(0, 13)
        ranked[row, :length] = rng.choice(np.arange(1, num_items + 1), size=length, replace=False)
    got = spark_metrics.catalogue(ranked_frame(spark, [r[r > 0] for r in ranked]),
                                  information_frame(spark, counts), [5, 12], num_items)
    information = self_information(counts)
    for k in (5, 12):
        assert got[f"coverage@{k}"] == pytest.approx(coverage(ranked, num_items, k), rel=1e-12)
        assert got[f"novelty@{k}"] == pytest.approx(novelty(ranked, information, k).mean(), rel=1e-9)


@pytest.mark.spark
def test_spark_catalogue_limits_per_system(spark):
    from prismrec.evaluation import spark_metrics

    # "full": two users whose top-2 together hold all 4 items → coverage 1; "empty": nothing → 0.
    from pyspark.sql import functions as F

    frame = ranked_frame(spark, [[1, 2], [3, 4], [], []]).withColumn(
        "system", F.expr("IF(CAST(user_id AS INT) < 2, 'full', 'empty')"))
    got = spark_metrics.catalogue(frame, information_frame(spark, np.array([0, 1, 1, 1, 1])), [2], 4, by="system")
    assert got["full"]["coverage@2"] == 1.0
    assert got["full"]["novelty@2"] == pytest.approx(2.0)  # uniform over 4 items: −log2(1/4) = 2 bits
    assert got["empty"] == {"coverage@2": 0.0, "novelty@2": 0.0}


@pytest.mark.unit
def test_coverage_and_novelty_limits_and_hand_values():
    everything = np.array([[1, 2, 3], [4, 5, -1]])
    assert coverage(everything, 5, 3) == 1.0
    assert coverage(np.full((2, 3), -1), 5, 3) == 0.0
    assert coverage(everything, 5, 1) == 2 / 5                # top-1 lists hold items 1 and 4
    counts = np.array([0, 6, 1, 1])                         # p = 6/8, 1/8, 1/8
    information = self_information(counts)
    assert information.tolist() == pytest.approx([0.0, -np.log2(0.75), 3.0, 3.0])
    # user 0: items 2, 3 → (3 + 3) / 2 = 3 bits; user 1: item 1 → 0.415 bits; user 2: empty → 0.
    got = novelty(np.array([[2, 3], [1, -1], [-1, -1]]), information, 2)
    assert got.tolist() == pytest.approx([3.0, -np.log2(0.75), 0.0])


@pytest.mark.unit
def test_interest_distinctness_entropy_and_purity_by_hand():
    vectors = np.array([[[1.0, 0.0], [0.0, 2.0]],           # orthogonal → cosine 0
                        [[1.0, 1.0], [3.0, 3.0]]])          # same direction → cosine 1
    assert quality.mean_pairwise_cosine(vectors).tolist() == pytest.approx([0.0, 1.0])
    assert np.isnan(quality.mean_pairwise_cosine(vectors[:, :1])).all()
    weights = np.array([[0.25, 0.25, 0.25, 0.25], [1.0, 0.0, 0.0, 0.0]])
    assert quality.weight_entropy(weights).tolist() == pytest.approx([2.0, 0.0])
    category = np.array([0, 7, 7, 7, 8])                    # item_idx → category
    top = np.array([[[1, 2, 3, 4], [4, -1, -1, -1]]])       # 3 of 4 in category 7; one item, pure
    assert quality.category_purity(top, category).tolist() == [[0.75, 1.0]]


@pytest.mark.unit
def test_recovery_on_a_constructed_case():
    # item_idx 1-4 in topic 0, 5-8 topic 1, 9-12 topic 2, 13-16 topic 3.
    item_topic = np.concatenate([[-1], np.repeat([0, 1, 2, 3], 4)])
    retrieved = np.array([
        [1, 2, 3, 4],       # all topic 0
        [5, 6, 7, 1],       # 3/4 topic 1, 1/4 topic 0
        [9, 10, 13, 14],    # 1/2 topic 2: not a majority, so topic 2 is not recovered
    ])
    # Greedy matching: (interest 0, topic 0) = 1.0, then (1, topic 1) = 0.75, then (2, topic 2) = 0.5.
    assert quality.recovered_topics(retrieved, item_topic, np.array([0, 1, 2])).tolist() == [0, 1]
    # A planted topic no interest retrieves from is not recovered; a single interest recovers one at most.
    assert quality.recovered_topics(retrieved[:1], item_topic, np.array([0, 3])).tolist() == [0]
    # Evidence: topic 0 appears 3 times in the input, topic 1 twice, topic 2 not at all.
    hist = np.array([0, 0, 1, 2, 3, 5, 6])
    assert quality.evidenced_topics(hist, item_topic, np.array([0, 1, 2])).tolist() == [0]
    assert quality.greedy_match(np.array([[0.9, 0.8], [0.85, 0.1]])) == [(0, 0), (1, 1)]


@pytest.mark.unit
def test_nmi_limits_and_assignment_nmi():
    assert quality.nmi([0, 0, 1, 1], [5, 5, 9, 9]) == pytest.approx(1.0)   # same partition, other labels
    assert quality.nmi([0, 1, 0, 1], [5, 5, 9, 9]) == pytest.approx(0.0)   # independent
    assert quality.nmi([0, 0, 0, 0], [5, 5, 9, 9]) == 0.0
    item_topic = np.array([-1, 0, 0, 1, 1])
    hist = np.array([[0, 1, 2, 3, 4], [0, 0, 1, 2, 1]])
    assignment = np.array([[-1, 1, 1, 0, 0], [-1, -1, 0, 1, 0]])
    got = quality.assignment_nmi(assignment, hist, item_topic)
    assert got[0] == pytest.approx(1.0)
    assert np.isnan(got[1])                                  # one topic only: nothing to disentangle
