"""The ``last`` protocol on literal users: each user's own last events are valid and test targets."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from prismrec import schema as S
from prismrec.config import ConfigError, load_config
from prismrec.layout import Layout
from prismrec.preprocess.petastorm_io import examples
from prismrec.preprocess.stage import run

pytestmark = pytest.mark.spark
BASE_TS = 1767225600  # 2026-01-01T00:00:00Z
L = 20  # preprocess.max_hist_len


def ids(prefix: str, first: int, last: int) -> list[str]:
    return [f"{prefix}{i:02d}" for i in range(first, last + 1)]


# Each user's items in time order (one minute apart). Users own disjoint items, except
# t_b, which `pop` makes the most popular item, and `tie` ends on t_a and t_b at one ts.
SEQUENCES = {
    "u10": ids("c", 1, 10),
    "u19": ids("d", 1, 19),
    "u20": ids("a", 1, 16) + ["a03", "a17", "a17", "a18"],  # repeats: of a train item, of a valid item
    "u09": ids("e", 1, 9),
    "rep": ids("r", 1, 8) + ["r05", "r09"],  # its only valid event repeats a train item
    "tie": ids("x", 1, 8) + ["t_b", "t_a"],  # t_b and t_a share a timestamp
    "pop": ["t_b"] * 3,
    "big": ids("g", 1, 90),
}


def write_log(path: Path) -> None:
    lines = []
    for user_number, (user, items) in enumerate(SEQUENCES.items()):
        for position, item in enumerate(items):
            tied = user == "tie" and item == "t_a"  # same second as the t_b before it
            ts = BASE_TS + 86400 * user_number + 60 * (position - tied)
            lines.append(f"{user},{item},7,pv,{ts}")
    path.write_text("\n".join(lines) + "\n")


def preprocess_last(spark, tmp: Path, *extra: str):
    """(meta, eval_users, training windows, item_idx by item_id) of the literal log under ``last``."""
    log = tmp / "log.csv"
    write_log(log)
    cfg = load_config(None, [f"paths.output={tmp / 'output'}", "source.format=taobao", f"source.path={log}",
                             "run.dt=2026-12-31", "preprocess.protocol=last", "preprocess.min_user_events=1",
                             "preprocess.min_item_events=1", f"preprocess.max_hist_len={L}",
                             "preprocess.max_examples_per_user=100", "preprocess.num_files=1",
                             "spark.shuffle_partitions=2", *extra])
    meta = run(spark, cfg)
    layout = Layout.of(cfg)
    eval_users = pd.read_parquet(layout.table("eval_users"))
    eval_users[S.SPLIT] = eval_users[S.SPLIT].astype(str)
    windows = examples(pd.read_parquet(layout.table("train_sequences")), L)
    items = pd.read_parquet(layout.table("items"))
    return meta, eval_users, windows, dict(zip(items[S.ITEM_ID], items[S.ITEM_IDX]))


def windows_by_user(windows: pd.DataFrame, train_parts: dict[str, list[str]], idx: dict) -> dict[str, list[set]]:
    """Each window's items (history without padding, and target), by the user whose training part holds the target."""
    owner = {idx[item]: user for user, items in train_parts.items() for item in items}
    grouped: dict[str, list[set]] = {}
    for hist, target in zip(windows[S.HIST_ITEMS], windows[S.TARGET_ITEM]):
        grouped.setdefault(owner[target], []).append({int(i) for i in hist if i != 0} | {int(target)})
    return grouped


def row(eval_users: pd.DataFrame, user: str, split: str) -> pd.Series:
    rows = eval_users[(eval_users[S.USER_ID] == user) & (eval_users[S.SPLIT] == split)]
    assert len(rows) == 1, (user, split, len(rows))
    return rows.iloc[0]


def as_idx(items: list[str], idx: dict) -> set[int]:
    return {idx[item] for item in items}


# valid_share = test_share = 0.1. n_valid = floor(0.1·n), n_test = floor(0.1·n), train = the first n − both.
TRAIN_PARTS = {
    "u10": ids("c", 1, 8),   # n=10: floor(1.0)=1 valid, 1 test → 8 train
    "u19": ids("d", 1, 17),  # n=19: floor(1.9)=1, 1 → 17
    "u20": ids("a", 1, 16),  # n=20: floor(2.0)=2, 2 → 16
    "u09": ids("e", 1, 9),   # n=9:  floor(0.9)=0, 0 → 9, no evaluation row
    "rep": ids("r", 1, 8),   # n=10: 1, 1 → 8
    "tie": ids("x", 1, 8),   # n=10: 1, 1 → 8
    "pop": ["t_b"] * 3,      # n=3:  floor(0.3)=0, 0 → 3
    "big": ids("g", 1, 72),  # n=90: floor(9.0)=9, 9 → 72
}
# Distinct items of the part not seen before it: u20's valid part (a03, a17) loses a03 (a train item)
# and its test part (a17, a18) loses a17 (a valid item); rep's valid part (r05) is all seen: no row.
VALID_TARGETS = {"u10": ["c09"], "u19": ["d18"], "u20": ["a17"], "tie": ["t_a"], "big": ids("g", 73, 81)}
TEST_TARGETS = {"u10": ["c10"], "u19": ["d19"], "u20": ["a18"], "rep": ["r09"], "tie": ["t_b"],
                "big": ids("g", 82, 90)}
