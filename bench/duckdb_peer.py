"""A DuckDB peer of ``prismrec preprocess``: the same tables from the same Taobao CSV, in one process.

Scope: ``source.format=taobao`` (one headerless file), ``preprocess.protocol=users`` and
``example_sampling=recent``; every other preprocess key is read from the prismrec config.
It writes, under ``--out``, what prismrec writes under ``preprocessed/``: ``events`` (by
``dt``), ``quarantine``, ``items``, ``categories``, ``train_sequences``, ``eval_users`` (by
``split``), ``histories``, and ``_meta.json`` with the record counts, the users per split and
each phase's wall and CPU seconds. Each phase ends in a temporary table, so DuckDB's lazy
work lands in the phase that asks for it; the writes are a phase of their own.

Known differences from prismrec's output:

- ``quarantine.raw`` of a line that is not UTF-8 holds its text decoded with U+FFFD
  replacements (a DuckDB string must be UTF-8); prismrec keeps the line's bytes.
- Line ends: ``\\n`` and ``\\r\\n`` as prismrec; a file that also ends lines with a lone ``\\r``
  is split differently by DuckDB's reader.
- File layout: one file per table (per partition for ``events`` and ``eval_users``), rows in no
  particular order, row groups as DuckDB sizes them.

    .venv/bin/python bench/duckdb_peer.py --csv UserBehavior.csv --out OUT [--threads 2] [--set key=value ...]
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import struct
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa
import xxhash

from prismrec.config import Config, load_config

# As prismrec.preprocess.sources.TAOBAO_EVENT_TYPES and records.FILTER_RULES (a test keeps them
# equal); not imported from there, so this process never loads pyspark.
TAOBAO_EVENT_TYPES = {"pv": "view", "cart": "cart", "fav": "fav", "buy": "buy"}
FILTER_RULES = ("max_events_per_user", "min_item_events", "min_user_events")
# validate.reason's rules in validate.REASONS order (a test keeps it), the first that holds names
# the reason; unparseable_number is MovieLens's only.
REASON_CHECKS = {
    "wrong_field_count": "field_count <> 5",
    "empty_id": "user_id = '' OR item_id = ''",
    "control_characters": "regexp_matches(user_id || item_id || category_id, '[\\x00-\\x1f\\x7f]')",
    "not_utf8": "contains(user_id || item_id || category_id, chr(65533))",
    "id_too_long": "length(user_id) > {max_id_length} OR length(item_id) > {max_id_length}",
    "unparseable_timestamp": "ts IS NULL",
    "timestamp_before_minimum": "ts < TIMESTAMP '{min_timestamp}'",
    "timestamp_after_cutoff": "ts >= TIMESTAMP '{cutoff}'",
    "unknown_event_type": "event_type IS NULL",
}
SPARK_SEED = 42  # Spark's xxhash64 seed
USER_IDX_MODULUS = 2**31 - 1
SPLIT_BUCKETS = 10_000
# A byte no sane log line holds, so each line is one field; a line that holds it (or bytes
# that are not UTF-8) is rejected by the reader and read back from the file by position.
LINE_DELIMITER = "\x01"


@dataclass(frozen=True)
class PeerSettings:
    """The preprocess settings the peer follows, from a prismrec :class:`Config`."""

    run_name: str
    dt: str
    seed: int
    min_timestamp: datetime
    cutoff: datetime  # exclusive
    max_id_length: int
    event_weights: dict
    max_events_per_user: int
    min_item_events: int
    min_user_events: int
    max_hist_len: int
    max_examples_per_user: int
    targets_per_row: int
    valid_fraction: float
    test_fraction: float
    holdout_fraction: float
    min_hist_len: int
    exclude_event_types: tuple

    @classmethod
    def of(cls, cfg: Config) -> "PeerSettings":
        """Raises ValueError naming the key when ``cfg`` asks for something the peer does not do."""
        settings = cfg.preprocess
        for key, value, supported in (("source.format", cfg.source.format, ("taobao", "synthetic")),
                                      ("preprocess.protocol", settings.protocol, ("users",)),
                                      ("preprocess.example_sampling", settings.example_sampling, ("recent",))):
            if value not in supported:
                raise ValueError(f"{key}={value!r}: the DuckDB peer does {' and '.join(supported)} only")
        # As prismrec.preprocess.stage.validation_rules: up to the end of run.dt, or now.
        cutoff = (datetime.strptime(cfg.run.dt, "%Y-%m-%d") + timedelta(days=1) if cfg.run.dt
                  else datetime.now(timezone.utc).replace(tzinfo=None))
        return cls(cfg.run.name, cfg.run.dt, cfg.run.seed, datetime.strptime(settings.min_timestamp, "%Y-%m-%d"),
                   cutoff, settings.max_id_length, dict(settings.event_weights), settings.max_events_per_user,
                   settings.min_item_events, settings.min_user_events, settings.max_hist_len,
                   settings.max_examples_per_user, settings.targets_per_row, settings.valid_fraction, settings.test_fraction,
                   settings.holdout_fraction, settings.min_hist_len, tuple(cfg.score.exclude_event_types))


def _signed(value: int) -> int:
    return value - 2**64 if value >= 2**63 else value


def spark_xxhash64(user_ids: pa.Array) -> pa.Array:
    """Spark's ``xxhash64(user_id)``: XXH64 of the UTF-8 bytes, seed 42 (a null hashes to the seed)."""
    return pa.array([SPARK_SEED if user is None else _signed(xxhash.xxh64_intdigest(user.encode(), SPARK_SEED))
                     for user in user_ids.to_pylist()], pa.int64())


