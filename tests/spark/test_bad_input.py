"""Messy input: quarantine with reasons, nothing lost, a bad-share threshold, reruns identical."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from prismrec import schema as S
from prismrec.config import load_config
from prismrec.layout import Layout
from prismrec.preprocess.stage import run

pytestmark = pytest.mark.spark
BASE_TS = 1767225600  # 2026-01-01T00:00:00Z


def good_lines(count: int) -> list[str]:
    behaviours = ("pv", "pv", "pv", "cart", "fav", "buy")
    return [f"{1000 + i % 2000},{20000 + (i * 7) % 5000},{300 + i % 40},{behaviours[i % 6]},{BASE_TS + i}"
            for i in range(count)]


def bad_lines(per_kind: int) -> list[tuple[str, str]]:
    """(reason, line) pairs, eight kinds."""
    makers = {
        "wrong_field_count": lambda i: f"{i},{i}",
        "empty_id": lambda i: f",{i},300,pv,{BASE_TS}",
        "control_characters": lambda i: f"77\x01{i},{i},300,pv,{BASE_TS}",
        "id_too_long": lambda i: f"{'9' * 80}{i},{i},300,pv,{BASE_TS}",
        "unparseable_timestamp": lambda i: f"5,{i},300,pv,2026-01-01T{i}",
        "timestamp_before_minimum": lambda i: f"5,{i},300,pv,{100 + i}",
        "timestamp_after_cutoff": lambda i: f"5,{i},300,pv,{BASE_TS + 400 * 86400 + i}",
        "unknown_event_type": lambda i: f"5,{i},300,hover,{BASE_TS}",
    }
    return [(reason, make(i)) for reason, make in makers.items() for i in range(per_kind)]


def write_log(path: Path, good: list[str], bad: list[tuple[str, str]]) -> None:
    lines = list(good)
    for position, (_, line) in enumerate(bad):   # spread the bad lines through the file
        lines.insert((position * 97) % len(lines), line)
    path.write_text("\n".join(lines) + "\n")


def config(tmp: Path, log: Path, *extra: str):
    return load_config(None, [f"paths.output={tmp / 'output'}", "source.format=taobao", f"source.path={log}",
                              "run.dt=2026-12-31", "preprocess.min_user_events=1", "preprocess.min_item_events=1",
                              "preprocess.max_events_per_user=1000000", "preprocess.num_files=2",
                              "spark.shuffle_partitions=2", *extra])


def test_hundred_thousand_good_events_and_a_thousand_bad_lines(spark, tmp_path):
    good, bad = good_lines(100_000), bad_lines(125)
    log = tmp_path / "UserBehavior.csv"
    write_log(log, good, bad)
    meta = run(spark, config(tmp_path, log))
    counts = meta.record["counts"]
    assert counts["input"] == 101_000
    assert counts["quarantined"] == {reason: 125 for reason, _ in bad[::125]}
    assert counts["kept"] == 100_000 and counts["duplicates"] == 0 and sum(counts["filtered"].values()) == 0
    quarantine = pd.read_parquet(Layout.of(config(tmp_path, log)).table("quarantine"))
    assert sorted(zip(quarantine[S.REASON], quarantine[S.RAW])) == sorted(bad)
    assert quarantine[S.SOURCE_FILE].str.endswith("UserBehavior.csv").all()
    events = pd.read_parquet(Layout.of(config(tmp_path, log)).table("events"))
    kept = sorted(zip(events[S.USER_ID], events[S.ITEM_ID], events[S.TS].map(lambda ts: int(ts.timestamp()))))
    assert kept == sorted((u, i, int(t)) for u, i, _, _, t in (line.split(",") for line in good))


def test_duplicates_and_named_filters_reconcile(spark, tmp_path):
    good = good_lines(3000)
    bot = [f"666,{20000 + i},300,pv,{BASE_TS + i}" for i in range(50)]
    log = tmp_path / "log.csv"
    write_log(log, good + good[:40] + bot, [])
    meta = run(spark, config(tmp_path, log, "preprocess.max_events_per_user=20", "preprocess.min_user_events=2"))
    counts = meta.record["counts"]
    assert counts["duplicates"] == 40
    assert counts["filtered"]["max_events_per_user"] == 50
    assert counts["input"] == counts["kept"] + counts["duplicates"] + sum(counts["filtered"].values())


def test_too_many_bad_lines_exit_non_zero_and_publish_nothing(tmp_path):
    log = tmp_path / "log.csv"
    write_log(log, good_lines(900), bad_lines(13))  # 104 bad of 1004: 10%
    output = tmp_path / "output"
    done = subprocess.run([sys.executable, "-m", "prismrec.cli", "preprocess", "--set", f"paths.output={output}",
                           "--set", "source.format=taobao", "--set", f"source.path={log}",
                           "--set", "run.dt=2026-12-31"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 3
    assert re.search(r"104 of 1004 input records \(10\.4%\) failed validation", done.stderr)
    assert not (output / "preprocessed").exists()
    # Nothing is published, but the quarantine is written aside: exactly the bad lines.
    quarantine = pd.read_parquet(output / "refused" / "quarantine")
    assert sorted(zip(quarantine[S.REASON], quarantine[S.RAW])) == sorted(bad_lines(13))
    assert "every quarantined record is in" in done.stderr


def snapshot(layout: Layout) -> dict[str, list]:
    """Every preprocessed table's rows, file by file in part order."""
    tables = {}
    for name in ("events", "quarantine", "items", "categories", "train_sequences", "eval_users", "histories"):
        files = sorted(Path(layout.table(name)).rglob("*.parquet"),
                       key=lambda p: (str(p.parent), re.sub(r"-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", "", p.name)))
        tables[name] = [(str(f.parent.relative_to(layout.table(name))), pq.read_table(f).to_pylist()) for f in files]
    return tables


def test_rerun_gives_identical_outputs(spark, tmp_path):
    from prismrec.stages import run as run_stage

    cfg = load_config(Path(__file__).parents[2] / "conf" / "test.yaml",
                      [f"paths.data={tmp_path / 'data'}", f"paths.output={tmp_path / 'output'}"])
    run_stage("generate", cfg)
    first_meta = run(spark, cfg)
    first = snapshot(Layout.of(cfg))
    second_meta = run(spark, cfg)
    assert snapshot(Layout.of(cfg)) == first
    assert {k: v for k, v in first_meta.record.items() if k not in ("seconds", "events_per_second")} == \
        {k: v for k, v in second_meta.record.items() if k not in ("seconds", "events_per_second")}
