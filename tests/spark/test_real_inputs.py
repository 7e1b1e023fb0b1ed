"""Inputs real pipelines meet: RFC 4180 CSV, unreadable files, and refusals that say what to change.

``tests/cases`` holds real-world input cases, each with the outcome its README states; the
other tests build inputs of the same kinds that are not among the cases.
"""
from __future__ import annotations

import bz2
import re
import gzip
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prismrec import schema as S
from prismrec.config import load_config
from prismrec.errors import EXIT_INPUT, exit_code
from prismrec.layout import Layout
from prismrec.preprocess.stage import InputError, run

pytestmark = pytest.mark.spark
ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "tests" / "cases"
MAPPED = ["source.format=csv", "source.mapping.category=category", "source.mapping.event_type=behavior",
          "source.mapping.event_types={pv: view, cart: cart, fav: fav, buy: buy}"]
BASE_TS = 1767225600  # 2026-01-01T00:00:00Z


def config(tmp: Path, path: Path | str, *extra: str):
    return load_config(None, [f"paths.output={tmp / 'output'}", f"source.path={path}", "run.dt=2026-12-31",
                              "preprocess.min_user_events=1", "preprocess.min_item_events=1",
                              "spark.shuffle_partitions=2", *extra])


def events(cfg) -> list[tuple]:
    table = pq.read_table(Layout.of(cfg).table("events")).to_pandas()
    return sorted(zip(table[S.USER_ID], table[S.ITEM_ID], table[S.CATEGORY_ID], table[S.EVENT_TYPE]))


def refused(spark, cfg) -> InputError:
    with pytest.raises(InputError) as caught:
        run(spark, cfg)
    assert exit_code(caught.value) == EXIT_INPUT
    return caught.value


# ---- the cases ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["multiline-quoted.csv", "multiline-quoted-many.csv"])
def test_case_quoted_line_breaks_are_one_record(spark, tmp_path, name):
    meta = run(spark, config(tmp_path, CASES / name, *MAPPED))
    assert meta.counts.input == 480
    assert meta.counts.quarantined == {}
    assert meta.counts.kept == 480


def test_case_header_order_differs_maps_each_file_by_its_own_header(spark, tmp_path):
    cfg = config(tmp_path, CASES / "header-order-differs", *MAPPED)
    meta = run(spark, cfg)
    assert meta.counts.input == 480 and meta.counts.kept == 480
    # Swapped by position, b.csv's item ids (1..25) would become user ids and vice versa.
    expected = set()
    for part in sorted((CASES / "header-order-differs").glob("*/*.csv")):
        header, *lines = part.read_text().splitlines()
        names = header.split(",")
        for line in lines:
            field = dict(zip(names, line.split(",")))
            expected.add((field["user_id"], field["item_id"]))
    assert {(user, item) for user, item, _, _ in events(cfg)} == expected


@pytest.mark.parametrize("name", ["empty-inputs/empty.csv", "empty-inputs/empty-parquet-folder"])
def test_case_empty_inputs(spark, tmp_path, name):
    fmt = "parquet" if "parquet" in name else "csv"
    error = refused(spark, config(tmp_path, CASES / name, *MAPPED, f"source.format={fmt}"))
    assert str(error).startswith(f"no records found under '{CASES / name}'")


def test_case_millisecond_timestamps(spark, tmp_path):
    cfg = config(tmp_path, CASES / "millisecond-timestamps.csv", *MAPPED)
    message = str(refused(spark, cfg))
    first_record = (CASES / "millisecond-timestamps.csv").read_text().splitlines()[1]
    assert "480 of 480 input records" in message
    assert "--set source.mapping.timestamp_format=unix_ms" in message
    assert "millisecond-timestamps.csv" in message
    assert "Most are unparseable_timestamp, e.g. '" in message
    quarantine = pq.read_table(Layout.of(cfg).refused_quarantine).to_pandas()
    assert len(quarantine) == 480 and set(quarantine[S.REASON]) == {"unparseable_timestamp"}
    assert first_record in set(quarantine[S.RAW])
    assert not Layout.of(cfg).preprocessed.exists()


