"""Synthetic Taobao-style behaviour logs with planted, known user interests.

Categories are grouped into latent topics; every user holds 1..``max_interests``
topics and browses in sessions, each session on one topic, so a multi-interest model
can be checked against the ground truth it should find. Every planted interest is
really in the logs: its weight is at least ``min_interest_weight`` (the rest of the
unit is shared by Dirichlet(1)), it leads one of the user's longest sessions (when
the user has a session per interest; the other sessions pick their interest by
weight), and its sessions are spread over the window, the m-th of c in the m-th c-th.
At the demo size 95 % of planted interests show three or more events in the first 80 %
of their user's history (73 % with plain Dirichlet weights and sessions placed at random).

Inside a topic, items lie on a ring, category by category (a category is an arc).
Each planted interest also has a centre on its topic's ring: a ``focus`` share of
its events fall near that centre (spread ``interest_width``), the rest follow the
topic's popularity. So two users who share a topic still want different items in
it, as buyers of cheap and of premium phones do: an interest is a region of the
catalogue, not just a topic. Centres drift along the ring over the window
(``interest_drift``, the share of the ring travelled), as tastes do, so recent
events say more about what comes next than old ones.
Pure numpy + pandas: importable without Spark, TensorFlow or Horovod.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from prismrec import schema as S
from prismrec.config import Config, SyntheticSpec
from prismrec.reports import GenerateReport

logger = logging.getLogger(__name__)

BEHAVIOR = "behavior"
TIMESTAMP = "timestamp"
TOPIC = "topic"
CENTRE, POSITION = "centre", "position"
# A focused event picks among this many ring neighbours of its drawn spot, by popularity.
NEIGHBOURS = 7
EVENT_COLUMNS = (S.USER_ID, S.ITEM_ID, S.CATEGORY_ID, BEHAVIOR, TIMESTAMP)
BEHAVIOR_SHARES = {"pv": 0.85, "cart": 0.06, "fav": 0.04, "buy": 0.05}
SECONDS_PER_DAY = 86_400
# Seconds between consecutive events of one session: tens of seconds to a few minutes.
MIN_GAP_S, MAX_GAP_S = 10, 240
USER_ID_BASE, ITEM_ID_BASE, CATEGORY_ID_BASE = 1_000_000, 100_000, 5_000
OUTPUT_FILES = {"csv": "UserBehavior.csv", "parquet": "events.parquet",
                "truth_user_interests": "truth_user_interests.parquet", "truth_items": "truth_items.parquet"}


@dataclass(frozen=True)
class SyntheticLogs:
    """Generated logs and their ground truth.

    ``events``: user_id, item_id, category_id (str), behavior (str: pv|cart|fav|buy),
    timestamp (int64 Unix seconds, UTC), sorted by (user_id, timestamp).
    ``user_interests``: user_id (str), topic (int32), weight (float64; sums to 1 per user),
    centre (float64 in [0, 1): where on its topic's ring the interest sits at the window's end).
    ``items``: item_id (str), category_id (str), topic (int32), position (float64 in [0, 1):
    where on its topic's ring the item lies).
    """

    events: pd.DataFrame
    user_interests: pd.DataFrame
    items: pd.DataFrame


def _start_seconds(day: str) -> int:
    """Unix seconds of UTC midnight on ``day`` (YYYY-MM-DD)."""
    return int(datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp())


def _zipf_cdf(size: int, exponent: float) -> np.ndarray:
    """CDF over ranks 1..size with P(rank r) proportional to 1/r^exponent; the last value is exactly 1."""
    cumulative = np.cumsum(1.0 / np.arange(1, size + 1, dtype=np.float64) ** exponent)
    return cumulative / cumulative[-1]


def _ids(base: int, count: int) -> np.ndarray:
    return np.array([str(base + index) for index in range(count)], dtype=object)


def _near_centre(rng: np.random.Generator, ring: np.ndarray, topic_starts: np.ndarray,
                 topic_sizes: np.ndarray, popularity: np.ndarray, topics: np.ndarray,
                 centres: np.ndarray, width: float) -> np.ndarray:
    """Items near each (topic, centre): a spot drawn around the centre, then a popular neighbour."""
    sizes = topic_sizes[topics]
    spot = np.floor(((centres + rng.normal(0.0, width, len(topics))) % 1.0) * sizes).astype(np.int64)
    offsets = np.arange(NEIGHBOURS) - NEIGHBOURS // 2
    candidates = ring[topic_starts[topics][:, None] + (spot[:, None] + offsets[None, :]) % sizes[:, None]]
    cumulative = np.cumsum(popularity[candidates], axis=1)
    draw = rng.random(len(topics)) * cumulative[:, -1]
    chosen = np.minimum((cumulative < draw[:, None]).sum(axis=1), NEIGHBOURS - 1)
    return candidates[np.arange(len(topics)), chosen]


def _session_interests(rng: np.random.Generator, session_user: np.ndarray, session_length: np.ndarray,
                       interest_weights: np.ndarray, num_interests: np.ndarray) -> np.ndarray:
    """The interest slot of each session [S]; ``session_user`` [S] is sorted, ``interest_weights`` [U, max_interests].

    A user with at least as many sessions as interests gives each interest one of their longest
    sessions (slots are in random order, so which one is random): every planted interest shows
    a session's worth of events. Every other session draws its interest by weight.
    """
    sessions_per_user = np.bincount(session_user, minlength=len(num_interests))
    user_first_session = np.cumsum(sessions_per_user) - sessions_per_user
    longest_first = np.lexsort((rng.random(len(session_user)), -session_length, session_user))
    length_rank = np.empty(len(session_user), dtype=np.int64)
    length_rank[longest_first] = np.arange(len(session_user)) - user_first_session[session_user[longest_first]]
    cumulative_weights = np.cumsum(interest_weights[session_user], axis=1)
    picked = (rng.random(len(session_user))[:, None] >= cumulative_weights).sum(axis=1)
    picked = np.minimum(picked, num_interests[session_user] - 1)
    leads = (sessions_per_user >= num_interests)[session_user] & (length_rank < num_interests[session_user])
    picked[leads] = length_rank[leads]
    return picked


def _spread_starts(rng: np.random.Generator, session_key: np.ndarray, latest_start: np.ndarray) -> np.ndarray:
    """Start of each session [S] in seconds, from 0 to its ``latest_start`` [S].

    The c sessions sharing a key (one user's interest) are spread over the window: in a random
    order, the m-th starts at a random point of the m-th c-th of its range.
    """
    order = np.lexsort((rng.random(len(session_key)), session_key))
    sorted_key = session_key[order]
    run_first = np.r_[True, sorted_key[1:] != sorted_key[:-1]]
    run_start = np.flatnonzero(run_first)
    run_of = np.cumsum(run_first) - 1
    stratum, count = np.empty(len(order)), np.empty(len(order))
    stratum[order] = np.arange(len(order)) - run_start[run_of]
    count[order] = np.diff(np.r_[run_start, len(order)])[run_of]
    return ((stratum + rng.random(len(order))) / count * latest_start).astype(np.int64)


def generate(spec: SyntheticSpec) -> SyntheticLogs:
    """Generate events, user interests and item truth for ``spec``; the same spec gives identical frames.

    ``spec`` checked its own values when it was built (see :class:`prismrec.config.SyntheticSpec`).
    """
    rng = np.random.default_rng(spec.seed)
    num_users, num_topics, num_items = spec.num_users, spec.num_topics, spec.num_items

    # Every topic gets a category and every category an item: cyclic labels, then shuffled.
    category_topic = rng.permutation(np.arange(spec.num_categories) % num_topics)
    item_category = rng.permutation(np.arange(num_items) % spec.num_categories)
    item_topic = category_topic[item_category]
    # Shuffled ids, so that id order says nothing about topic.
    item_ids = _ids(ITEM_ID_BASE, num_items)[rng.permutation(num_items)]
    category_ids = _ids(CATEGORY_ID_BASE, spec.num_categories)
    user_ids = _ids(USER_ID_BASE, num_users)

    # Zipf over a random ranking of each topic's items. Keys topic + within-topic CDF rise
    # strictly across all topics, so one searchsorted samples items for any mix of topics.
    items_by_topic = np.lexsort((rng.random(num_items), item_topic))
    topic_sizes = np.bincount(item_topic, minlength=num_topics)
    topic_ends = np.cumsum(topic_sizes)
    within_topic_cdf = np.concatenate([_zipf_cdf(size, spec.zipf_exponent) for size in topic_sizes])
    sampling_keys = np.repeat(np.arange(num_topics), topic_sizes) + within_topic_cdf
    popularity = np.empty(num_items)
    popularity[items_by_topic] = np.concatenate([1.0 / np.arange(1, size + 1) ** spec.zipf_exponent
                                                 for size in topic_sizes])
    # The ring: each topic's items in category order, shuffled inside a category.
    ring = np.lexsort((rng.random(num_items), item_category, item_topic))
    item_position = np.empty(num_items)
    item_position[ring] = (np.arange(num_items) - np.repeat(topic_ends - topic_sizes, topic_sizes) + 0.5) \
        / np.repeat(topic_sizes, topic_sizes)

    # Interests: k distinct topics per user (first k of a random order); weights are the floor
    # plus the rest of the unit shared by Dirichlet(1), so no planted interest is a mere trace.
    num_interests = rng.integers(1, spec.max_interests + 1, size=num_users)
    user_topics = np.argsort(rng.random((num_users, num_topics)), axis=1)[:, :spec.max_interests]
    held = np.arange(spec.max_interests)[None, :] < num_interests[:, None]
    raw_weights = rng.exponential(size=(num_users, spec.max_interests)) * held
    shared = 1.0 - num_interests * spec.min_interest_weight
    interest_weights = (spec.min_interest_weight + shared[:, None] * raw_weights
                        / raw_weights.sum(axis=1, keepdims=True)) * held
    interest_centres = rng.random((num_users, spec.max_interests))
    interest_drift_sign = rng.choice([-1.0, 1.0], size=(num_users, spec.max_interests))

    events_per_user = np.maximum(spec.min_events_per_user, rng.poisson(spec.mean_events_per_user, num_users))
    event_user = np.repeat(np.arange(num_users), events_per_user)
    num_events = len(event_user)
    user_first_event = np.concatenate([[0], np.cumsum(events_per_user)[:-1]])

    # A session ends after each event with probability 1/mean: geometric lengths, no loop.
    starts_session = rng.random(num_events) < 1.0 / spec.mean_session_length
    starts_session[user_first_event] = True
    event_session = np.cumsum(starts_session) - 1
    session_first_event = np.flatnonzero(starts_session)
    session_user = event_user[session_first_event]
    session_length = np.diff(np.r_[session_first_event, num_events])
    picked = _session_interests(rng, session_user, session_length, interest_weights, num_interests)
    session_topic = user_topics[session_user, picked]

    event_topic = session_topic[event_session]
    position = np.searchsorted(sampling_keys, event_topic + rng.random(num_events), side="right")
    # A draw that rounds up to topic + 1 would step into the next topic.
    position = np.minimum(position, topic_ends[event_topic] - 1)
    event_item = items_by_topic[position]

    gaps = rng.integers(MIN_GAP_S, MAX_GAP_S + 1, size=num_events)
    gaps[session_first_event] = 0
    elapsed = np.cumsum(gaps)
    offset_in_session = elapsed - elapsed[session_first_event][event_session]
    session_span = offset_in_session[np.r_[session_first_event[1:] - 1, num_events - 1]]
    window_s = spec.num_days * SECONDS_PER_DAY
    # Sessions start at any time of any day, yet still end inside the window; a held interest
    # recurs over the whole window rather than in one burst.
    latest_start = np.maximum(window_s - session_span, 1)
    session_start = _spread_starts(rng, session_user * spec.max_interests + picked, latest_start)
    seconds_in_window = np.minimum(session_start[event_session] + offset_in_session, window_s - 1)
    timestamps = _start_seconds(spec.start_date) + seconds_in_window
    # A centre drifts along its ring and arrives at interest_centres at the window's end.
    time_left = 1.0 - seconds_in_window / window_s
    event_centre = (interest_centres[session_user, picked][event_session]
                    - interest_drift_sign[session_user, picked][event_session] * spec.interest_drift * time_left)
    focused = rng.random(num_events) < spec.focus
    event_item[focused] = _near_centre(rng, ring, topic_ends - topic_sizes, topic_sizes, popularity,
                                       event_topic[focused], event_centre[focused] % 1.0, spec.interest_width)
    # Noise is uniform over the whole catalogue, so it may land inside the user's topics by chance.
    is_noise = rng.random(num_events) < spec.noise_fraction
    event_item[is_noise] = rng.integers(0, num_items, size=int(is_noise.sum()))
    behavior_codes = rng.choice(len(BEHAVIOR_SHARES), size=num_events, p=list(BEHAVIOR_SHARES.values()))

    order = np.lexsort((timestamps, event_user))
    events = pd.DataFrame({
        S.USER_ID: user_ids[event_user[order]],
        S.ITEM_ID: item_ids[event_item[order]],
        S.CATEGORY_ID: category_ids[item_category[event_item[order]]],
        BEHAVIOR: np.array(list(BEHAVIOR_SHARES), dtype=object)[behavior_codes[order]],
        TIMESTAMP: timestamps[order].astype(np.int64),
    })
    interest_rows, interest_slots = np.nonzero(held)
    user_interests = pd.DataFrame({S.USER_ID: user_ids[interest_rows],
                                   TOPIC: user_topics[interest_rows, interest_slots].astype(np.int32),
                                   S.WEIGHT: interest_weights[interest_rows, interest_slots],
                                   CENTRE: interest_centres[interest_rows, interest_slots]})
    items = pd.DataFrame({S.ITEM_ID: item_ids, S.CATEGORY_ID: category_ids[item_category],
                          TOPIC: item_topic.astype(np.int32), POSITION: item_position})
    logger.info("synthetic logs: %s users, %s items, %s categories, %s topics, %s events",
                num_users, num_items, spec.num_categories, num_topics, num_events)
    return SyntheticLogs(events=events, user_interests=user_interests, items=items)


def write(logs: SyntheticLogs, out_dir: str | os.PathLike) -> dict[str, str]:
    """Write the logs under ``out_dir`` and return name → path.

    ``csv``: UserBehavior.csv in Taobao format (no header: user,item,category,behavior,timestamp);
    ``parquet``: events.parquet; ``truth_user_interests`` and ``truth_items``: the ground truth.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / file_name for name, file_name in OUTPUT_FILES.items()}
    logs.events.loc[:, list(EVENT_COLUMNS)].to_csv(paths["csv"], header=False, index=False)
    for name, frame in (("parquet", logs.events), ("truth_user_interests", logs.user_interests),
                        ("truth_items", logs.items)):
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), paths[name])
    logger.info("wrote %s events to %s", len(logs.events), out)
    return {name: str(path) for name, path in paths.items()}


def run(cfg: Config) -> GenerateReport:
    """The ``generate`` stage: reads ``cfg.synthetic``; writes :func:`write`'s files under
    ``<paths.data>/synthetic``."""
    report = GenerateReport(write(generate(cfg.synthetic), Path(cfg.paths.data) / "synthetic"))
    logger.info("generate: %s", report.summary())
    return report
