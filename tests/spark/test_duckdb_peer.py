"""The DuckDB peer of the preprocess benchmark (bench/duckdb_peer.py) writes the same tables as prismrec.

Small synthetic logs plus hand-written lines that hit every filter rule and most quarantine
reasons are preprocessed by both; every table is compared as a sorted set of rows, arrays
exactly, and the record counts must be equal.
"""
from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

from prismrec import schema as S
from prismrec.config import load_config
from prismrec.layout import Layout
from prismrec.preprocess import records, sources, validate
from prismrec.preprocess.stage import run as preprocess
from prismrec.synthetic import SyntheticSpec, generate, write

pytestmark = pytest.mark.spark
ROOT = Path(__file__).resolve().parents[2]
DAY = 1767225600  # 2026-01-01T00:00:00Z
MAX_HIST_LEN = 8
# Small enough that the tiny logs have bot-like users, users whose first target is cut, and
# users whose targets span several rows of the training data.
SETTINGS = (f"preprocess.max_hist_len={MAX_HIST_LEN}", "preprocess.max_events_per_user=60",
            "preprocess.max_examples_per_user=12", "preprocess.targets_per_row=5")


def load_peer():
    """bench/duckdb_peer.py as a module (bench/ is scripts, not a package)."""
    if "duckdb_peer" not in sys.modules:
        spec = importlib.util.spec_from_file_location("duckdb_peer", ROOT / "bench" / "duckdb_peer.py")
        sys.modules["duckdb_peer"] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
        spec.loader.exec_module(sys.modules["duckdb_peer"])
    return sys.modules["duckdb_peer"]


def hand_written_lines(popular: list[str]) -> list[bytes]:
    """Lines that exercise what the synthetic logs do not: bad records, duplicates, each filter rule.

    ``popular``: six item ids with many events in the synthetic logs.
    """
    text = [
        # quarantined, one reason or more per kind; "7\x01x" holds the byte the peer's reader splits on,
        # so DuckDB rejects the line and the peer reads it back from the file
        "1,2,3", "", "1,2,3,pv,5,6", ",100000,3,pv,1767225600", "7, ,3,pv,1767225600",
        "7,100000,\t3,pv,1767225600", "7\x01x,100000,3,pv,1767225600", "u" * 65 + ",100000,3,pv,1767225600",
        "7,100000,3,pv,soon", "7,100000,3,pv,+1767225600", "7,100000,3,pv,1767225600000",
        "7,100000,3,pv,100", "7,100000,3,pv,1798761600", "7,100000,3,click,1767225600",
        # kept: the last second before the cutoff, spaces around fields, a blank category, a no-break space
        "edge,100000,3,buy,1798761599", " edge , 100001 , 3 , pv , 1767225700", "edge,100001,3,pv,1767225700",
        "edge,100002, ,fav,1767225800", "edge,100003,3,pv,1767225800", "edge,100004,3,pv,1767225900",
        "\u00a0edge,100003,3,cart,1767225900", "\u00a0edge,100004,3,pv,1767226000",
        # one user, same second: two event types on one item, and ids that sort as strings ("100004" < "99")
        *(f"ties,{item},4,{kind},{DAY + 50}" for item, kind in
          (("100003", "pv"), ("100003", "buy"), ("99", "pv"), ("100004", "pv"), ("99", "cart"))),
        # min_item_events: one event on an item of its own; a user whose every item is such an item
        "ties,lonely-1,4,pv,1767226100", "rare-only,lonely-2,4,pv,1767226200", "rare-only,lonely-3,4,pv,1767226300",
        # min_user_events: three events on popular items
        *(f"short,{item},4,pv,{DAY + 60 * i}" for i, item in enumerate(popular[:3])),
        # max_events_per_user: a bot with more distinct events than the limit
        *(f"bot,{popular[i % 6]},4,pv,{DAY + i}" for i in range(70)),
    ]
    not_utf8 = "café,100000,3,pv,1767225600".encode("latin-1")  # é alone is no UTF-8
    return [line.encode() for line in text] + [not_utf8]


def write_input(folder: Path) -> Path:
    logs = generate(SyntheticSpec(num_users=120, num_items=300, num_categories=12, num_topics=3, max_interests=2,
                                  mean_events_per_user=20.0, num_days=5, seed=5))
    csv = Path(write(logs, folder)["csv"])
    popular = logs.events[S.ITEM_ID].value_counts().index[:6].tolist()
    lines = csv.read_bytes().splitlines()
    lines += lines[10:25]  # exact duplicates
    for position, line in enumerate(hand_written_lines(popular)):  # spread through the file
        lines.insert((position * 53) % len(lines), line)
    csv.write_bytes(b"\n".join(lines) + b"\n")
    return csv


@pytest.fixture(scope="module")
def outputs(spark, tmp_path_factory):
    """(prismrec's preprocessed folder and report, the peer's output folder and meta) on the same CSV."""
    tmp = tmp_path_factory.mktemp("duckdb_peer")
    csv = write_input(tmp / "logs")
    cfg = load_config(None, ["source.format=taobao", f"source.path={csv}", f"paths.output={tmp / 'prismrec'}",
                             "run.dt=2026-12-31", "spark.shuffle_partitions=2", "preprocess.num_files=2",
                             "preprocess.row_group_rows=256", *SETTINGS])
    report = preprocess(spark, cfg)
    peer = load_peer()
    meta = peer.run(csv, tmp / "duckdb", peer.PeerSettings.of(cfg), threads=2)
    return Layout.of(cfg).preprocessed, report, tmp / "duckdb", meta