def spark_xxhash64_with_value(user_ids: pa.Array, values: pa.Array) -> pa.Array:
    """Spark's ``xxhash64(user_id, F.lit(value))``: the value's bytes hashed, seeded by the id's hash.

    PySpark makes a Python int literal an int (4 bytes) when it fits, else a long (8 bytes).
    """
    hashes = spark_xxhash64(user_ids).to_pylist()
    return pa.array([_signed(xxhash.xxh64_intdigest(struct.pack("<i" if -2**31 <= value < 2**31 else "<q", value),
                                                    seed % 2**64))
                     for seed, value in zip(hashes, values.to_pylist())], pa.int64())


def _sql_list(values) -> str:
    return ", ".join("'" + str(value).replace("'", "''") + "'" for value in values)


MACROS = """
CREATE MACRO pmod(value, modulus) AS ((value % modulus) + modulus) % modulus;
-- The last `width` items, left-padded with the padding index 0.
CREATE MACRO left_pad(items, width) AS
    list_concat(list_resize([]::INTEGER[], greatest(width - len(items), 0), 0), items[-width:]);
-- Distinct items in order of first occurrence (Spark's array_distinct).
CREATE MACRO ordered_distinct(items) AS list_filter(items, (item, i) -> list_position(items, item) = i);
"""

READ_LINES = """
CREATE TEMP TABLE lines AS
SELECT coalesce(raw, '') AS raw
FROM read_csv($path, columns = {'raw': 'VARCHAR'}, delim = $delimiter, quote = '', escape = '', header = false,
              auto_detect = false, ignore_errors = true, store_rejects = true,
              rejects_table = 'rejected_lines', rejects_scan = 'rejected_scans')
"""

# sources.read_taobao then validate.reason: fields trimmed of spaces (only), then REASON_CHECKS.
VALIDATE = """
CREATE TEMP TABLE checked AS
WITH fields AS (
    SELECT raw, len(parts) AS field_count, trim(parts[1], ' ') AS user_id, trim(parts[2], ' ') AS item_id,
           trim(parts[3], ' ') AS category, trim(parts[4], ' ') AS behavior, trim(parts[5], ' ') AS ts_text
    FROM (SELECT raw, string_split(raw, ',') AS parts FROM lines)
), parsed AS (
    SELECT raw, field_count, user_id, item_id,
           CASE WHEN category IS NULL OR category = '' THEN 'unknown' ELSE category END AS category_id,
           CASE behavior {event_types} END AS event_type,
           CASE WHEN regexp_full_match(ts_text, '-?[0-9]{{1,12}}')
                THEN make_timestamp(TRY_CAST(ts_text AS BIGINT) * 1000000) END AS ts
    FROM fields
), checked AS (
    SELECT *, CASE {reason_checks} END AS reason FROM parsed
)
SELECT CASE WHEN reason IS NOT NULL THEN raw END AS raw, user_id, item_id, category_id, event_type,
       (CASE event_type {weights} END)::FLOAT AS weight, ts, reason
FROM checked
"""

