"""Preprocess on a real local SparkSession, and its Petastorm output read back."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import tiny_config
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


def test_rank_files_cover_every_example_once_in_near_equal_shares(preprocessed):
    from prismrec.preprocess.petastorm_io import examples, file_examples, one_pass, rank_files

    cfg, meta = preprocessed
    path, length = Path(Layout.of(cfg).table("train_sequences")), cfg.preprocess.max_hist_len
    counts = file_examples(str(path))
    assert counts == {file.name: sum(map(len, pd.read_parquet(file)[S.TARGET_POS]))
                      for file in sorted(path.glob("*.parquet"))}
    seen = []
    for rank, share in enumerate(rank_files(counts, 2, str(path))):
        with one_pass([str(path / name) for name in share], length) as reader:
            for batch in reader:
                assert batch.hist_items.shape[1] == length
                seen.append(pd.DataFrame({"user": batch.user_idx, "target": batch.target_item,
                                          "hist": [tuple(h) for h in batch.hist_items], "rank": rank}))
    rows = pd.concat(seen)
    written = examples(pd.read_parquet(path), length)
    assert len(rows) == len(written) == meta.training_examples == sum(counts.values())
    as_read = sorted(zip(rows["user"], rows["target"], rows["hist"]))
    as_written = sorted(zip(written[S.USER_IDX], written[S.TARGET_ITEM], map(tuple, written[S.HIST_ITEMS])))
    assert as_read == as_written
    shares = rows.groupby("rank").size()
    assert abs(shares[0] - shares[1]) <= max(counts.values())


def test_rank_files_balance_examples_longest_first():
    from prismrec.errors import InputError
    from prismrec.preprocess.petastorm_io import rank_files

    counts = {"a": 10, "b": 7, "c": 6, "d": 5, "e": 2}
    # a → 0 (10); b → 1 (7); c → 1 (13); d → 0 (15); e → 1 (15, not 17 on rank 0).
    assert rank_files(counts, 2, "data") == [["a", "d"], ["b", "c", "e"]]
    # a → 0 (10); b → 1 (7); c → 2 (6); d → 2 (11); e → 1 (9).
    assert rank_files(counts, 3, "data") == [["a"], ["b", "e"], ["c", "d"]]
    assert rank_files({"x": 3, "y": 3}, 2, "data") == [["x"], ["y"]]
    with pytest.raises(InputError, match="training data at data has 5 file.*6 rank.*train.num_proc"):
        rank_files(counts, 6, "data")
    # A file without examples is never a rank's whole share.
    assert rank_files({"a": 10, "b": 0, "c": 5}, 2, "data") == [["a"], ["c"]]
    with pytest.raises(InputError, match="has 2 file.*3 rank.*2 of 3 files have rows"):
        rank_files({"a": 10, "b": 0, "c": 5}, 3, "data")


def test_training_sequences_give_every_window_of_each_training_user(spark, preprocessed):
    """Each training user's examples are the sliding windows over their sequence, as their events give it."""
    from pyspark.sql import functions as F

    from prismrec.preprocess.sequences import user_index
    from prismrec.preprocess.petastorm_io import examples

    cfg, meta = preprocessed
    layout, length = Layout.of(cfg), cfg.preprocess.max_hist_len
    most, per_row, several_rows = cfg.preprocess.max_examples_per_user, cfg.preprocess.targets_per_row, 0
    idx = pd.read_parquet(layout.table("items")).set_index(S.ITEM_ID)[S.ITEM_IDX]
    events = pd.read_parquet(layout.table("events")).assign(idx=lambda e: e[S.ITEM_ID].map(idx))
    sequences = pd.read_parquet(layout.table("train_sequences"))
    cut = examples(sequences, length)
    assert len(cut) == meta.training_examples == sum(map(len, sequences[S.TARGET_POS]))
    train_users = set(events[S.USER_ID]) - set(pd.read_parquet(layout.table("eval_users"))[S.USER_ID])
    chosen = sorted(train_users)[:50]
    as_idx = dict(spark.createDataFrame([(u,) for u in chosen], [S.USER_ID])
                  .select(S.USER_ID, user_index(F.col(S.USER_ID))).collect())
    by_user = dict(list(cut.groupby(S.USER_IDX)))
    for user_id in chosen:
        seq = events[events[S.USER_ID] == user_id].sort_values([S.TS, S.ITEM_ID])["idx"].tolist()
        windows = [(tuple([0] * max(0, length - t) + seq[max(0, t - length):t]), min(t, length), seq[t])
                   for t in range(max(1, len(seq) - most), len(seq))]
        frame = by_user.get(as_idx[user_id], cut.iloc[:0])
        assert sorted(zip(map(tuple, frame[S.HIST_ITEMS]), frame[S.HIST_LEN], frame[S.TARGET_ITEM])) == sorted(windows)
        # Rows of at most C targets each, in as few rows as that allows.
        rows = sequences[sequences[S.USER_IDX] == as_idx[user_id]]
        assert len(rows) == -(-len(windows) // per_row)
        assert all(len(targets) <= per_row and len(seq) <= length + per_row
                   for seq, targets in zip(rows[S.SEQ], rows[S.TARGET_POS]))
        several_rows += len(rows) > 1
    assert several_rows


def test_sharded_batches_have_the_training_shapes(preprocessed):
    from prismrec.preprocess.petastorm_io import sharded_batches

    cfg, _ = preprocessed
    files = sorted(str(f) for f in Path(Layout.of(cfg).table("train_sequences")).glob("*.parquet"))
    with sharded_batches(files[:2], batch_size=32, seed=1, max_hist_len=cfg.preprocess.max_hist_len) as batches:
        batch = next(iter(batches))
    assert batch[S.HIST_ITEMS].shape == (32, cfg.preprocess.max_hist_len)
    assert batch[S.TARGET_ITEM].shape == (32,)
    assert np.all(batch[S.TARGET_ITEM].numpy() > 0)


@pytest.mark.parametrize("table", ["events", "quarantine", "train_sequences", "histories"])
def test_written_tables_follow_the_declared_schema(spark, preprocessed, table):
    cfg, _ = preprocessed
    written = spark.read.parquet(Layout.of(cfg).table(table)).schema
    declared = table_schema(table)
    # Parquet round trips drop non-null flags; names and types are the contract.
    assert sorted((f.name, f.dataType.simpleString()) for f in written) == \
        sorted((f.name, f.dataType.simpleString()) for f in declared)


def test_only_the_records_are_held_between_steps(spark, tmp_path, monkeypatch):
    """Entering each step of the stage, the one thing Spark holds for it is the tagged records' cache."""
    from contextlib import contextmanager

    from prismrec.preprocess import stage
    from prismrec.stages import run as run_stage

    def held() -> set[int]:
        return {int(key) for key in spark.sparkContext._jsc.getPersistentRDDs().keys()}

    before, at_steps, original = held(), [], stage.job_group

    @contextmanager
    def recording_job_group(session, name, description):
        at_steps.append(held() - before)
        with original(session, name, description):
            yield

    cfg = tiny_config(tmp_path)
    run_stage("generate", cfg)
    monkeypatch.setattr(stage, "job_group", recording_job_group)
    run_stage("preprocess", cfg, spark)
    assert len(at_steps) == 3 and at_steps[0] == set()
    assert len(at_steps[1]) == 1 and at_steps[2] == at_steps[1]
    assert held() - before == set()