def test_case_truncated_gzip_is_one_line_naming_the_file(tmp_path):
    done = subprocess.run([sys.executable, "-m", "prismrec.cli", "preprocess", "--set", f"paths.output={tmp_path}",
                           "--set", "source.format=taobao", "--set", f"source.path={CASES / 'truncated-gzip'}",
                           "--set", "run.dt=2017-12-31"], capture_output=True, text=True, timeout=300)
    assert done.returncode == EXIT_INPUT
    errors = [line for line in done.stderr.splitlines() if line.startswith("prismrec preprocess: error:")]
    assert len(errors) == 1 and "part-0.csv.gz" in errors[0] and "EOFException" in errors[0]
    assert "part-1.csv.gz" not in errors[0]
    assert not [line for line in done.stderr.splitlines() if line.startswith("\tat ") or "Exception in task" in line]


# ---- the same kinds, on inputs of our own --------------------------------------------------

def test_tsv_with_quoted_tabs_doubled_quotes_line_breaks_and_a_bom(spark, tmp_path):
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "a.tsv").write_text('\ufeffuser_id\titem_id\tnote\ttimestamp\n'
                                  f'u1\ti1\t"tab\there"\t{BASE_TS}\n'
                                  f'u1\ti2\t"said ""hi""\n\tand left"\t{BASE_TS + 1}\n')
    with gzip.open(folder / "b.tsv.gz", "wt") as handle:   # same columns, another order, compressed
        handle.write(f'timestamp\tnote\titem_id\tuser_id\n{BASE_TS + 2}\t"x\ny"\ti3\tu2\n{BASE_TS + 3}\tplain\ti1\tu2\n')
    cfg = config(tmp_path, folder, "source.format=csv", 'source.csv_delimiter="\\t"')
    meta = run(spark, cfg)
    assert meta.counts.input == 4 and meta.counts.kept == 4
    assert events(cfg) == [("u1", "i1", "unknown", "view"), ("u1", "i2", "unknown", "view"),
                           ("u2", "i1", "unknown", "view"), ("u2", "i3", "unknown", "view")]


def test_a_malformed_csv_record_is_quarantined_with_its_text_and_file(spark, tmp_path):
    log = tmp_path / "log.csv"
    good = [f"u{i % 7},i{i % 11},{BASE_TS + i}" for i in range(60)]
    log.write_text("user_id,item_id,timestamp\n" + "\n".join(good[:30] + ["u9,i9,1,extra"] + good[30:]) + "\n")
    cfg = config(tmp_path, log, "source.format=csv")
    meta = run(spark, cfg)
    assert meta.counts.input == 61 and meta.counts.kept == 60
    quarantine = pq.read_table(Layout.of(cfg).table("quarantine")).to_pandas()
    assert list(zip(quarantine[S.REASON], quarantine[S.RAW])) == [("wrong_field_count", "u9,i9,1,extra")]
    assert quarantine[S.SOURCE_FILE][0].endswith("/log.csv")