# records.deduplicate and records.tag_filters: exact duplicates collapse (``copies``), then each
# rule tags what the earlier ones left.
TAG = """
CREATE TEMP TABLE tagged AS
WITH records AS (
    SELECT user_id, item_id, category_id, event_type, weight, ts, count(*) AS copies
    FROM checked WHERE reason IS NULL GROUP BY ALL
), user_records AS (
    SELECT user_id, count(*) AS events FROM records GROUP BY user_id
), bots AS (
    SELECT records.*, CASE WHEN events > {max_events_per_user} THEN 'max_events_per_user' END AS filter_rule
    FROM records JOIN user_records USING (user_id)
), item_events AS (
    SELECT item_id, count(*) AS events FROM bots WHERE filter_rule IS NULL GROUP BY item_id
), rare_items AS (
    SELECT bots.* REPLACE (CASE WHEN filter_rule IS NULL AND coalesce(events, 0) < {min_item_events}
                                THEN 'min_item_events' ELSE filter_rule END AS filter_rule)
    FROM bots LEFT JOIN item_events USING (item_id)
), remaining AS (
    SELECT user_id, count(*) FILTER (WHERE filter_rule IS NULL) AS events FROM rare_items GROUP BY user_id
)
SELECT rare_items.* REPLACE (CASE WHEN filter_rule IS NULL AND events < {min_user_events}
                                  THEN 'min_user_events' ELSE filter_rule END AS filter_rule),
       ts::DATE AS dt
FROM rare_items JOIN remaining USING (user_id);
CREATE TEMP TABLE quarantine AS SELECT raw, reason FROM checked WHERE reason IS NOT NULL;
"""

# sequences.item_vocabulary and category_vocabulary.
VOCABULARIES = """
CREATE TEMP TABLE items AS
WITH per_category AS (
    SELECT item_id, category_id, count(*) AS events FROM tagged WHERE filter_rule IS NULL GROUP BY ALL
), per_item AS (
    SELECT item_id, sum(events)::BIGINT AS count, first(category_id ORDER BY events DESC, category_id) AS category_id
    FROM per_category GROUP BY item_id
)
SELECT (row_number() OVER (ORDER BY count DESC, item_id))::INTEGER AS item_idx, item_id, category_id, count,
       NULL::VARCHAR AS item_name
FROM per_item;
CREATE TEMP TABLE categories AS
SELECT (row_number() OVER (ORDER BY count DESC, category_id))::INTEGER AS category_idx, category_id, count
FROM (SELECT category_id, sum(count)::BIGINT AS count FROM items GROUP BY category_id);
"""