def dataset(folder: Path) -> ds.Dataset:
    # Spark's _SUCCESS files are not Parquet.
    return ds.dataset(folder, format="parquet", partitioning="hive", exclude_invalid_files=True)


def column_types(folder: Path) -> dict[str, str]:
    """Column → Arrow type, list elements' nullability aside (Spark declares target_pos's not null)."""
    return {field.name: str(field.type).replace(" not null", "") for field in dataset(folder).schema}


def rows(folder: Path, columns: list[str]) -> list[tuple]:
    """The rows of a Parquet table (hive partitions included) as sorted tuples; lists become tuples."""
    table = dataset(folder).to_table()
    values = []
    for name in columns:
        column = table.column(name)
        if pa.types.is_string(column.type) or pa.types.is_dictionary(column.type):
            # Spark keeps a line that is not UTF-8 as its bytes; the peer keeps the decoded text.
            column = pc.cast(pc.cast(column, pa.string()), pa.binary())
            values.append([None if v is None else v.decode("utf-8", errors="replace") for v in column.to_pylist()])
        elif pa.types.is_date(column.type):
            values.append([str(v) for v in column.to_pylist()])
        else:
            values.append([tuple(v) if isinstance(v, list) else v for v in column.to_pylist()])
    return sorted(zip(*values), key=repr)


def test_the_peer_mirrors_prismrecs_constants():
    peer = load_peer()
    assert peer.TAOBAO_EVENT_TYPES == sources.TAOBAO_EVENT_TYPES
    assert peer.FILTER_RULES == records.FILTER_RULES
    assert list(peer.REASON_CHECKS) == [reason for reason in validate.REASONS if reason != "unparseable_number"]


@pytest.mark.parametrize("override, key", [("preprocess.protocol=last", "preprocess.protocol"),
                                           ("preprocess.example_sampling=random", "preprocess.example_sampling"),
                                           ("source.format=jsonl", "source.format")])
def test_the_peer_refuses_what_it_does_not_do(override, key):
    with pytest.raises(ValueError, match=key):
        load_peer().PeerSettings.of(load_config(None, [override]))


def test_the_input_exercises_every_rule(outputs):
    _, report, _, _ = outputs
    counts = report.record["counts"]
    assert all(counts["filtered"][rule] > 0 for rule in counts["filtered"]), counts
    assert counts["duplicates"] >= 16 and len(counts["quarantined"]) == 9, counts


def test_same_counts_and_splits(outputs):
    _, report, _, meta = outputs
    assert meta["counts"] == report.record["counts"]
    assert meta["users_by_split"] == report.record["users_by_split"]


@pytest.mark.parametrize("table, columns", [
    ("events", [S.USER_ID, S.ITEM_ID, S.CATEGORY_ID, S.EVENT_TYPE, S.WEIGHT, S.TS, S.DT]),
    ("quarantine", [S.RAW, S.REASON, S.SOURCE_FILE, S.RUN_ID]),
    ("items", [S.ITEM_IDX, S.ITEM_ID, S.CATEGORY_ID, S.COUNT, S.ITEM_NAME]),
    ("categories", [S.CATEGORY_IDX, S.CATEGORY_ID, S.COUNT]),
    ("eval_users", [S.USER_ID, S.SPLIT, S.HIST_ITEMS, S.HIST_LEN, S.SEEN_ITEMS, S.TARGET_ITEMS]),
    ("histories", [S.USER_ID, S.HIST_ITEMS, S.HIST_LEN, S.SEEN_ITEMS]),
])
def test_same_rows(outputs, table, columns):
    prismrec, _, peer, _ = outputs
    expected = rows(prismrec / table, columns)
    assert expected, f"prismrec wrote no {table}"
    assert rows(peer / table, columns) == expected


@pytest.mark.parametrize("table", ["events", "quarantine", "items", "categories", "eval_users", "histories",
                                   "train_sequences"])
def test_same_column_types(outputs, table):
    prismrec, _, peer, _ = outputs
    assert column_types(peer / table) == column_types(prismrec / table)


def test_same_training_data(outputs):
    prismrec, _, peer, _ = outputs
    sequences = rows(peer / "train_sequences", [S.USER_IDX, S.SEQ, S.TARGET_POS])
    # Some rows' first target has a history of L events before it, and some users have 12 targets
    # in rows of 5, 5 and 2.
    assert any(len(seq) == len(target_pos) + MAX_HIST_LEN for _, seq, target_pos in sequences)
    by_user = Counter(user_idx for user_idx, _, _ in sequences)
    assert 3 in by_user.values()
    assert all(len(target_pos) <= 5 for _, _, target_pos in sequences)
    assert sequences and sequences == rows(prismrec / "train_sequences", [S.USER_IDX, S.SEQ, S.TARGET_POS])


def test_every_scorable_user_has_a_history(outputs):
    _, _, peer, _ = outputs
    histories = {user: hist_len for user, hist_len in rows(peer / "histories", [S.USER_ID, S.HIST_LEN])}
    # rare-only's items are all filtered: scored with an empty history; bots are not scored.
    assert histories["rare-only"] == 0 and "short" in histories and "bot" not in histories
