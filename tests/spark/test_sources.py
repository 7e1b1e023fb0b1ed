"""Every source format, from small literal files, through the real reader and validation."""
from __future__ import annotations

import gzip
import json
from datetime import datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prismrec import schema as S
from prismrec.config import load_config
from prismrec.preprocess import validate

pytestmark = pytest.mark.spark
RULES = validate.Rules(max_id_length=16, min_timestamp=datetime(1990, 1, 1), cutoff=datetime(2030, 1, 1))


def canonical(spark, cfg_overrides):
    from prismrec.preprocess.stage import read_source

    cfg = load_config(None, cfg_overrides)
    _, events, quarantine = validate.split_quarantine(read_source(spark, cfg), RULES, "t")
    rows = sorted((r[S.USER_ID], r[S.ITEM_ID], r[S.CATEGORY_ID], r[S.EVENT_TYPE], r[S.WEIGHT],
                   int(r[S.TS].timestamp())) for r in events.collect())
    return rows, sorted((r[S.REASON], r[S.RAW]) for r in quarantine.collect())


def test_taobao_gz_and_dated_folders(spark, tmp_path):
    (tmp_path / "dt=2026-01-01").mkdir()
    (tmp_path / "dt=2026-01-02").mkdir()
    (tmp_path / "dt=2026-01-01" / "part.csv").write_text("1,10,100,pv,1767225600\n1,11,100,buy,1767225700\n")
    with gzip.open(tmp_path / "dt=2026-01-02" / "part.csv.gz", "wt") as handle:
        handle.write("2,10,100,cart,1767312000\n2,12,,fav,1767312060\nbroken line\n")
    rows, bad = canonical(spark, ["source.format=taobao", f"source.path={tmp_path}"])
    assert rows == [("1", "10", "100", "view", 1.0, 1767225600), ("1", "11", "100", "buy", 3.0, 1767225700),
                    ("2", "10", "100", "cart", 2.0, 1767312000), ("2", "12", "unknown", "fav", 2.0, 1767312060)]
    assert bad == [("wrong_field_count", "broken line")]


def test_taobao_glob(spark, tmp_path):
    for day in (1, 2):
        (tmp_path / f"log-{day}.csv").write_text(f"{day},10,100,pv,176722560{day}\n")
    (tmp_path / "other.txt").write_text("9,9,9,pv,1767225600\n")
    rows, _ = canonical(spark, ["source.format=taobao", f"source.path={tmp_path}/log-*.csv"])
    assert [r[0] for r in rows] == ["1", "2"]


def test_movielens_100k(spark, tmp_path):
    (tmp_path / "u.data").write_text("196\t242\t3\t881250949\n186\t302\t4.5\t891717742\n22\t242\tx\t878887116\n")
    flags_242 = "|".join(["0", "0", "0", "0", "0", "1"] + ["0"] * 13)   # Comedy
    flags_302 = "|".join(["0"] * 11 + ["0", "0", "0", "0", "0", "1", "0", "0"])   # Thriller
    (tmp_path / "u.item").write_text(f"242|Kolya (1996)|24-Jan-1997||http://x|{flags_242}\n"
                                     f"302|L.A. Confidential (1997)|01-Jan-1997||http://y|{flags_302}\n")
    rows, bad = canonical(spark, ["source.format=movielens", f"source.path={tmp_path}"])
    assert rows == [("186", "302", "Thriller", "rate", 4.5, 891717742), ("196", "242", "Comedy", "rate", 3.0, 881250949)]
    assert bad == [("unparseable_number", "22\t242\tx\t878887116")]


def test_movielens_1m(spark, tmp_path):
    (tmp_path / "ratings.dat").write_text("1::1193::5::978300760\n1::661::3::978302109\n")
    (tmp_path / "movies.dat").write_text("1193::One Flew (1975)::Drama\n661::James (1996)::Animation|Children's|Musical\n")
    rows, bad = canonical(spark, ["source.format=movielens", f"source.path={tmp_path}"])
    assert rows == [("1", "1193", "Drama", "rate", 5.0, 978300760), ("1", "661", "Animation", "rate", 3.0, 978302109)]
    assert bad == []


def test_movielens_latest(spark, tmp_path):
    (tmp_path / "ratings.csv").write_text("userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,4.5,964981247\n")
    (tmp_path / "movies.csv").write_text('movieId,title,genres\n1,"Toy Story, The (1995)",Adventure|Animation\n'
                                         "3,Grumpier (1995),(no genres listed)\n")
    rows, _ = canonical(spark, ["source.format=movielens", f"source.path={tmp_path}"])
    assert rows == [("1", "1", "Adventure", "rate", 4.0, 964982703), ("1", "3", "unknown", "rate", 4.5, 964981247)]


MAPPING = ["source.mapping.user=uid", "source.mapping.item=sku", "source.mapping.category=cat",
           "source.mapping.event_type=action", "source.mapping.timestamp=when",
           "source.mapping.timestamp_format='yyyy-MM-dd HH:mm:ss'",
           "source.mapping.event_types={click: click, purchase: buy}"]
EXPECTED = [("u1", "s1", "c1", "click", 1.0, 1767268800), ("u2", "s2", "c2", "buy", 3.0, 1767272400)]


def test_generic_csv(spark, tmp_path):
    path = tmp_path / "events.csv"
    path.write_text("uid,sku,cat,action,when\nu1,s1,c1,click,2026-01-01 12:00:00\n"
                    "u2,s2,c2,purchase,2026-01-01 13:00:00\nu3,s3,c3,hover,2026-01-01 14:00:00\n"
                    "u4,s4,c4,click,yesterday\n")
    rows, bad = canonical(spark, ["source.format=csv", f"source.path={path}", *MAPPING])
    assert rows == EXPECTED
    assert [reason for reason, _ in bad] == ["unknown_event_type", "unparseable_timestamp"]


def test_generic_jsonl(spark, tmp_path):
    path = tmp_path / "events.jsonl"
    records = [{"uid": "u1", "sku": "s1", "cat": "c1", "action": "click", "when": "2026-01-01 12:00:00"},
               {"uid": "u2", "sku": "s2", "cat": "c2", "action": "purchase", "when": "2026-01-01 13:00:00"}]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n{not json\n")
    rows, bad = canonical(spark, ["source.format=jsonl", f"source.path={path}", *MAPPING])
    assert rows == EXPECTED
    assert bad == [("wrong_field_count", "{not json")]


def test_generic_parquet(spark, tmp_path):
    table = pa.table({"uid": ["u1", "u2"], "sku": ["s1", "s2"], "cat": ["c1", "c2"],
                      "action": ["click", "purchase"], "when": ["2026-01-01 12:00:00", "2026-01-01 13:00:00"]})
    pq.write_table(table, tmp_path / "part-0.parquet")
    rows, bad = canonical(spark, ["source.format=parquet", f"source.path={tmp_path}", *MAPPING])
    assert rows == EXPECTED and bad == []


def test_parquet_mapping_to_a_missing_column_names_it(spark, tmp_path):
    pq.write_table(pa.table({"uid": ["u1"]}), tmp_path / "p.parquet")
    with pytest.raises(ValueError, match=r"not in .*columns: \['uid'\]"):
        canonical(spark, ["source.format=parquet", f"source.path={tmp_path}", *MAPPING])