# sequences.user_events (one aggregation for training and scoring; bots are not scored), the
# users split (split.user_split) and sequences.training_sequences under recent sampling. Each
# user's entries are sorted as prismrec sorts them: by time, item_id, event type, training flag
# (item_idx follows from item_id). list_sort over the list, not an ordered aggregate: in DuckDB
# 1.1.3 the ordered aggregate takes twice the time and about 600 MiB more at 1 M events.
SEQUENCES = """
CREATE TEMP TABLE user_events AS
SELECT user_id,
       coalesce(list_sort(list({{'ts': ts, 'item_id': item_id, 'event_type': event_type,
                                 'train': filter_rule IS NULL, 'item_idx': item_idx, 'excluded': {excluded}}})
                          FILTER (WHERE item_idx IS NOT NULL)), []) AS events
FROM tagged LEFT JOIN items USING (item_id)
WHERE filter_rule IS NULL OR filter_rule <> 'max_events_per_user'
GROUP BY user_id;
CREATE TEMP TABLE user_sequences AS
WITH training AS (
    SELECT user_id, list_transform(list_filter(events, e -> e.train), e -> e.item_idx) AS seq FROM user_events
), bucketed AS (
    SELECT user_id, seq, len(seq) AS seq_len,
           pmod(spark_xxhash64_with_value(user_id, {seed}), {buckets}) / {buckets}::DOUBLE AS bucket
    FROM training WHERE len(seq) > 0
)
SELECT user_id, seq, seq_len,
       CASE WHEN bucket < {test_fraction}::DOUBLE THEN 'test'
            WHEN bucket < {test_and_valid}::DOUBLE THEN 'valid' ELSE 'train' END AS split
FROM bucketed;
CREATE TEMP TABLE train_sequences AS
WITH targets AS (
    SELECT pmod(spark_xxhash64(user_id), {user_idx_modulus})::INTEGER AS user_idx, seq, seq_len,
           greatest(1, seq_len - {max_examples_per_user}) AS first_target
    FROM user_sequences WHERE split = 'train' AND seq_len >= 2
), row_targets AS (
    SELECT user_idx, seq, first_target + k * {targets_per_row} AS first_pos,
           least(first_target + (k + 1) * {targets_per_row}, seq_len) - 1 AS last_pos
    FROM targets, range(0, (seq_len - first_target + {targets_per_row} - 1) // {targets_per_row}) AS ks(k)
), trimmed AS (
    SELECT *, greatest(0, first_pos - {max_hist_len}) AS first_read FROM row_targets
)
SELECT user_idx, seq[first_read + 1:last_pos + 1] AS seq,
       range(first_pos - first_read, last_pos - first_read + 1)::INTEGER[] AS target_pos
FROM trimmed;
"""

# split.split_sequences (users) and sequences.evaluation_users.
EVALUATION_USERS = """
CREATE TEMP TABLE eval_users AS
WITH held AS (
    SELECT user_id, split, seq, seq_len,
           least(greatest(ceil(seq_len * {holdout_fraction}::DOUBLE)::INTEGER, 1), seq_len - 1) AS held_out
    FROM user_sequences WHERE split <> 'train'
), parts AS (
    SELECT user_id, split, seq[1:seq_len - held_out] AS known, seq[seq_len - held_out + 1:seq_len] AS tail
    FROM held WHERE seq_len - held_out >= {min_known}
)
SELECT user_id, split, left_pad(known, {max_hist_len}) AS hist_items,
       least(len(known), {max_hist_len})::INTEGER AS hist_len, ordered_distinct(known) AS seen_items,
       list_filter(ordered_distinct(tail), item -> NOT list_contains(known, item)) AS target_items
FROM parts
"""

# sequences.scoring_histories over every scorable user, an empty history included.
HISTORIES = """
CREATE TEMP TABLE histories AS
WITH entries AS (
    SELECT user_id, list_transform(events, e -> e.item_idx) AS items,
           list_transform(list_filter(events, e -> e.excluded), e -> e.item_idx) AS excluded
    FROM user_events
)
SELECT user_id, left_pad(items, {max_hist_len}) AS hist_items, least(len(items), {max_hist_len})::INTEGER AS hist_len,
       ordered_distinct(excluded) AS seen_items
FROM entries
"""

# table → (query, partition column or None)
OUTPUTS = {
    "events": ("SELECT user_id, item_id, category_id, event_type, weight, ts::TIMESTAMPTZ AS ts, dt "
               "FROM tagged WHERE filter_rule IS NULL", "dt"),
    "quarantine": ("SELECT raw, reason, $source_file AS source_file, $run_id AS run_id FROM quarantine", None),
    "items": ("SELECT * FROM items", None),
    "categories": ("SELECT * FROM categories", None),
    "train_sequences": ("SELECT * FROM train_sequences", None),
    "eval_users": ("SELECT * FROM eval_users", "split"),
    "histories": ("SELECT * FROM histories", None),
}


@dataclass(frozen=True)
class PhaseTime:
    name: str
    wall_s: float
    cpu_s: float  # this process's CPU seconds: DuckDB's threads and the UDFs


@contextmanager
def phase(times: list[PhaseTime], name: str) -> Iterator[None]:
    wall, cpu = time.perf_counter(), time.process_time()
    yield
    times.append(PhaseTime(name, time.perf_counter() - wall, time.process_time() - cpu))