VALID_PARTS = {"u10": ["c09"], "u19": ["d18"], "u20": ["a03", "a17"], "rep": ["r05"], "tie": ["t_a"],
               "big": ids("g", 73, 81)}


@pytest.fixture(scope="module")
def shares_tenth(spark, tmp_path_factory):
    return preprocess_last(spark, tmp_path_factory.mktemp("last_protocol"))


def test_each_user_trains_on_all_but_the_floored_tail(shares_tenth):
    _, _, windows, idx = shares_tenth
    by_user = windows_by_user(windows, TRAIN_PARTS, idx)
    assert sorted(by_user) == sorted(TRAIN_PARTS)  # every user trains, u09 (no evaluation row) included
    for user, train_items in TRAIN_PARTS.items():
        # Sliding windows over n_train events: targets at positions 2..n_train, so n_train − 1 windows
        # (u10: 8 − 1 = 7), covering exactly the training part.
        assert len(by_user[user]) == len(train_items) - 1, user
        assert set.union(*by_user[user]) == as_idx(train_items, idx), user


def test_evaluation_rows_hold_the_valid_and_test_parts(shares_tenth):
    meta, eval_users, _, idx = shares_tenth
    assert sorted(eval_users[eval_users[S.SPLIT] == "valid"][S.USER_ID]) == sorted(VALID_TARGETS)
    assert sorted(eval_users[eval_users[S.SPLIT] == "test"][S.USER_ID]) == sorted(TEST_TARGETS)
    assert (eval_users[S.TARGET_ITEMS].map(len) > 0).all()
    # 8 users train; valid: 5 (rep's only valid item was seen, u09 and pop have none); test: 6.
    assert meta.record["users_by_split"] == {"train": 8, "valid": 5, "test": 6}
    for user, targets in VALID_TARGETS.items():
        valid = row(eval_users, user, "valid")
        assert set(valid[S.TARGET_ITEMS]) == as_idx(targets, idx), user
        assert set(valid[S.SEEN_ITEMS]) == as_idx(TRAIN_PARTS[user], idx), user
    for user, targets in TEST_TARGETS.items():
        test = row(eval_users, user, "test")
        assert set(test[S.TARGET_ITEMS]) == as_idx(targets, idx), user
        assert set(test[S.SEEN_ITEMS]) == as_idx(TRAIN_PARTS[user] + VALID_PARTS[user], idx), user


def test_test_input_is_the_training_part_only(shares_tenth):
    _, eval_users, _, idx = shares_tenth
    for user in TEST_TARGETS:
        train = [idx[item] for item in TRAIN_PARTS[user]]
        # The last L=20 training items, left-padded: u10 has 8 → 12 zeros then c01..c08; big has 72 → g53..g72.
        expected = [0] * max(0, L - len(train)) + train[-L:]
        for split in ("valid", "test") if user in VALID_TARGETS else ("test",):
            got = row(eval_users, user, split)
            assert got[S.HIST_ITEMS].tolist() == expected, (user, split)
            assert got[S.HIST_LEN] == min(len(train), L)


def test_no_held_out_item_reaches_the_users_training_windows_or_test_input(shares_tenth):
    _, eval_users, windows, idx = shares_tenth
    by_user = windows_by_user(windows, TRAIN_PARTS, idx)
    for user, targets in eval_users.groupby(S.USER_ID)[S.TARGET_ITEMS]:
        held_out = {int(i) for items in targets for i in items}
        assert all(not window & held_out for window in by_user[user]), user
        assert not set(row(eval_users, user, "test")[S.HIST_ITEMS].tolist()) & held_out, user


def test_ties_in_time_are_broken_by_item_id_not_popularity(shares_tenth):
    _, eval_users, _, idx = shares_tenth
    # t_b has 3 (pop) + 1 (tie) events, t_a 1: by popularity t_b comes first, by id t_a does.
    assert idx["t_b"] < idx["t_a"]
    # tie's last two events share a timestamp: t_a is the 9th (valid), t_b the 10th (test).
    assert row(eval_users, "tie", "valid")[S.TARGET_ITEMS].tolist() == [idx["t_a"]]
    assert row(eval_users, "tie", "test")[S.TARGET_ITEMS].tolist() == [idx["t_b"]]