def test_a_csv_file_without_a_mapped_column_is_named(spark, tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.csv").write_text(f"user_id,item_id,timestamp\nu,i,{BASE_TS}\n")
    (tmp_path / "logs" / "b.csv").write_text(f"user,item_id,timestamp\nu,i,{BASE_TS}\n")
    message = str(refused(spark, config(tmp_path, tmp_path / "logs", "source.format=csv")))
    assert "b.csv" in message and "['user_id']" in message and "source.mapping" in message


def test_truncated_bzip2_names_the_file(spark, tmp_path):
    (tmp_path / "logs").mkdir()
    lines = "".join(f"{u},{i},100,pv,{BASE_TS + u * 100 + i}\n" for u in range(200) for i in range(20))
    (tmp_path / "logs" / "good.csv").write_text(lines[:2000])
    (tmp_path / "logs" / "cut.csv.bz2").write_bytes(bz2.compress(lines.encode())[:3000])
    message = str(refused(spark, config(tmp_path, tmp_path / "logs", "source.format=taobao")))
    assert message.startswith("cannot read input file ") and "cut.csv.bz2" in message
    assert "good.csv" not in message


def test_parquet_files_whose_column_types_conflict_are_named(spark, tmp_path):
    (tmp_path / "logs").mkdir()
    pq.write_table(pa.table({"user_id": ["u1"], "item_id": ["i1"], "timestamp": [str(BASE_TS)]}),
                   tmp_path / "logs" / "a.parquet")
    pq.write_table(pa.table({"user_id": ["u2"], "item_id": [7], "timestamp": [str(BASE_TS)]}),
                   tmp_path / "logs" / "b.parquet")
    message = str(refused(spark, config(tmp_path, tmp_path / "logs", "source.format=parquet")))
    assert message.startswith("cannot read input file ") and "b.parquet" in message


def test_an_empty_json_lines_file(spark, tmp_path):
    (tmp_path / "events.jsonl").write_text("")
    error = refused(spark, config(tmp_path, tmp_path / "events.jsonl", "source.format=jsonl"))
    assert str(error).startswith("no records found under")


def test_a_dominant_unknown_event_type_names_samples_and_the_mapping_key(spark, tmp_path):
    log = tmp_path / "log.csv"
    rows = [f"u{i % 5},i{i % 9},{'click' if i % 3 else 'pv'},{BASE_TS + i}" for i in range(90)]
    log.write_text("user_id,item_id,action,timestamp\n" + "\n".join(rows) + "\n")
    cfg = config(tmp_path, log, "source.format=csv", "source.mapping.event_type=action",
                 "source.mapping.event_types={pv: view}")
    message = str(refused(spark, cfg))
    assert "60 of 90 input records (66.7%)" in message
    assert re.search(r"Most are unknown_event_type, e\.g\. 'u[0-4],i[0-8],click,[0-9]+' in \S+/log\.csv;", message)
    assert "source.mapping.event_types" in message and "log.csv" in message
    quarantine = pq.read_table(Layout.of(cfg).refused_quarantine).to_pandas()
    assert sorted(quarantine[S.RAW]) == sorted(r for r in rows if ",click," in r)


# ---- found by trying it as a new user ----------------------------------------------------

def test_last_protocol_with_no_held_out_events_preprocesses_with_no_evaluation_users(spark, tmp_path):
    # Every user of the case has 8 ratings: ⌊0.1 · 8⌋ = 0 valid and 0 test events each.
    cfg = config(tmp_path, CASES / "movielens-quoted-title", "source.format=movielens", "preprocess.protocol=last")
    meta = run(spark, cfg)
    assert meta.record["users_by_split"] == {"train": meta.users}
    assert not list(Path(Layout.of(cfg).table("eval_users")).rglob("*.parquet"))
    from prismrec.evaluation.stage import run as evaluate

    with pytest.raises(InputError, match="no evaluation users .* raise preprocess.valid_share and test_share"):
        evaluate(spark, cfg)  # before it looks for a model: there is nothing to evaluate it on


def test_a_timestamp_format_spark_rejects_is_a_config_error_naming_the_key(spark, tmp_path):
    from prismrec.config import ConfigError

    csv = tmp_path / "events.csv"
    csv.write_text("user_id,item_id,timestamp\nu1,i1,2026-01-01\n")
    with pytest.raises(ConfigError) as caught:
        run(spark, config(tmp_path, csv, "source.format=csv", "source.mapping.timestamp_format=unix_xx"))
    assert "source.mapping.timestamp_format" in str(caught.value) and "'unix_xx'" in str(caught.value)


def test_a_timestamp_the_pattern_does_not_fit_is_quarantined_not_a_failed_job(spark, tmp_path):
    # "2026-1-5" is not yyyy-MM-dd to Spark 3's parser, though the pre-3.0 one read it.
    csv = tmp_path / "events.csv"
    csv.write_text("user_id,item_id,timestamp\nu1,i1,2026-1-5 10:00:00\nu1,i2,2026-01-05 11:00:00\n"
                   "u1,i3,2026-01-06 11:00:00\n")
    meta = run(spark, config(tmp_path, csv, "source.format=csv", "preprocess.max_bad_fraction=0.5",
                             "source.mapping.timestamp_format=yyyy-MM-dd HH:mm:ss"))
    assert meta.counts.quarantined == {"unparseable_timestamp": 1} and meta.counts.kept == 2


def test_ids_that_are_not_utf8_are_quarantined_not_merged(spark, tmp_path):
    csv = tmp_path / "latin1.csv"
    rows = [f"Jos\xe9,i{i},{BASE_TS + i}" for i in range(3)] + [f"Jos\xe8,i{i},{BASE_TS + i}" for i in range(3)] \
        + [f"ana,i{i},{BASE_TS + i}" for i in range(4)]
    csv.write_bytes(("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n").encode("latin-1"))
    cfg = config(tmp_path, csv, "source.format=csv", "preprocess.max_bad_fraction=0.9")
    meta = run(spark, cfg)
    # Decoded as UTF-8, both ids would read "Jos\ufffd": one user made of two.
    assert meta.counts.quarantined == {"not_utf8": 6} and meta.counts.kept == 4
    quarantine = pq.read_table(Layout.of(cfg).table("quarantine")).to_pandas()
    assert set(quarantine[S.REASON]) == {"not_utf8"} and len(quarantine) == 6