def connect(threads: int) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"SET threads TO {int(threads)}")
    con.execute("SET TimeZone = 'UTC'")
    con.create_function("spark_xxhash64", spark_xxhash64, ["VARCHAR"], "BIGINT", type="arrow")
    con.create_function("spark_xxhash64_with_value", spark_xxhash64_with_value, ["VARCHAR", "BIGINT"], "BIGINT",
                        type="arrow")
    con.execute(MACROS)
    return con


def _line_start(file, position: int, window: int = 4096) -> int:
    """The start of the line holding byte ``position``: just after the last line end before it."""
    while position > 0:
        low = max(0, position - window)
        file.seek(low)
        before = file.read(position - low)
        end = max(before.rfind(b"\n"), before.rfind(b"\r"))
        if end >= 0:
            return low + end + 1
        position = low
    return 0


def rejected_lines(con: duckdb.DuckDBPyConnection, csv: Path) -> list[str]:
    """The lines the reader rejected, read from the file, invalid UTF-8 replaced by U+FFFD.

    DuckDB 1.1.3 reports a rejected line's byte position as its first or its second byte, so
    each line is read from the line end before that position.
    """
    positions = con.execute("SELECT DISTINCT line_byte_position FROM rejected_lines ORDER BY 1").fetchall()
    lines = []
    with open(csv, "rb") as file:
        for start in sorted({_line_start(file, position) for (position,) in positions}):
            file.seek(start)
            line = file.readline().rstrip(b"\n").split(b"\r", 1)[0]
            lines.append(line.decode("utf-8", errors="replace"))
    return lines


def read_and_validate(con: duckdb.DuckDBPyConnection, csv: Path, settings: PeerSettings) -> None:
    con.execute(READ_LINES, {"path": str(csv), "delimiter": LINE_DELIMITER})
    # Read by the INSERT below through DuckDB's replacement scan (a local Arrow table by its name).
    recovered = pa.table({"raw": pa.array(rejected_lines(con, csv), pa.string())})  # noqa: F841
    con.execute("INSERT INTO lines SELECT raw FROM recovered")
    event_types = " ".join(f"WHEN '{raw}' THEN '{canonical}'" for raw, canonical in TAOBAO_EVENT_TYPES.items())
    weights = " ".join(f"WHEN '{name}' THEN {float(weight)!r}::DOUBLE"
                       for name, weight in settings.event_weights.items())
    limits = {"max_id_length": settings.max_id_length, "min_timestamp": settings.min_timestamp,
              "cutoff": settings.cutoff}
    reason_checks = " ".join(f"WHEN {check.format(**limits)} THEN '{reason}'"
                             for reason, check in REASON_CHECKS.items())
    con.execute(VALIDATE.format(event_types=event_types, weights=weights, reason_checks=reason_checks))
    con.execute("DROP TABLE lines")


def tag_and_count(con: duckdb.DuckDBPyConnection, settings: PeerSettings) -> dict:
    """Dedup and filter tags; the counts in prismrec's shape (records.count_records), checked to add up."""
    con.execute(TAG.format(max_events_per_user=settings.max_events_per_user,
                           min_item_events=settings.min_item_events, min_user_events=settings.min_user_events))
    quarantined = dict(con.execute("SELECT reason, count(*) FROM quarantine GROUP BY ALL ORDER BY reason").fetchall())
    by_rule = {rule: (distinct, records) for rule, distinct, records in con.execute(
        "SELECT filter_rule, count(*), sum(copies)::BIGINT FROM tagged GROUP BY filter_rule").fetchall()}
    (lines,) = con.execute("SELECT count(*) FROM checked").fetchone()
    con.execute("DROP TABLE checked")
    counts = {"input": lines, "quarantined": quarantined, "kept": by_rule.get(None, (0, 0))[0],
              "duplicates": sum(records - distinct for distinct, records in by_rule.values()),
              "filtered": {rule: by_rule.get(rule, (0, 0))[0] for rule in FILTER_RULES}}
    accounted = counts["kept"] + counts["duplicates"] + sum(quarantined.values()) + sum(counts["filtered"].values())
    if accounted != lines:
        raise AssertionError(f"record reconciliation failed: input={lines} but accounted={accounted} ({counts})")
    if counts["kept"] == 0:
        raise ValueError(f"no events left after validation and filters ({counts})")
    return counts


