"""Item and category vocabularies: majority categories, and dense numbering across partitions."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

from conftest import tiny_config
from prismrec import schema as S
from prismrec.preprocess import sequences
from prismrec.layout import Layout

pytestmark = pytest.mark.spark
CASES = Path(__file__).resolve().parents[2] / "tests" / "cases"  # the shared real-input cases, copied in


@contextmanager
def shuffle_partitions(spark, partitions: int):
    before = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", str(partitions))
    try:
        yield
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", before)


def events(spark, pairs: list[tuple[str, str]], partitions: int = 1):
    return spark.createDataFrame(pairs, [S.ITEM_ID, S.CATEGORY_ID]).repartition(partitions)


def test_an_items_category_is_its_most_frequent_one_and_ties_go_to_the_smallest_string(spark):
    pairs = ([("a", "x")] * 3 + [("a", "y")]          # a: x 3 times, y once → x
             + [("b", "99")] * 2 + [("b", "102")] * 2  # b: a 2–2 tie → "102" < "99" as strings
             + [("c", "z")])
    items = sequences.item_vocabulary(events(spark, pairs, partitions=3)).toPandas()
    # Counts a 4, b 4, c 1: a and b tie on count, so item_id orders them.
    assert items.sort_values(S.ITEM_IDX).values.tolist() == [[1, "a", "x", 4], [2, "b", "102", 4], [3, "c", "z", 1]]


def test_the_category_majority_case_through_preprocess(spark, tmp_path):
    from prismrec.preprocess import stage as preprocess

    cfg = tiny_config(tmp_path, "source.format=taobao", f"source.path={CASES / 'category-majority.csv'}")
    preprocess.run(spark, cfg)
    items = pd.read_parquet(Layout.of(cfg).table("items")).set_index(S.ITEM_ID)
    # Item 7: 26 events in 102, one in 999; item 8: 17 in 103, one in 000 (the largest string used to win).
    assert items.at["7", S.CATEGORY_ID] == "102"
    assert items.at["8", S.CATEGORY_ID] == "103"
    assert (items.at["7", S.COUNT], items.at["8", S.COUNT]) == (27, 18)


def test_numbering_is_dense_and_ordered_across_partitions(spark):
    # 60 items, item i has (i % 7) + 1 events: counts repeat, so item_id breaks many ties;
    # item i's category is c<i % 4>, so the category counts are sums over items.
    pairs = [(f"item{i:02d}", f"c{i % 4}") for i in range(60) for _ in range(i % 7 + 1)]
    with shuffle_partitions(spark, 5):
        items = sequences.item_vocabulary(events(spark, pairs, partitions=4))
        categories = sequences.category_vocabulary(items).toPandas()
        items = items.toPandas()
    counts = pd.Series([item for item, _ in pairs]).value_counts()
    expected = sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))
    ordered = items.sort_values(S.ITEM_IDX)
    assert ordered[S.ITEM_IDX].tolist() == list(range(1, 61))
    assert list(zip(ordered[S.ITEM_ID], ordered[S.COUNT])) == expected
    # c0 holds items 0, 4, …, 56: Σ (i % 7 + 1) over them, and so on; all four sums differ.
    category_events = pd.Series([category for _, category in pairs]).value_counts()
    ordered = categories.sort_values(S.CATEGORY_IDX)
    assert ordered[S.CATEGORY_IDX].tolist() == [1, 2, 3, 4]
    assert list(zip(ordered[S.CATEGORY_ID], ordered[S.COUNT])) == sorted(
        category_events.items(), key=lambda pair: (-pair[1], pair[0]))


def test_an_empty_vocabulary_has_no_rows(spark):
    empty = spark.createDataFrame([], f"{S.ITEM_ID} string, {S.CATEGORY_ID} string")
    assert sequences.item_vocabulary(empty).count() == 0
