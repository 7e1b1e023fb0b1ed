"""Synthetic logs: schema, determinism, planted interests, Zipf skew, files and spec checks."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from prismrec.config import ConfigError
from prismrec.synthetic import (EVENT_COLUMNS, SyntheticSpec, _session_interests, _spread_starts, generate,
                                      write)

SMALL = SyntheticSpec(num_users=150, num_items=400, num_categories=20, num_topics=5, max_interests=3,
                      mean_events_per_user=30.0, min_events_per_user=6, num_days=5, seed=3)


@pytest.fixture(scope="module")
def small_logs():
    return generate(SMALL)


@pytest.mark.unit
def test_same_seed_gives_identical_frames_and_other_seeds_differ(small_logs):
    again = generate(SMALL)
    pd.testing.assert_frame_equal(small_logs.events, again.events)
    pd.testing.assert_frame_equal(small_logs.user_interests, again.user_interests)
    pd.testing.assert_frame_equal(small_logs.items, again.items)
    other = generate(dataclasses.replace(SMALL, seed=4))
    assert not small_logs.events.equals(other.events)
    assert not small_logs.user_interests.equals(other.user_interests)


@pytest.mark.unit
def test_columns_and_dtypes(small_logs):
    events, interests, items = small_logs.events, small_logs.user_interests, small_logs.items
    assert list(events.columns) == ["user_id", "item_id", "category_id", "behavior", "timestamp"]
    assert events["timestamp"].dtype == np.int64
    for column in ("user_id", "item_id", "category_id", "behavior"):
        assert events[column].map(type).eq(str).all(), column
    assert set(events["behavior"]) <= {"pv", "cart", "fav", "buy"}
    assert list(interests.columns) == ["user_id", "topic", "weight", "centre"]
    assert (interests["topic"].dtype, interests["weight"].dtype) == (np.int32, np.float64)
    assert list(items.columns) == ["item_id", "category_id", "topic", "position"]
    assert items["topic"].dtype == np.int32
    assert items["position"].between(0, 1, inclusive="left").all()
    assert interests["centre"].between(0, 1, inclusive="left").all()
    assert items["item_id"].is_unique and len(items) == SMALL.num_items
    # Every topic owns a category and every category an item.
    assert items["category_id"].nunique() == SMALL.num_categories
    assert items["topic"].nunique() == SMALL.num_topics


@pytest.mark.unit
def test_events_sorted_by_user_then_time(small_logs):
    events = small_logs.events
    resorted = events.sort_values(["user_id", "timestamp"], kind="stable", ignore_index=True)
    pd.testing.assert_frame_equal(events, resorted)


@pytest.mark.unit
def test_every_user_has_at_least_min_events(small_logs):
    per_user = small_logs.events.groupby("user_id").size()
    assert len(per_user) == SMALL.num_users
    assert per_user.min() >= SMALL.min_events_per_user


@pytest.mark.unit
def test_interest_weights_sum_to_one_over_1_to_max_distinct_topics(small_logs):
    by_user = small_logs.user_interests.groupby("user_id")
    np.testing.assert_allclose(by_user["weight"].sum(), 1.0, rtol=0, atol=1e-12)
    counts = by_user["topic"].nunique()
    assert (counts == by_user.size()).all()  # topics of one user are distinct
    assert counts.between(1, SMALL.max_interests).all()
    assert len(counts) == SMALL.num_users
    assert (small_logs.user_interests["weight"] > 0).all()


@pytest.mark.unit
def test_event_categories_match_items_table(small_logs):
    joined = small_logs.events.merge(small_logs.items, on="item_id", how="left", suffixes=("", "_truth"))
    assert joined["category_id_truth"].notna().all()
    assert (joined["category_id"] == joined["category_id_truth"]).all()


@pytest.mark.unit
def test_events_fall_within_planted_topics(small_logs):
    events = small_logs.events.merge(small_logs.items[["item_id", "topic"]], on="item_id")
    planted = small_logs.user_interests[["user_id", "topic"]].assign(planted=True)
    events = events.merge(planted, on=["user_id", "topic"], how="left")
    share_per_user = events["planted"].notna().groupby(events["user_id"]).mean()
    # Noise is 5% uniform over the catalogue, so about 95% land on planted topics; 80% leaves slack.
    assert share_per_user.mean() > 0.9
    assert (share_per_user > 0.8).mean() > 0.95


@pytest.mark.unit
def test_popularity_is_zipf_skewed_within_a_topic():
    spec = dataclasses.replace(SMALL, num_users=300, noise_fraction=0.0)
    logs = generate(spec)
    events = logs.events.merge(logs.items[["item_id", "topic"]], on="item_id")
    counts = events.loc[events["topic"] == 0, "item_id"].value_counts()
    # 80 items in topic 0, exponent 1.1: P(rank 1) / P(rank 40) = 40^1.1 ≈ 58.
    assert counts.iloc[0] > 10 * counts.median()


@pytest.mark.unit
def test_timestamps_within_the_window(small_logs):
    start = int(pd.Timestamp(SMALL.start_date, tz="UTC").timestamp())
    timestamps = small_logs.events["timestamp"]
    assert timestamps.min() >= start
    assert timestamps.max() < start + SMALL.num_days * 86_400


@pytest.mark.unit
def test_write_round_trips(small_logs, tmp_path):
    paths = write(small_logs, tmp_path / "out")
    assert set(paths) == {"csv", "parquet", "truth_user_interests", "truth_items"}
    csv = pd.read_csv(paths["csv"], header=None, names=list(EVENT_COLUMNS),
                      dtype={"user_id": str, "item_id": str, "category_id": str, "behavior": str,
                             "timestamp": np.int64})
    pd.testing.assert_frame_equal(csv, small_logs.events)
    pd.testing.assert_frame_equal(pd.read_parquet(paths["parquet"]), small_logs.events)
    pd.testing.assert_frame_equal(pd.read_parquet(paths["truth_user_interests"]), small_logs.user_interests)
    pd.testing.assert_frame_equal(pd.read_parquet(paths["truth_items"]), small_logs.items)


@pytest.mark.unit
@pytest.mark.parametrize("field, value", [
    ("num_users", 0),
    ("num_items", 2.5),
    ("num_topics", 0),
    ("num_topics", 21),
    ("max_interests", 6),
    ("mean_events_per_user", -1.0),
    ("mean_session_length", 0.5),
    ("noise_fraction", 1.0),
    ("noise_fraction", -0.1),
    ("zipf_exponent", float("nan")),
    ("focus", 1.5),
    ("min_interest_weight", -0.1),
    ("min_interest_weight", 0.34),  # SMALL holds up to 3 interests: 3 × 0.34 > 1
    ("min_interest_weight", float("inf")),
    ("interest_width", 0.0),
    ("start_date", "2026-13-01"),
    ("start_date", "01/01/2026"),
])
def test_invalid_spec_names_field_and_value(field, value):
    # The spec checks itself when it is built, so no bad spec reaches generate().
    with pytest.raises(ConfigError, match=rf"config key 'synthetic\.{field}' has value .*; allowed: "):
        dataclasses.replace(SMALL, **{field: value})


@pytest.mark.unit
def test_import_leaves_spark_tensorflow_and_horovod_out():
    code = ("import sys, prismrec.synthetic; "
            "print([m for m in ('pyspark', 'tensorflow', 'horovod') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.unit
def test_invalid_spec_message_says_what_is_allowed():
    with pytest.raises(ConfigError) as raised:
        dataclasses.replace(SMALL, num_topics=0)
    assert str(raised.value) == ("config key 'synthetic.num_topics' has value 0; "
                                 "allowed: an integer >= 1 and <= synthetic.num_categories (20)")


@pytest.mark.unit
def test_invalid_weight_floor_message_says_how_to_fix_it():
    with pytest.raises(ConfigError) as raised:
        dataclasses.replace(SMALL, min_interest_weight=0.5)
    assert str(raised.value) == (
        "config key 'synthetic.min_interest_weight' has value 0.5; allowed: a number from 0 to "
        "1/synthetic.max_interests = 0.3333 (each of up to max_interests interests gets at least this weight): "
        "lower it, or lower max_interests")


@pytest.mark.unit
@pytest.mark.parametrize("floor", [0.0, 0.2, 1 / 3])
def test_every_planted_weight_is_at_least_the_floor(floor):
    interests = generate(dataclasses.replace(SMALL, min_interest_weight=floor)).user_interests
    by_user = interests.groupby("user_id")["weight"]
    assert (by_user.min() >= floor - 1e-12).all()
    np.testing.assert_allclose(by_user.sum(), 1.0, rtol=0, atol=1e-12)
    # The others' floors bound each weight from above: k = 3 at floor 0.2 leaves 1 - 2 × 0.2 = 0.6.
    most = 1.0 - (by_user.size() - 1) * floor
    assert (by_user.max() <= most + 1e-12).all()
    if floor == 1 / 3:  # users holding 3 interests get exactly a third each
        full = by_user.size() == 3
        np.testing.assert_allclose(by_user.max()[full], 1 / 3, rtol=0, atol=1e-12)


@pytest.mark.unit
def test_each_interest_leads_one_of_the_longest_sessions():
    # User 0: 5 sessions, 3 interests, all but all weight on slot 0; user 1: 2 sessions for 3 interests.
    session_user = np.array([0, 0, 0, 0, 0, 1, 1])
    session_length = np.array([1, 5, 2, 7, 3, 4, 4])
    weights = np.array([[0.98, 0.01, 0.01], [1.0, 0.0, 0.0]])
    picked = _session_interests(np.random.default_rng(0), session_user, session_length, weights, np.array([3, 1]))
    # The three longest of user 0 (lengths 7, 5, 3: sessions 3, 1, 4) lead slots 0, 1, 2.
    assert picked[[3, 1, 4]].tolist() == [0, 1, 2]
    # User 1 holds one interest: both sessions are on it.
    assert picked[[5, 6]].tolist() == [0, 0]
    too_few = _session_interests(np.random.default_rng(0), np.array([0, 0]), np.array([3, 3]),
                                 np.array([[1.0, 0.0, 0.0]]), np.array([3]))
    assert too_few.tolist() == [0, 0]  # fewer sessions than interests: by weight only


@pytest.mark.unit
def test_sessions_of_one_interest_spread_over_the_window():
    keys = np.array([5, 9, 5, 5, 5])
    starts = _spread_starts(np.random.default_rng(0), keys, np.full(5, 100))
    # Four sessions of key 5 over 0..100: one in each quarter, [0, 25), [25, 50), [50, 75), [75, 100).
    assert sorted(starts[keys == 5] // 25) == [0, 1, 2, 3]
    assert 0 <= starts[1] < 100


@pytest.mark.unit
def test_every_planted_interest_has_events():
    # One event per session: every user (>= 6 events) has a session for each of up to 3 interests.
    logs = generate(dataclasses.replace(SMALL, mean_session_length=1.0, noise_fraction=0.0))
    events = logs.events.merge(logs.items[["item_id", "topic"]], on="item_id")
    counts = events.groupby(["user_id", "topic"]).size().rename("events").reset_index()
    planted = logs.user_interests.merge(counts, on=["user_id", "topic"], how="left")
    assert planted["events"].notna().all()


@pytest.mark.unit
def test_planted_interests_show_at_least_three_events_nearly_always(small_logs):
    events = small_logs.events.merge(small_logs.items[["item_id", "topic"]], on="item_id")
    counts = events.groupby(["user_id", "topic"]).size().rename("events").reset_index()
    planted = small_logs.user_interests.merge(counts, on=["user_id", "topic"], how="left").fillna({"events": 0})
    # Unfloored Dirichlet(1) weights left about one in five interests with fewer than three events.
    assert (planted["events"] >= 3).mean() > 0.95


def _ring_distance_to_centre(logs) -> pd.Series:
    """Per event: distance on its topic's ring between the item and the user's interest centre there."""
    events = logs.events.merge(logs.items[["item_id", "topic", "position"]], on="item_id")
    events = events.merge(logs.user_interests, on=["user_id", "topic"])
    gap = (events["position"] - events["centre"]).abs()
    return np.minimum(gap, 1.0 - gap)


@pytest.mark.unit
def test_focused_interests_sit_near_their_centres_on_the_ring():
    focused = generate(dataclasses.replace(SMALL, noise_fraction=0.0, focus=1.0, interest_width=0.02,
                                           interest_drift=0.0))
    spread = generate(dataclasses.replace(SMALL, noise_fraction=0.0, focus=0.0))
    # Uniform positions on a ring are on average 0.25 from any point; a 0.02 spread plus
    # 7 neighbours of an 80-item topic (±0.04) stays well inside 0.1.
    assert _ring_distance_to_centre(focused).median() < 0.06
    assert _ring_distance_to_centre(spread).median() > 0.15


@pytest.mark.unit
def test_drifting_interests_reach_their_centres_at_the_end_of_the_window():
    logs = generate(dataclasses.replace(SMALL, noise_fraction=0.0, focus=1.0, interest_width=0.02,
                                        interest_drift=0.3))
    distance = _ring_distance_to_centre(logs)
    timestamps = logs.events.merge(logs.items[["item_id", "topic"]], on="item_id").merge(
        logs.user_interests, on=["user_id", "topic"])["timestamp"]
    early, late = timestamps < timestamps.quantile(0.2), timestamps > timestamps.quantile(0.8)
    # The first fifth of the window is 0.24-0.3 away from the final centre, the last fifth under 0.06.
    assert distance[late].median() < 0.08
    assert distance[early].median() > 0.18
