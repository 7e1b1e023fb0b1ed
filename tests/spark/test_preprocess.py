"""Preprocess on a real local SparkSession, and its Petastorm output read back."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prismrec import schema as S
from prismrec.layout import Layout
from prismrec.spark import table_schema

pytestmark = pytest.mark.spark


def test_every_input_row_is_accounted_for(preprocessed):
    cfg, meta = preprocessed
    counts = meta.record["counts"]
    raw_lines = sum(1 for _ in open(f"{cfg.paths.data}/synthetic/UserBehavior.csv"))
    assert counts["input"] == raw_lines
    assert counts["input"] == (counts["kept"] + sum(counts["quarantined"].values()) + counts["duplicates"]
                               + sum(counts["filtered"].values()))
    assert set(counts["filtered"]) == {"max_events_per_user", "min_item_events", "min_user_events"}


def test_vocabulary_is_dense_and_by_descending_count(preprocessed):
    cfg, meta = preprocessed
    items = pd.read_parquet(Layout.of(cfg).table("items")).sort_values(S.ITEM_IDX)
    assert items[S.ITEM_IDX].tolist() == list(range(1, meta.items + 1))
    assert items[S.COUNT].is_monotonic_decreasing


def test_histories_are_time_ordered_and_left_padded(spark, preprocessed):
    cfg, _ = preprocessed
    layout = Layout.of(cfg)
    histories = pd.read_parquet(layout.table("histories"))
    items = pd.read_parquet(layout.table("items")).set_index(S.ITEM_ID)[S.ITEM_IDX]
    events = pd.read_parquet(layout.table("events"))
    user = histories.iloc[0]
    expected = (events[events[S.USER_ID] == user[S.USER_ID]]
                .assign(idx=lambda e: e[S.ITEM_ID].map(items)).sort_values([S.TS, S.ITEM_ID])["idx"].tolist())
    length = cfg.preprocess.max_hist_len
    padded = [0] * max(0, length - len(expected)) + expected[-length:]
    assert user[S.HIST_ITEMS].tolist() == padded
    assert user[S.HIST_LEN] == min(len(expected), length)


def test_eval_users_hold_out_the_tail(preprocessed):
    cfg, meta = preprocessed
    users = pd.read_parquet(Layout.of(cfg).table("eval_users"))
    assert set(users[S.SPLIT].astype(str)) == {"valid", "test"}
    for _, user in users.head(20).iterrows():
        assert not set(user[S.TARGET_ITEMS]) & set(user[S.SEEN_ITEMS])
    train_users = meta.record["users_by_split"]["train"]
    assert 0 < len(users) < train_users


def test_petastorm_shards_cover_every_example_once(preprocessed):
    from prismrec.preprocess.petastorm_io import one_pass

    cfg, meta = preprocessed
    seen = []
    for shard in range(2):
        with one_pass(Layout.of(cfg).table("train_examples"), shard, 2) as reader:
            for batch in reader:
                assert batch.hist_items.shape[1] == cfg.preprocess.max_hist_len
                seen.append(pd.DataFrame({"user": batch.user_idx, "target": batch.target_item,
                                          "hist": [tuple(h) for h in batch.hist_items], "shard": shard}))
    rows = pd.concat(seen)
    written = pd.read_parquet(Layout.of(cfg).table("train_examples"))
    assert len(rows) == len(written) == meta.training_examples
    as_read = sorted(zip(rows["user"], rows["target"], rows["hist"]))
    as_written = sorted(zip(written[S.USER_IDX], written[S.TARGET_ITEM], map(tuple, written[S.HIST_ITEMS])))
    assert as_read == as_written
    assert rows.groupby("shard").size().min() > 0


def test_sharded_batches_have_the_training_shapes(preprocessed):
    from prismrec.preprocess.petastorm_io import sharded_batches

    cfg, _ = preprocessed
    with sharded_batches(Layout.of(cfg).table("train_examples"), 1, 2, batch_size=32, seed=1) as batches:
        batch = next(iter(batches))
    assert batch[S.HIST_ITEMS].shape == (32, cfg.preprocess.max_hist_len)
    assert batch[S.TARGET_ITEM].shape == (32,)
    assert np.all(batch[S.TARGET_ITEM].numpy() > 0)


def test_too_few_row_groups_for_the_ranks_is_a_clear_error(preprocessed):
    from prismrec.preprocess.petastorm_io import check_shardable, parquet_layout

    cfg, meta = preprocessed
    path = Layout.of(cfg).table("train_examples")
    layout = parquet_layout(path)
    with pytest.raises(ValueError, match=f"has {layout['row_groups']} row group.*{layout['row_groups'] + 1} ranks"):
        check_shardable(layout, path, layout["row_groups"] + 1)



@pytest.mark.parametrize("table", ["events", "quarantine", "train_examples", "histories"])
def test_written_tables_follow_the_declared_schema(spark, preprocessed, table):
    cfg, _ = preprocessed
    written = spark.read.parquet(Layout.of(cfg).table(table)).schema
    declared = table_schema(table)
    # Parquet round trips drop non-null flags; names and types are the contract.
    assert sorted((f.name, f.dataType.simpleString()) for f in written) == \
        sorted((f.name, f.dataType.simpleString()) for f in declared)