def build_sequences(con: duckdb.DuckDBPyConnection, settings: PeerSettings) -> None:
    excluded = f"event_type IN ({_sql_list(settings.exclude_event_types)})" if settings.exclude_event_types else "false"
    con.execute(SEQUENCES.format(
        excluded=excluded, seed=settings.seed, buckets=SPLIT_BUCKETS, test_fraction=repr(settings.test_fraction),
        test_and_valid=repr(settings.test_fraction + settings.valid_fraction),
        max_examples_per_user=settings.max_examples_per_user, targets_per_row=settings.targets_per_row,
        max_hist_len=settings.max_hist_len, user_idx_modulus=USER_IDX_MODULUS))


def write_tables(con: duckdb.DuckDBPyConnection, out: Path, csv: Path, run_name: str) -> None:
    """Each table as Parquet under ``out/<table>/``; the folders are replaced, nothing else under ``out``."""
    # prismrec's source_file is Spark's input_file_name(); its quarantine run_id is "<run.name>-preprocess".
    values = {"source_file": csv.resolve().as_uri(), "run_id": f"{run_name}-preprocess"}
    for table, (query, partition) in OUTPUTS.items():
        folder = out / table
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        target, layout = ((folder, f", PARTITION_BY ({partition})") if partition
                          else (folder / "part-0.parquet", ""))
        parameters = {name: value for name, value in values.items() if f"${name}" in query}
        quoted = str(target).replace("'", "''")
        con.execute(f"COPY ({query}) TO '{quoted}' (FORMAT PARQUET{layout})", parameters or None)


def run(csv: Path, out: Path, settings: PeerSettings, threads: int = 2) -> dict:
    """Build and write every table; returns (and writes to ``out/_meta.json``) counts, users by split, phases."""
    times: list[PhaseTime] = []
    with connect(threads) as con:
        with phase(times, "read and validate"):
            read_and_validate(con, csv, settings)
        with phase(times, "deduplicate, filter and count"):
            counts = tag_and_count(con, settings)
        with phase(times, "vocabularies"):
            con.execute(VOCABULARIES)
        with phase(times, "sequences and training data"):
            build_sequences(con, settings)
        with phase(times, "evaluation users"):
            con.execute(EVALUATION_USERS.format(holdout_fraction=repr(settings.holdout_fraction),
                                                min_known=max(settings.min_hist_len, 1),
                                                max_hist_len=settings.max_hist_len))
        with phase(times, "histories"):
            con.execute(HISTORIES.format(max_hist_len=settings.max_hist_len))
        with phase(times, "write"):
            write_tables(con, out, csv, settings.run_name)
        splits = dict(con.execute("SELECT split, count(*) FROM user_sequences GROUP BY split").fetchall())
        # As prismrec: run.dt, or the last day of the kept events.
        dt = settings.dt or str(con.execute("SELECT max(dt) FROM tagged WHERE filter_rule IS NULL").fetchone()[0])
    meta = {"dt": dt, "counts": counts, "users_by_split": splits, "phases": [asdict(t) for t in times]}
    (out / "_meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return meta


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", required=True, help="Taobao UserBehavior CSV (no header)")
    parser.add_argument("--out", required=True, help="output folder (its table folders are replaced)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="prismrec config overrides (default: run.dt=2026-12-31 preprocess.max_hist_len=50)")
    args = parser.parse_args()
    started = time.perf_counter()
    cfg = load_config(None, ["source.format=taobao", f"source.path={args.csv}", "run.dt=2026-12-31",
                             "preprocess.max_hist_len=50", *args.set])
    meta = run(Path(args.csv), Path(args.out), PeerSettings.of(cfg), args.threads)
    print(f"{'phase':<32} {'wall s':>7} {'CPU s':>7}")
    for timing in meta["phases"]:
        print(f"{timing['name']:<32} {timing['wall_s']:7.2f} {timing['cpu_s']:7.2f}")
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{meta['counts']['input']:,} input records in {time.perf_counter() - started:.2f} s "
          f"(peak RSS {peak_mib:.0f} MiB); counts {json.dumps(meta['counts'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