@pytest.fixture(scope="module")
def no_test_share(spark, tmp_path_factory):
    return preprocess_last(spark, tmp_path_factory.mktemp("last_no_test"),
                           "preprocess.valid_share=0.7", "preprocess.test_share=0")


# valid_share = 0.7, test_share = 0: n_valid = floor(0.7·n), no test part.
TRAIN_PARTS_NO_TEST = {
    "u10": ids("c", 1, 3),   # n=10: floor(7.0)=7 valid → 3 train
    "u19": ids("d", 1, 6),   # n=19: floor(13.3)=13 → 6
    "u20": ids("a", 1, 6),   # n=20: floor(14.0)=14 → 6
    "u09": ids("e", 1, 3),   # n=9:  floor(6.3)=6 → 3
    "rep": ids("r", 1, 3),   # n=10: 7 → 3
    "tie": ids("x", 1, 3),   # n=10: 7 → 3
    "big": ids("g", 1, 27),  # n=90: floor(63.0)=63 → 27 (the doubles' floor would say 62 → 28)
    # pop: n=3: floor(2.1)=2 → 1 training event: no window; its valid t_b was seen: no row.
}


def test_zero_test_share_gives_no_test_rows_and_trains_on_all_but_the_valid_part(no_test_share):
    meta, eval_users, windows, idx = no_test_share
    assert set(eval_users[S.SPLIT]) == {"valid"}
    assert meta.record["users_by_split"] == {"train": 8, "valid": 7}  # every user but pop has a valid row
    by_user = windows_by_user(windows, TRAIN_PARTS_NO_TEST, idx)
    assert sorted(by_user) == sorted(TRAIN_PARTS_NO_TEST)
    for user, train_items in TRAIN_PARTS_NO_TEST.items():
        assert len(by_user[user]) == len(train_items) - 1, user
        assert set.union(*by_user[user]) == as_idx(train_items, idx), user
    assert set(row(eval_users, "u10", "valid")[S.TARGET_ITEMS]) == as_idx(ids("c", 4, 10), idx)


def test_shares_are_floored_as_written_not_as_doubles(no_test_share):
    _, eval_users, windows, idx = no_test_share
    assert math.floor(0.7 * 90) == 62  # the double 62.99999999999999
    # big: n=90, floor(0.7·90) = 63 valid → 90 − 63 = 27 training events (26 windows), targets g28..g90.
    by_user = windows_by_user(windows, TRAIN_PARTS_NO_TEST, idx)
    assert len(by_user["big"]) == 26
    big = row(eval_users, "big", "valid")
    assert set(big[S.TARGET_ITEMS]) == as_idx(ids("g", 28, 90), idx)
    assert set(big[S.SEEN_ITEMS]) == as_idx(ids("g", 1, 27), idx)


@pytest.mark.parametrize("overrides, message", [
    (["preprocess.valid_share=0"], r"'preprocess.valid_share' has value 0.0 .*allowed: a finite number with 0 < "),
    (["preprocess.test_share=-0.1"], r"'preprocess.test_share' has value -0.1 .*allowed: a finite number with 0 ≤ "),
    (["preprocess.valid_share=.nan"], r"'preprocess.valid_share' has value nan"),
    (["preprocess.valid_share=0.7", "preprocess.test_share=0.3"],
     r"'preprocess.valid_share' \(0.7\) and 'preprocess.test_share' \(0.3\) sum to 1 or more .*--set "
     r"preprocess.test_share=0.3"),
])
def test_bad_shares_are_config_errors_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_last_is_an_allowed_protocol():
    cfg = load_config(None, ["preprocess.protocol=last", "preprocess.test_share=0"])
    assert (cfg.preprocess.protocol, cfg.preprocess.valid_share, cfg.preprocess.test_share) == ("last", 0.1, 0.0)


def test_the_share_sum_is_checked_on_the_merged_config_whatever_the_order():
    # 0.9 + the default 0.1 would be 1.0, but the later layer lowers test_share: 0.9 + 0.05 = 0.95 < 1.
    for overrides in (["preprocess.valid_share=0.9", "preprocess.test_share=0.05"],
                      ["preprocess.test_share=0.05", "preprocess.valid_share=0.9"]):
        cfg = load_config(None, overrides)
        assert (cfg.preprocess.valid_share, cfg.preprocess.test_share) == (0.9, 0.05)
